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
The draw is stratified by label (each label gives its share, rounded, and at least one row), fixed by ``seed``;
the rows stay in their original order in both splits. A training split too small to spare a row is left whole
(choices on dev, and the records say so); a draw that would leave a label without a validation row, or take the
only training row of a label, is refused.

Figures are reported on the task's ``eval_split`` (``choose_eval_split``): ``dev`` when the task has one, else
``test``; never on ``train`` or ``validation``. ``describe_validation`` is the one line that says both.

In ``greenlm run`` the stages see ``stage_task(task)``: the task without its test split, which the run's measuring
pass evaluates once per model instead (greenlm.pipeline.measure_pass). What a stage sees is then the same whatever
split the run reports on, so a stage is reused across ``--eval-split`` choices.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

from greenlm.common import GreenlmError
from greenlm.data.tasks import UNLABELED, Task, is_labelled

VALIDATION = "validation"
MEASURING_PASS_SPLITS = ("test",)  # evaluated once per model by greenlm run's measuring pass, never by its stages
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
    _check_every_label_fits(task, wanted, fraction, max_examples)
    chosen = _stratified_rows(train.labels, wanted, seed)
    keep = set(chosen)
    rest = [i for i in range(len(train)) if i not in keep]
    splits = {"train": train.select(rest), VALIDATION: train.select(chosen)}
    splits.update({name: split for name, split in task.splits.items() if name != "train"})
    return replace(task, splits=splits,
                   validation_carve={"fraction": fraction, "max_examples": max_examples, "seed": seed})


def _check_every_label_fits(task: Task, wanted: int, fraction: float, max_examples: int) -> None:
    """Every label of train gets a validation row and keeps a training row, or the carve is refused."""
    train = task.splits["train"]
    counts: dict[int, int] = {}
    for label in train.labels:
        counts[label] = counts.get(label, 0) + 1
    lone = [task.labels[label] for label, n in sorted(counts.items()) if n == 1]
    if lone:
        raise GreenlmError(f"task '{task.name}': label {lone[0]!r} has a single training row, so a validation split"
                           " cannot hold it and train keep it; add rows of it, or set the validation fraction to 0")
    if wanted < len(counts):
        if max_examples < len(counts):
            fix = f"raise max_examples to at least {len(counts)}"
        else:
            fix = f"use a validation fraction of at least {math.ceil(100 * len(counts) / len(train)) / 100:g}"
        raise GreenlmError(f"task '{task.name}': validation fraction {fraction:g} carves {wanted} row(s) from"
                           f" {len(train)} training rows, fewer than its {len(counts)} labels, so a label would have"
                           f" no validation row; {fix} (or 0 for none)")


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


def choose_eval_split(task: Task, name: str | None) -> Task:
    """``task`` reporting every figure on split ``name`` (None: its default, dev when it has one, else test)."""
    if name is None:
        return task
    name = name.strip()
    reportable = [s for s, split in task.splits.items() if s not in ("train", VALIDATION) and is_labelled(split)]
    if name not in reportable:
        if name in ("train", VALIDATION) and name in task.splits:
            why = f"'{name}' is where the model learns or makes its choices, so figures on it would flatter it"
        elif name in task.splits:
            why = f"its '{name}' split has no labels"
        else:
            why = f"it has no '{name}' split"
        raise GreenlmError(f"--eval-split {name}: task '{task.name}' cannot be evaluated on it ({why}); it can be"
                           f" evaluated on: {', '.join(reportable) or '(none)'}")
    return replace(task, eval_split=name)


def stage_task(task: Task) -> Task:
    """``task`` as ``greenlm run``'s stages see it: without the splits of ``MEASURING_PASS_SPLITS`` (test), and
    reporting its own figures on ``dev``, else on ``validation`` (a stage's own check; the run's figures come from
    the measuring pass, on the run's ``eval_split``). Nothing here depends on the run's ``eval_split``."""
    kept = {name: split for name, split in task.splits.items() if name not in MEASURING_PASS_SPLITS}
    own = next((name for name in ("dev", VALIDATION) if name in kept and is_labelled(kept[name])), None)
    return replace(task, splits=kept, eval_split=own)


def measuring_pass_splits(task: Task) -> list[str]:
    """The splits ``greenlm run``'s measuring pass evaluates: the reported one first, then every labelled split
    that its stages left to it (``stage_task``)."""
    return [task.eval_split, *(name for name in MEASURING_PASS_SPLITS if name != task.eval_split
                               and name in task.splits and is_labelled(task.splits[name]))]


def describe_validation(task: Task) -> str:
    """One line: where choices are made (the carved validation split, or what stands in for it) and where figures
    are reported."""
    reported = f"figures are reported on '{task.eval_split}'"
    carve = task.validation_carve
    if carve is not None and VALIDATION in task.splits:
        rows = len(task.splits[VALIDATION])
        return (f"validation split: {rows:,} rows carved from train (fraction {carve['fraction']:g}, at most"
                f" {carve['max_examples']:,}, stratified by label, seed {carve['seed']}) make every choice; {reported}")
    chooser = selection_split_name(task)
    if chooser is None:
        return f"no validation split and no dev split: nothing is chosen on held-out rows; {reported}"
    return f"choices are made on '{chooser}'; {reported}"


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
