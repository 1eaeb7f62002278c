"""Pruning a fine-tuned classifier: structured (heads, FFN neurons, layers removed) or unstructured.

Structured (the default, real speed): Michel et al. 2019's gate-gradient importance
(``compress.importance``) ranks heads, FFN neurons and layers; the least important are removed
physically (``models.pruned``), so the saved model has fewer parameters and FLOPs. Schedules:
  - one_shot: one importance pass, prune to the targets, then recover;
  - iterative (Michel et al. 2019, section 4): ``iterations`` rounds; round k prunes to k/K of the
    targets with importance recomputed on the model as it is, then recovers. With ``max_drop`` the
    rounds stop before dev accuracy falls more than ``max_drop`` points below the input model's,
    and the last model within that tolerance is kept.
Recovery: ``finetune`` (cross-entropy) or ``distill`` (Hinton et al. 2015 soft targets from the
unpruned model, or from the pipeline's teacher), short, on the task's training data.

Unstructured (``method`` magnitude or movement, ``compress.sparsity``): weights are zeroed, shapes
are kept; the report gives the sparsity, a CSR checkpoint's size and latency measured dense, with
zeros, and with a sparse kernel.

Stage entry point: ``run(input_dir, task, config, out_dir, work_dir=...)``; library entry point:
``prune(model, tokenizer, task, config, work_dir=...)``.
"""

from __future__ import annotations

import copy
import gzip
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import greenlm
from greenlm.common import GreenlmError, atomic_dir, atomic_write_json, sha256_file
from greenlm.compress import sparsity as sp
from greenlm.compress.importance import Importance, gate_importance
from greenlm.data import EncodedSplit, Task, encode_split
from greenlm.models import load_classifier, measure_speed, pruned, speed_inputs, torch_forward
from greenlm.train import TrainConfig, evaluate, train
from greenlm.train.evaluation import align_labels
from greenlm.train.finetune import METRICS_FILE, RUN_FILE, prepare_out_dir

METHODS = ("structured", "magnitude", "movement")
SCHEDULES = {"structured": ("one_shot", "iterative"), "magnitude": ("one_shot", "cubic"), "movement": ("cubic",)}
RECOVERIES = ("none", "finetune", "distill")
RANKINGS = ("global", "per_layer")
TEACHERS = ("input", "teacher")
SPARSE_CHECKPOINT = "model.sparse.safetensors"


