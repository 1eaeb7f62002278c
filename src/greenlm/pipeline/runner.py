"""``greenlm run``: execute a recipe stage by stage, reuse what is unchanged, measure, report.

Per stage: its identity (method, resolved settings, upstream artifact hash, task fingerprint,
greenlm version) gives a key. A finished stage with that key, in this run or any run beside it, is
reused instead of recomputed; otherwise the stage runs in ``.work/<stage>`` (resuming from its
checkpoint if an earlier attempt was interrupted) inside a price tag, and its folder is moved into
place complete. Then one measuring pass takes every model's accuracy, size and speed on the same
inputs in this one process, and the report is written.

The stages see the task without its test split (``greenlm.data.stage_task``): the measuring pass evaluates it,
once per model, whether the run reports on it or on dev. A stage's own figures are on dev (else validation), the
same whatever ``--eval-split`` says, so stages are reused across ``--eval-split`` choices.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import greenlm
from greenlm.common import GreenlmError, read_json, write_error
from greenlm.data import (Task, carve_validation, choose_eval_split, describe_filter, describe_validation,
                          filter_train, load_task, stage_task)
from greenlm.pipeline.rundir import (RECIPE_FILE, STAGE_FILE, WORK, RunLog, copy_stage, find_cached, identity_key,
                                     read_finished, write_recipe)
from greenlm.pipeline.schema import Recipe, StageSpec, map_stage_name
from greenlm.stage import PriceSettings, run_stage, stage_identity
from greenlm.stage.folders import identity_differences
from greenlm.stage.shell import StageResult, model_spec_identity, read_result
from greenlm.stage.workdir import folder_lock, holds_key
from greenlm.train.budget import charge


@dataclass
class RunOutcome:
    run_dir: Path
    stages: list[StageResult] = field(default_factory=list)  # status: ran | reused | reused from <run>
    report: dict | None = None
    seconds: float = 0.0


def recipe_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)


def prepare_run_dir(recipe: Recipe, runs_root: Path, *, resume: bool, force: bool, log_echo) -> tuple[Path, RunLog]:
    run_dir = runs_root / recipe.name
    text = recipe_yaml(recipe)
    try:
        if run_dir.exists() and (run_dir / RECIPE_FILE).is_file():
            old = yaml.safe_load((run_dir / RECIPE_FILE).read_text()) or {}
            changed = identity_differences(old, recipe.to_dict())
            if changed and not resume and not force and not _finished_stages(run_dir):
                # nothing finished under the earlier recipe (e.g. it named a teacher that could not be trained):
                # nothing to keep or lose, so the corrected recipe just takes its place
                log_echo(f"note: run '{recipe.name}' finished no stage under its earlier recipe; starting it with"
                         " this one")
                changed = []
            if changed and force:
                shutil.rmtree(run_dir)
            elif changed and not resume:
                shown = ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else "")
                raise GreenlmError(
                    f"run '{recipe.name}' already exists in {runs_root} with a different recipe (differs in: {shown});"
                    " pass --resume to keep its unchanged stages and run the rest, --force to start over,"
                    " or --name to choose another run name"
                )
        elif run_dir.exists() and any(run_dir.iterdir()):
            raise GreenlmError(f"'{run_dir}' exists and is not a greenlm run (no {RECIPE_FILE}); choose another --name")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_recipe(run_dir, text)
    except PermissionError as err:
        raise GreenlmError(f"cannot write the run folder {run_dir}: permission denied ({err.filename})") from None
    except OSError as err:
        if isinstance(err, GreenlmError):
            raise
        raise GreenlmError(f"cannot write the run folder {run_dir}: {err.strerror or err}") from None
    return run_dir, RunLog(run_dir / "run.log", log_echo)


def _finished_stages(run_dir: Path) -> list[str]:
    """The stages of the run folder that finished (a stage folder with its stage.json)."""
    return sorted(p.name for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / STAGE_FILE).is_file())


def run_recipe(recipe: Recipe, runs_root: str | Path = "runs", *, resume: bool = False, force: bool = False,
               progress: bool = True, echo=print, measure: bool = True, remeasure: bool = False) -> RunOutcome:
    """Run every stage of ``recipe`` under ``runs_root/<name>``; return what happened (``remeasure``: take the
    measuring pass again even when nothing changed)."""
    started = time.perf_counter()
    runs_root = Path(runs_root)
    _check_price_settings(recipe)  # a bad region, PUE or intensity file fails here, before any work
    task = recipe_task(recipe)  # so do a bad task and a teacher that cannot be found
    teacher = model_spec_identity(recipe.teacher)
    if recipe.target.speedup is not None or recipe.target.max_latency_ms is not None:
        from greenlm.pipeline.preflight import check_target, estimate_speeds

        estimates = estimate_speeds(recipe, task, runs_root, echo)  # before any training: is the target reachable?
        for stage, e in estimates.items():
            if e["speedup"] is not None:
                echo(f"  {stage}: about {e['speedup']:.1f}x the teacher's throughput ({e['how']})")
        check_target(recipe, estimates, echo)
    with folder_lock(runs_root / recipe.name, holder=f"greenlm run ({recipe.name})"):
        return _run_locked(recipe, runs_root, task, teacher, started, resume=resume, force=force, progress=progress,
                           echo=echo, measure=measure, remeasure=remeasure)


def recipe_task(recipe: Recipe) -> Task:
    """The recipe's task, its train rows filtered (``data.drop``), then its validation split carved from train
    (every stage chooses on it); figures are reported on ``evaluation.split`` (default: dev, else test)."""
    v = recipe.validation
    task = choose_eval_split(filter_train(load_task(recipe.task), recipe.data.drop), recipe.evaluation.split)
    return carve_validation(task, fraction=v.fraction, max_examples=v.max_examples, seed=v.seed)


def _run_locked(recipe: Recipe, runs_root: Path, task: Task, teacher: dict, started: float, *, resume: bool,
                force: bool, progress: bool, echo, measure: bool, remeasure: bool = False) -> RunOutcome:
    run_dir, log = prepare_run_dir(recipe, runs_root, resume=resume, force=force, log_echo=echo)
    outcome = RunOutcome(run_dir)
    log(f"run '{recipe.name}' in {run_dir} (greenlm {greenlm.__version__})")
    for split, count in sorted(task.skipped_rows.items()):
        if count:
            log(f"note: skipped {count} row(s) with empty text in {task.name}/{split}")
    if task.train_filter:
        log(f"note: {describe_filter(task.train_filter)}")
    log(f"note: {describe_validation(task)}")
    finished: dict[str, StageResult] = {}
    seen_by_stages = stage_task(task)  # without test: the measuring pass evaluates it, once per model
    for stage in recipe.stages:
        stage = _with_stage_map(stage, recipe, finished)
        upstream = finished.get(stage.upstream) if stage.upstream else None
        teacher_dir = finished[_teacher_stage(recipe)].folder if stage.method != "finetune" else None
        source = recipe.teacher if upstream is None else upstream.folder
        identity = stage_identity(
            stage.method, stage.settings, seen_by_stages, source, teacher_dir=teacher_dir, spec_identity=teacher,
            source_sha256=_artifact_sha256(upstream.folder) if upstream else None,
            teacher_sha256=_artifact_sha256(teacher_dir) if teacher_dir is not None else None)
        key = identity_key(identity)
        try:
            result = _run_or_reuse(recipe, stage, key, identity, seen_by_stages, run_dir, runs_root, source,
                                   teacher_dir, log, progress)
        except Exception as err:
            why = write_error(err)
            if why is None:
                raise
            kept = ", ".join(finished) or "none"
            raise GreenlmError(f"stage '{stage.name}' could not write its files ({why}); finished stages are kept"
                               f" ({kept}); free space or fix permissions, then run the same command to go on") from None
        finished[stage.name] = result
        outcome.stages.append(result)
        if not result.status.startswith("reused from"):  # what this run's stages cost counts toward its budget
            charge(result.pricetag)
    if measure:
        from greenlm.pipeline.measure_pass import measure_models
        from greenlm.pipeline.report_rows import write_report

        try:
            measurements = measure_models(recipe, task, outcome.stages, run_dir, log, remeasure=remeasure)
            outcome.report = write_report(recipe, task, outcome.stages, measurements, run_dir)
        except Exception as err:
            why = write_error(err)
            if why is None:
                raise
            raise GreenlmError(f"could not write the measurements or the report ({why}); every stage is kept"
                               f" ({', '.join(finished)}); free space or fix permissions, then run the same"
                               " command again") from None
        log(f"report: {run_dir / 'report.md'}")
    outcome.seconds = time.perf_counter() - started
    log(f"done in {outcome.seconds:.1f} s")
    return outcome


def _artifact_sha256(folder: Path) -> str:
    return read_json(folder / STAGE_FILE)["artifact_sha256"]


def _with_stage_map(stage: StageSpec, recipe: Recipe, finished: dict[str, StageResult]) -> StageSpec:
    """``selection_map: <stage>`` (or ``teacher``) read from that finished stage's folder (its map's content,
    not the name, goes into the stage's identity)."""
    named = map_stage_name(stage, recipe.stages)
    if named is None:
        return stage
    settings = dataclasses.replace(stage.settings, selection_map=str(finished[named].folder))
    return dataclasses.replace(stage, settings=settings)


