"""Filters that act on what the audit (``greenlm/data/audit.py``) finds: drop train rows before anything is trained.

Only the train split is filtered: evaluation splits stay as published, so a filtered run's dev figure compares with
an unfiltered one. Each rule uses the audit's own definitions (same normalisation, same script test):

| rule | drops from train |
|---|---|
| ``non_text`` | rows with a text field without any letter |
| ``other_script`` | rows whose majority script is not train's most common one |
| ``eval_overlap`` | rows whose normalised text occurs in an evaluation split (dev, test): train is decontaminated |
| ``conflicting`` | every row of a normalised text that occurs with more than one label |
| ``duplicates`` | repeats of an earlier row's exact text with the same label (the first is kept) |
| ``near_duplicates`` | repeats of an earlier row's normalised text with the same label (implies ``duplicates``) |

Rules run in the order of the table; a row removed by one rule is counted under that rule only. The filtered task
records ``train_filter = {drop, removed: {rule: rows}, rows_before, rows_after}``; its content fingerprint changes,
so stages trained on it are cached apart from unfiltered ones.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable

from greenlm.common import GreenlmError
from greenlm.data.audit import _row_texts, normalise, row_script
from greenlm.data.tasks import UNLABELED, Task, TaskSplit

DROP_RULES = ("non_text", "other_script", "eval_overlap", "conflicting", "duplicates", "near_duplicates")


def parse_drop(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"duplicates,conflicting"`` or a list -> the rules in the order they run; unknown names are refused."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(item).strip().replace("-", "_") for item in items if str(item).strip()]
    unknown = [n for n in names if n not in DROP_RULES]
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], DROP_RULES, n=1)
        raise GreenlmError(f"unknown data filter '{unknown[0]}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                           + f"; known: {', '.join(DROP_RULES)}")
    return tuple(rule for rule in DROP_RULES if rule in names)


def filter_train(task: Task, drop: str | Iterable[str] | None) -> Task:
    """``task`` with the rows the ``drop`` rules match removed from train (see the module doc); unchanged when no
    rule is given."""
    rules = parse_drop(drop)
    if not rules:
        return task
    if task.validation_carve is not None:
        raise GreenlmError("filter the task before carving its validation split (the carve is drawn from the "
                           "filtered train rows)")
    train = task.split("train")
    texts = [_row_texts(train, i) for i in range(len(train))]
    keys = [tuple(normalise(t) for t in row) for row in texts]
    reason: dict[int, str] = {}
    for rule in rules:
        for i in _matches(rule, task, train, texts, keys, reason):
            reason.setdefault(i, rule)
    keep = [i for i in range(len(train)) if i not in reason]
    if not keep:
        raise GreenlmError(f"the data filters {', '.join(rules)} would remove every train row of {task.name}")
    kept = TaskSplit([train.text_a[i] for i in keep], None if train.text_b is None else [train.text_b[i] for i in keep],
                     [train.labels[i] for i in keep])
    removed = Counter(reason.values())
    record = {"drop": list(rules), "removed": {rule: removed.get(rule, 0) for rule in rules},
              "rows_before": len(train), "rows_after": len(keep)}
    return dataclasses.replace(task, splits={**task.splits, "train": kept}, train_filter=record)


def describe_filter(record: dict | None) -> str | None:
    """One line for logs and reports: what was dropped from train, rule by rule."""
    if not record:
        return None
    parts = ", ".join(f"{rule.replace('_', ' ')} {count}" for rule, count in record["removed"].items())
    gone = record["rows_before"] - record["rows_after"]
    return f"data filters dropped {gone} of {record['rows_before']} train rows ({parts})"


def _matches(rule: str, task: Task, train: TaskSplit, texts: list, keys: list, removed: dict) -> list[int]:
    """Rows of train the rule matches, ignoring rows an earlier rule already removed."""
    alive = [i for i in range(len(texts)) if i not in removed]
    if rule == "non_text":
        return [i for i in alive if any(not any(ch.isalpha() for ch in t) for t in texts[i])]
    if rule == "other_script":
        scripts = {i: row_script(" ".join(texts[i])) for i in alive}
        counts = Counter(s for s in scripts.values() if s is not None)
        main = counts.most_common(1)[0][0] if counts else None
        return [i for i, s in scripts.items() if s is not None and s != main]
    if rule == "eval_overlap":
        seen = {tuple(normalise(t) for t in _row_texts(split, j))
                for name, split in task.splits.items() if name != "train" for j in range(len(split))}
        return [i for i in alive if keys[i] in seen]
    if rule == "conflicting":
        labels = defaultdict(set)
        for i in alive:
            if train.labels[i] != UNLABELED:
                labels[keys[i]].add(train.labels[i])
        return [i for i in alive if len(labels[keys[i]]) > 1]
    key_of = (lambda i: texts[i]) if rule == "duplicates" else (lambda i: keys[i])
    first: set = set()
    repeats = []
    for i in alive:
        key = (key_of(i), train.labels[i])
        if key in first:
            repeats.append(i)
        first.add(key)
    return repeats