@dataclass(frozen=True)
class PruneConfig:
    method: str = "structured"  # structured (heads/neurons/layers removed) | magnitude | movement (unstructured zeros)
    schedule: str | None = None  # structured: one_shot | iterative; magnitude: one_shot | cubic; movement: cubic.
    # None: the method's first (one_shot; cubic for movement)
    # -- structured: targets are shares of the input model's heads / neurons --
    head_sparsity: float = 0.5  # share of attention heads to remove, in [0, 1)
    ffn_sparsity: float = 0.0  # share of FFN neurons to remove, in [0, 1)
    drop_layers: int = 0  # whole layers to remove, least important first (their heads count as removed)
    min_heads_per_layer: int = 1  # every kept layer keeps this many heads; 0 lets a layer's attention go entirely
    min_neurons_per_layer: int = 1  # likewise for FFN neurons
    ranking: str = "global"  # global: layer-normalised scores compared across layers | per_layer: same share per layer
    importance_examples: int = 2048  # training examples whose gradients estimate importance
    iterations: int = 4  # iterative: rounds of prune + recover, targets growing linearly
    max_drop: float | None = None  # dev accuracy points the result may lose vs the input model; None: no limit
    # -- unstructured --
    sparsity: float = 0.9  # share of the encoder's linear weights set to zero, in [0, 1)
    scope: str = "global"  # magnitude: one threshold over all matrices (global) | the same share per matrix (per_layer)
    sparsity_warmup: float = 0.1  # cubic: share of training steps before pruning starts
    sparsity_cooldown: float = 0.2  # cubic: share of final steps at the final sparsity
    score_learning_rate: float = 1e-2  # movement: step size of the importance scores (Sanh et al. 2020)
    mask_update_steps: int = 10  # gradual magnitude: recompute the masks every this many steps
    # -- recovery / training (structured: after each pruning round; unstructured: while pruning) --
    recovery: str = "distill"  # none | finetune (cross-entropy) | distill (soft targets + (1 - alpha) cross-entropy)
    epochs: float = 1.0  # epochs of each recovery (structured) or of the pruning run (unstructured)
    train_examples: int | None = None  # train on a seeded subset of this many training examples; None: all
    learning_rate: float = 3e-5
    batch_size: int = 32
    distill_alpha: float = 0.9  # weight of the soft-target loss
    distill_temperature: float = 2.0
    teacher: str = "input"  # distill from: input (the unpruned upstream model) | teacher (the pipeline's teacher)
    max_length: int | None = None  # tokens per input; None: the input model's training length, else 128
    measure_speed: bool = True  # time the input and the pruned model side by side on dev inputs
    speed_examples: int = 256  # dev inputs timed (the first 64 also one at a time, for latency)
    speed_threads: int | None = None  # torch threads while timing; None: torch's current setting
    seed: int = 42

    def __post_init__(self):
        schedules = SCHEDULES.get(self.method, ())
        if self.schedule is None and schedules:
            object.__setattr__(self, "schedule", schedules[0])
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, got {self.method!r}"),
            (not schedules or self.schedule in schedules,
             f"schedule for method {self.method!r} must be one of {', '.join(schedules)}, got {self.schedule!r}"),
            (0 <= self.head_sparsity < 1, f"head_sparsity must be in [0, 1), got {self.head_sparsity}"),
            (0 <= self.ffn_sparsity < 1, f"ffn_sparsity must be in [0, 1), got {self.ffn_sparsity}"),
            (0 <= self.sparsity < 1, f"sparsity must be in [0, 1), got {self.sparsity}"),
            (self.drop_layers >= 0, f"drop_layers must be >= 0, got {self.drop_layers}"),
            (self.min_heads_per_layer >= 0, "min_heads_per_layer must be >= 0"),
            (self.min_neurons_per_layer >= 0, "min_neurons_per_layer must be >= 0"),
            (self.ranking in RANKINGS, f"ranking must be one of {', '.join(RANKINGS)}"),
            (self.importance_examples >= 1, "importance_examples must be >= 1"),
            (self.iterations >= 1, "iterations must be >= 1"),
            (self.max_drop is None or self.max_drop >= 0, "max_drop must be >= 0 (accuracy points)"),
            (self.scope in sp.SCOPES, f"scope must be one of {', '.join(sp.SCOPES)}"),
            (0 <= self.sparsity_warmup < 1 and 0 <= self.sparsity_cooldown < 1
             and self.sparsity_warmup + self.sparsity_cooldown < 1,
             "sparsity_warmup and sparsity_cooldown must be in [0, 1) and sum to less than 1"),
            (self.score_learning_rate > 0, "score_learning_rate must be > 0"),
            (self.mask_update_steps >= 1, "mask_update_steps must be >= 1"),
            (self.recovery in RECOVERIES, f"recovery must be one of {', '.join(RECOVERIES)}"),
            (self.epochs > 0, "epochs must be > 0"),
            (self.train_examples is None or self.train_examples >= 1, "train_examples must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (0 <= self.distill_alpha <= 1, "distill_alpha must be in [0, 1]"),
            (self.distill_temperature > 0, "distill_temperature must be > 0"),
            (self.teacher in TEACHERS, f"teacher must be one of {', '.join(TEACHERS)}"),
            (self.max_length is None or self.max_length >= 2, "max_length must be >= 2"),
            (self.speed_examples >= 1, "speed_examples must be >= 1"),
            (self.speed_threads is None or self.speed_threads >= 1, "speed_threads must be >= 1"),
            (not (self.method == "movement" and self.recovery == "none"),
             "movement pruning learns while training: recovery must be finetune or distill"),
            (not (self.method == "structured" and self.head_sparsity == 0 and self.ffn_sparsity == 0
                  and self.drop_layers == 0),
             "nothing to prune: set head_sparsity, ffn_sparsity or drop_layers"),
        ]
        for ok, message in checks:
            if not ok:
                raise GreenlmError(f"prune setting: {message}")

    def to_dict(self) -> dict:
        return asdict(self)


