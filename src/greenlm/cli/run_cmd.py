"""``greenlm run``: the main job. Fine-tune, compress, evaluate, measure and report, from a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from greenlm.cli._common import (ClockSpeedOpt, GridOpt, GridRegionOpt, MaxCo2eOpt, MaxKwhOpt, MaxPauseOpt, MaxUsdOpt,
                                 NowOpt, PauseAboveOpt, ReportToOpt, RunWithinOpt)


def run_command(
    recipe: Annotated[Optional[str], typer.Argument(help="A bundled recipe (quick, full, frontier) or a recipe YAML file. Default: quick.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: --set stages.finetune.epochs=2 (repeatable).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (folder under --runs-dir); default: the recipe's name.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Folder that holds run folders.")] = Path("runs"),
    resume: Annotated[bool, typer.Option(help="The run exists with a different recipe: keep its unchanged stages, run the rest.")] = False,
    force: Annotated[bool, typer.Option(help="The run exists with a different recipe: delete it and start over.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    remeasure: Annotated[bool, typer.Option(help="Take the measuring pass (accuracy, speed, energy of every model) again even when no model changed, e.g. after one taken on a busy machine.")] = False,
    eval_split: Annotated[Optional[str], typer.Option("--eval-split", help="The split every reported figure comes from (e.g. dev or test; the recipe's evaluation.split). Default: dev when the task has one, else test; choices use the validation split carved from train.")] = None,
    target_speedup: Annotated[Optional[float], typer.Option(help="Target: this many times the teacher's throughput (batch 32). Checked before training (a speed no stage can reach stops the run); the report says which model meets it.")] = None,
    target_retained: Annotated[Optional[float], typer.Option(help="Target: at least this % of the teacher's dev accuracy (e.g. 97).")] = None,
    target_latency_ms: Annotated[Optional[float], typer.Option(help="Target: p50 latency at batch 1 at most this many ms.")] = None,
    start_within: Annotated[Optional[str], typer.Option("--start-within", rich_help_panel="Carbon-aware start and pauses", help="Wait for the cleanest start before this deadline (e.g. 12h; Flexible Start on the grid forecast, docs/scheduling.md). Needs --grid.")] = None,
    grid: GridOpt = None,
    grid_region: GridRegionOpt = None,
    grid_forecast: Annotated[Optional[str], typer.Option("--grid-forecast", rich_help_panel="Carbon-aware start and pauses", help="For --start-within: decide on this forecast (file or live source) instead of greenlm's forecaster.")] = None,
    job_duration: Annotated[Optional[str], typer.Option("--job-duration", rich_help_panel="Carbon-aware start and pauses", help="For --start-within / --run-within: the run's expected length (e.g. 90m). Default: what this run's stages took last time (its report.json).")] = None,
    pause_above: PauseAboveOpt = None,
    run_within: RunWithinOpt = None,
    max_pause: MaxPauseOpt = None,
    now: NowOpt = None,
    clock_speed: ClockSpeedOpt = None,
    max_kwh: MaxKwhOpt = None,
    max_co2e_kg: MaxCo2eOpt = None,
    max_usd: MaxUsdOpt = None,
    report_to: ReportToOpt = "none",
    json_out: Annotated[bool, typer.Option("--json", help="Print the report (report.json's content) and the run folder as JSON instead of the table.")] = False,
) -> None:
    """Run a recipe: every stage, one measuring pass, one report (runs/NAME/report.md).

    Unchanged stages are reused (here or from another run); an interrupted run resumes where it stopped. A budget
    (--max-kwh, --max-co2e-kg, --max-usd) covers the whole run: this run's stages so far plus the projection of the
    one training; when the projection passes it, the run stops at a checkpoint with exit code 3, and the same command
    with a higher budget goes on from there.
    """
    from greenlm.cli._common import budget_watch, carbon_clock, err, pause_policy
    from greenlm.pipeline.recipes import load_recipe
    from greenlm.pipeline.runner import price_settings, run_recipe
    from greenlm.report.terminal import print_report
    from greenlm.train.budget import budgeting
    from greenlm.cli._common import tracking_spec
    from greenlm.train.pause import pausing
    from greenlm.train.trackers import tracking

    targets = {"speedup": target_speedup, "min_retained_pct": target_retained, "max_latency_ms": target_latency_ms}
    overrides = [*(set_ or []), *(f"target.{key}={value!r}" for key, value in targets.items() if value is not None)]
    if eval_split is not None:
        overrides.append(f"evaluation.split={eval_split!r}")
    loaded = load_recipe(recipe, overrides, name)
    watch = budget_watch(max_kwh, max_co2e_kg, max_usd, price_settings(loaded).price_tag("check", ledger=False))
    spec = tracking_spec(report_to, Path(runs_dir) / loaded.name / "tracking")  # a missing package: stop now
    clock = carbon_clock(now, clock_speed)
    from greenlm.common import GreenlmError

    if run_within is not None and start_within is not None:
        raise GreenlmError("give --start-within (one clean start) or --run-within (a Pause & Resume plan), not both")
    if job_duration is not None and start_within is None and run_within is None:
        raise GreenlmError("--job-duration is the length --start-within or --run-within plans for; give one of them")
    planned = _job(loaded, runs_dir, job_duration) if run_within is not None else None
    policy = pause_policy(pause_above, grid, grid_region, max_pause, clock, run_within=run_within,
                          job=planned)  # checked before any wait
    if start_within is not None or (grid is not None and pause_above is None and run_within is None):
        _wait_for_clean_start(loaded, runs_dir, clock, start_within=start_within, grid=grid, region=grid_region,
                              forecast=grid_forecast, job_duration=job_duration)
    with pausing(policy), budgeting(watch), tracking(spec):
        outcome = run_recipe(loaded, runs_dir, resume=resume, force=force, progress=progress, echo=err,
                             remeasure=remeasure)
    reused = [s.name for s in outcome.stages if s.status != "ran"]
    if reused:
        err(f"reused {len(reused)} stage(s) without training: {', '.join(reused)}")
    if json_out:
        from greenlm.cli._common import print_json

        print_json({"run_dir": str(outcome.run_dir), "reused_stages": reused, "report": outcome.report})
        return
    print_report(outcome.report)
    print(f"run folder: {outcome.run_dir}  (report.md, report.json, one folder per model)")


def _wait_for_clean_start(recipe, runs_dir: Path, clock, *, start_within, grid, region, forecast, job_duration) -> None:
    """--start-within: plan the run's start on the grid forecast (Flexible Start) and sleep until it."""
    from greenlm.cli._common import err
    from greenlm.common import GreenlmError
    from greenlm.schedule.request import wait_for_best_start

    if start_within is None or grid is None:
        raise GreenlmError("a carbon-aware start needs both --start-within (the deadline, e.g. 12h) and --grid "
                           "(a grid-intensity file or electricitymaps:ZONE / watttime:REGION)")
    job = _job(recipe, runs_dir, job_duration)
    wait_for_best_start(clock=clock, log=err, job=job, series=grid, duration=None, within=start_within,
                        region=region, forecast=forecast)
    err(f"starting run {recipe.name}")


def _job(recipe, runs_dir: Path, job_duration: str | None):
    """The run as a job to plan: --job-duration, or what its stages took last time (its report.json)."""
    from greenlm.schedule.job import job_from_earlier_run, job_from_options

    return (job_from_options(job_duration, None, None) if job_duration is not None
            else job_from_earlier_run(Path(runs_dir) / recipe.name / "report.json"))


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
