"""``greenlm sweep``: a hyperparameter search over a recipe, and its budget/performance curve.

    greenlm sweep quick --trials 12 --search 'stages.distill.learning_rate=loguniform(1e-5,1e-3)' \\
                        --search 'stages.distill.temperature=choice(1,2,4)'

Each trial is a normal ``greenlm run`` of the recipe with the sampled values set (``--set``), under
``runs/<sweep>/trials/trial-NNN``. Trials share cached stages with each other (a teacher fine-tuned
once serves every trial that does not change it), so a sweep over a compression stage pays for the
teacher once. Sampling is Optuna's TPE (or random search); with pruning, a trial runs stage by stage
and reports each stage's validation score (dev when the task has no validation split) to Optuna, and a median rule stops a trial whose score at some
stage is below the median of the finished trials at that stage (its later stages are not run).

The result is Dodge et al.'s (2019) expected best validation score as a function of the number of trials,
and of the energy the sweep had spent: the budget/performance curve Green AI asks for (Schwartz et
al. 2020). Only finished trials are scores; pruned and failed trials count in the energy spent.

The search space (``--search PATH=DIST(ARGS)``) is parsed and checked in ``sweep_search``; the curve and the
sweep's report are written by ``sweep_report``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_json, read_json
from greenlm.common.optional import require
from greenlm.data import SELECTION_SPLITS
from greenlm.pipeline.schema import Recipe
from greenlm.pipeline.sweep_report import (SWEEP_FILE, TRIALS, _write_outputs,  # noqa: F401 (re-exported)
                                           best_trial, budget_curve, is_sweep_dir, sweep_markdown,
                                           write_sweep_report)
from greenlm.pipeline.sweep_search import (_EXAMPLE, DISTRIBUTIONS, SearchParam,  # noqa: F401 (re-exported)
                                           check_search, parse_search, yaml_scalar)
from greenlm.pipeline.sweep_storage import (JOURNAL, check_spec, finished_in_study,  # noqa: F401 (re-exported)
                                            open_storage, redacted, store_on_trial, with_other_workers, worker_seed)

METRICS = ("accuracy", "macro_f1", "mcc")
SAMPLERS = ("tpe", "random")


@dataclass
class SweepOutcome:
    sweep_dir: Path
    record: dict
    curve: list[dict] | None
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _optuna():
    optuna = require("optuna", "greenlm sweep")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _startup_trials(trials: int) -> int:
    """Random trials before TPE models the space (and before the pruner compares): a third, 2 to 10."""
    return max(2, min(10, trials // 3))


def _stage_median_pruner(optuna, startup: int):
    """The median rule on each stage's own score: stop a trial whose score at stage k is below the median of
    the finished trials' scores at stage k (once ``startup`` trials have finished).

    Optuna's ``MedianPruner`` compares a trial's best value over all its steps so far, which suits a learning
    curve; here the steps are different models (teacher, then student...), so the teacher's higher score would
    hide a bad student. This pruner plugs into Optuna the same way and looks at the last step only.
    """
    import statistics

    class StageMedianPruner(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            step = trial.last_step
            if step is None:
                return False
            finished = [t.intermediate_values[step] for t in study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if step in t.intermediate_values]
            if len(finished) < startup:
                return False
            return trial.intermediate_values[step] < statistics.median(finished)

    return StageMedianPruner()


def run_sweep(recipe_spec: str | None, search: list[str], trials: int, *, overrides: list[str] | None = None,
              name: str | None = None, runs_root: str | Path = "runs", metric: str = "accuracy",
              stage: str | None = None, sampler: str = "tpe", prune: bool = True, seed: int = 0,
              measure: bool = True, force: bool = False, progress: bool = True, echo=print,
              storage: str | None = None, _run=None) -> SweepOutcome:
    """Run ``trials`` trials of the recipe over the search space; write ``runs/<sweep>/`` and its curve.

    Re-running the same command continues the sweep to ``trials`` finished trials (a trial that was
    interrupted is recorded as such and replaced by a new one). ``storage``: a database URL (``postgresql://...``,
    ``sqlite:///...``) whose Optuna study several workers share; ``trials`` then counts the whole study's
    (``sweep_storage``).
    """
    from greenlm.pipeline.recipes import load_recipe

    _check_settings(trials, metric, sampler, search)
    overrides = list(overrides or [])
    params = [parse_search(text) for text in search]
    base = load_recipe(recipe_spec, overrides)
    stage = _objective_stage(base, stage)
    check_search(recipe_spec, overrides, params)
    optuna = _optuna()
    sweep_name = name if name is not None else f"{base.name}-sweep"
    if "/" in sweep_name or sweep_name.startswith(".") or not sweep_name.strip():
        raise GreenlmError(f"--name must be a plain folder name, got '{sweep_name}'")
    sweep_dir = Path(runs_root) / sweep_name
    spec = {
        "recipe": base.to_dict(),
        "recipe_source": recipe_spec,
        "overrides": overrides,
        "search": [p.text for p in params],
        "metric": metric,
        "stage": stage,
        "sampler": sampler,
        "prune": prune,
        "seed": seed,
    }
    if storage is not None:
        spec["storage"] = redacted(storage)
    spec = json.loads(json.dumps(spec))  # as sweep.json will hold it (tuples become lists) for the comparison
    record = _open_sweep(sweep_dir, sweep_name, spec, force)
    study = _open_study(optuna, sweep_dir, sweep_name, record, trials, sampler, seed, prune, storage)
    if storage is not None:
        # the resolved recipe is compared, not where its file lies on each machine
        check_spec(study, {k: v for k, v in spec.items() if k not in ("storage", "recipe_source")}, sweep_name,
                   storage)
    _close_stale_trials(optuna, study, record, echo, shared=storage is not None)
    distributions = {p.path: p.distribution() for p in params}
    trials_root = sweep_dir / TRIALS
    run = _run or _default_runner()

    def finished() -> int:
        if storage is not None:  # every worker's trials count
            return finished_in_study(optuna, study)
        return sum(1 for r in record["trials"] if r["state"] in ("complete", "pruned"))

    echo(f"sweep '{sweep_name}' in {sweep_dir}: {trials} trials of {base.name}, {sampler} sampling"
         f"{', median pruning' if prune else ''}, objective: validation (else dev) {metric} of stage '{stage}'")
    while finished() < trials:
        trial = study.ask(distributions)
        entry = _new_entry(trial, params, trials_root)
        record["trials"].append(entry)
        _save(sweep_dir, record)
        values = entry["params"]
        shown = ", ".join(f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                          for k, v in values.items())
        echo(f"trial {trial.number} ({finished() + 1}/{trials}): {shown}")
        sets = [*overrides, *(f"{p.path}={yaml_scalar(values[p.path])}" for p in params)]
        recipe = load_recipe(recipe_spec, sets, entry["name"])
        started = time.perf_counter()
        try:
            state, value = _run_trial(run, recipe, trial, entry, trials_root, stage, metric, prune, measure,
                                      progress, echo)
        except GreenlmError as err:  # this trial's settings failed (e.g. a diverging run): record it, go on
            entry.update(state="failed", error=str(err), seconds=round(time.perf_counter() - started, 3))
            store_on_trial(trial, entry)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            _save(sweep_dir, record)
            echo(f"trial {trial.number}: failed: {err}")
            if sum(1 for r in record["trials"] if r["state"] == "failed") > max(3, trials):
                raise GreenlmError(f"sweep '{sweep_name}': more than {max(3, trials)} trials failed; the last: {err}")\
                    from None
            continue
        entry["seconds"] = round(time.perf_counter() - started, 3)
        _tell(optuna, study, trial, entry, state, value, metric, echo)
        _save(sweep_dir, record)
    if storage is not None:  # the report shows the whole study: the other workers' trials from their attributes
        record = with_other_workers(optuna, study, record)
    files, curve, notes = _write_outputs(sweep_dir, record, None, ("md", "json", "figures", "html"), echo)
    return SweepOutcome(sweep_dir, record, curve, files, notes)


def _check_settings(trials, metric: str, sampler: str, search: list[str]) -> None:
    """Refuse a sweep that cannot give a curve: too few trials, an unknown metric or sampler, nothing searched."""
    from greenlm.pipeline.schema import suggest

    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 2:
        raise GreenlmError(f"--trials must be at least 2 for a budget/performance curve, got {trials}")
    if metric not in METRICS:
        raise GreenlmError(f"unknown --metric '{metric}'{suggest(metric, METRICS)}; use one of {', '.join(METRICS)}")
    if sampler not in SAMPLERS:
        raise GreenlmError(f"unknown --sampler '{sampler}'{suggest(sampler, SAMPLERS)};"
                           f" use one of {', '.join(SAMPLERS)}")
    if not search:
        raise GreenlmError(f"give at least one --search, e.g. --search '{_EXAMPLE}'")


def _objective_stage(base: Recipe, stage: str | None) -> str:
    """The stage whose validation score is the objective: ``stage``, by default the recipe's last."""
    from greenlm.pipeline.schema import suggest

    stage_names = [s.name for s in base.stages]
    stage = stage or stage_names[-1]
    if stage not in stage_names:
        raise GreenlmError(f"--stage '{stage}' is not a stage of the recipe{suggest(stage, stage_names)};"
                           f" its stages: {', '.join(stage_names)}")
    return stage


def _open_study(optuna, sweep_dir: Path, sweep_name: str, record: dict, trials: int, sampler: str, seed: int,
                prune: bool, storage: str | None = None):
    """The sweep's Optuna study, kept in its journal file (or the shared ``storage``) so that a re-run continues it."""
    startup = _startup_trials(trials)
    # a resumed sweep must not replay the draws it already made: the sampler's seed moves on with the trials
    sampler_seed = worker_seed(seed, len(record["trials"]), storage is not None)
    study = optuna.create_study(
        storage=open_storage(optuna, storage, sweep_dir),
        study_name=sweep_name,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=startup) if sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=sampler_seed),
        pruner=_stage_median_pruner(optuna, startup) if prune else optuna.pruners.NopPruner(),
    )
    return study


