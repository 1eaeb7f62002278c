"""``greenlm sweep --storage``: two workers at once share one Optuna study (a SQLite file URL always, PostgreSQL where
GREENLM_TEST_POSTGRES_URL names a server); each trial's cost and host are stored on the trial; a storage that cannot
be reached is one line, exit code 2, naming the host and not the password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="Optuna not installed (pip install 'greenlm[sweep]')")

TESTS = Path(__file__).resolve().parent

# one worker: the fake runner of test_sweep_run (scores follow the learning rate, energy per stage), a little slower
# so that the two workers' trials interleave
_WORKER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from test_sweep_run import FakeRunner, _recipe
from pathlib import Path
from greenlm.pipeline.sweep import run_sweep

class SlowRunner(FakeRunner):
    def __call__(self, *args, **kwargs):
        time.sleep(0.2)
        return super().__call__(*args, **kwargs)

root, storage, start_at = Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
recipe = _recipe(root.parent)  # the same recipe file content for both workers
while time.time() < start_at:
    pass
run_sweep(recipe, ["stages.distill.learning_rate=loguniform(1e-5,1e-1)"], 6, runs_root=root, name="shared",
          storage=storage, echo=lambda _: None, _run=SlowRunner(), seed=0)
"""


def _two_workers(tmp_path: Path, storage: str) -> list[Path]:
    roots = [tmp_path / f"machine-{k}" / "runs" for k in range(2)]
    for root in roots:
        root.parent.mkdir(parents=True)
    start_at = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(TESTS), str(root), storage, str(start_at)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for root in roots]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    return roots


def _check_shared_study(storage: str, roots: list[Path]) -> None:
    from greenlm.pipeline.sweep_storage import redacted, sqlalchemy_url

    study = optuna.load_study(study_name="shared", storage=sqlalchemy_url(storage))
    done = [t for t in study.get_trials() if t.state in (optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED)]
    assert 6 <= len(done) <= 7  # --trials counts the whole study; two finishing at once may pass it by one
    assert not [t for t in study.get_trials() if t.state == optuna.trial.TrialState.RUNNING]
    numbers = [t.number for t in study.get_trials()]
    assert len(numbers) == len(set(numbers))
    for t in done:  # every trial carries what it cost and where it ran
        assert t.user_attrs["energy_kwh"] > 0 and t.user_attrs["host"] and t.user_attrs["name"] == f"trial-{t.number:03d}"
        assert set(t.user_attrs["stages_ran"]) | set(t.user_attrs["stages_reused"]) <= {"finetune", "distill",
                                                                                       "quantize"}
    assert study.user_attrs["greenlm_spec"]["search"] == ["stages.distill.learning_rate=loguniform(1e-5,1e-1)"]
    # each worker ran some trials, in its own runs folder; each worker's sweep.json lists its own and the others'
    done_numbers = {t.number for t in done}
    own = []
    for root in roots:
        record = json.loads((root / "shared" / "sweep.json").read_text())
        assert record["spec"]["storage"] == redacted(storage) and "greenlm-ci@" not in json.dumps(record)
        listed = {t["number"] for t in record["trials"] if t["state"] in ("complete", "pruned")}
        own.append({t["number"] for t in record["trials"] if t["run_dir"].startswith(str(root))
                    and t["state"] in ("complete", "pruned")})
        assert own[-1] and own[-1] <= listed <= done_numbers
    assert not own[0] & own[1] and own[0] | own[1] == done_numbers
    # the worker whose last trial finished last saw every trial done (the other stopped earlier)
    records = [json.loads((root / "shared" / "sweep.json").read_text()) for root in roots]
    complete = [r for r in records if {t["number"] for t in r["trials"] if t["state"] in ("complete", "pruned")}
                == done_numbers]
    assert complete
    record = complete[0]
    energy = {t["number"]: t["energy_kwh"] for t in record["trials"]}
    assert all(energy[t.number] == pytest.approx(t.user_attrs["energy_kwh"]) for t in done)


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    roots = _two_workers(tmp_path, storage)
    _check_shared_study(storage, roots)


@pytest.mark.slow
def test_two_workers_share_one_postgres_study(pg_url, tmp_path):
    roots = _two_workers(tmp_path, pg_url)
    _check_shared_study(pg_url, roots)


def test_trial_costs_are_user_attributes_with_the_default_journal_too(tmp_path):
    sys.path.insert(0, str(TESTS))
    from test_sweep_run import SEARCH, FakeRunner, _recipe

    from greenlm.pipeline.sweep import JOURNAL, run_sweep

    outcome = run_sweep(_recipe(tmp_path), SEARCH, 3, runs_root=tmp_path / "runs", echo=lambda _: None,
                        _run=FakeRunner(), prune=False)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(outcome.sweep_dir / JOURNAL)))
    trials = optuna.load_study(study_name=outcome.record["name"], storage=storage).get_trials()
    assert len(trials) == 3
    by_number = {t["number"]: t for t in outcome.record["trials"]}
    for t in trials:
        assert t.user_attrs["energy_kwh"] == pytest.approx(by_number[t.number]["energy_kwh"]) and t.user_attrs["host"]
    assert trials[0].user_attrs["energy_kwh"] > trials[1].user_attrs["energy_kwh"]  # the teacher, paid once


def test_a_storage_that_cannot_be_reached_is_one_line_exit_2(tmp_path):
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'greenlm[team]')")
    sys.path.insert(0, str(TESTS))
    from test_sweep_run import _recipe

    result = subprocess.run([sys.executable, "-m", "greenlm", "sweep", _recipe(tmp_path), "--search",
                             "stages.distill.learning_rate=loguniform(1e-5,1e-1)", "--trials", "2",
                             "--runs-dir", str(tmp_path / "runs"), "--storage",
                             "postgresql://alice:s3cret-pw@127.0.0.1:1/sweeps"],
                            capture_output=True, text=True, timeout=300, env={**os.environ})
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and "127.0.0.1" in lines[0] and "s3cret" not in result.stderr
