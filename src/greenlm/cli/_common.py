"""Options and helpers shared by several sub-commands (task selection, printing)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

TaskOpt = Annotated[str, typer.Option("--task", "-t", help="Bundled task name (sst2, rt_polarity, rte), a folder or task file, or hf:NAME.")]
TextFieldsOpt = Annotated[Optional[str], typer.Option(help="Text column(s) of your files, comma-separated (one, or two for pairs).")]
LabelFieldOpt = Annotated[Optional[str], typer.Option(help="Label column of your files (default: label).")]
LabelsOpt = Annotated[Optional[str], typer.Option(help="Label set, comma-separated (default: inferred from train).")]
OnEmptyOpt = Annotated[str, typer.Option(help="Rows with empty text: 'skip' (counted and reported) or 'error'.")]


EvalSplitOpt = Annotated[Optional[str], typer.Option(
    "--eval-split",
    help="The split every reported figure comes from (e.g. dev or test). Default: dev when the task has one, else"
         " test. Choices are never made on it: they use the validation split carved from train.")]


ValidationOpt = Annotated[float, typer.Option(
    "--validation-fraction", min=0.0, max=0.9,
    help="Share of train (at most 1,000 rows) carved off as a validation split, on which every choice is made (best"
         " epoch, thresholds, fallbacks), so dev stays unseen until it is reported; 0: choose on dev (and say so).")]


DropOpt = Annotated[Optional[str], typer.Option(
    "--drop",
    help="Drop train rows the data audit finds, before training (dev/test untouched), comma-separated: non_text,"
         " other_script, eval_overlap, conflicting, duplicates, near_duplicates (docs/data.md).")]


# Carbon-aware options (greenlm run, and every method command for pausing): docs/scheduling.md
_CARBON = "Carbon-aware start and pauses"
GridOpt = Annotated[Optional[str], typer.Option(
    "--grid", rich_help_panel=_CARBON,
    help="Grid-intensity series for --pause-above / --run-within / --start-within: a file (greenlm CSV, Electricity"
         " Maps, WattTime)"
         " or electricitymaps:ZONE / watttime:REGION (live).")]
GridRegionOpt = Annotated[Optional[str], typer.Option(
    "--grid-region", rich_help_panel=_CARBON, help="The region in --grid (needed when it holds several).")]
PauseAboveOpt = Annotated[Optional[float], typer.Option(
    "--pause-above", rich_help_panel=_CARBON,
    help="Pause training (checkpoint, sleep) while the hour's intensity in --grid is above this many gCO2e/kWh;"
         " resume at the next hour at or below it.")]
RunWithinOpt = Annotated[Optional[str], typer.Option(
    "--run-within", rich_help_panel=_CARBON,
    help="Pause & Resume by plan: run only in the cleanest hours before this deadline (e.g. 24h), chosen on the grid"
         " forecast at the start (greenlm schedule's planner); pause (checkpoint, sleep) between them. Needs --grid"
         " and --job-duration.")]
JobDurationOpt = Annotated[Optional[str], typer.Option(
    "--job-duration", rich_help_panel=_CARBON, help="For --run-within: how long the training takes (e.g. 3h, 90m).")]
MaxPauseOpt = Annotated[Optional[str], typer.Option(
    "--max-pause", rich_help_panel=_CARBON, help="Longest single pause (e.g. 12h; default 24h): then run anyway.")]
NowOpt = Annotated[Optional[str], typer.Option(hidden=True, help="With --clock-speed: the simulated clock's start.")]
ClockSpeedOpt = Annotated[Optional[float], typer.Option(
    "--clock-speed", hidden=True, help="Waits and pauses pass this many times faster than real time (demos, tests).")]


def carbon_clock(now: str | None, clock_speed: float | None):
    """The clock waits and pauses run on (real, or sped up with the hidden --clock-speed)."""
    from greenlm.schedule.wait import clock_from_options

    return clock_from_options(now, clock_speed)


def pause_policy(pause_above, grid, grid_region, max_pause, clock, *, run_within=None, job_duration=None, job=None):
    """The training pause policy of the options above (None without --pause-above or --run-within)."""
    from greenlm.schedule.pause import pause_policy_from_options

    return pause_policy_from_options(pause_above=pause_above, grid=grid, region=grid_region, max_pause=max_pause,
                                     clock=clock, run_within=run_within, job_duration=job_duration, job=job,
                                     log_plan=err)


def load_task_from_options(task: str, text_fields: str | None, label_field: str | None, labels: str | None,
                           on_empty: str = "skip", *, validation_fraction: float = 0.0, drop: str | None = None,
                           eval_split: str | None = None):
    """The task the options name, its train rows filtered (``drop``), reported on ``eval_split``, with a validation
    split carved from train. A command that makes choices says where (``validation_note``) once its work is done, so
    that bad input found later still ends in one line."""
    from greenlm.data import carve_validation, choose_eval_split, describe_filter, filter_train, load_task

    loaded = load_task(
        task,
        text_fields=_split_list(text_fields),
        label_field=label_field,
        labels=_split_list(labels),
        on_empty=on_empty,
    )
    for split, count in sorted(loaded.skipped_rows.items()):
        if count:
            err(f"note: skipped {count} row(s) with empty text in {loaded.name}/{split}")
    loaded = choose_eval_split(filter_train(loaded, drop), eval_split)
    if loaded.train_filter:
        err(f"note: {describe_filter(loaded.train_filter)}")
    return carve_validation(loaded, fraction=validation_fraction) if validation_fraction else loaded


def validation_note(task) -> None:
    """One line: where the command's choices were made and which split its figures are reported on."""
    from greenlm.data import describe_validation

    err(f"note: {describe_validation(task)}")


