"""What greenlm understood of a task, as plain data: ``greenlm tasks check`` prints it.

    summary = task_summary(load_task("data/my_task"))
    summary["splits"]["train"]   # {"rows": 5452, "labels": {"ABBR": 86, ...}, "skipped_empty": 0}
"""

from __future__ import annotations

from greenlm.data.tasks import UNLABELED, Task


def task_summary(task: Task) -> dict:
    """Name, source, text fields, label set, the split figures are reported on, and per split its rows, rows per
    label and the rows skipped for an empty text."""
    splits = {}
    for name, split in task.splits.items():
        counts = {label: 0 for label in task.labels}
        for label_id in split.labels:
            if label_id != UNLABELED:
                counts[task.labels[label_id]] += 1
        splits[name] = {"rows": len(split), "labels": counts, "skipped_empty": task.skipped_rows.get(name, 0)}
    return {
        "name": task.name,
        "source": task.source,
        "text_fields": list(task.text_fields),
        "pair": task.is_pair,
        "labels": list(task.labels),
        "label_names": list(task.label_names) if task.label_names else None,
        "eval_split": task.eval_split,
        "splits": splits,
    }
