"""Honest selection: a validation split carved from train, on which every choice is made.

Best epoch, early-exit threshold, quantization fallback, pruning amount: each is a choice, and a choice
made on the split a figure is reported on inflates that figure (the reported number is then the best of
several tries on it). greenlm makes its choices on ``validation``, rows drawn from the training split
and removed from it, so ``dev`` (and ``test``) stay untouched until they are reported.

    task = carve_validation(load_task("sst2"), fraction=0.1, max_examples=1000, seed=0)
    task.splits["validation"]          # 1,000 rows that were in train
    selection_split_name(task)         # "validation"

A task that already has a ``validation`` split keeps it. ``fraction=0`` carves nothing: choices then
fall back to ``dev`` and every stage that chose something says so (``metrics.json``, ``selection``).
The draw is stratified by label (each label gives its share, rounded, and at least one row when the split
is large enough for every label to have one), fixed by ``seed``; the rows stay in their original order in
both splits. A training split too small to spare a row is left whole (choices on dev, and the records say so).
"""

from __future__ import annotations

import random
from dataclasses import replace

from greenlm.common import GreenlmError
from greenlm.data.tasks import UNLABELED, Task

VALIDATION = "validation"
SELECTION_SPLITS = (VALIDATION, "dev")  # where choices are made, in order of preference
DEFAULT_FRACTION = 0.1  # of train, carved off as validation ...
DEFAULT_MAX_EXAMPLES = 1000  # ... at most this many rows (SST-2: 1,000 of 67,349; RTE: 249 of 2,490)


def carve_validation(task: Task, *, fraction: float = DEFAULT_FRACTION, max_examples: int = DEFAULT_MAX_EXAMPLES,
                     seed: int = 0) -> Task:
    """``task`` with ``validation`` = ``fraction`` of train (at most ``max_examples`` rows), removed from train."""
    if not 0 <= fraction < 1:
        raise GreenlmError(f"validation fraction must be in [0, 1), got {fraction}")
    if max_examples < 1:
        raise GreenlmError(f"validation max_examples must be >= 1, got {max_examples}")
    if fraction == 0 or VALIDATION in task.splits or "train" not in task.splits:
        return task
    train = task.splits["train"]
    wanted = min(max_examples, int(fraction * len(train)))
    if wanted < 1 or len(train) - wanted < 1:
        return task  # too few rows to spare any: choices fall back to dev, and each stage's record says so
    if train.labels and min(train.labels) == UNLABELED:
        raise GreenlmError(f"task '{task.name}': the training split has unlabelled rows; it cannot give a validation"
                           " split")
    chosen = _stratified_rows(train.labels, wanted, seed)
    keep = set(chosen)
    rest = [i for i in range(len(train)) if i not in keep]
    splits = {"train": train.select(rest), VALIDATION: train.select(chosen)}
    splits.update({name: split for name, split in task.splits.items() if name != "train"})
    return replace(task, splits=splits,
                   validation_carve={"fraction": fraction, "max_examples": max_examples, "seed": seed})


def _stratified_rows(labels: list[int], wanted: int, seed: int) -> list[int]:
    """``wanted`` row indices, each label contributing its share (largest remainders get the leftover rows)."""
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    n = len(labels)
    quotas = {label: wanted * len(rows) / n for label, rows in by_label.items()}
    counts = {label: int(q) for label, q in quotas.items()}
    leftover = wanted - sum(counts.values())
    for label in sorted(quotas, key=lambda lb: (counts[lb] - quotas[lb], lb))[:leftover]:
        counts[label] += 1
    if wanted >= len(by_label):  # every label at least one row, taken from the label with the most
        for label in sorted(by_label):
            if counts[label] == 0:
                richest = max(counts, key=lambda lb: (counts[lb], -lb))
                counts[richest] -= 1
                counts[label] = 1
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in sorted(by_label):
        rows = list(by_label[label])
        rng.shuffle(rows)
        chosen.extend(rows[: min(counts[label], len(rows))])
    return sorted(chosen)


def selection_split_name(task: Task) -> str | None:
    """The split choices are made on: ``validation`` when the task has one, else ``dev``, else None."""
    return next((name for name in SELECTION_SPLITS if name in task.splits and len(task.splits[name])), None)


def selection_record(task: Task, chose: str) -> dict:
    """What ``metrics.json`` says about a choice: which split made it, how many rows, whether it is reported."""
    name = selection_split_name(task)
    record = {"split": name, "examples": len(task.splits[name]) if name else 0, "chose": chose}
    if name == VALIDATION:
        record["from"] = "train"
    elif name is not None:
        record["warning"] = (f"chosen on '{name}', a split that is also reported: its figures are optimistic"
                             " (carve a validation split from train)")
    return record
