"""``greenlm report RUN_DIR``: (re)write every report of a run folder, whatever state the run is in.

Formats: ``md`` (report.md), ``html`` (report.html, self-contained), ``json`` (report.json with the
Pareto fronts and what is missing), ``tex`` (report.tex, booktabs), ``figures`` (figures/*.png|svg|csv),
``cards`` (a README.md model card in every finished stage folder). By default everything is
written into the run folder; with ``out_dir`` everything goes there instead and the run folder is
left untouched (model cards as ``<out>/cards/<stage>/README.md``). ``greenlm run`` calls
``generate_report`` at the end of every run.
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass, field
from pathlib import Path

from greenlm.common import GreenlmError, atomic_dir, atomic_write_json, atomic_write_text
from greenlm.report import figures as figs
from greenlm.report.class_figures import confusion_figure
from greenlm.report.data_budget import data_budget_figure, data_budget_points
from greenlm.report.html import report_html
from greenlm.report.latex import latex_table
from greenlm.report.markdown import report_markdown
from greenlm.report.model_card import model_card
from greenlm.report.pareto import fronts as pareto_fronts
from greenlm.report.pareto import fronts_by_noise
from greenlm.report.provenance import eval_split_of
from greenlm.report.rundata import MEASURED, NOT_MEASURED, RunData, load_run
from greenlm.report.target import target_region, target_settings

FORMATS = ("md", "html", "json", "tex", "figures", "cards")
FIGURE_DIR = "figures"


def parse_formats(text: str | None) -> tuple[str, ...]:
    """``"md,html"`` -> ("md", "html"); None or "all" -> every format. Unknown names are errors."""
    if text is None or text.strip() in ("", "all"):
        return FORMATS
    chosen = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item == "all":
            return FORMATS
        if item not in FORMATS:
            close = difflib.get_close_matches(item, FORMATS, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise GreenlmError(f"unknown report format '{item}'{hint}; use a comma-separated list of"
                               f" {', '.join(FORMATS)} (or all)")
        chosen.append(item)
    if not chosen:
        raise GreenlmError(f"--format is empty; use a comma-separated list of {', '.join(FORMATS)} (or all)")
    return tuple(dict.fromkeys(chosen))


@dataclass
class ReportOutcome:
    run: RunData
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was skipped, and the run's own gaps
    fronts: dict = field(default_factory=dict)


def module_breakdown(run: RunData) -> list[dict]:
    """Parameters and forward FLOPs of each finished model by module (embeddings / attention / FFN / head)."""
    from greenlm.measure import count_flops, count_params

    out = []
    for row in run.rows:
        folder = run.stage_dir(row["model"])
        config = folder / "config.json"
        if row["report_status"] not in (MEASURED, NOT_MEASURED) or not config.is_file():
            continue
        measured = run.measured_model(row["model"]) or {}
        params = (measured.get("params") or {}).get("by_module")
        if not params or not sum(params.values()):
            try:  # runtimes without torch parameters (ONNX): count the same shapes by formula
                params = count_params(str(config))["by_module"]
            except Exception:
                params = None
        flops, label = None, None
        seq_len = measured.get("mean_dev_length_tokens")
        if seq_len:
            try:
                flops = count_flops(str(config), int(seq_len)).infer_flops_by_module
            except Exception:
                flops = None
        expected = row.get("flops_per_example")
        if flops and expected and abs(sum(flops.values()) - expected) > 0.01 * expected:
            # input-dependent models (early exit) report expected FLOPs: the bars show the full depth
            label = f"full depth; expected {figs.si(expected)}FLOPs"
        out.append({"model": row["model"], "params_by_module": params, "flops_by_module": flops, "flops_label": label})
    return out


def build_figures(run: RunData) -> list:
    """Every figure the run's data allows (raises ``FiguresUnavailable`` without matplotlib)."""
    if not figs.available():
        raise figs.FiguresUnavailable(figs.MISSING_MATPLOTLIB)
    region = target_region(run.measured_rows(), target_settings(run.recipe))
    split = eval_split_of(run.report)
    out = figs.tradeoff_figures(run.measured_rows(), teacher=run.teacher_stage, target=region, split=split)
    for row in run.rows:
        curve = run.stage_file(row["model"], "curve.json") if row["report_status"] in (MEASURED, NOT_MEASURED) else None
        if curve:
            fig = figs.early_exit_figure(row["model"], curve)
            if fig is not None:
                out.append(fig)
    for row in run.measured_rows():
        fig = confusion_figure(row["model"], row.get("confusion_matrix"), split)
        if fig is not None:
            out.append(fig)
    budget = data_budget_figure(run.report.get("data_budget") or [], split=eval_split_of(run.report))
    for fig in (figs.breakdown_figure(module_breakdown(run)), figs.pricetag_figure(run.rows), budget):
        if fig is not None:
            out.append(fig)
    return out


