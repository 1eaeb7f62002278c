"""``greenlm sweep``: a hyperparameter search over a recipe, and its budget/performance curve.

    greenlm sweep quick --trials 12 --search 'stages.distill.learning_rate=loguniform(1e-5,1e-3)' \\
                        --search 'stages.distill.temperature=choice(1,2,4)'

Each trial is a normal ``greenlm run`` of the recipe with the sampled values set (``--set``), under
``runs/<sweep>/trials/trial-NNN``. Trials share cached stages with each other (a teacher fine-tuned
once serves every trial that does not change it), so a sweep over a compression stage pays for the
teacher once. Sampling is Optuna's TPE (or random search); with pruning, a trial runs stage by stage
and reports each stage's dev score to Optuna, and a median rule stops a trial whose score at some
stage is below the median of the finished trials at that stage (its later stages are not run).

The result is Dodge et al.'s (2019) expected best dev score as a function of the number of trials,
and of the energy the sweep had spent: the budget/performance curve Green AI asks for (Schwartz et
al. 2020). Only finished trials are scores; pruned and failed trials count in the energy spent.
Search space grammar: ``PATH=DIST(ARGS)`` with DIST one of

    uniform(low, high)      a float, uniformly
    loguniform(low, high)   a float, uniformly in log space (low > 0): learning rates
    int(low, high)          a whole number in [low, high]
    logint(low, high)       a whole number, log-uniformly (low >= 1)
    choice(a, b, ...)       one of the values (numbers, true/false, null or text)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_json, atomic_write_text
from greenlm.common.optional import require
from greenlm.pipeline.schema import Recipe

DISTRIBUTIONS = ("uniform", "loguniform", "int", "logint", "choice")
METRICS = ("accuracy", "macro_f1", "mcc")
SAMPLERS = ("tpe", "random")
SWEEP_FILE = "sweep.json"
TRIALS = "trials"
JOURNAL = "optuna.journal"
_EXAMPLE = "stages.distill.learning_rate=loguniform(1e-5,1e-3)"
_PATH_PART = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class SearchParam:
    """One searched recipe field and the distribution its values are drawn from."""

    path: str  # recipe key path, as --set takes it: stages.distill.learning_rate
    kind: str  # one of DISTRIBUTIONS
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()
    text: str = ""  # as written on the command line

    def distribution(self):
        import optuna

        if self.kind in ("uniform", "loguniform"):
            return optuna.distributions.FloatDistribution(self.low, self.high, log=self.kind == "loguniform")
        if self.kind in ("int", "logint"):
            return optuna.distributions.IntDistribution(self.low, self.high, log=self.kind == "logint")
        return optuna.distributions.CategoricalDistribution(list(self.choices))

    def example_value(self):
        return self.choices[0] if self.kind == "choice" else self.low


def _bad(text: str, why: str) -> GreenlmError:
    return GreenlmError(f"--search '{text}': {why}")


def _number(token: str, text: str, *, whole: bool):
    try:
        if whole:
            value = int(token)
        else:
            value = float(token)
            if not math.isfinite(value):
                raise ValueError
        return value
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise _bad(text, f"'{token}' is not {kind}") from None


def _choice_value(token: str, text: str):
    """A choice as written: a number, true/false, null, or text (quotes optional)."""
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    lowered = token.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~"):
        return None
    for convert in (int, float):
        try:
            value = convert(token)
            if isinstance(value, float) and not math.isfinite(value):
                raise _bad(text, f"'{token}' is not a finite number")
            return value
        except ValueError:
            continue
    return token


def parse_search(text: str) -> SearchParam:
    """``stages.distill.learning_rate=loguniform(1e-5,1e-3)`` -> SearchParam; errors name the bad token."""
    raw = text.strip()
    path, eq, rest = raw.partition("=")
    path, rest = path.strip(), rest.strip()
    if not eq or not path:
        raise _bad(text, f"write it as key.path=distribution(args), e.g. {_EXAMPLE}")
    for part in path.split("."):
        if not _PATH_PART.match(part):
            raise _bad(text, f"'{part or '(empty)'}' is not a key in the path '{path}'; keys are letters, digits,"
                             " '_' or '-' separated by dots")
    if path == "name":
        raise _bad(text, "the run name is set by the sweep (one per trial) and cannot be searched")
    head = re.match(r"^([A-Za-z_]+)\s*", rest)
    name = head.group(1) if head else ""
    if not name and rest.startswith("("):
        raise _bad(text, f"the distribution is missing before '{rest}'; write one of {', '.join(DISTRIBUTIONS)},"
                         f" e.g. {_EXAMPLE}")
    if not name:
        token = rest.split("(")[0].strip() or rest or "(nothing)"
        raise _bad(text, f"'{token}' is not a distribution; write one of {', '.join(DISTRIBUTIONS)} with its arguments,"
                         f" e.g. {_EXAMPLE}")
    if name.lower() not in DISTRIBUTIONS:
        close = difflib.get_close_matches(name.lower(), DISTRIBUTIONS, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise _bad(text, f"unknown distribution '{name}'{hint}; use one of {', '.join(DISTRIBUTIONS)}")
    kind = name.lower()
    after = rest[head.end():]
    if not after.startswith("("):
        raise _bad(text, f"'{after or 'end of text'}' after '{name}': expected '(' and the arguments,"
                         f" e.g. {kind}(1, 4)")
    if not after.endswith(")"):
        tail = after[1:].split(",")[-1].strip() or after
        raise _bad(text, f"missing ')' after '{tail}'")
    inner = after[1:-1]
    if "(" in inner or ")" in inner:
        raise _bad(text, f"unbalanced parentheses in '{after}'")
    tokens = [t.strip() for t in inner.split(",")]
    for i, token in enumerate(tokens):
        if not token:
            raise _bad(text, f"argument {i + 1} of {kind}(...) is empty")
    if kind == "choice":
        values = tuple(_choice_value(t, text) for t in tokens)
        if len(set(map(repr, values))) != len(values):
            raise _bad(text, "choice(...) lists a value twice")
        return SearchParam(path, kind, choices=values, text=raw)
    if len(tokens) != 2:
        raise _bad(text, f"{kind} takes 2 arguments (low, high), got {len(tokens)}")
    whole = kind in ("int", "logint")
    low, high = (_number(t, text, whole=whole) for t in tokens)
    if not low < high:
        raise _bad(text, f"low ({tokens[0]}) must be below high ({tokens[1]})")
    if kind == "loguniform" and low <= 0:
        raise _bad(text, f"loguniform needs low > 0, got '{tokens[0]}'")
    if kind == "logint" and low < 1:
        raise _bad(text, f"logint needs low >= 1, got '{tokens[0]}'")
    return SearchParam(path, kind, low, high, text=raw)


def yaml_scalar(value) -> str:
    """A value as ``--set`` text that YAML reads back as the same value (1e-05 -> '1.0e-05': PyYAML reads
    an exponent without a dot as text)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    return json.dumps(str(value))  # quoted: a choice "1" stays text