# ---- distillation loss -----------------------------------------------------------------------------


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
            alpha: float, temperature: float) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)  (Hinton et al. 2015).

    Logits [B, C]; the T^2 keeps the soft-target gradients on the scale of the hard-label ones.
    """
    t = temperature
    soft = torch.nn.functional.kl_div(
        torch.log_softmax(student_logits / t, -1), torch.log_softmax(teacher_logits / t, -1),
        reduction="batchmean", log_target=True,
    )
    hard = torch.nn.functional.cross_entropy(student_logits, labels)
    return alpha * t * t * soft + (1 - alpha) * hard


def _distill_loss_fn(teacher, permutation: list[int], alpha: float, temperature: float):
    teacher.eval()

    def loss_fn(model, batch):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            teacher_logits = teacher(**inputs).logits.float()[:, permutation]
        return kd_loss(model(**inputs).logits.float(), teacher_logits, batch["labels"],
                       alpha=alpha, temperature=temperature)

    return loss_fn


# ---- structured planning ---------------------------------------------------------------------------


@dataclass
class PrunePlan:
    """What one round removes, in the model's current numbering."""

    layers: list[int] = field(default_factory=list)
    heads: dict[int, list[int]] = field(default_factory=dict)
    neurons: dict[int, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"layers": self.layers, "heads": {str(k): v for k, v in sorted(self.heads.items())},
                "neurons": {str(k): len(v) for k, v in sorted(self.neurons.items())}}


def select_lowest(scores: list[torch.Tensor], remove: int, *, minimum: int, ranking: str, skip: set[int] = frozenset(),
                  what: str = "heads") -> dict[int, list[int]]:
    """Pick ``remove`` units of lowest score, each layer keeping at least ``minimum``; layers in ``skip`` untouched.

    global: lowest scores over all layers (scores normalised per layer); per_layer: each layer gives
    the same share of its units (largest-remainder rounding), its lowest-scored ones.
    """
    if remove <= 0:
        return {}
    counts = {i: len(s) for i, s in enumerate(scores) if i not in skip}
    room = {i: max(0, c - minimum) for i, c in counts.items()}
    if remove > sum(room.values()):
        total = sum(counts.values())
        raise GreenlmError(
            f"cannot remove {remove} more {what}: with at least {minimum} per layer, {sum(room.values())} of the"
            f" {total} left can go; lower the target or the per-layer minimum"
        )
    if ranking == "global":
        order = sorted((float(scores[i][j]), i, j) for i in counts for j in range(counts[i]))
        taken: dict[int, list[int]] = {}
        count = 0
        for _, i, j in order:
            if count == remove:
                break
            if len(taken.get(i, [])) < room[i]:
                taken.setdefault(i, []).append(j)
                count += 1
        return {i: sorted(js) for i, js in taken.items()}
    if ranking != "per_layer":
        raise ValueError(f"unknown ranking {ranking!r}")
    total = sum(counts.values())
    exact = {i: remove * c / total for i, c in counts.items()}
    quota = {i: min(room[i], int(exact[i])) for i in counts}
    by_remainder = sorted(counts, key=lambda i: (-(exact[i] - int(exact[i])), i))
    while sum(quota.values()) < remove:
        for i in by_remainder:
            if sum(quota.values()) < remove and quota[i] < room[i]:
                quota[i] += 1
    out = {}
    for i, q in quota.items():
        if q:
            out[i] = sorted(int(j) for j in torch.argsort(scores[i], stable=True)[:q])
    return out


def plan_round(model, importance: Importance, *, heads_removed_target: int, neurons_removed_target: int,
               layers_dropped_target: int, start_heads: int, start_neurons: int, start_layers: int,
               min_heads_per_layer: int, min_neurons_per_layer: int, ranking: str) -> PrunePlan:
    """Plan one round so that, after it, the totals removed (vs the start) equal the targets."""
    heads_now = pruned.heads_per_layer(model)
    neurons_now = pruned.intermediate_per_layer(model)
    drop_now = layers_dropped_target - (start_layers - len(heads_now))
    layers = sorted(int(i) for i in torch.argsort(importance.layers, stable=True)[:max(0, drop_now)])
    gone_heads = start_heads - sum(heads_now) + sum(heads_now[i] for i in layers)
    gone_neurons = start_neurons - sum(neurons_now) + sum(neurons_now[i] for i in layers)
    heads = select_lowest(importance.heads, heads_removed_target - gone_heads, minimum=min_heads_per_layer,
                          ranking=ranking, skip=set(layers), what="attention heads")
    neurons = select_lowest(importance.neurons, neurons_removed_target - gone_neurons,
                            minimum=min_neurons_per_layer, ranking=ranking, skip=set(layers), what="FFN neurons")
    return PrunePlan(layers=layers, heads=heads, neurons=neurons)


