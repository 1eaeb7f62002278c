"""``greenlm tasks``: list the bundled tasks (no logic here: greenlm.data describes them)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from greenlm.data import describe_bundled_tasks


def register(app: typer.Typer) -> None:
    app.command("tasks")(tasks)


def tasks(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON instead of a table.")] = False,
) -> None:
    """List the bundled tasks: rows per split, labels, text fields and where the data comes from.

    Any of these names works wherever a task is asked for, as do folders, task files and hf:<dataset>.
    """
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