def _teacher_stage(recipe: Recipe) -> str:
    return next(s.name for s in recipe.stages if s.method == "finetune")


def _run_or_reuse(recipe, stage, key, identity, task: Task, run_dir: Path, runs_root: Path, source,
                  teacher_dir: Path | None, log, progress) -> StageResult:
    folder = run_dir / stage.name
    done = read_finished(folder)
    if done is not None and done.key == key:
        log(f"stage {stage.name}: reused (inputs unchanged)")
        return read_result(stage.method, stage.name, folder, "reused", 0.0)
    cached = find_cached(runs_root, key, exclude=folder)
    if cached is not None:
        copy_stage(cached.folder, folder, run_dir / WORK)
        log(f"stage {stage.name}: reused from {cached.folder} (same inputs)")
        return read_result(stage.method, stage.name, folder, f"reused from {cached.folder.parent.name}", 0.0)

    work = run_dir / WORK / stage.name
    log(f"stage {stage.name} ({stage.method}): {'resuming' if holds_key(work, key) else 'running'}")
    result = run_stage(stage.method, source, task, stage.settings, folder, work_dir=work, teacher_dir=teacher_dir,
                       price=price_settings(recipe), name=stage.name, identity=identity, replace=True, progress=progress,
                       on_note=lambda note: log(f"  note: {note}"), emissions_csv=run_dir / "emissions.csv",
                       command=f"greenlm run ({recipe.name}, stage {stage.name})")
    acc = result.accuracy  # on the split the stage reports its own figures on (dev, else validation)
    log(f"stage {stage.name}: done in {result.seconds:.1f} s, {result.metrics.get('eval_split') or 'no held-out'}"
        f" accuracy {f'{acc:.4f}' if isinstance(acc, (int, float)) else 'n/a'}")
    return result


def price_settings(recipe: Recipe) -> PriceSettings:
    m = recipe.measure
    return PriceSettings(region=m.region, pue=m.pue, usd_per_hour=m.usd_per_hour, intensity_csv=m.intensity_csv,
                         intensity_g_per_kwh=m.intensity_g_per_kwh, project=recipe.name)


def _check_price_settings(recipe: Recipe) -> None:
    """Build (and drop) the stage price tag once, so bad measurement settings fail before any work."""
    price_settings(recipe).price_tag("check", ledger=False)
