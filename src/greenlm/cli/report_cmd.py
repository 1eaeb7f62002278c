"""``greenlm report``: (re)write the reports of a run folder or a sweep folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `greenlm run` (runs/NAME), or a sweep folder made by `greenlm sweep`.")],
    format_: Annotated[Optional[str], typer.Option("--format", "-f", help="Comma-separated: md, html, json, tex, figures, cards (model cards in each stage folder), or all. Default: all.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write everything into this folder instead, leaving the run folder untouched (model cards go to OUT/cards/STAGE/README.md).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the files written as a JSON list instead of one per line.")] = False,
) -> None:
    """Write a run's reports: report.md, report.html (self-contained, sortable, phone-readable), report.json,
    report.tex (booktabs), figures (PNG + SVG + CSV) and a Hugging Face model card per model.

    A run that stopped early is reported as far as it got: finished stages with what their folders hold,
    the rest marked as interrupted or not run.
    """
    from greenlm.cli._common import err
    from greenlm.pipeline.sweep import is_sweep_dir, write_sweep_report
    from greenlm.report.regenerate import generate_report, parse_formats

    formats = parse_formats(format_)
    if is_sweep_dir(run_dir):
        files = write_sweep_report(run_dir, out_dir=out, formats=formats, on_note=lambda m: err(m))
    else:
        files = generate_report(run_dir, formats, out, on_note=lambda m: err(m)).files
    if json_out:
        from greenlm.cli._common import print_json

        print_json({"files": [str(path) for path in files]})
        return
    for path in files:
        print(path)


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