# ---- the sweep ----------------------------------------------------------------------------------


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


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def check_search(recipe_spec: str | None, overrides: list[str], params: list[SearchParam]) -> None:
    """Every searched path must be a field the recipe accepts, with the values the search can give."""
    from greenlm.pipeline.recipes import load_recipe

    seen = set()
    for param in params:
        if param.path in seen:
            raise _bad(param.text, f"'{param.path}' is searched twice")
        seen.add(param.path)
        values = list(param.choices) if param.kind == "choice" else [param.low, param.high]
        for value in values:
            try:
                load_recipe(recipe_spec, [*overrides, f"{param.path}={yaml_scalar(value)}"])
            except GreenlmError as err:
                raise _bad(param.text, str(err)) from None


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
              _run=None) -> SweepOutcome:
    """Run ``trials`` trials of the recipe over the search space; write ``runs/<sweep>/`` and its curve.

    Re-running the same command continues the sweep to ``trials`` finished trials (a trial that was
    interrupted is recorded as such and replaced by a new one).
    """
    from greenlm.pipeline.recipes import load_recipe
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
    overrides = list(overrides or [])
    params = [parse_search(text) for text in search]
    base = load_recipe(recipe_spec, overrides)
    stage_names = [s.name for s in base.stages]
    stage = stage or stage_names[-1]
    if stage not in stage_names:
        raise GreenlmError(f"--stage '{stage}' is not a stage of the recipe{suggest(stage, stage_names)};"
                           f" its stages: {', '.join(stage_names)}")
    check_search(recipe_spec, overrides, params)
    optuna = _optuna()
    sweep_name = name or f"{base.name}-sweep"
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
    spec = json.loads(json.dumps(spec))  # as sweep.json will hold it (tuples become lists) for the comparison
    record = _open_sweep(sweep_dir, sweep_name, spec, force)
    startup = _startup_trials(trials)
    # a resumed sweep must not replay the draws it already made: the sampler's seed moves on with the trials
    sampler_seed = seed + len(record["trials"])
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / JOURNAL)))
    study = optuna.create_study(
        storage=storage,
        study_name=sweep_name,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=startup) if sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=sampler_seed),
        pruner=_stage_median_pruner(optuna, startup) if prune else optuna.pruners.NopPruner(),
    )
    for stale in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        for r in record["trials"]:
            if r["number"] == stale.number and r["state"] == "running":
                r["state"], r["error"] = "interrupted", "the sweep stopped during this trial"
        echo(f"trial {stale.number}: interrupted earlier; replaced by a new trial")
    distributions = {p.path: p.distribution() for p in params}
    trials_root = sweep_dir / TRIALS
    run = _run or _default_runner()

    def finished() -> int:
        return sum(1 for r in record["trials"] if r["state"] in ("complete", "pruned"))

    echo(f"sweep '{sweep_name}' in {sweep_dir}: {trials} trials of {base.name}, {sampler} sampling"
         f"{', median pruning' if prune else ''}, objective: dev {metric} of stage '{stage}'")
    while finished() < trials:
        trial = study.ask(distributions)
        values = {p.path: trial.params[p.path] for p in params}
        trial_name = f"trial-{trial.number:03d}"
        entry = {"number": trial.number, "name": trial_name, "state": "running", "params": values, "value": None,
                 "intermediate": {}, "energy_kwh": 0.0, "co2e_kg": 0.0, "cost_usd": 0.0, "stages_ran": [],
                 "stages_reused": [], "seconds": None, "run_dir": str(trials_root / trial_name), "error": None}
        record["trials"].append(entry)
        _save(sweep_dir, record)
        shown = ", ".join(f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                          for k, v in values.items())
        echo(f"trial {trial.number} ({finished() + 1}/{trials}): {shown}")
        sets = [*overrides, *(f"{p.path}={yaml_scalar(values[p.path])}" for p in params)]
        recipe = load_recipe(recipe_spec, sets, trial_name)
        started = time.perf_counter()
        try:
            state, value = _run_trial(run, recipe, trial, entry, trials_root, stage, metric, prune, measure,
                                      progress, echo)
        except GreenlmError as err:  # this trial's settings failed (e.g. a diverging run): record it, go on
            entry.update(state="failed", error=str(err), seconds=round(time.perf_counter() - started, 3))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            _save(sweep_dir, record)
            echo(f"trial {trial.number}: failed: {err}")
            if sum(1 for r in record["trials"] if r["state"] == "failed") > max(3, trials):
                raise GreenlmError(f"sweep '{sweep_name}': more than {max(3, trials)} trials failed; the last: {err}")\
                    from None
            continue
        entry["seconds"] = round(time.perf_counter() - started, 3)
        if state == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            echo(f"trial {trial.number}: pruned after stage '{list(entry['intermediate'])[-1]}'"
                 f" ({metric} below the median of earlier trials there)")
        else:
            study.tell(trial, value)
            echo(f"trial {trial.number}: dev {metric} {value:.4f} ({entry['seconds']:.0f} s,"
                 f" reused {len(entry['stages_reused'])} stage(s))")
        entry["state"] = state
        entry["value"] = value if state == "complete" else None
        _save(sweep_dir, record)
    files, curve, notes = _write_outputs(sweep_dir, record, None, ("md", "json", "figures", "html"), echo)
    return SweepOutcome(sweep_dir, record, curve, files, notes)


