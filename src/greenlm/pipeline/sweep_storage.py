"""Where a sweep's Optuna study lives: a journal file in the sweep folder (one machine), or a database that several
workers on several machines share (``greenlm sweep --storage postgresql://user:password@host/database``).

With shared storage every worker runs the same command (same recipe, search, ``--name``): each asks the study for
its next trial, so the trials' numbers, and their run folders ``trial-NNN``, never collide; ``--trials`` counts the
finished trials of the whole study. Each trial's cost (energy, CO2e, money), its host and its run folder are stored
on the trial as user attributes, so any worker (or Optuna's own tools) sees what every trial cost, and each
worker's sweep report lists every finished trial of the study.
"""

from __future__ import annotations

import os
import socket
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

from greenlm.common import GreenlmError
from greenlm.common.optional import require

JOURNAL = "optuna.journal"
SPEC_ATTR = "greenlm_spec"
# what each trial carries as Optuna user attributes (the entry keys of sweep.json, plus the worker's host)
TRIAL_ATTRS = ("name", "energy_kwh", "co2e_kg", "cost_usd", "seconds", "run_dir", "stages_ran", "stages_reused",
               "intermediate", "objective_split", "error", "host")


def redacted(url: str) -> str:
    """The storage URL as messages name it: without its password."""
    from greenlm.measure.ledger_postgres import redact

    return redact(url)


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` (libpq's spelling) as SQLAlchemy's psycopg 3 dialect; other URLs as given."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgresql", "postgres"):
        require("psycopg", "a PostgreSQL sweep storage")
        return f"postgresql+psycopg://{rest}"
    return url


def open_storage(optuna, storage: str | None, sweep_dir: Path):
    """The study's storage: the sweep folder's journal file, or an RDB storage at ``storage`` (a SQLAlchemy URL)."""
    if storage is None:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / JOURNAL)))
    url = sqlalchemy_url(storage.strip())
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except Exception as err:  # SQLAlchemy's errors (no server, refused login, bad URL) or a driver's ImportError
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            # two workers creating Optuna's tables at the same moment: the loser finds them made; open them again
            if attempt < 4 and any(w in first.lower() for w in ("already exists", "duplicate key", "unique constraint")):
                time.sleep(0.5 + attempt)
                continue
            break
    password = urlsplit(storage).password if "://" in storage else None
    if password:
        first = first.replace(password, "***")
    host = urlsplit(storage).hostname if "://" in storage else None
    where = f" on {host}" if host else ""
    raise GreenlmError(f"cannot open the sweep storage {redacted(storage)}{where}: {first[:300]}")


def worker_seed(seed: int, earlier_trials: int, shared: bool) -> int:
    """The sampler's seed: a resumed sweep moves on with its trials; on shared storage each worker (host, process)
    draws differently too, so two workers started together do not ask for the same values."""
    if not shared:
        return seed + earlier_trials
    worker = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 1_000_003
    return seed + earlier_trials + worker


def check_spec(study, spec: dict, sweep_name: str, storage: str) -> None:
    """A shared study serves one sweep: a worker with other settings under the same name is refused."""
    saved = study.user_attrs.get(SPEC_ATTR)
    if saved is None:
        study.set_user_attr(SPEC_ATTR, spec)
        return
    changed = [k for k in spec if saved.get(k) != spec[k]]
    if changed:
        raise GreenlmError(f"the study '{sweep_name}' in {redacted(storage)} was started with other settings (differs"
                           f" in: {', '.join(changed)}); run the same command as the other workers, or choose another"
                           " --name")


def store_on_trial(trial, entry: dict) -> None:
    """The trial's cost and whereabouts as its Optuna user attributes (before it is told, while it can change)."""
    for key in TRIAL_ATTRS:
        trial.set_user_attr(key, socket.gethostname() if key == "host" else entry.get(key))


def finished_in_study(optuna, study) -> int:
    """Complete and pruned trials of the whole study (every worker's)."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def with_other_workers(optuna, study, record: dict) -> dict:
    """The record with every finished or failed trial of the study that another worker ran, from their user
    attributes, in trial order: what this worker's report shows."""
    state_names = {optuna.trial.TrialState.COMPLETE: "complete", optuna.trial.TrialState.PRUNED: "pruned",
                   optuna.trial.TrialState.FAIL: "failed"}
    mine = {r["number"] for r in record["trials"]}
    others = []
    for t in study.get_trials(deepcopy=False, states=tuple(state_names)):
        if t.number in mine or "name" not in t.user_attrs:
            continue
        attrs = t.user_attrs
        others.append({"number": t.number, "state": state_names[t.state], "params": dict(t.params),
                       "value": t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                       **{k: attrs.get(k) for k in TRIAL_ATTRS}})
    trials = sorted([*record["trials"], *others], key=lambda r: r["number"])
    return {**record, "trials": trials}
