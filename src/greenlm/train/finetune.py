"""Fine-tune a sequence classifier on a task and save it as a Hugging Face folder with its metrics.

This is what ``greenlm train`` and the ``finetune`` stage of ``greenlm run`` do. The output folder is
either complete (model, tokenizer, ``metrics.json``, ``greenlm_run.json``) or holds a run in progress
(``greenlm_run.json`` and ``.work/`` with the checkpoint); running the same command again resumes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

import greenlm
from greenlm.common import GreenlmError, atomic_write_json, recover_dir
from greenlm.data import Task, encode_split
from greenlm.models import load_classifier, model_max_length, save_classifier
from greenlm.train.config import TrainConfig
from greenlm.train.loop import Callback, evaluate, train

RUN_FILE = "greenlm_run.json"
METRICS_FILE = "metrics.json"
WORK_DIR = ".work"


@dataclass
class FinetuneOutcome:
    out_dir: Path
    metrics: dict
    reused: bool  # True when the folder already held this exact, finished run
    is_main_process: bool = True  # False on the other processes of a distributed run (they stay quiet)


def run_identity(task: Task, model_spec: str, config: TrainConfig, max_length: int, extra: dict | None = None) -> dict:
    """Everything that decides the result: a folder holding another identity is a different run."""
    return {
        "task": task.name,
        "task_fingerprint": task.fingerprint(),
        "model": model_spec,
        "max_length": max_length,
        "train": config.to_dict(),
        "greenlm_version": greenlm.__version__,
        **(extra or {}),
    }


def prepare_out_dir(out_dir: Path, identity: dict) -> dict | None:
    """Check ``out_dir`` may receive this run; return the finished metrics if it already holds it."""
    recover_dir(out_dir)  # a kill while the finished folder replaced the working one
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        raise GreenlmError(f"output '{out_dir}' is a file; give a folder")
    run_file = out_dir / RUN_FILE
    if not run_file.is_file():
        if any(out_dir.iterdir()):
            raise GreenlmError(f"output folder '{out_dir}' is not empty and holds no greenlm run; choose a new folder")
        return None
    try:
        existing = json.loads(run_file.read_text())
    except (OSError, json.JSONDecodeError):
        raise GreenlmError(f"output folder '{out_dir}' has an unreadable {RUN_FILE}; choose a new folder") from None
    if existing != identity:
        changed = sorted(k for k in set(existing) | set(identity) if existing.get(k) != identity.get(k))
        raise GreenlmError(
            f"output folder '{out_dir}' already holds a different run (differs in: {', '.join(changed)});"
            " choose another --out or delete that folder"
        )
    metrics_file = out_dir / METRICS_FILE
    return json.loads(metrics_file.read_text()) if metrics_file.is_file() else None


def finetune(
    task: Task,
    model_spec: str,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    max_length: int = 128,
    train_subset: int | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    callbacks: tuple[Callback, ...] = (),
    progress: bool = True,
    on_note=print,
) -> FinetuneOutcome:
    out_dir = Path(out_dir)
    train_split = task.split("train")
    if train_subset is not None:
        train_split = train_split.subset(train_subset, seed=config.seed)
    dev_split = task.splits.get("dev")
    identity = run_identity(task, model_spec, config, max_length, {"train_subset": train_subset})
    finished = prepare_out_dir(out_dir, identity)
    if finished is not None:
        return FinetuneOutcome(out_dir, finished, reused=True)

    torch.manual_seed(config.seed)  # the new classifier head's initialisation
    loaded = load_classifier(
        model_spec, labels=list(task.labels), train_texts=_texts(train_split),
        allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, seed=config.seed,
    )
    for note in loaded.notes:
        on_note(note)
    model, tokenizer = loaded.model, loaded.tokenizer
    limit = model_max_length(model.config)
    if max_length > limit:
        raise GreenlmError(f"--max-length {max_length} is above what the model's positions allow ({limit}); use <= {limit}")

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / RUN_FILE, identity)
    train_data = encode_split(train_split, tokenizer, max_length)
    dev_data = encode_split(dev_split, tokenizer, max_length) if dev_split is not None else None
    result = train(
        model, train_data, dev_data, config, pad_token_id=tokenizer.pad_token_id, work_dir=out_dir / WORK_DIR,
        callbacks=callbacks, progress=progress, description=f"fine-tune {task.name}",
    )
    splits = {"dev": result.best_metrics} if result.best_metrics else {}
    for name, split in task.splits.items():
        if name not in ("train", "dev"):
            encoded = encode_split(split, tokenizer, max_length)
            splits[name] = evaluate(model, encoded, pad_token_id=tokenizer.pad_token_id, num_labels=len(task.labels))
    metrics = {
        "task": task.name,
        "model": model_spec,
        "splits": splits,
        "train": {
            "examples": len(train_split),
            "steps": result.state.step,
            "epochs": config.epochs,
            "precision": result.precision,
            "num_processes": result.num_processes,
            "train_seconds": round(result.state.train_seconds, 3),
            "train_examples_per_s": round(result.train_examples_per_s, 2),
            "best_step": result.state.best_step,
            "history": result.state.history,
        },
    }
    model.config.greenlm = {"task": task.name, "labels": list(task.labels), "max_length": max_length}
    from accelerate.state import PartialState

    process = PartialState()
    if process.is_main_process:
        save_classifier(model, tokenizer, out_dir, {METRICS_FILE: metrics, RUN_FILE: identity})
    process.wait_for_everyone()
    return FinetuneOutcome(out_dir, metrics, reused=False, is_main_process=process.is_main_process)


def _texts(split):
    for i, text in enumerate(split.text_a):
        yield text if split.text_b is None else f"{text} {split.text_b[i]}"