def _default_runner():
    from greenlm.pipeline.runner import run_recipe

    return run_recipe


def _open_sweep(sweep_dir: Path, sweep_name: str, spec: dict, force: bool) -> dict:
    saved_file = sweep_dir / SWEEP_FILE
    if saved_file.is_file():
        saved = json.loads(saved_file.read_text(encoding="utf-8"))
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


def _stage_score(outcome, stage: str, metric: str):
    """The dev score of ``stage``: its row of the run's report when measured, else the stage's own metrics.json."""
    if outcome.report is not None:
        row = next((r for r in outcome.report["rows"] if r["model"] == stage), None)
        if row is not None and row.get(metric) is not None:
            return float(row[metric])
    done = next((s for s in outcome.stages if s.name == stage), None)
    value = ((done.metrics if done else {}).get("splits") or {}).get("dev", {}).get(metric)
    if value is None:
        raise GreenlmError(f"stage '{stage}' reported no dev {metric}; choose --metric accuracy, macro_f1 or mcc")
    return float(value)


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
            value = _stage_score(outcome, stages[k].name, metric)
            entry["intermediate"][stages[k].name] = value
            trial.report(value, step=k)
            if trial.should_prune():
                return "pruned", None
    outcome = run(recipe, trials_root, resume=True, progress=progress, echo=echo, measure=measure)
    _add_cost(entry, outcome)
    for s in stages[: target + 1]:
        entry["intermediate"][s.name] = _stage_score(outcome, s.name, metric)
    value = entry["intermediate"][stage]
    if prune:
        trial.report(value, step=target)
    return "complete", value


