"""``greenlm run``: execute a recipe stage by stage, reuse what is unchanged, measure, report.

Per stage: its identity (method, resolved settings, upstream artifact hash, task fingerprint,
greenlm version) gives a key. A finished stage with that key, in this run or any run beside it, is
reused instead of recomputed; otherwise the stage runs in ``.work/<stage>`` (resuming from its
checkpoint if an earlier attempt was interrupted) inside a price tag, and its folder is moved into
place complete. Then one measuring pass takes every model's accuracy, size and speed on the same
inputs in this one process, and the report is written.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import greenlm
from greenlm.common import GreenlmError, atomic_write_json
from greenlm.data import Task, load_task
from greenlm.pipeline.rundir import (RECIPE_FILE, STAGE_FILE, WORK, RunLog, artifact_hash, copy_stage,
                                     find_cached, identity_key, install_stage, read_finished, write_recipe)
from greenlm.pipeline.schema import Recipe
from greenlm.pipeline.stages import method_runner


@dataclass
class StageOutcome:
    name: str
    method: str
    folder: Path
    status: str  # "ran" | "reused" | "reused from <run>"
    seconds: float
    metrics: dict
    pricetag: dict | None


@dataclass
class RunOutcome:
    run_dir: Path
    stages: list[StageOutcome] = field(default_factory=list)
    report: dict | None = None
    seconds: float = 0.0


def recipe_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new), key=str)
    out = []
    for key in keys:
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, path + "."))
        elif a != b:
            out.append(path)
    return out


def prepare_run_dir(recipe: Recipe, runs_root: Path, *, resume: bool, force: bool, log_echo) -> tuple[Path, RunLog]:
    run_dir = runs_root / recipe.name
    text = recipe_yaml(recipe)
    try:
        if run_dir.exists() and (run_dir / RECIPE_FILE).is_file():
            old = yaml.safe_load((run_dir / RECIPE_FILE).read_text()) or {}
            changed = _differences(old, recipe.to_dict())
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


def _teacher_identity(spec: str) -> dict:
    """The teacher is part of the finetune stage's identity: a local folder by its content."""
    from greenlm.models import resolve_model_source

    source = resolve_model_source(spec)
    if source.kind == "local":
        return {"teacher": spec, "teacher_sha256": artifact_hash(Path(source.location))}
    return {"teacher": spec}


def run_recipe(recipe: Recipe, runs_root: str | Path = "runs", *, resume: bool = False, force: bool = False,
               progress: bool = True, echo=print, measure: bool = True) -> RunOutcome:
    """Run every stage of ``recipe`` under ``runs_root/<name>``; return what happened."""
    started = time.perf_counter()
    runs_root = Path(runs_root)
    _price_tag(recipe, "check")  # a bad region, PUE or intensity file fails here, before any work
    task = load_task(recipe.task)  # so do a bad task and a teacher that cannot be found
    teacher = _teacher_identity(recipe.teacher)
    run_dir, log = prepare_run_dir(recipe, runs_root, resume=resume, force=force, log_echo=echo)
    outcome = RunOutcome(run_dir)
    log(f"run '{recipe.name}' in {run_dir} (greenlm {greenlm.__version__})")
    for split, count in sorted(task.skipped_rows.items()):
        if count:
            log(f"note: skipped {count} row(s) with empty text in {task.name}/{split}")
    finished: dict[str, StageOutcome] = {}
    for stage in recipe.stages:
        upstream = finished.get(stage.upstream) if stage.upstream else None
        identity = {
            "method": stage.method,
            "settings": dataclasses.asdict(stage.settings),
            "task_fingerprint": task.fingerprint(),
            "upstream_artifact_sha256": json.loads((upstream.folder / STAGE_FILE).read_text())["artifact_sha256"]
            if upstream else None,
            "teacher": teacher if stage.method == "finetune" else None,
            "greenlm_version": greenlm.__version__,
        }
        if stage.method not in ("finetune",) and _uses_teacher(stage):
            identity["teacher_artifact_sha256"] = json.loads(
                (finished[_teacher_stage(recipe)].folder / STAGE_FILE).read_text())["artifact_sha256"]
        key = identity_key(identity)
        try:
            result = _run_or_reuse(recipe, stage, key, identity, task, run_dir, runs_root, upstream, finished,
                                   log, progress)
        except Exception as err:
            why = write_error(err)
            if why is None:
                raise
            kept = ", ".join(finished) or "none"
            raise GreenlmError(f"stage '{stage.name}' could not write its files ({why}); finished stages are kept"
                               f" ({kept}); free space or fix permissions, then run the same command to go on") from None
        finished[stage.name] = result
        outcome.stages.append(result)
    if measure:
        from greenlm.pipeline.measure_pass import measure_models
        from greenlm.pipeline.report_rows import write_report

        try:
            measurements = measure_models(recipe, task, outcome.stages, run_dir, log)
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


def write_error(err: BaseException) -> str | None:
    """What went wrong, if ``err`` is a failed write (disk full, permission denied...); else None.

    Besides OSError: safetensors raises its own SafetensorError, and torch.save a RuntimeError from
    its stream writer, when the disk is full.
    """
    if isinstance(err, OSError):
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror or err}{where}"
    text = str(err)
    if type(err).__name__ == "SafetensorError" or (
            isinstance(err, RuntimeError) and any(s in text for s in ("PytorchStreamWriter", "No space left",
                                                                     "Permission denied", "file write failed"))):
        return text.splitlines()[0] if text else type(err).__name__
    return None


def _teacher_stage(recipe: Recipe) -> str:
    return next(s.name for s in recipe.stages if s.method == "finetune")


