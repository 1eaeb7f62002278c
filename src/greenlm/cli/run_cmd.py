"""``greenlm run``: the main job. Fine-tune, compress, evaluate, measure and report, from a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def run_command(
    recipe: Annotated[Optional[str], typer.Argument(help="A bundled recipe (quick, full, frontier) or a recipe YAML file. Default: quick.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: --set stages.finetune.epochs=2 (repeatable).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (folder under --runs-dir); default: the recipe's name.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Folder that holds run folders.")] = Path("runs"),
    resume: Annotated[bool, typer.Option(help="The run exists with a different recipe: keep its unchanged stages, run the rest.")] = False,
    force: Annotated[bool, typer.Option(help="The run exists with a different recipe: delete it and start over.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    target_speedup: Annotated[Optional[float], typer.Option(help="Target: this many times the teacher's throughput (batch 32). Checked before training (a speed no stage can reach stops the run); the report says which model meets it.")] = None,
    target_retained: Annotated[Optional[float], typer.Option(help="Target: at least this % of the teacher's dev accuracy (e.g. 97).")] = None,
    target_latency_ms: Annotated[Optional[float], typer.Option(help="Target: p50 latency at batch 1 at most this many ms.")] = None,
) -> None:
    """Run a recipe: every stage, one measuring pass, one report (runs/NAME/report.md).

    Unchanged stages are reused (here or from another run); an interrupted run resumes where it stopped.
    """
    from greenlm.cli._common import err
    from greenlm.pipeline.recipes import load_recipe
    from greenlm.pipeline.runner import run_recipe
    from greenlm.report.terminal import print_report

    targets = {"speedup": target_speedup, "min_retained_pct": target_retained, "max_latency_ms": target_latency_ms}
    overrides = [*(set_ or []), *(f"target.{key}={value!r}" for key, value in targets.items() if value is not None)]
    loaded = load_recipe(recipe, overrides, name)
    outcome = run_recipe(loaded, runs_dir, resume=resume, force=force, progress=progress, echo=err)
    reused = [s.name for s in outcome.stages if s.status != "ran"]
    if reused:
        err(f"reused {len(reused)} stage(s) without training: {', '.join(reused)}")
    print_report(outcome.report)
    print(f"run folder: {outcome.run_dir}  (report.md, report.json, one folder per model)")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
