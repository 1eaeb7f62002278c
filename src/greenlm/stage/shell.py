"""The stage shell: what every method shares, written once. ``greenlm <method>`` and ``greenlm run`` both
come here.

    result = run_stage("distill", "runs/teacher", task, DistillConfig(student="4x312"), Path("runs/student"))

1. Identity: the method, its resolved settings, the task's content fingerprint (and the split it reports on,
   when not its default), the input model's artifact hash (and the teacher's, for methods that learn from it),
   the greenlm version. Its sha256 is the stage's key.
2. Reuse: a finished folder with the same key is returned as it is ("reused"); a folder holding
   something else is refused with one line, unless the caller replaces it (``greenlm run``).
3. Lock and resume: the output folder is locked for the whole stage (a second process stops with one
   line); the work folder (``.NAME.work`` beside it, or the run's ``.work/<stage>``) keeps the method's
   checkpoints, so running the same stage again resumes where it stopped.
4. Price tag: the whole stage runs under one ``PriceTag`` (snapshotted every 30 s, so an attempt that
   is killed still counts; the final tag adds up every attempt), with the method's phases inside.
5. Output: the method's files, ``metrics.json``, ``pricetag.json``, ``stage.json`` (identity, key,
   artifact hash) and the model card ``README.md`` are written into ``output/`` of the work folder,
   which is then renamed into place: a folder that exists is complete.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import typing
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import greenlm
from greenlm.common import GreenlmError, atomic_write_json, atomic_write_text, read_json, recover_dir
from greenlm.data import Task, describe_filter
from greenlm.data.tasks import default_eval_split
from greenlm.measure import PriceTagWarning
from greenlm.measure.distributed import Launch
from greenlm.stage.context import StageContext
from greenlm.stage.folders import (METRICS_FILE, PRICETAG_FILE, STAGE_FILE, artifact_hash, identity_differences,
                                   identity_key, install_folder, read_stage_file)
from greenlm.stage.registry import get_method
from greenlm.stage.workdir import claim, folder_lock, holds_key
from greenlm.train.budget import stage_spend
from greenlm.train.trackers import tracking_label

SNAPSHOT_EVERY_S = 30.0
ATTEMPTS_DIR = "pricetags"  # <work>/pricetags/NNN.json: each attempt's price tag so far
LEGACY_RUN_FILE = "greenlm_run.json"  # what folders written before the stage shell hold instead of stage.json


@dataclass(frozen=True)
class PriceSettings:
    """How the stage's price tag turns energy into CO2e and money (``greenlm.measure.PriceTag``'s arguments)."""

    region: str | None = None
    pue: float | None = None
    usd_per_hour: float | None = None
    intensity_csv: str | None = None
    intensity_g_per_kwh: float | None = None
    project: str | None = None  # a label in the ledger (the run's name)

    def price_tag(self, name: str, *, stage: str | None = None, ledger=True):
        from greenlm.measure import PriceTag
        from greenlm.train.pause import active_policy

        intensity = dict(region=self.region, intensity_csv=self.intensity_csv,
                         intensity_g_per_kwh=self.intensity_g_per_kwh)
        clock, meta = _pause_pricing(active_policy(), intensity)
        return PriceTag(name, pue=self.pue, usd_per_hour=self.usd_per_hour, project=self.project, stage=stage or name,
                        ledger=ledger, clock=clock, meta=meta, **intensity)


def _pause_pricing(policy, intensity: dict) -> tuple:
    """A stage that pauses on a grid series (``--pause-above``) is priced on that series, hour by hour (the hours
    its pauses chose), unless an intensity series or a fixed intensity was given; and on the policy's clock when
    that clock is simulated (``--clock-speed``: a time-compressed demonstration priced on the hours it simulates).
    Returns (clock or None, meta for the record); ``intensity`` is updated in place."""
    if policy is None:
        return None, {}
    meta = {}
    series, region = getattr(policy, "series", None), getattr(policy, "region", None)
    if series is not None and region is not None and intensity["intensity_csv"] is None \
            and intensity["intensity_g_per_kwh"] is None:
        if intensity["region"] is not None:
            meta["intensity_note"] = (f"priced hour by hour on the grid series the training paused on ({region}),"
                                      f" not on --region {intensity['region']}'s annual figure")
        intensity.update(region=region, intensity_csv=series)
    clock = getattr(policy, "clock", None)
    if getattr(clock, "simulated", False):
        return clock.now, {**meta, "clock": clock.describe()}
    return None, meta


@dataclass
class StageResult:
    """A finished stage: its folder, what it measured and what it cost."""

    method: str
    folder: Path
    status: str  # "ran" | "reused" | "reused from <run>"
    seconds: float
    metrics: dict
    pricetag: dict | None
    name: str = ""

    @property
    def reused(self) -> bool:
        return self.status != "ran"

    @property
    def accuracy(self) -> float | None:
        """Accuracy on the split the stage reports its figures on (``metrics["eval_split"]``)."""
        from greenlm.report.provenance import eval_metrics

        return eval_metrics(self.metrics).get("accuracy")

    def _facts(self) -> list[tuple[str, str]]:
        tag = self.pricetag or {}
        facts = [("folder", str(self.folder)), ("status", self.status)]
        for split, m in (self.metrics.get("splits") or {}).items():
            facts.append((f"{split} accuracy", f"{m['accuracy']:.4f}" if isinstance(m.get("accuracy"), float) else "n/a"))
        facts.append(("wall time", f"{tag['wall_s']:.1f} s" if tag.get("wall_s") is not None else "n/a"))
        facts.append(("energy", f"{tag['energy_kwh']:.3g} kWh ({tag.get('energy_source')})"
                      if tag.get("energy_kwh") is not None else "n/a"))
        facts.append(("CO2e", f"{tag['co2e_kg'] * 1000:.3g} g" if tag.get("co2e_kg") is not None else "n/a"))
        return facts

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self._facts())
        return f"StageResult({self.name or self.method}: {inner})"

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                       for k, v in self._facts())
        return f"<table><caption>{escape(self.name or self.method)}</caption>{rows}</table>"


# A setting added to a method after stages were keyed: marked ``field(..., metadata={KEY_OMITS_DEFAULT: True})``, it
# enters a stage's identity only when it differs from its default, so stages built before it keep their keys (and
# are reused) as long as they are run the way they always ran.
KEY_OMITS_DEFAULT = "greenlm_key_omits_default"


def omit_marked_defaults(config, settings: dict) -> dict:
    """``settings`` (a config's fields) without the ``KEY_OMITS_DEFAULT`` ones at their default: what stage keys and
    a run folder's recipe.yaml hold, so folders written before such a setting existed still match."""
    return {name: value for name, value in settings.items()
            if not (name in config.__dataclass_fields__
                    and config.__dataclass_fields__[name].metadata.get(KEY_OMITS_DEFAULT)
                    and value == config.__dataclass_fields__[name].default)}


def settings_of(config) -> dict:
    """A config's settings as the identity holds them: a whole number given to a float setting counts as that
    float (``epochs=1`` and ``epochs=1.0`` are one run); a setting marked ``KEY_OMITS_DEFAULT`` is left out at its
    default."""
    hints = typing.get_type_hints(type(config))
    out = omit_marked_defaults(config, dataclasses.asdict(config))
    for name, value in out.items():
        floats = hints.get(name) is float or float in typing.get_args(hints.get(name))
        if floats and isinstance(value, int) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def stage_identity(method: str, config, task: Task, source: str | Path, *, teacher_dir: Path | None = None,
                   source_sha256: str | None = None, teacher_sha256: str | None = None,
                   spec_identity: dict | None = None) -> dict:
    """What decides a stage's result. Hashes of folders (and of a local model a spec names) are computed
    unless given."""
    registration = get_method(method)
    identity = {
        "method": method,
        "settings": settings_of(config),
        "task_fingerprint": task.fingerprint(),
        "upstream_artifact_sha256": None,
        "teacher": None,
        "greenlm_version": greenlm.__version__,
    }
    if task.eval_split != default_eval_split(task.splits):  # metrics.json names it and reports on it (a stage
        identity["eval_split"] = task.eval_split  # reporting on the default keeps the key it had before)
    if registration.input == "spec":
        identity["teacher"] = spec_identity or model_spec_identity(str(source))
    else:
        identity["upstream_artifact_sha256"] = source_sha256 or artifact_hash(Path(source))
    if teacher_dir is not None and registration.uses_teacher(config):
        identity["teacher_artifact_sha256"] = teacher_sha256 or artifact_hash(Path(teacher_dir))
    selection_map = getattr(config, "selection_map", None)
    if selection_map and selection_map != "teacher":  # the map's content decides the rows, not its folder's name
        from greenlm.datamap.dynamics_io import find_dynamics_dir

        dynamics = artifact_hash(find_dynamics_dir(selection_map), suffixes=(".jsonl",))
        identity["settings"] = {**identity["settings"], "selection_map": "sha256:" + dynamics}
    return identity


def model_spec_identity(spec: str) -> dict:
    """A model to start from: a local folder by its content, anything else by its name."""
    from greenlm.models import resolve_model_source

    source = resolve_model_source(spec)
    if source.kind == "local":  # by content only: a copied or moved folder (or run) keeps its stages' keys
        return {"teacher_sha256": artifact_hash(Path(source.location))}
    return {"teacher": spec}


def default_work_dir(out_dir: Path) -> Path:
    """Where a stage run on its own keeps its state: ``.NAME.work`` beside the output folder."""
    return out_dir.parent / f".{out_dir.name}.work"


def check_out_dir(out_dir: Path, key: str, identity: dict) -> dict | None:
    """May ``out_dir`` receive this stage? Returns its stage.json when it already holds this very stage."""
    recover_dir(out_dir)
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        raise GreenlmError(f"output '{out_dir}' is a file; give a folder")
    record = read_stage_file(out_dir)
    if record is not None:
        if record.get("key") == key:
            return record
        changed = identity_differences(record.get("identity") or {}, identity)
        raise GreenlmError(f"output folder '{out_dir}' already holds a different run (differs in:"
                           f" {', '.join(changed[:4]) or 'its inputs'}); choose another output folder (--out) or delete that one")
    if (out_dir / LEGACY_RUN_FILE).is_file():
        raise GreenlmError(f"output folder '{out_dir}' was written by an earlier greenlm (it has {LEGACY_RUN_FILE},"
                           " no stage.json); its model still loads, but it cannot be resumed: choose another output folder"
                           " (--out) or delete that one")
    if any(out_dir.iterdir()):
        raise GreenlmError(f"output folder '{out_dir}' is not empty and holds no greenlm run; choose a new folder")
    return None


def run_stage(method: str, source: str | Path, task: Task, config, out_dir: str | Path, *,
              work_dir: str | Path | None = None, teacher_dir: str | Path | None = None,
              price: PriceSettings = PriceSettings(), name: str | None = None, identity: dict | None = None,
              replace: bool = False, progress: bool = True, on_note=print, emissions_csv: Path | None = None,
              ledger=True, command: str | None = None) -> StageResult:
    """Run (or reuse, or resume) one stage of ``method`` from ``source`` into ``out_dir``; see the module doc.

    ``replace``: an ``out_dir`` holding another stage is replaced once this one is complete (``greenlm
    run``, where the recipe decides); otherwise it is refused. ``identity``: the caller's own (the run
    computes it from its finished stages); by default ``stage_identity``.
    """
    registration = get_method(method)
    expected = registration.config_type()
    if not isinstance(config, expected):
        raise TypeError(f"{method} takes a {expected.__name__}, got {type(config).__name__}")
    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir(out_dir)
    teacher_dir = Path(teacher_dir) if teacher_dir is not None else None
    name = name or out_dir.name
    identity = identity if identity is not None else stage_identity(method, config, task, source,
                                                                    teacher_dir=teacher_dir)
    key = identity_key(identity)
    main = is_main_process()
    lock = folder_lock(out_dir, holder=command or f"greenlm {method}") if main else _nothing()
    with lock:
        done = check_out_dir(out_dir, key, identity) if main and not replace else None
        if replace and main:
            record = read_stage_file(recover_dir(out_dir)) if out_dir.is_dir() else None
            done = record if record is not None and record.get("key") == key else None
        if done is not None:
            if main and holds_key(work_dir, key):
                shutil.rmtree(work_dir, ignore_errors=True)  # left by a kill between install and clean-up
            return read_result(method, name, out_dir, "reused", 0.0)
        claimed = claim(work_dir, key) if main else None
        if not main:  # the other processes of a launched group start once the work folder is claimed
            _wait_until(lambda: holds_key(work_dir, key), f"{work_dir} to be claimed")
        ctx = StageContext(method=method, task=task, source=str(source), work_dir=work_dir / "state",
                           teacher_dir=teacher_dir, progress=progress, on_note=on_note)
        if claimed is not None and claimed.resumed:
            on_note(f"resuming {name} from {work_dir}")
        started = time.perf_counter()
        attempts_dir = work_dir / ATTEMPTS_DIR
        attempts = _earlier_attempts(attempts_dir) if main else []
        # each machine is priced once, by its local main process (greenlm.measure.distributed): the other nodes'
        # local main processes append their own machine's record to the ledger; only the main process writes files
        tag = price.price_tag(name, stage=name, ledger=ledger if Launch.from_env().counts_machine else False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PriceTagWarning)  # the default-PUE note is in the record itself
            with tag, _Snapshots(tag, attempts_dir / f"{len(attempts) + 1:03d}.json", enabled=main), \
                    stage_spend(tag, attempts):  # a budget (--max-kwh ...) reads this stage's price tag
                with tracking_label(name):  # --report-to: the tracker runs of this stage's trainings
                    output = registration.run(ctx, config)
        seconds = time.perf_counter() - started + sum(r.wall_s for r in attempts)
        if main:
            _write_output(registration.name, name, ctx, output, tag, attempts, identity, key, seconds, work_dir,
                          out_dir, emissions_csv, command)
        else:  # ... and return once the main process has put the folder in place
            _wait_until(lambda: (read_stage_file(out_dir) or {}).get("key") == key, f"{out_dir} to be written")
    return read_result(method, name, out_dir, "ran", seconds)


def _write_output(method, name, ctx, output, tag, attempts, identity, key, seconds, work_dir: Path, out_dir: Path,
                  emissions_csv, command) -> None:
    from greenlm.measure import append_emissions_csv, combine_records
    from greenlm.report.model_card import folder_card

    built = work_dir / "output"
    shutil.rmtree(built, ignore_errors=True)
    built.mkdir(parents=True)
    output.write(built)
    metrics = {"task": ctx.task.name, "model": output.model_name or ctx.source, "method": method,
               "eval_split": ctx.task.eval_split, **output.metrics}
    if ctx.task.train_filter:  # train rows dropped by data filters before this stage saw the task
        metrics["train_filter"] = {**ctx.task.train_filter, "summary": describe_filter(ctx.task.train_filter)}
    details = metrics.get(method)
    if isinstance(details, dict):
        if ctx.costs.phases:
            details.setdefault("cost", ctx.costs.to_dict())
        details.setdefault("notes", list(ctx.notes))
    record = combine_records([*attempts, tag.record],
                             note=f"the price tag adds up {len(attempts) + 1} attempts: {len(attempts)} interrupted"
                                  f" (each counted up to its last snapshot, at most {SNAPSHOT_EVERY_S:.0f} s before"
                                  " it stopped) and the one that finished")
    launch = Launch.from_env()
    if launch.nodes > 1:
        record.warnings.append(f"this record prices node {launch.node_rank} of {launch.nodes}; each other node's local"
                               " main process appended its own machine's record to its ledger")
    atomic_write_json(built / METRICS_FILE, metrics)
    atomic_write_json(built / PRICETAG_FILE, record.to_dict())
    if emissions_csv is not None:
        append_emissions_csv(emissions_csv, record)
    atomic_write_json(built / STAGE_FILE, {
        "stage": name,
        "method": method,
        "key": key,
        "identity": identity,
        "artifact_sha256": artifact_hash(built),
        "seconds": round(seconds, 3),
        "finished_at_unix": time.time(),
    })
    atomic_write_text(built / "README.md", folder_card(built, method=method, task=ctx.task.name, source=ctx.source,
                                                       command=command or f"greenlm {method}", final=out_dir))
    install_folder(built, out_dir)
    shutil.rmtree(work_dir, ignore_errors=True)


def read_result(method: str, name: str, folder: Path, status: str, seconds: float) -> StageResult:
    """The result of the finished stage in ``folder`` (its metrics.json and pricetag.json)."""
    hint = f"delete {folder} and run the same command again to rebuild it"
    files = [folder / METRICS_FILE, folder / PRICETAG_FILE]
    metrics, pricetag = (read_json(path, hint=hint) if path.is_file() else None for path in files)
    return StageResult(method, folder, status, seconds, metrics or {}, pricetag, name=name)


# ---- several processes (accelerate launch): the main one claims and writes, all train ---------------------------------


def is_main_process() -> bool:
    """Rank 0 of a launched group (torchrun / accelerate launch set RANK), or a process on its own."""
    return int(os.environ.get("RANK", "0")) == 0


def _wait_until(ready, what: str, timeout_s: float = 3600.0) -> None:
    """Poll the file system (no process group is needed, nor created) until ``ready()``."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise GreenlmError(f"gave up waiting for {what} after {timeout_s:.0f} s (did the main process stop?)")
        time.sleep(0.2)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---- a price tag that survives a kill ---------------------------------------------------------------


def _earlier_attempts(folder: Path) -> list:
    """Price tags of earlier, interrupted attempts at this stage (their last snapshots), oldest first.

    They go to the ledger now (status ``interrupted``): the ledger then holds every attempt once.
    """
    from greenlm.measure import Ledger, PriceTagRecord

    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = read_json(path)
        except (OSError, ValueError):
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


@dataclass
class _Snapshots:
    """Save a running stage's price tag every SNAPSHOT_EVERY_S seconds, so a killed attempt still counts."""

    tag: object
    path: Path
    enabled: bool = True
    _stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self) -> None:
        while not self._stop.wait(SNAPSHOT_EVERY_S):
            self.save()

    def save(self, status: str | None = None) -> None:
        try:
            record = self.tag.peek()
            if status is not None:  # not "running": a later attempt does not add it to the ledger a second time
                record = dataclasses.replace(record, status=status)
            atomic_write_json(self.path, record.to_dict())
        except (OSError, RuntimeError):
            pass  # a full disk will fail the stage itself, with a clear message

    def __enter__(self):
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.save()
            self._thread = threading.Thread(target=self._loop, name="greenlm-pricetag-snapshots", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.enabled:
            self._stop.set()
            self._thread.join()
            if exc_type is not None:  # stopped (a budget, Ctrl-C, an error): count the attempt up to now, not up to
                self.save(status=f"error: {exc_type.__name__}")  # the last snapshot; the tag itself goes to the ledger
        return False