# ---- the budget/performance curve and the sweep's report ------------------------------------------


def budget_curve(record: dict) -> list[dict]:
    """Expected best score vs n (Dodge et al. 2019, with replacement) over the finished trials, with the best
    score so far and the energy the sweep had spent (every trial, pruned and failed ones included) by the time
    its n-th trial finished."""
    from greenlm.report.emp import emp_curve

    scores, energy_at, best_at = [], [], []
    spent, best = 0.0, -math.inf
    for r in record["trials"]:
        if spent is not None:
            spent = None if r.get("energy_kwh") is None else spent + r["energy_kwh"]
        if r["state"] == "complete":
            scores.append(r["value"])
            best = max(best, r["value"])
            energy_at.append(spent)
            best_at.append(best)
    curve = emp_curve(scores)
    for point, energy, best_so_far in zip(curve, energy_at, best_at):
        point["cumulative_energy_kwh"] = energy
        point["best_so_far"] = best_so_far
    return curve


def _write_outputs(sweep_dir: Path, record: dict, out_dir: Path | None, formats, echo):
    from greenlm.report import figures as figs

    out = Path(out_dir) if out_dir is not None else sweep_dir
    files, notes = [], []
    counts = {s: sum(1 for r in record["trials"] if r["state"] == s)
              for s in ("complete", "pruned", "failed", "interrupted")}
    try:
        curve = budget_curve(record)
    except GreenlmError:
        curve = None
        notes.append(f"no budget/performance curve: it needs at least 2 finished trials, the sweep has"
                     f" {counts['complete']} ({counts['pruned']} pruned, {counts['failed']} failed)")
    figure = None
    if curve is not None and {"figures", "md", "html"} & set(formats):
        if figs.available():
            spec = record["spec"]
            figure = figs.budget_figure(curve, metric=spec["metric"],
                                        title=f"Sweep {record['name']}: dev {spec['metric']} of '{spec['stage']}'")
        else:
            notes.append(figs.MISSING_MATPLOTLIB)
    for note in notes:
        echo(f"note: {note}")
    try:
        if figure is not None and {"figures", "md"} & set(formats):
            files += list(figure.save(out / "figures").values())
        if "json" in formats:
            target = out / SWEEP_FILE
            atomic_write_json(target, {**record, "curve": curve, "counts": counts})
            files.append(target)
        if "md" in formats:
            atomic_write_text(out / "sweep.md", sweep_markdown(record, curve, counts, figure, notes))
            files.append(out / "sweep.md")
        if "html" in formats:
            from greenlm.report.html import sweep_html

            atomic_write_text(out / "sweep.html", sweep_html(record, curve, counts, figure, notes))
            files.append(out / "sweep.html")
    except OSError as err:
        raise GreenlmError(f"cannot write the sweep report into {err.filename or out}: {err.strerror or err}") from None
    finally:
        if figure is not None:
            figure.figure.clear()
    return files, curve, notes


def write_sweep_report(sweep_dir: str | Path, *, out_dir: str | Path | None = None,
                       formats=("md", "json", "figures", "html"), on_note=print) -> list[Path]:
    """``greenlm report SWEEP_DIR``: rewrite sweep.md, sweep.html, sweep.json's curve and the figure."""
    sweep_dir = Path(sweep_dir)
    try:
        record = json.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise GreenlmError(f"{sweep_dir / SWEEP_FILE} cannot be read; it is written by `greenlm sweep`") from None
    skipped = [f for f in formats if f in ("tex", "cards")]
    if skipped:
        on_note(f"note: {', '.join(skipped)} are made for runs, not sweeps; each trial is a run:"
                f" greenlm report {sweep_dir / TRIALS}/trial-000")
    files, _, _ = _write_outputs(sweep_dir, record, out_dir, formats, on_note)
    return files


