"""``greenlm tasks``: list the bundled tasks; ``greenlm tasks check``: what greenlm understands of a folder or task
file (no logic here: greenlm.data describes tasks, greenlm.models.task_lengths counts truncation)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from greenlm.cli._common import (EvalSplitOpt, LabelFieldOpt, LabelsOpt, OnEmptyOpt, TextFieldsOpt, ValidationOpt,
                                 load_task_from_options, print_json)

tasks_app = typer.Typer(
    invoke_without_command=True, no_args_is_help=False,
    help="List the bundled tasks (greenlm tasks [--json]), or check a folder or task file of your own"
         " (greenlm tasks check PATH; docs/tasks.md).")


def register(app: typer.Typer) -> None:
    app.add_typer(tasks_app, name="tasks")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@tasks_app.callback()
def tasks(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the bundled tasks: rows per split, labels, text fields and where the data comes from.

    Any of these names works wherever a task is asked for, as do folders, task files and hf:<dataset>
    (docs/tasks.md); `greenlm tasks check PATH` shows what greenlm reads in one of yours.
    """
    if ctx.invoked_subcommand is None:
        list_tasks(as_json)


@tasks_app.command("list")
def list_tasks(as_json: JsonOpt = False) -> None:
    """List the bundled tasks (the same as `greenlm tasks`)."""
    from greenlm.data import describe_bundled_tasks

    infos = describe_bundled_tasks()
    if as_json:
        typer.echo(json.dumps([info.to_dict() for info in infos], indent=2))
        return
    table = Table(title="Bundled tasks", show_lines=True)
    table.add_column("task", style="bold", no_wrap=True)
    table.add_column("rows", no_wrap=True, justify="right")
    table.add_column("labels")
    table.add_column("text fields")
    table.add_column("source / credit", overflow="fold")
    for info in infos:
        rows = "\n".join(f"{split} {count:>6,}" for split, count in info.rows.items())
        names = info.label_names or (None,) * len(info.labels)
        labels = "\n".join(label if name is None else f"{label} = {name}" for label, name in zip(info.labels, names))
        name = f"{info.name}\n(default)" if info.default else info.name
        credit = f"{info.credit}\n{info.source_url}" if info.source_url else info.credit
        table.add_row(name, rows, labels, "\n".join(info.text_fields), credit)
    Console().print(table)


@tasks_app.command("check")
def check_task(
    path: Annotated[str, typer.Argument(help="A folder of split files, a task file (.yaml/.json), a bundled name or"
                                              " hf:NAME.", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="Count the rows cut at this model's input length"
                                                             " (its tokenizer only is loaded).")] = "minilm",
    max_length: Annotated[Optional[int], typer.Option(min=1, 
        help="Token limit to count truncation at (default: the model folder's own, else 128, greenlm train's"
             " default).")] = None,
    eval_split: EvalSplitOpt = None,
    validation_fraction: ValidationOpt = 0.1,
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    labels: LabelsOpt = None,
    on_empty: OnEmptyOpt = "skip",
    as_json: JsonOpt = False,
) -> None:
    """Check a folder or task file and print what greenlm understood of it.

    Splits and rows (the validation split carved from train included), the label set and rows per label, the text
    fields, the split figures are reported on, and how many rows --model would cut at its input length.
    """
    from greenlm.data.task_summary import task_summary
    from greenlm.models.task_lengths import task_lengths

    task = load_task_from_options(path, text_fields, label_field, labels, on_empty,
                                  validation_fraction=validation_fraction, eval_split=eval_split)
    summary = task_summary(task)
    summary["lengths"] = task_lengths(task, model, max_length)
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    lengths = summary["lengths"]
    console = Console()
    fields = " + ".join(summary["text_fields"]) + (" (sentence pairs)" if summary["pair"] else " (single texts)")
    names = summary["label_names"]
    labels = ", ".join(label if not names else f"{label} = {name}" for label, name in
                       zip(summary["labels"], names or summary["labels"]))
    console.print(f"[bold]{summary['name']}[/bold] ({summary['source']})")
    console.print(f"text fields: {fields}")
    console.print(f"labels ({len(summary['labels'])}): {labels}")
    console.print(f"figures are reported on: {summary['eval_split']}")
    table = Table(title=f"rows per split; truncation at {lengths['max_length']} tokens ({lengths['model']})")
    table.add_column("split", style="bold")
    table.add_column("rows", justify="right")
    for label in summary["labels"]:
        table.add_column(str(label), justify="right")
    table.add_column("cut at max length", justify="right")
    table.add_column(f"length for {100 * lengths['covering_share']:g}%", justify="right")
    for name, split in summary["splits"].items():
        cut = lengths["splits"][name]
        table.add_row(name, f"{split['rows']:,}", *(f"{n:,}" for n in split["labels"].values()),
                      f"{cut['truncated']:,} ({100 * cut['share']:.1f}%)", str(cut["covering_length"]))
    console.print(table)
    skipped = {name: s["skipped_empty"] for name, s in summary["splits"].items() if s["skipped_empty"]}
    if skipped:
        console.print("skipped (empty text): " + ", ".join(f"{name} {n:,}" for name, n in skipped.items()))