def apply_plan(model, plan: PrunePlan) -> None:
    """Remove what ``plan`` names, physically (heads and neurons first, then layers)."""
    if plan.heads:
        pruned.prune_heads(model, plan.heads)
    if plan.neurons:
        pruned.prune_neurons(model, plan.neurons)
    if plan.layers:
        pruned.drop_layers(model, plan.layers)
    pruned.sync_config(model)


# ---- data and helpers ------------------------------------------------------------------------------


@dataclass
class _Data:
    importance: EncodedSplit
    train: EncodedSplit
    dev: EncodedSplit | None
    extra: dict[str, EncodedSplit]  # other labelled splits (test) evaluated at the end
    pad_token_id: int
    num_labels: int
    mean_dev_tokens: int


def _encode(task: Task, tokenizer, model_labels: list[str], config: PruneConfig, max_length: int) -> _Data:
    def enc(split):
        return encode_split(align_labels(split, task, model_labels, "the input model"), tokenizer, max_length)

    train_split = task.split("train")
    importance = enc(train_split.subset(config.importance_examples, seed=config.seed))
    train_part = train_split
    if config.train_examples:
        train_part = train_split.subset(config.train_examples, seed=config.seed + 1)
    dev = enc(task.splits["dev"]) if "dev" in task.splits else None
    extra = {name: enc(split) for name, split in task.splits.items()
             if name not in ("train", "dev") and all(y >= 0 for y in split.labels)}
    mean_tokens = round(sum(dev.lengths()) / len(dev)) if dev is not None and len(dev) else max_length
    return _Data(importance, enc(train_part), dev, extra, tokenizer.pad_token_id, len(model_labels), mean_tokens)


def _eval(model, data: _Data, encoded: EncodedSplit | None) -> dict | None:
    if encoded is None:
        return None
    return evaluate(model, encoded, pad_token_id=data.pad_token_id, num_labels=data.num_labels)


def _shape_facts(model, seq_len: int) -> dict:
    from greenlm.measure import count_flops, count_params

    return {
        "layers": len(pruned.encoder_layers(model)),
        "heads_per_layer": pruned.heads_per_layer(model),
        "intermediate_per_layer": pruned.intermediate_per_layer(model),
        "params": count_params(model)["total"],
        "flops_per_example": count_flops(model, seq_len).infer_flops_per_example,
    }


def _train_config(config: PruneConfig, select_best: bool) -> TrainConfig:
    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                       seed=config.seed, warmup_ratio=0.06, select_metric="accuracy" if select_best else None)


def _save_model_folder(model, tokenizer, out_dir: Path, jsons: dict[str, dict], extra_writer=None) -> None:
    """Write a complete HF folder atomically (model, tokenizer, JSON files, optional extra files)."""
    from greenlm.models.loading import _quiet_transformers

    with atomic_dir(out_dir) as tmp:
        with _quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        if extra_writer is not None:
            extra_writer(tmp)
        for name, payload in jsons.items():
            atomic_write_json(tmp / name, payload)


def _speed(models: dict[str, torch.nn.Module], data: _Data, examples: int, threads: int | None) -> dict | None:
    """Latency (batch 1) and throughput (batch 32) of each model, side by side on the same dev inputs."""
    if data.dev is None:
        return None
    inputs = speed_inputs(data.dev, max_examples=examples)
    # Two interleaved rounds (A B C, then C B A), best figure per model: blunts warm-up order and noise.
    best: dict[str, dict] = {}
    names = list(models)
    for order in (names, names[::-1]):
        for name in order:
            report = measure_speed(torch_forward(models[name]), inputs, pad_token_id=data.pad_token_id,
                                   threads=threads).to_dict()
            if name not in best:
                best[name] = report
                continue
            if report["latency_ms_p50"] < best[name]["latency_ms_p50"]:
                best[name].update(latency_ms_p50=report["latency_ms_p50"], latency_ms_p90=report["latency_ms_p90"])
            best[name]["throughput_examples_per_s"] = max(best[name]["throughput_examples_per_s"],
                                                          report["throughput_examples_per_s"])
    for report in best.values():
        report["protocol"] = "best of 2 interleaved rounds of greenlm.models.measure_speed"
    return best


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# ---- the library entry point -----------------------------------------------------------------------


@dataclass
class PruneOutcome:
    model: torch.nn.Module
    details: dict  # what goes under "prune" in metrics.json
    splits: dict  # split -> metrics of the pruned model


