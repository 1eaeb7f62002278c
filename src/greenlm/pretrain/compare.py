"""Compare pre-training objectives and maskings at equal compute (``greenlm pretrain-compare``).

Every arm (objective/masking) pre-trains the same encoder to the same FLOPs budget (ELECTRA's convention, so MLM
and ELECTRA are priced alike), saving snapshots at shares of the budget; every snapshot is fine-tuned on each task
(best epoch chosen on a validation split carved from train, accuracy reported on dev). Results: one row per
(arm, snapshot, task) in results.json, and a figure of dev accuracy against pre-training FLOPs and energy.

    out/arms/<objective>-<masking>/          the pre-trained encoder (snapshots/step-N inside)
    out/finetune/<arm>/step-N/<task>.json   one fine-tuning result (kept: a rerun skips it)
    out/results.json, out/compare.png
Everything resumes: a pre-training arm through its work folder, a fine-tuning through its result file.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from greenlm.common.numbers import check_numbers
from greenlm.common import GreenlmError, atomic_write_json, read_json
from greenlm.pretrain.config import DEFAULT_MODEL, MASKINGS, OBJECTIVES, PretrainConfig


@dataclass(frozen=True)
class CompareConfig:
    flops_budget: float  # pre-training FLOPs of every arm (ELECTRA's convention)
    corpus: str = "wikitext2"  # the pre-training corpus
    model: str = DEFAULT_MODEL  # the encoder every arm trains
    arms: tuple[str, ...] = ("mlm/random", "mlm/whole-word", "mlm/content-words", "electra/random")  # OBJECTIVE/MASKING
    fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)  # shares of the budget where a snapshot is fine-tuned (0: untrained)
    tasks: tuple[str, ...] = ("sst2", "rte")  # fine-tuning tasks
    vocab_size: int | None = None  # WordPiece vocabulary (default: the tiny spec's)
    max_length: int = 128  # tokens per pre-training block
    batch_size: int = 32  # blocks per pre-training step
    learning_rate: float = 5e-4  # pre-training peak learning rate
    finetune_rows: int | None = 2000  # training rows per task for each fine-tuning (None: all)
    finetune_epochs: float = 3.0  # fine-tuning epochs
    finetune_lr: float = 1e-4  # fine-tuning learning rate
    finetune_max_length: int | None = None  # fine-tuning tokens per example (None: max_length)
    seed: int = 42  # every arm's seed

    def __post_init__(self):
        check_numbers(self)
        if not self.arms:
            raise GreenlmError("compare needs at least one arm (OBJECTIVE/MASKING)")
        for arm in self.arms:
            objective, _, masking = arm.partition("/")
            if objective not in OBJECTIVES or masking not in MASKINGS:
                raise GreenlmError(f"arm '{arm}' is not OBJECTIVE/MASKING with OBJECTIVE in {', '.join(OBJECTIVES)}"
                                   f" and MASKING in {', '.join(MASKINGS)}")
        if not self.fractions or not all(0 <= f <= 1 for f in self.fractions):
            raise GreenlmError("compare: fractions of the budget must be in [0, 1] (0: the untrained encoder)")
        if not self.finetune_lr > 0:
            raise GreenlmError(f"compare: the fine-tuning learning rate must be > 0, got {self.finetune_lr}")
        if not self.tasks:
            raise GreenlmError("compare needs at least one fine-tuning task")

    def arm_config(self, arm: str) -> PretrainConfig:
        objective, _, masking = arm.partition("/")
        return PretrainConfig(corpus=self.corpus, model=self.model, objective=objective, masking=masking,
                              vocab_size=self.vocab_size, max_length=self.max_length, batch_size=self.batch_size,
                              flops_budget=self.flops_budget, learning_rate=self.learning_rate, seed=self.seed,
                              snapshot_fractions=tuple(sorted(set(self.fractions))))


def run_compare(config: CompareConfig, out_dir: str | Path, *, progress: bool = True, on_note=print) -> dict:
    """Run every arm and fine-tuning that is not done yet; returns {"rows", "results_file", "figure"}."""
    from greenlm.data import carve_validation, load_task
    from greenlm.pretrain.run import run_pretraining

    out_dir = Path(out_dir)
    tasks = {name: carve_validation(load_task(name)) for name in config.tasks}  # bad task names stop here
    arms = {arm: config.arm_config(arm) for arm in config.arms}
    rows = []
    for arm, arm_config in arms.items():
        name = arm.replace("/", "-")
        on_note(f"arm {arm}: pre-training to {config.flops_budget:.3g} FLOPs")
        result = run_pretraining(arm_config, out_dir / "arms" / name, progress=progress, on_note=on_note)
        steps = result.metrics["train"]["steps"]
        for snapshot in result.metrics["snapshots"]:
            folder = result.folder / snapshot["folder"]
            for task_name, task in tasks.items():
                scores = _finetune_once(config, task, folder, out_dir / "finetune" / name / folder.name, task_name,
                                        progress, on_note)
                rows.append({"arm": arm, "objective": arm_config.objective, "masking": arm_config.masking,
                             "step": snapshot["step"], "fraction": round(snapshot["step"] / steps, 4),
                             "pretrain_flops": snapshot["train_flops_electra"],
                             "pretrain_energy_kwh": snapshot["energy_kwh"],
                             "validation": snapshot["validation"], "task": task_name, **scores})
    results = {"config": {**asdict(config), "arms": list(config.arms)}, "rows": rows}
    results_file = out_dir / "results.json"
    atomic_write_json(results_file, results)
    figure = _figure(rows, out_dir / "compare.png", on_note)
    return {"rows": rows, "results_file": str(results_file), "figure": str(figure) if figure else None}


def _finetune_once(config, task, model_folder: Path, folder: Path, task_name: str, progress, on_note) -> dict:
    """Fine-tune ``model_folder`` on ``task`` once; the result file makes a rerun skip it."""
    from greenlm.train.config import TrainConfig
    from greenlm.train.finetune import finetune

    result_file = folder / f"{task_name}.json"
    if result_file.is_file():
        return read_json(result_file)
    work = folder / f".{task_name}.work"
    train_config = TrainConfig(epochs=config.finetune_epochs, learning_rate=config.finetune_lr, seed=config.seed,
                               batch_size=32)
    rows = len(task.split("train"))
    subset = config.finetune_rows if config.finetune_rows and config.finetune_rows < rows else None
    result = finetune(task, str(model_folder), train_config, work_dir=work, max_length=config.finetune_max_length or config.max_length,
                      train_subset=subset, progress=progress, on_note=lambda m: None)
    dev = result.metrics["splits"].get("dev", {})
    scores = {"dev_accuracy": dev.get("accuracy"), "dev_macro_f1": dev.get("macro_f1"),
              "finetune_rows": subset or rows}
    atomic_write_json(result_file, scores)
    shutil.rmtree(work, ignore_errors=True)
    on_note(f"{model_folder.parent.parent.name} {model_folder.name} {task_name}: dev accuracy {scores['dev_accuracy']}")
    return scores


def _figure(rows: list[dict], path: Path, on_note):
    """Dev accuracy against pre-training FLOPs (top) and energy (bottom), one column per task; None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        on_note("matplotlib is not installed (pip install 'greenlm[report]'): results.json only, no figure")
        return None
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.5 * len(tasks), 7), squeeze=False)
    for column, task in enumerate(tasks):
        for row, (key, label) in enumerate((("pretrain_flops", "pre-training FLOPs (ELECTRA's convention)"),
                                            ("pretrain_energy_kwh", "pre-training energy (kWh)"))):
            ax = axes[row][column]
            for arm in dict.fromkeys(r["arm"] for r in rows):
                points = sorted((r[key], r["dev_accuracy"]) for r in rows
                                if r["arm"] == arm and r["task"] == task and r[key] is not None)
                if points:
                    ax.plot(*zip(*points), marker="o", label=arm)
            ax.set_xlabel(label)
            ax.set_ylabel(f"{task} dev accuracy")
            ax.grid(alpha=0.3)
        axes[0][column].set_title(task)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
