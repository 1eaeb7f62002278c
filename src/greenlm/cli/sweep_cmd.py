"""``greenlm sweep``: hyperparameter search over a recipe, with its budget/performance curve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def sweep_command(
    recipe: Annotated[Optional[str], typer.Argument(help="A bundled recipe (quick, full) or a recipe YAML file. Default: quick.")] = None,
    search: Annotated[Optional[list[str]], typer.Option("--search", "-s", help="A searched field: PATH=DIST(ARGS), DIST one of uniform(lo,hi), loguniform(lo,hi), int(lo,hi), logint(lo,hi), choice(a,b,...). E.g. 'stages.distill.learning_rate=loguniform(1e-5,1e-3)'. Repeatable.")] = None,
    trials: Annotated[int, typer.Option("--trials", "-n", help="Finished trials to reach (>= 2 for a curve; pruned trials count as finished).")] = 8,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Fixed override for every trial: --set stages.finetune.epochs=2 (repeatable).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Sweep name (folder under --runs-dir); default: RECIPE-sweep.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Folder that holds run and sweep folders.")] = Path("runs"),
    metric: Annotated[str, typer.Option(help="Objective on the dev set: accuracy, macro_f1 or mcc.")] = "accuracy",
    stage: Annotated[Optional[str], typer.Option(help="Stage whose dev score is the objective; default: the recipe's last stage.")] = None,
    sampler: Annotated[str, typer.Option(help="tpe (Optuna's TPE, after a few random trials) or random (random search: what expected-max-performance assumes).")] = "tpe",
    prune: Annotated[bool, typer.Option(help="Run trials stage by stage and stop one whose score at a stage is below the median of earlier trials there.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the sampler.")] = 0,
    measure: Annotated[bool, typer.Option(help="Measure and report every trial like `greenlm run` (speed, energy, figures); --no-measure only trains and evaluates.")] = True,
    storage: Annotated[Optional[str], typer.Option(help="Share the Optuna study with other workers: a database URL, postgresql://user:password@host/database (pip install 'greenlm[team]') or sqlite:///FILE. Every worker runs the same command; --trials counts the whole study's trials. Default: a journal file in the sweep folder.")] = None,
    force: Annotated[bool, typer.Option(help="The sweep exists with other settings: delete it and start over.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the sweep (sweep.json's content), its best trial and curve as JSON.")] = False,
) -> None:
    """Search hyperparameters of a recipe (Optuna); each trial is a normal run sharing cached stages.

    Trials are compared on the validation split carved from train (dev only for a task too small to carve one).
    Writes runs/NAME/sweep.md, sweep.html, sweep.json and the budget/performance curve (expected best validation
    score vs number of trials and vs energy spent; Dodge et al. 2019). Running the same command again
    continues the sweep to --trials. With --storage, workers on several machines share one study; each trial's
    energy, CO2e, cost and host are stored on the trial (Optuna user attributes).
    """
    from greenlm.cli._common import err
    from greenlm.pipeline.sweep import best_trial, run_sweep
    from greenlm.pipeline.sweep_report import objective_split

    outcome = run_sweep(recipe, search or [], trials, overrides=set_ or [], name=name, runs_root=runs_dir,
                        metric=metric, stage=stage, sampler=sampler, prune=prune, seed=seed, measure=measure,
                        force=force, progress=progress, echo=err, storage=storage)
    best = best_trial(outcome.record)
    if json_out:
        from greenlm.cli._common import print_json

        print_json({"sweep_dir": str(outcome.sweep_dir), "best_trial": best, "curve": outcome.curve,
                    "sweep": outcome.record})
        return
    if best is not None:
        params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        print(f"best trial: {best['name']}, {objective_split(outcome.record)} {metric} {best['value']:.4f} ({params}); run folder {best['run_dir']}")
    if outcome.curve:
        last = outcome.curve[-1]
        print(f"expected best {objective_split(outcome.record)} {metric} of {last['n']} trials: {last['expected_max']:.4f} ± {last['std']:.4f}")
    print(f"sweep folder: {outcome.sweep_dir}  (sweep.md, sweep.html, sweep.json, figures/budget_curve.png)")


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_command)