def prune(model, tokenizer, task: Task, config: PruneConfig, *, work_dir: str | Path, teacher=None,
          progress: bool = True, on_note=print) -> PruneOutcome:
    """Prune ``model`` (a classifier fine-tuned on ``task``) as ``config`` says; resumable from ``work_dir``.

    ``teacher``: the model to distill from when ``config.teacher == "teacher"`` (else the unpruned input).
    The returned model may be a different object from ``model`` (an iterative run resumes from disk).
    """
    pruned.layout_of(model)  # refuse unknown architectures before any work
    work_dir = Path(work_dir)
    model_labels = [model.config.id2label[i] for i in sorted(model.config.id2label)]
    max_length = config.max_length or int((getattr(model.config, "greenlm", None) or {}).get("max_length", 128))
    data = _encode(task, tokenizer, model_labels, config, max_length)
    if config.max_drop is not None and data.dev is None:
        raise GreenlmError(f"max_drop needs a dev split to measure accuracy on; task '{task.name}' has none")
    if config.recovery == "distill" and config.teacher == "teacher" and teacher is None:
        raise GreenlmError("prune setting teacher='teacher' needs the fine-tuned teacher model (teacher_dir)")
    model.eval()
    unpruned = copy.deepcopy(model)
    distill_from = teacher if config.teacher == "teacher" else unpruned
    permutation = _teacher_permutation(distill_from, model_labels) if config.recovery == "distill" else []
    loss_fn = (_distill_loss_fn(distill_from, permutation, config.distill_alpha, config.distill_temperature)
               if config.recovery == "distill" else None)
    baseline = _eval(unpruned, data, data.dev)
    if config.method == "structured":
        final, details = _structured(model, tokenizer, data, config, work_dir, loss_fn, baseline, progress, on_note)
    else:
        final, details = _unstructured(model, data, config, work_dir, loss_fn, progress, on_note)
    splits = {}
    if data.dev is not None:
        splits["dev"] = _eval(final, data, data.dev)
    for name, encoded in data.extra.items():
        splits[name] = _eval(final, data, encoded)
    details["max_length"] = max_length
    details["input_dev"] = baseline
    if baseline is not None:
        drop = round(100 * (baseline["accuracy"] - splits["dev"]["accuracy"]), 3)
        details["accuracy_drop_points"] = drop
        details["accuracy_kept"] = _ratio(splits["dev"]["accuracy"], baseline["accuracy"])
        details["within_max_drop"] = None if config.max_drop is None else drop <= config.max_drop
        if config.max_drop is not None and drop > config.max_drop:
            on_note(f"accuracy dropped {drop} points, more than max_drop {config.max_drop}")
    details["before"] = _shape_facts(unpruned, data.mean_dev_tokens)
    details["after"] = _shape_facts(final, data.mean_dev_tokens)
    details["flops_seq_len"] = data.mean_dev_tokens
    details["params_ratio"] = _ratio(details["after"]["params"], details["before"]["params"])
    details["flops_ratio"] = _ratio(details["after"]["flops_per_example"], details["before"]["flops_per_example"])
    if config.measure_speed and data.dev is not None:
        models = {"input": unpruned, "pruned": final}
        if config.method != "structured":
            models["pruned_csr_kernel"] = sp.to_sparse_kernels(final)
        details["speed"] = _speed(models, data, config.speed_examples, config.speed_threads)
        details["speed"]["note"] = _speed_note(details["speed"], config.method)
    details["recovery"] = {
        "kind": config.recovery,
        "distilled_from": None if config.recovery != "distill" else ("the unpruned input model"
                                                                      if config.teacher == "input" else "the teacher"),
        "epochs": config.epochs,
    }
    details["train_examples"] = len(data.train)
    details["importance_examples"] = len(data.importance) if config.method == "structured" else None
    return PruneOutcome(final, details, splits)


def _teacher_permutation(teacher, labels: list[str]) -> list[int]:
    teacher_labels = [teacher.config.id2label[i] for i in sorted(teacher.config.id2label)]
    if sorted(teacher_labels) != sorted(labels):
        raise GreenlmError(f"the teacher's labels {teacher_labels} differ from the pruned model's {labels}")
    return [teacher_labels.index(label) for label in labels]


