"""Fine-tune a sequence classifier on a task: the algorithm behind ``greenlm train`` and the ``finetune``
stage of ``greenlm run`` (``greenlm.pipeline.finetune_stage`` registers it with the stage shell, which
owns the output folder, resuming and the price tag).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from greenlm.common import GreenlmError
from greenlm.data import Task, encode_split, selection_record, selection_split_name, truncation_records
from greenlm.models import input_max_length, load_classifier
from greenlm.train.config import TrainConfig
from greenlm.train.loop import Callback, evaluate, train


@dataclass
class FinetuneResult:
    model: torch.nn.Module
    tokenizer: object
    metrics: dict  # {"splits": {split: metrics}, "train": {...}}


def finetune(task: Task, model_spec: str, config: TrainConfig, *, work_dir: str | Path, max_length: int | str = 128,
             train_subset: int | None = None, train_rows: Sequence[int] | None = None,
             record_dynamics_to: str | Path | None = None, dynamics_mode: str = "eval",
             allow_pickle: bool = False, trust_remote_code: bool = False,
             callbacks: tuple[Callback, ...] = (), progress: bool = True, on_note=print) -> FinetuneResult:
    """Fine-tune ``model_spec`` on ``task``; checkpoints in ``work_dir`` (running again resumes).

    The best epoch is chosen on the task's ``validation`` split (carved from train: greenlm.data.validation) when
    it has one, else on ``dev`` (``config.select_metric``); ``metrics["selection"]`` says which.
    ``train_rows``: train on these rows of the train split only (a data-map selection; not with ``train_subset``).
    ``record_dynamics_to``: a folder where ``greenlm.train.dynamics.DynamicsRecorder`` writes every training row's
    logits at each record point (resumable; ``metrics["dynamics"]`` says what was recorded and what it cost);
    ``dynamics_mode``: ``eval`` (a forward pass of its own per point) or ``train`` (the training pass's logits).
    ``max_length="auto"``: the length that covers ``AUTO_LENGTH_SHARE`` of the training rows (at most the model's).
    Every split's truncation (rows cut at max_length) is told to ``on_note`` and kept in ``metrics["truncation"]``.
    """
    full_train = task.split("train")
    train_split = full_train
    guids: list[int] | None = None
    if train_rows is not None:
        if train_subset is not None:
            raise GreenlmError("train_subset and a train selection cannot be combined; use random:FRACTION for a random"
                               " share")
        guids = [int(i) for i in train_rows]
        train_split = full_train.select(guids)
    elif train_subset is not None:
        train_split = full_train.subset(train_subset, seed=config.seed)
        if record_dynamics_to is not None:
            guids = _subset_rows(full_train, train_split, train_subset, config.seed)
    select_name = selection_split_name(task)
    dev_split = task.splits[select_name] if select_name is not None else None
    torch.manual_seed(config.seed)  # the new classifier head's initialisation
    loaded = load_classifier(
        model_spec, labels=list(task.labels), train_texts=train_split.joined_texts(),
        allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, seed=config.seed, trainable=True,
    )
    for note in loaded.notes:
        on_note(note)
    model, tokenizer = loaded.model, loaded.tokenizer
    max_length = input_max_length(model.config, tokenizer, max_length, train_split, on_note)
    train_data = encode_split(train_split, tokenizer, max_length)
    dev_data = encode_split(dev_split, tokenizer, max_length) if dev_split is not None else None
    encoded = {"train": train_data, **({select_name: dev_data} if dev_data is not None else {})}
    recorder = None
    if record_dynamics_to is not None:
        from greenlm.train.dynamics import DynamicsRecorder

        recorder = DynamicsRecorder(
            model, train_data, guids if guids is not None else range(len(train_split)), config,
            pad_token_id=tokenizer.pad_token_id, folder=record_dynamics_to, mode=dynamics_mode,
            meta={"task": task.name, "task_source": task.source, "validation_carve": task.validation_carve,
                  "train_filter": task.train_filter,
                  "labels": list(task.labels),
                  "train_fingerprint": full_train.fingerprint()},
        )
        callbacks = (*callbacks, recorder)
    result = train(
        model, train_data, dev_data, config, pad_token_id=tokenizer.pad_token_id, work_dir=Path(work_dir),
        callbacks=callbacks, progress=progress, description=f"fine-tune {task.name}",
    )
    splits = {select_name: result.best_metrics} if result.best_metrics else {}
    for name, split in task.splits.items():
        if name != "train" and name not in splits:
            encoded[name] = encode_split(split, tokenizer, max_length)
            splits[name] = evaluate(model, encoded[name], pad_token_id=tokenizer.pad_token_id,
                                    num_labels=len(task.labels))
    truncation = truncation_records(encoded, on_note)
    from greenlm.models.linear_attention import kept_metadata  # linear attention and extended positions stay

    model.config.greenlm = {**kept_metadata(model.config), "task": task.name, "labels": list(task.labels),
                            "max_length": max_length}
    extra = {"dynamics": recorder.summary(result.state.train_seconds)} if recorder is not None else {}
    return FinetuneResult(model, tokenizer, {
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
            **({"pauses": result.state.pauses} if result.state.pauses else {}),
        },
        "selection": selection_record(task, "best epoch" if config.select_metric else "nothing (last epoch kept)"),
        "truncation": truncation,
        **extra,
    })


def _subset_rows(full, subset, n: int, seed: int) -> list[int]:
    """The row indices ``TaskSplit.subset(n, seed)`` chose (its seeded draw, repeated), checked against the subset."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(full), generator=generator)[:n].sort().values.tolist() if n < len(full) else \
        list(range(len(full)))
    if full.select(rows).fingerprint() != subset.fingerprint():
        raise RuntimeError("train_subset: could not recover the subset's row indices")
    return rows


