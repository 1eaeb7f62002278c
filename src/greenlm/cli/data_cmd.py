"""``greenlm data``: look at a task's data before training on it (``audit``: greenlm.data.audit)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from greenlm.cli._common import LabelFieldOpt, LabelsOpt, OnEmptyOpt, TaskOpt, TextFieldsOpt

data_app = typer.Typer(help="Look at a task's data: greenlm data audit --task T.", no_args_is_help=True)


@data_app.command("audit")
def audit_command(
    task: TaskOpt = "sst2",
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    labels: LabelsOpt = None,
    on_empty: OnEmptyOpt = "skip",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="A model whose tokenizer counts tokens per row (a folder, 'minilm', a hub id); needed for token lengths and truncation.")] = None,
    max_length: Annotated[Optional[int], typer.Option(min=1, help="Count the rows longer than this many tokens (truncated in training); needs --model. Default with --model: 128.")] = None,
    examples: Annotated[int, typer.Option(help="Example rows shown per finding.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full audit as JSON.")] = False,
) -> None:
    """Audit a task's splits: exact and near-duplicate rows, train/evaluation overlap (contamination), the same text
    with different labels, empty and non-text rows, rows in another script, label balance and, with --model, token
    lengths and how many rows --max-length truncates. Reports only: nothing is changed or dropped.
    """
    from greenlm.cli._common import load_task_from_options, print_json
    from greenlm.data.audit import DEFAULT_AUDIT_MAX_LENGTH, audit_lines, audit_task, check_audit_options

    check_audit_options(model, max_length)
    loaded = load_task_from_options(task, text_fields, label_field, labels, on_empty)
    from greenlm.models.task_lengths import tokenizer_for

    tokenizer = tokenizer_for(model, loaded)[0] if model is not None else None
    report = audit_task(loaded, tokenizer=tokenizer, max_length=max_length or DEFAULT_AUDIT_MAX_LENGTH,
                        model_name=model, examples=examples)
    if as_json:
        print_json(report)
        return
    for line in audit_lines(report):
        print(line)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