def _uses_teacher(stage) -> bool:
    """Compression methods may distil from the fine-tuned teacher: then it is part of their identity."""
    return stage.method in ("distill", "prune", "early_exit")


def _run_or_reuse(recipe, stage, key, identity, task: Task, run_dir: Path, runs_root: Path, upstream,
                  finished, log, progress) -> StageOutcome:
    folder = run_dir / stage.name
    done = read_finished(folder)
    if done is not None and done.key == key:
        log(f"stage {stage.name}: reused (inputs unchanged)")
        return _outcome(stage, folder, "reused", 0.0)
    cached = find_cached(runs_root, key, exclude=folder)
    if cached is not None:
        copy_stage(cached.folder, folder, run_dir / WORK)
        log(f"stage {stage.name}: reused from {cached.folder} (same inputs)")
        return _outcome(stage, folder, f"reused from {cached.folder.parent.name}", 0.0)

    work = run_dir / WORK / stage.name
    key_file = work / "key"
    if work.exists() and (not key_file.is_file() or key_file.read_text() != key):
        shutil.rmtree(work)  # a checkpoint of different inputs cannot be resumed
    resumed = work.exists()
    work.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
    out = work / "output"
    log(f"stage {stage.name} ({stage.method}): {'resuming' if resumed else 'running'}")
    started = time.perf_counter()
    runner = method_runner(stage.method)
    teacher_dir = finished[_teacher_stage(recipe)].folder if stage.method != "finetune" else None
    source = recipe.teacher if stage.method == "finetune" else upstream.folder
    attempts = _earlier_attempts(work / ATTEMPTS)
    with _price_tag(recipe, stage.name) as tag, _snapshots(tag, work / ATTEMPTS / f"{len(attempts) + 1:03d}.json"):
        metrics = runner(source, task, stage.settings, out, work_dir=work / "state", progress=progress,
                         on_note=lambda note: log(f"  note: {note}"), teacher_dir=teacher_dir)
    seconds = time.perf_counter() - started
    from greenlm.measure import append_emissions_csv, combine_records

    record = combine_records([*attempts, tag.record],
                             note=f"the price tag adds up {len(attempts) + 1} attempts: {len(attempts)} interrupted"
                                  f" (each counted up to its last snapshot, at most {SNAPSHOT_EVERY_S:.0f} s before"
                                  " it stopped) and the one that finished")
    seconds += sum(r.wall_s for r in attempts)
    pricetag = record.to_dict()
    atomic_write_json(out / "pricetag.json", pricetag)
    append_emissions_csv(run_dir / "emissions.csv", record)
    atomic_write_json(out / STAGE_FILE, {
        "stage": stage.name,
        "method": stage.method,
        "key": key,
        "identity": identity,
        "artifact_sha256": artifact_hash(out),
        "seconds": round(seconds, 3),
        "finished_at_unix": time.time(),
    })
    install_stage(out, folder)
    shutil.rmtree(work, ignore_errors=True)
    log(f"stage {stage.name}: done in {seconds:.1f} s, dev accuracy {_dev_accuracy(metrics)}")
    return _outcome(stage, folder, "ran", seconds)


def _dev_accuracy(metrics: dict) -> str:
    acc = (metrics.get("splits", {}).get("dev") or {}).get("accuracy")
    return f"{acc:.4f}" if isinstance(acc, (int, float)) else "n/a"


def _outcome(stage, folder: Path, status: str, seconds: float) -> StageOutcome:
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    tag_file = folder / "pricetag.json"
    pricetag = json.loads(tag_file.read_text()) if tag_file.is_file() else None
    return StageOutcome(stage.name, stage.method, folder, status, seconds, metrics, pricetag)


ATTEMPTS = "pricetags"  # .work/<stage>/pricetags/NNN.json: each attempt's price tag so far
SNAPSHOT_EVERY_S = 30.0


def _earlier_attempts(folder: Path) -> list:
    """Price tags of earlier, interrupted attempts at this stage (their last snapshots), oldest first.

    They go to the ledger now (status ``interrupted``): the ledger then holds every attempt once.
    """
    from greenlm.measure import Ledger, PriceTagRecord

    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a snapshot cut short by the kill: that attempt goes uncounted
        record = PriceTagRecord.from_dict(data)
        if record.status == "running":
            record = dataclasses.replace(record, status="interrupted")
            try:
                Ledger().append(record)
            except GreenlmError:
                pass  # the ledger is a convenience; the stage's own price tag still counts the attempt
            atomic_write_json(path, record.to_dict())
        records.append(record)
    return records


class _snapshots:
    """Save a running stage's price tag every SNAPSHOT_EVERY_S seconds, so a killed attempt still counts."""

    def __init__(self, tag, path: Path):
        import threading

        self._tag, self._path = tag, path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="greenlm-pricetag-snapshots", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(SNAPSHOT_EVERY_S):
            self.save()

    def save(self) -> None:
        try:
            atomic_write_json(self._path, self._tag.peek().to_dict())
        except (OSError, RuntimeError):
            pass  # a full disk will fail the stage itself, with a clear message

    def __enter__(self):
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self.save()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


class _price_tag:
    """A PriceTag around a stage, with the recipe's measurement settings."""

    def __init__(self, recipe: Recipe, stage_name: str):
        from greenlm.measure import PriceTag

        m = recipe.measure
        self._tag = PriceTag(stage_name, region=m.region, pue=m.pue, usd_per_hour=m.usd_per_hour,
                             intensity_csv=m.intensity_csv, intensity_g_per_kwh=m.intensity_g_per_kwh,
                             project=recipe.name, stage=stage_name, ledger=True)

    def __enter__(self):
        self._tag.__enter__()
        return self._tag

    def __exit__(self, *exc):
        return self._tag.__exit__(*exc)