def _split_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


_QUIET = False  # `greenlm --quiet`: notes are not printed


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = bool(quiet)


def err(message: str) -> None:
    """A note or progress message on stderr (stdout stays data); silent under ``greenlm --quiet``."""
    if not _QUIET:
        print(message, file=sys.stderr)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def metrics_table(title: str, rows: dict[str, dict]) -> None:
    """Print split -> metrics as a small table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("split", "accuracy", "macro_f1", "mcc", "examples"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, m in rows.items():
        table.add_row(split, f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}", f"{m['mcc']:.4f}", str(m["examples"]))
    Console().print(table)


def per_class_table(title: str, metrics: dict) -> None:
    """Each class's precision, recall, F1 and support, then the confusion matrix (rows true, columns predicted),
    and the accuracy's 95% bootstrap interval: what ``greenlm eval`` prints under its metrics."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    interval = metrics.get("accuracy_ci95")
    if interval:
        console.print(f"accuracy {100 * metrics['accuracy']:.2f}% (95% bootstrap interval"
                      f" {100 * interval['low']:.2f}-{100 * interval['high']:.2f}, {interval['resamples']} resamples)",
                      markup=False, highlight=False)
    table = Table(title=f"{title}: per class")
    for column in ("class", "precision", "recall", "f1", "support", "predicted"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for c in metrics.get("per_class") or []:
        table.add_row(c["label"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", str(c["support"]),
                      str(c["predicted"]))
    console.print(table)
    matrix = metrics.get("confusion_matrix") or {}
    if matrix.get("counts"):
        grid = Table(title="confusion matrix (rows: true class, columns: predicted)")
        grid.add_column("true / predicted", justify="left")
        for label in matrix["labels"]:
            grid.add_column(label, justify="right")
        for label, counts in zip(matrix["labels"], matrix["counts"]):
            grid.add_row(label, *[str(v) for v in counts])
        console.print(grid)


ReportToOpt = Annotated[str, typer.Option(
    "--report-to", metavar="TRACKERS",
    help="Log loss, dev metrics, energy_kwh and co2e_kg of every training step and evaluation to these trackers"
         " (Accelerate's integration): none, or a comma list of tensorboard, mlflow, wandb. File-based trackers"
         " write under a 'tracking' folder beside the output (the run folder for greenlm run).")]


def tracking_spec(report_to: str, folder: Path):
    """The trackers of ``--report-to`` writing under ``folder``, their packages checked now (None for none)."""
    from greenlm.train.trackers import Tracking, check_installed, parse_report_to

    names = parse_report_to(report_to)
    check_installed(names)
    return Tracking(names, Path(folder)) if names else None


RegionOpt = Annotated[Optional[str], typer.Option(help="Carbon-intensity region for the price tag (USA, FRA, USA/CA, ...). Default: GREENLM_REGION or the settings file (docs/pricetag.md#settings).")]
PueOpt = Annotated[Optional[float], typer.Option(help="Data-centre PUE for the price tag (>= 1). Default: GREENLM_PUE or the settings file, else 1.0.")]
UsdPerHourOpt = Annotated[Optional[float], typer.Option("--usd-per-hour", help="Price of the hardware per hour (USD), for the price tag's cost (and --max-usd). Default: GREENLM_USD_PER_HOUR or the settings file.")]

# Budgets (greenlm run, train, the compression commands, pretrain; greenlm measure has its own): docs/pricetag.md#budgets
_BUDGET = "Budgets (a stop exits with code 3)"
MaxKwhOpt = Annotated[Optional[float], typer.Option(
    "--max-kwh", rich_help_panel=_BUDGET,
    help="Energy budget (kWh, after PUE). Training projects its total from progress and the energy so far, warns once"
         " at 80%, and when the projection passes the limit saves a checkpoint, writes no model and exits with code 3;"
         " the same command with a higher budget resumes.")]
MaxCo2eOpt = Annotated[Optional[float], typer.Option(
    "--max-co2e-kg", rich_help_panel=_BUDGET, help="CO2e budget (kg), as --max-kwh; needs a region or intensity.")]
MaxUsdOpt = Annotated[Optional[float], typer.Option(
    "--max-usd", rich_help_panel=_BUDGET, help="Cost budget (USD), as --max-kwh; needs a price (--usd-per-hour).")]


def budget_watch(max_kwh, max_co2e_kg, max_usd, price_tag=None, *, resume: str = "run the same command again"):
    """The training budget of the options above (None when none is given); checked now, before any work: a limit that
    is not a positive, finite number, or one on a figure ``price_tag`` cannot have (CO2e without a region, a cost
    without a price), is one line and exit code 2."""
    from greenlm.measure import Budget

    budget = Budget(max_kwh, max_co2e_kg, max_usd)
    if not budget:
        return None
    if price_tag is not None:
        budget.check_measurable(**{"co2e": price_tag.prices()["co2e_kg"], "cost": price_tag.prices()["cost_usd"]})
    from greenlm.train.budget import BudgetWatch

    return BudgetWatch(budget, resume=resume)
