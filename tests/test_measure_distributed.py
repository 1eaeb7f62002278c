"""Several processes, one price: each machine is priced once, by its local main process (LOCAL_RANK 0)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from greenlm.measure import Ledger, PriceTag
from greenlm.measure.distributed import Launch, launcher_tree

pytestmark = pytest.mark.filterwarnings("ignore::greenlm.measure.PriceTagWarning")

TORCHRUN = {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1"}


def test_launch_facts_from_the_environment():
    assert not Launch.from_env({}).launched and Launch.from_env({}).counts_machine
    assert not Launch.from_env({"WORLD_SIZE": "1", "LOCAL_RANK": "0"}).launched
    launch = Launch.from_env(TORCHRUN)
    assert (launch.world_size, launch.rank, launch.local_rank, launch.local_world_size, launch.node_rank) == (4, 2, 0, 2, 1)
    assert launch.nodes == 2 and launch.counts_machine
    assert not Launch.from_env({**TORCHRUN, "LOCAL_RANK": "1", "RANK": "3"}).counts_machine
    # no LOCAL_WORLD_SIZE nor node rank: one node holding every process
    bare = Launch.from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert bare.local_world_size == 2 and bare.nodes == 1 and bare.node_rank == 0
    # nonsense values are ignored, not trusted
    assert not Launch.from_env({"WORLD_SIZE": "two"}).launched
    described = launch.describe("scope")
    assert described["counted_by"].startswith("local main process") and described["nodes"] == 2
    assert "other_nodes" in described


def _launch_env(monkeypatch, **values):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MACHINE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_a_process_on_its_own_has_no_distributed_field(tmp_path, monkeypatch):
    _launch_env(monkeypatch)
    ledger = Ledger(tmp_path / "l.sqlite")
    with PriceTag("alone", backend="estimate", ledger=ledger) as tag:
        pass
    assert tag.record.distributed is None and len(ledger.records()) == 1


def test_other_local_processes_measure_but_are_not_priced(tmp_path, monkeypatch):
    _launch_env(monkeypatch, WORLD_SIZE="2", RANK="1", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2")
    ledger = Ledger(tmp_path / "l.sqlite")
    with PriceTag("rank1", backend="estimate", ledger=ledger) as tag:
        pass
    d = tag.record.distributed
    assert d["counted"] is False and d["local_rank"] == 1 and "not counted" in d["scope"]
    assert tag.record.energy_kwh is not None  # it still measured
    assert ledger.records() == []
    assert tag.record.to_dict()["distributed"] == d


def _workers(n: int, burn_s: float) -> list[subprocess.Popen]:
    """Children standing for a launcher's workers: each carries its LOCAL_RANK and burns some CPU."""
    code = f"import time\ntime.sleep(1.0)\nt=time.process_time()\nwhile time.process_time()-t<{burn_s}: pass"
    return [subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "LOCAL_RANK": str(i)})
            for i in range(n)]


def test_the_local_main_process_prices_the_launchers_tree(tmp_path, monkeypatch):
    """The estimates of the node's local main process cover every local worker once (through the launcher)."""
    _launch_env(monkeypatch, WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2")
    workers = _workers(2, 0.3)
    try:
        me = os.getpid()
        monkeypatch.setattr(os, "getppid", lambda: me)  # this test process stands for the launcher
        time.sleep(0.3)  # let the children start (their environment is read when the tag starts)
        ledger = Ledger(tmp_path / "l.sqlite")
        with PriceTag("rank0", backend="estimate", ledger=ledger) as tag:
            for worker in workers:
                worker.wait(timeout=30)
    finally:
        for worker in workers:
            worker.kill()
    d = tag.record.distributed
    assert d["counted"] is True and d["world_size"] == 2 and d["local_processes"] == 2
    assert "launcher's process tree" in d["scope"]
    assert tag.record.cpu_s >= 0.5  # both workers' CPU seconds
    assert [r["id"] for r in ledger.records()] == [tag.record.id]


def test_an_unrecognised_launcher_is_said(monkeypatch):
    launch = Launch(world_size=2, rank=0, local_rank=0, local_world_size=2)
    tree, scope = launcher_tree(launch, parent_pid=os.getpid())  # no children with LOCAL_RANK
    assert "not recognised" in scope and "1 local process" in scope


# Rank 1 spins only while rank 0's price tag is open (flag files), so the tree's CPU seconds that rank 0 counts hold
# both loops however far apart a loaded machine starts the two processes.
SCRIPT = """
import os, pathlib, sys, time
from greenlm.measure import Ledger, PriceTag
rank = int(os.environ["LOCAL_RANK"])
flags = pathlib.Path(sys.argv[1]).parent

def wait_for(name):
    deadline = time.monotonic() + 60
    while not (flags / name).exists() and time.monotonic() < deadline:
        time.sleep(0.01)

def spin():
    t = time.process_time()
    while time.process_time() - t < 0.2:
        pass

if rank != 0:
    wait_for("open")
with PriceTag("launched", backend="estimate", ledger=Ledger(sys.argv[1])) as tag:
    if rank == 0:
        (flags / "open").touch()
    spin()
    if rank == 0:
        wait_for("done")
if rank != 0:
    (flags / "done").touch()
print("DISTRIBUTED", tag.record.distributed)
"""


@pytest.mark.slow
def test_accelerate_launch_two_processes_appends_one_record(tmp_path):
    """A real launch (torchrun under accelerate, gloo on CPU): two processes, one machine, one ledger row."""
    pytest.importorskip("accelerate")
    script = tmp_path / "tagged.py"
    script.write_text(SCRIPT)
    ledger = tmp_path / "ledger.sqlite"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script), str(ledger)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = Ledger(ledger).records()
    assert len(rows) == 1, result.stdout
    d = rows[0]["distributed"]
    assert d["world_size"] == 2 and d["local_rank"] == 0 and d["counted"] is True
    assert "launcher's process tree" in d["scope"], d["scope"]
    assert rows[0]["cpu_s"] >= 0.35  # both processes' CPU seconds, through the launcher


@pytest.mark.slow
def test_greenlm_train_under_accelerate_launch_prices_the_machine_once(tmp_path):
    """greenlm train on 2 processes: one ledger row (the node's), pricetag.json says who counted, one tracker run."""
    pytest.importorskip("accelerate")
    pytest.importorskip("tensorboard")
    from conftest import write_toy_task_files

    write_toy_task_files(tmp_path / "toy", n_train=64, n_dev=16)
    home, out = tmp_path / "home", tmp_path / "runs" / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path), "GREENLM_HOME": str(home),
           "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "greenlm", "train",
           "--task", str(tmp_path / "toy"), "--model", "tiny:layers=1,hidden=16,heads=2,ffn=16,vocab=60",
           "--epochs", "1", "--batch-size", "8", "--max-length", "16", "--no-progress", "--out", str(out),
           "--region", "FRA", "--report-to", "tensorboard"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=170)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = Ledger(home / "ledger.sqlite").records()
    assert len(rows) == 1, [r["distributed"] for r in rows]
    import json

    tag = json.loads((out / "pricetag.json").read_text())
    assert tag["distributed"]["world_size"] == 2 and tag["distributed"]["counted"] is True
    assert "launcher's process tree" in tag["distributed"]["scope"]
    assert not any("other process(es)" in w for w in tag["warnings"])
    tracking = tmp_path / "runs" / "tracking"
    events = list(tracking.rglob("events.out.tfevents*"))
    assert events and {e.relative_to(tracking).parts[0] for e in events} == {"finetune"}  # one run, the stage's