def _speed_note(speed: dict, method: str) -> str:
    base = speed["input"]
    notes = []
    for name in [n for n in speed if n not in ("input", "note")]:
        s = speed[name]
        notes.append(f"{name}: latency x{_ratio(base['latency_ms_p50'], s['latency_ms_p50'])}, "
                     f"throughput x{_ratio(s['throughput_examples_per_s'], base['throughput_examples_per_s'])}")
    text = "measured side by side in one process, same inputs and threads; " + "; ".join(notes)
    if method != "structured":
        text += (". Zeros inside dense matrices do not make dense matrix products faster; only the CSR kernel"
                 " can, and its figure is the measured one")
    return text


# ---- structured ------------------------------------------------------------------------------------


def _structured(model, tokenizer, data: _Data, config: PruneConfig, work_dir: Path, loss_fn, baseline,
                progress, on_note):
    start_heads_list = pruned.heads_per_layer(model)
    start_heads, start_neurons = sum(start_heads_list), sum(pruned.intermediate_per_layer(model))
    start_layers = len(start_heads_list)
    heads_target = round(config.head_sparsity * start_heads)
    neurons_target = round(config.ffn_sparsity * start_neurons)
    if config.drop_layers >= start_layers:
        raise GreenlmError(f"drop_layers {config.drop_layers} would remove the whole model ({start_layers} layers);"
                           f" use at most {start_layers - 1}")
    if heads_target >= start_heads:
        raise GreenlmError(f"head_sparsity {config.head_sparsity} would remove every attention head of the model")
    kept_layers = start_layers - config.drop_layers
    if start_heads - heads_target < config.min_heads_per_layer * kept_layers:
        most = start_heads - config.min_heads_per_layer * kept_layers
        raise GreenlmError(
            f"head_sparsity {config.head_sparsity} removes {heads_target} of {start_heads} heads, but each of the"
            f" {kept_layers} kept layers must keep {config.min_heads_per_layer}: at most {most}"
            f" ({most / start_heads:.0%}) can go; lower head_sparsity, drop whole layers (drop_layers),"
            " or set min_heads_per_layer 0"
        )
    rounds = config.iterations if config.schedule == "iterative" else 1
    state = _read_state(work_dir)
    history: list[dict] = state.get("history", [])
    current = model
    if history:
        current = load_classifier(str(work_dir / f"round-{len(history)}")).model
        on_note(f"resuming pruning after round {len(history)} of {rounds}")
    stopped_at = state.get("stopped_at")
    for k in range(len(history) + 1, rounds + 1):
        if stopped_at is not None:
            break
        share = k / rounds
        pruned_dir = work_dir / f"round-{k}-pruned"
        if (pruned_dir / "plan.json").is_file():
            current = load_classifier(str(pruned_dir)).model
            plan_info = json.loads((pruned_dir / "plan.json").read_text())
        else:
            importance = gate_importance(current, data.importance, pad_token_id=data.pad_token_id)
            plan = plan_round(
                current, importance, heads_removed_target=round(heads_target * share),
                neurons_removed_target=round(neurons_target * share),
                layers_dropped_target=round(config.drop_layers * share), start_heads=start_heads,
                start_neurons=start_neurons, start_layers=start_layers,
                min_heads_per_layer=config.min_heads_per_layer, min_neurons_per_layer=config.min_neurons_per_layer,
                ranking=config.ranking,
            )
            apply_plan(current, plan)
            plan_info = {"plan": plan.to_dict(), "importance": importance.summary()}
            _save_model_folder(current, tokenizer, pruned_dir, {"plan.json": plan_info})
        entry = {"round": k, "heads_per_layer": pruned.heads_per_layer(current),
                 "intermediate_per_layer": pruned.intermediate_per_layer(current),
                 "layers_kept": pruned.pruned_from(current)["layers"], "plan": plan_info["plan"],
                 "dev_before_recovery": _eval(current, data, data.dev)}
        if config.recovery != "none":
            result = train(current, data.train, data.dev, _train_config(config, select_best=True),
                           pad_token_id=data.pad_token_id, work_dir=work_dir / f"round-{k}-train", loss_fn=loss_fn,
                           progress=progress, description=f"prune round {k}/{rounds}: {config.recovery}")
            entry["recovery_steps"] = result.state.step
        entry["dev"] = _eval(current, data, data.dev)
        history.append(entry)
        _save_model_folder(current, tokenizer, work_dir / f"round-{k}", {})
        if (config.max_drop is not None and baseline is not None
                and 100 * (baseline["accuracy"] - entry["dev"]["accuracy"]) > config.max_drop):
            stopped_at = k
        _write_state(work_dir, {"history": history, "stopped_at": stopped_at})
        on_note(f"round {k}/{rounds}: {sum(entry['heads_per_layer'])} heads,"
                f" {sum(entry['intermediate_per_layer'])} FFN neurons, {len(entry['heads_per_layer'])} layers;"
                f" dev accuracy {entry['dev']['accuracy']:.4f}" if entry["dev"] else f"round {k}/{rounds} done")
    kept_round = len(history)
    if stopped_at is not None and stopped_at > 1:
        kept_round = stopped_at - 1
        on_note(f"round {stopped_at} lost more than max_drop {config.max_drop} accuracy points;"
                f" keeping round {kept_round}")
        current = load_classifier(str(work_dir / f"round-{kept_round}")).model
    elif stopped_at == 1:
        on_note(f"round 1 already lost more than max_drop {config.max_drop} accuracy points; kept it, as the"
                " smallest step this schedule takes: raise --iterations for smaller steps")
    final_heads = sum(pruned.heads_per_layer(current))
    final_neurons = sum(pruned.intermediate_per_layer(current))
    details = {
        "schedule": config.schedule,
        "rounds_run": len(history),
        "round_kept": kept_round,
        "target": {"head_sparsity": config.head_sparsity, "ffn_sparsity": config.ffn_sparsity,
                   "drop_layers": config.drop_layers},
        "target_reached": kept_round == rounds,
        "within_max_drop": stopped_at is None or stopped_at > 1,
        "head_sparsity": round(1 - final_heads / start_heads, 4),
        "ffn_sparsity": round(1 - final_neurons / start_neurons, 4),
        "heads": {"before": start_heads, "after": final_heads},
        "ffn_neurons": {"before": start_neurons, "after": final_neurons},
        "pruned_from": pruned.pruned_from(current),
        "history": history,
    }
    return current.eval(), details