def best_trial(record: dict) -> dict | None:
    done = [r for r in record["trials"] if r["state"] == "complete"]
    return max(done, key=lambda r: r["value"]) if done else None


def _caveat(spec: dict) -> str:
    parts = []
    if spec["sampler"] == "tpe":
        parts.append("TPE does not draw trials independently, so the curve describes the scores this sampler produced"
                     " rather than random search (use --sampler random for Dodge et al.'s setting)")
    if spec["prune"]:
        parts.append("pruned trials are not scores, which makes the curve somewhat optimistic per trial (their"
                     " energy is counted)")
    return ("Caveats: " + "; ".join(parts) + ".") if parts else ""


def sweep_markdown(record: dict, curve: list[dict] | None, counts: dict, figure, notes: list[str]) -> str:
    spec = record["spec"]
    metric = spec["metric"]
    lines = [f"# greenlm sweep `{record['name']}`", "",
             f"Recipe `{spec['recipe']['name']}` ({spec.get('recipe_source') or 'default'}), objective: dev {metric} of"
             f" stage `{spec['stage']}`, {spec['sampler']} sampling{', median pruning' if spec['prune'] else ''},"
             f" seed {spec['seed']}.", "", "Search space:", "", *[f"- `{s}`" for s in spec["search"]], "",
             f"Trials: {counts['complete']} finished, {counts['pruned']} pruned, {counts['failed']} failed"
             + (f", {counts['interrupted']} interrupted" if counts.get("interrupted") else "") + ".", ""]
    best = best_trial(record)
    if best is not None:
        shown = ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={v}`" for k, v in best["params"].items())
        lines += [f"**Best trial**: {best['name']}, dev {metric} {best['value']:.4f} with {shown}"
                  f" (run folder `{best['run_dir']}`).", ""]
    for note in notes:
        lines += [f"> {note}", ""]
    if curve is not None:
        lines += ["## Budget/performance curve", "",
                  f"Expected best dev {metric} among n trials (Dodge et al. 2019, sampling the finished trials with"
                  " replacement), ± one standard deviation, and the energy the sweep had spent when its n-th trial"
                  " finished (pruned and failed trials included; stages reused from earlier trials cost nothing"
                  " again).",
                  "", _caveat(spec), ""]
        if figure is not None:
            lines += [f"![{figure.title}](figures/{figure.stem}.png)", "",
                      f"([SVG](figures/{figure.stem}.svg), [data](figures/{figure.stem}.csv))", ""]
        lines += [f"| n | expected best {metric} | std | best so far | energy spent kWh |",
                  "|---:|---:|---:|---:|---:|"]
        for c in curve:
            energy = "n/a" if c["cumulative_energy_kwh"] is None else f"{c['cumulative_energy_kwh']:.3g}"
            lines.append(f"| {c['n']} | {c['expected_max']:.4f} | {c['std']:.4f} | {c['best_so_far']:.4f} | {energy} |")
        lines.append("")
    searched = " | ".join(f"`{p.split('=')[0]}`" for p in spec["search"])
    lines += ["## Trials", "", f"| trial | state | dev {metric} | {searched} | energy kWh | stages run | seconds |",
              "|---|---|---:|" + "---:|" * len(spec["search"]) + "---:|---|---:|"]
    paths = [s.split("=")[0].strip() for s in spec["search"]]
    for r in record["trials"]:
        value = "n/a" if r["value"] is None else f"{r['value']:.4f}"
        cells = [f"{r['params'].get(p):.4g}" if isinstance(r["params"].get(p), float) else str(r["params"].get(p))
                 for p in paths]
        energy = "n/a" if r.get("energy_kwh") is None else f"{r['energy_kwh']:.3g}"
        seconds = "n/a" if r.get("seconds") is None else f"{r['seconds']:.0f}"
        lines.append(f"| {r['name']} | {r['state']} | {value} | " + " | ".join(cells)
                     + f" | {energy} | {', '.join(r.get('stages_ran') or []) or '(all reused)'} | {seconds} |")
    lines += ["", "Each trial is a run folder under `trials/`: `greenlm report` on it writes its full report.", ""]
    return "\n".join(lines)