def _report_json(run: RunData, fronts: dict, notes: list[str]) -> dict:
    return {**run.report, "pareto_front": fronts, "pareto_front_by_noise": fronts_by_noise(run.measured_rows()),
            "incomplete": notes, "rows": run.rows}


def generate_report(run_dir: str | Path, formats=FORMATS, out_dir: str | Path | None = None, *,
                    on_note=print) -> ReportOutcome:
    """Write the reports of ``run_dir`` in ``formats``; return the files written and the notes."""
    run = load_run(run_dir)
    run.report["data_budget"] = data_budget_points(run)  # [] unless a stage trained on a selection of rows
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise GreenlmError(f"unknown report format(s) {', '.join(unknown)}; use {', '.join(FORMATS)}")
    out = Path(out_dir) if out_dir is not None else run.run_dir
    if out.exists() and not out.is_dir():
        raise GreenlmError(f"--out '{out}' is a file; give a folder")
    outcome = ReportOutcome(run, out, notes=list(run.notes))
    outcome.fronts = pareto_fronts(run.measured_rows())
    for note in run.notes:
        on_note(f"note: {note}")

    figures, figure_note = [], None
    if {"figures", "md", "html"} & set(formats):
        try:
            figures = build_figures(run)
        except figs.FiguresUnavailable as err:
            figure_note = str(err)
            outcome.notes.append(figure_note)
            on_note(f"note: {figure_note}")
    # A new --out folder is written whole or not at all (built beside it, then renamed: a full disk leaves nothing
    # half-written); the run folder, or an --out folder that exists, gets each file replaced atomically.
    fresh = out_dir is not None and not out.exists()
    try:
        with (atomic_dir(out) if fresh else contextlib.nullcontext(out)) as build:
            written = _write_formats(run, formats, outcome, figures, figure_note, Path(build), cards_beside=out_dir is None)
        outcome.files += [out / p.relative_to(build) if p.is_relative_to(build) else p for p in written]
    except PermissionError as err:
        raise GreenlmError(f"cannot write the report into {err.filename or out}: permission denied;"
                           " give --out DIR to write it elsewhere") from None
    except OSError as err:
        raise GreenlmError(f"cannot write the report into {err.filename or out}: {err.strerror or err}") from None
    finally:
        for fig in figures:
            fig.figure.clear()
    return outcome


def _write_formats(run: RunData, formats, outcome: ReportOutcome, figures, figure_note, out: Path, *,
                   cards_beside: bool) -> list[Path]:
    """Write ``formats`` into ``out``; model cards go into each stage's folder (``cards_beside``) or out/cards."""
    files: list[Path] = []
    if figures and ({"figures", "md"} & set(formats)):
        for fig in figures:
            files += [p for p in fig.save(out / FIGURE_DIR).values()]
    if "json" in formats:
        atomic_write_json(out / "report.json", _report_json(run, outcome.fronts, run.notes))
        files.append(out / "report.json")
    card_files = []
    if "cards" in formats:
        for row in run.rows:
            if row["report_status"] not in (MEASURED, NOT_MEASURED):
                continue
            folder = run.stage_dir(row["model"]) if cards_beside else out / "cards" / row["model"]
            target = folder / "README.md"
            atomic_write_text(target, model_card(run, row))
            card_files.append(target)
        files += card_files
    if "tex" in formats:
        atomic_write_text(out / "report.tex", latex_table(run.report))
        files.append(out / "report.tex")
    if "html" in formats:
        atomic_write_text(out / "report.html", report_html(run.report, outcome.fronts, figures, notes=run.notes,
                                                           figure_note=figure_note))
        files.append(out / "report.html")
    if "md" in formats:
        listed = [p for p in files if p.suffix in (".html", ".tex")] + card_files
        names = [str(p.relative_to(out)) if p.is_relative_to(out) else str(p) for p in listed]
        atomic_write_text(out / "report.md", report_markdown(run.report, outcome.fronts, figures, notes=run.notes,
                                                             files=names, figure_note=figure_note))
        files.append(out / "report.md")
    return files


def generate_after_run(run_dir: Path, log) -> None:
    """The end of ``greenlm run``: every report format; a failure here never fails the finished run."""
    try:
        outcome = generate_report(run_dir, FORMATS, on_note=log)
    except Exception as err:  # the run's models and report.json are written; say what went wrong and how to retry
        log(f"note: figures/HTML/LaTeX/model cards not written ({type(err).__name__}: {err});"
            f" retry with `greenlm report {run_dir}`")
        return
    figures = sum(1 for p in outcome.files if p.suffix == ".png")
    cards = sum(1 for p in outcome.files if p.name == "README.md")
    log(f"report: {run_dir / 'report.html'} ({figures} figure(s), {cards} model card(s), report.tex)")