def _read_state(work_dir: Path) -> dict:
    path = work_dir / "prune_state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_state(work_dir: Path, state: dict) -> None:
    atomic_write_json(work_dir / "prune_state.json", state)


# ---- unstructured ----------------------------------------------------------------------------------


def _unstructured(model, data: _Data, config: PruneConfig, work_dir: Path, loss_fn, progress, on_note):
    controller = sp.SparsityController(model, config.method, config.scope,
                                       score_scale=config.score_learning_rate / config.learning_rate)
    callbacks = []
    if config.schedule == "one_shot":
        controller.set_sparsity(config.sparsity)
    else:
        callbacks.append(sp.schedule_callback(controller, config.sparsity, config.sparsity_warmup,
                                              config.sparsity_cooldown, config.mask_update_steps))
    steps = 0
    if config.schedule == "cubic" or config.recovery != "none":
        # A cubic run changes the mask until its last steps: keep the last weights, not the best epoch's.
        result = train(model, data.train, data.dev, _train_config(config, select_best=config.schedule == "one_shot"),
                       pad_token_id=data.pad_token_id, work_dir=work_dir / "train", loss_fn=loss_fn,
                       callbacks=callbacks, progress=progress,
                       description=f"{config.method} pruning to {config.sparsity:.0%}")
        steps = result.state.step
        if controller.sparsity != config.sparsity:  # a resumed run that had already finished its steps
            controller.set_sparsity(config.sparsity)
    controller.bake()
    model.eval()
    report = sp.sparsity_report(model)
    details = {
        "schedule": config.schedule,
        "scope": config.scope if config.method == "magnitude" else "per_matrix",
        "target_sparsity": config.sparsity,
        "train_steps": steps,
        **report,
    }
    on_note(f"{config.method}: {report['sparsity']:.2%} of the encoder's linear weights are zero"
            f" ({report['overall_sparsity']:.2%} of all parameters)")
    return model, details


# ---- the stage -------------------------------------------------------------------------------------