def _close_stale_trials(optuna, study, record: dict, echo, shared: bool = False) -> None:
    """Trials still running in the journal were interrupted: fail them in the study, mark them in the record. On
    shared storage only this sweep folder's own (other workers' running trials are running)."""
    mine = {r["number"] for r in record["trials"] if r["state"] == "running"}
    for stale in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        if shared and stale.number not in mine:
            continue
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        for r in record["trials"]:
            if r["number"] == stale.number and r["state"] == "running":
                r["state"], r["error"] = "interrupted", "the sweep stopped during this trial"
        echo(f"trial {stale.number}: interrupted earlier; replaced by a new trial")


def _new_entry(trial, params: list[SearchParam], trials_root: Path) -> dict:
    """The record of a trial just asked for: its sampled values, cost so far (none) and run folder."""
    values = {p.path: trial.params[p.path] for p in params}
    trial_name = f"trial-{trial.number:03d}"
    return {"number": trial.number, "name": trial_name, "state": "running", "params": values, "value": None,
            "intermediate": {}, "energy_kwh": 0.0, "co2e_kg": 0.0, "cost_usd": 0.0, "stages_ran": [],
            "stages_reused": [], "seconds": None, "run_dir": str(trials_root / trial_name), "error": None}


def _tell(optuna, study, trial, entry: dict, state: str, value: float | None, metric: str, echo) -> None:
    """Report a trial that ran to Optuna (pruned or complete) and record its state and value."""
    store_on_trial(trial, entry)
    if state == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        echo(f"trial {trial.number}: pruned after stage '{list(entry['intermediate'])[-1]}'"
             f" ({metric} below the median of earlier trials there)")
    else:
        study.tell(trial, value)
        echo(f"trial {trial.number}: {entry.get('objective_split', 'dev')} {metric} {value:.4f} ({entry['seconds']:.0f} s,"
             f" reused {len(entry['stages_reused'])} stage(s))")
    entry["state"] = state
    entry["value"] = value if state == "complete" else None


