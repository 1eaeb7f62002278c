"""``greenlm datamap``: the data map of a model trained with --record-dynamics (greenlm.pipeline.datamap_files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from greenlm.cli._common import LabelFieldOpt, LabelsOpt, TextFieldsOpt


def datamap_command(
    model: Annotated[Path, typer.Argument(help="A model folder trained with --record-dynamics (or its training_dynamics folder).", metavar="MODEL_FOLDER")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for the map's files (default: MODEL_FOLDER-datamap beside the model).")] = None,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="The task the model was trained on (default: the one its metrics.json names).")] = None,
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    labels: LabelsOpt = None,
    top: Annotated[int, typer.Option(help="How many of the most ambiguous and of the hardest rows to list.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Map a training set by its training dynamics (Swayamdipta et al. 2020): per row, confidence (mean gold-label
    probability over record points), variability (its standard deviation) and correctness; the ambiguous,
    easy-to-learn and hard-to-learn regions; a scatter plot, histograms, and the most ambiguous and hardest rows
    with text and label, as CSV and one self-contained HTML page.
    """
    from greenlm.cli._common import err, load_task_from_options, print_json
    from greenlm.pipeline.datamap_files import write_datamap

    loaded = load_task_from_options(task, text_fields, label_field, labels) if task else None
    summary = write_datamap(model, out, task=loaded, top=top)
    if as_json:
        print_json(summary)
        return
    regions = ", ".join(f"{name} {count}" for name, count in summary["regions"].items())
    err(f"data map of {summary['rows']} rows over {summary['points']} record points: {regions}")
    for note in summary["notes"]:
        err(f"note: {note}")
    print(Path(summary["out"]) / "datamap.html")


def register(app: typer.Typer) -> None:
    app.command("datamap")(datamap_command)