def run(input_dir: Path, task: Task, config: PruneConfig, out_dir: Path, *, work_dir: Path, progress: bool = True,
        on_note=print, teacher_dir: Path | None = None) -> dict:
    """The ``prune`` stage: read the model folder at ``input_dir``, write the pruned folder at ``out_dir``.

    ``out_dir`` gets the model (safetensors; a structurally pruned one records its per-layer shapes),
    the tokenizer, ``metrics.json`` and ``greenlm_run.json``; unstructured runs add
    ``model.sparse.safetensors`` (CSR). ``work_dir`` holds rounds and training checkpoints, so an
    interrupted run resumes; it is emptied of them once ``out_dir`` is complete.
    """
    input_dir, out_dir, work_dir = Path(input_dir), Path(out_dir), Path(work_dir)
    if not (input_dir / "config.json").is_file():
        raise GreenlmError(f"prune: input model folder '{input_dir}' has no config.json")
    use_teacher = config.recovery == "distill" and config.teacher == "teacher"
    if use_teacher and teacher_dir is None:
        raise GreenlmError("prune setting teacher='teacher' needs a fine-tuned teacher (teacher_dir / --teacher)")
    identity = {
        "stage": "prune",
        "task": task.name,
        "task_fingerprint": task.fingerprint(),
        "input": str(input_dir),
        "input_weights_sha256": _weights_hash(input_dir),
        "teacher_weights_sha256": _weights_hash(Path(teacher_dir)) if use_teacher else None,
        "prune": config.to_dict(),
        "greenlm_version": greenlm.__version__,
    }
    finished = prepare_out_dir(out_dir, identity)
    if finished is not None:
        return finished
    _claim_work_dir(work_dir, identity, on_note)

    loaded = load_classifier(str(input_dir))
    model, tokenizer = loaded.model, loaded.tokenizer
    pruned.layout_of(model)
    unknown = sorted(set(task.labels) - set(loaded.labels))
    if unknown:
        raise GreenlmError(f"prune: the input model knows labels {loaded.labels}, not the task's {unknown};"
                           " prune a model fine-tuned on this task")
    teacher = load_classifier(str(teacher_dir)).model if use_teacher else None
    outcome = prune(model, tokenizer, task, config, work_dir=work_dir, teacher=teacher, progress=progress,
                    on_note=on_note)
    metrics = {"task": task.name, "model": str(input_dir), "method": "prune", "splits": outcome.splits,
               "prune": {"method": config.method, **outcome.details}}

    def write_sparse(folder: Path) -> None:
        csr_bytes = sp.save_sparse_checkpoint(outcome.model, folder / SPARSE_CHECKPOINT)
        dense = (folder / "model.safetensors").read_bytes()
        metrics["prune"]["checkpoint"] = {
            "dense_safetensors_bytes": len(dense),
            "csr_safetensors_bytes": csr_bytes,
            "csr_compression_ratio": _ratio(len(dense), csr_bytes),
            "dense_gzip_bytes": len(gzip.compress(dense, compresslevel=6)),
            "note": f"{SPARSE_CHECKPOINT}: matrices with >= 30% zeros stored as CSR (int16 column ids, fp32"
                    " values), the rest dense; sizes are the files' measured bytes",
        }

    outcome.model.config.greenlm = {**(getattr(outcome.model.config, "greenlm", None) or {}), "task": task.name,
                                    "labels": list(loaded.labels), "max_length": outcome.details["max_length"]}
    _save_model_folder(outcome.model, tokenizer, out_dir, {METRICS_FILE: metrics, RUN_FILE: identity},
                       extra_writer=write_sparse if config.method != "structured" else None)
    _clear_work_dir(work_dir)
    return metrics


def _weights_hash(folder: Path) -> str | None:
    for name in ("model.safetensors", "model.safetensors.index.json"):
        if (folder / name).is_file():
            return sha256_file(folder / name)
    return None


_WORK_IDENTITY = "prune_identity.json"


def _claim_work_dir(work_dir: Path, identity: dict, on_note) -> None:
    """Use ``work_dir`` for this run; state left there by a different run (other settings) is removed."""
    path = work_dir / _WORK_IDENTITY
    if path.is_file():
        try:
            same = json.loads(path.read_text()) == identity
        except (OSError, json.JSONDecodeError):
            same = False
        if same:
            return
        on_note(f"{work_dir} holds an unfinished prune run with other settings; starting afresh")
        _clear_work_dir(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, identity)


def _clear_work_dir(work_dir: Path) -> None:
    """Remove what this stage put in ``work_dir`` (rounds, checkpoints, state), nothing else."""
    if not work_dir.is_dir():
        return
    for child in work_dir.iterdir():
        if child.name.startswith("round-") or child.name in ("train", "prune_state.json", _WORK_IDENTITY):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
