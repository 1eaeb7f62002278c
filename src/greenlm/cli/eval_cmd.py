"""``greenlm eval``: accuracy (with its 95% bootstrap interval), macro-F1 and MCC of a saved model on a task split,
each class's precision, recall and F1, and the confusion matrix."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from greenlm.cli._common import (LabelFieldOpt, LabelsOpt, OnEmptyOpt, TaskOpt, TextFieldsOpt, err,
                                 load_task_from_options, metrics_table, per_class_table, print_json)


def eval_command(
    model: Annotated[str, typer.Argument(help="A model folder saved by greenlm (or any HF classifier folder).")],
    task: TaskOpt = "sst2",
    split: Annotated[Optional[str], typer.Option(
        "--eval-split", "--split",
        help="Split to evaluate (dev, test, train). Default: dev when the task has one, else test.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per forward pass.")] = 128,
    max_length: Annotated[Optional[str], typer.Option(help="Token limit (default: the one the model was trained with);"
                                                      " auto: the length that covers 99% of the evaluated rows.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    labels: LabelsOpt = None,
    on_empty: OnEmptyOpt = "skip",
    allow_pickle: Annotated[bool, typer.Option(help="Allow pickle weights: only for sources you trust.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar with ETA.")] = True,
) -> None:
    """Evaluate MODEL on a split of a task: accuracy (95% bootstrap interval), macro-F1, MCC, per-class
    precision/recall/F1 and the confusion matrix (all of them in --json)."""
    from greenlm.common.numbers import max_length_setting
    from greenlm.train.evaluation import evaluate_on_task

    max_length = max_length_setting(max_length, minimum=2, name="--max-length")
    loaded_task = load_task_from_options(task, text_fields, label_field, labels, on_empty)
    split = split.strip() if split else loaded_task.eval_split
    metrics = evaluate_on_task(model, loaded_task, split, batch_size=batch_size, max_length=max_length,
                               allow_pickle=allow_pickle, progress=progress, on_note=lambda note: err(f"note: {note}"))
    from greenlm.data import truncation_line

    err(f"note: {truncation_line(split, metrics['truncation'])}")
    if as_json:
        print_json({"model": model, "task": loaded_task.name, "split": split, **metrics})
    else:
        metrics_table(f"{loaded_task.name}: {model}", {split: metrics})
        per_class_table(f"{loaded_task.name}/{split}", metrics)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