def _default_runner():
    from greenlm.pipeline.runner import run_recipe

    return run_recipe


def _open_sweep(sweep_dir: Path, sweep_name: str, spec: dict, force: bool) -> dict:
    saved_file = sweep_dir / SWEEP_FILE
    if saved_file.is_file():
        saved = read_json(saved_file)
        changed = [k for k in spec if saved.get("spec", {}).get(k) != spec[k]]
        if changed and not force:
            raise GreenlmError(f"sweep '{sweep_name}' exists in {sweep_dir.parent} with other settings (differs in:"
                               f" {', '.join(changed)}); pass --force to start it over or --name to choose another"
                               " name")
        if not changed:
            return saved
        shutil.rmtree(sweep_dir)
    elif sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise GreenlmError(f"'{sweep_dir}' exists and is not a greenlm sweep (no {SWEEP_FILE}); choose another --name")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record = {"name": sweep_name, "spec": spec, "created_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "trials": []}
    _save(sweep_dir, record)
    return record


def _save(sweep_dir: Path, record: dict) -> None:
    atomic_write_json(sweep_dir / SWEEP_FILE, record)


def _stage_score(outcome, stage: str, metric: str, entry: dict | None = None):
    """The score trials are compared on: ``stage``'s ``metric`` on its selection split, from its metrics.json
    (``validation``, carved from train; ``dev`` only when the task has none, which the sweep's record then says).
    Dev is reported, never chosen on, when a validation split exists."""
    done = next((s for s in outcome.stages if s.name == stage), None)
    splits = (done.metrics if done else {}).get("splits") or {}
    for split in SELECTION_SPLITS:
        value = (splits.get(split) or {}).get(metric)
        if value is not None:
            if entry is not None:
                entry["objective_split"] = split
            return float(value)
    raise GreenlmError(f"stage '{stage}' reported no validation or dev {metric}; choose --metric accuracy, macro_f1"
                       " or mcc")


def _add_cost(entry: dict, outcome) -> None:
    """Add what the stages that really ran in this call cost (reused stages cost nothing again)."""
    for s in outcome.stages:
        if s.status != "ran":
            if s.name not in entry["stages_ran"] and s.name not in entry["stages_reused"]:
                entry["stages_reused"].append(s.name)
            continue
        if s.name in entry["stages_reused"]:
            entry["stages_reused"].remove(s.name)
        entry["stages_ran"].append(s.name)
        tag = s.pricetag or {}
        for key in ("energy_kwh", "co2e_kg", "cost_usd"):
            if entry[key] is not None:
                entry[key] = None if tag.get(key) is None else entry[key] + tag[key]


def _run_trial(run, recipe: Recipe, trial, entry: dict, trials_root: Path, stage: str, metric: str, prune: bool,
               measure: bool, progress: bool, echo) -> tuple[str, float | None]:
    """Run one trial; with pruning, stage by stage (each prefix of the recipe reuses the stages before it)."""
    stages = recipe.stages
    target = [s.name for s in stages].index(stage)
    if prune and target > 0:
        for k in range(target):
            prefix = dataclasses.replace(recipe, stages=stages[: k + 1])
            outcome = run(prefix, trials_root, resume=True, progress=progress, echo=echo, measure=False)
            _add_cost(entry, outcome)
            value = _stage_score(outcome, stages[k].name, metric, entry)
            entry["intermediate"][stages[k].name] = value
            trial.report(value, step=k)
            if trial.should_prune():
                return "pruned", None
    outcome = run(recipe, trials_root, resume=True, progress=progress, echo=echo, measure=measure)
    _add_cost(entry, outcome)
    for s in stages[: target + 1]:
        entry["intermediate"][s.name] = _stage_score(outcome, s.name, metric, entry)
    value = entry["intermediate"][stage]
    if prune:
        trial.report(value, step=target)
    return "complete", value
