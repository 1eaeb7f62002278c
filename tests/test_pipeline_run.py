"""``greenlm run`` end to end on a tiny model: report, caching, resume after kill -9, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import greenlm_in_process
from safetensors.torch import load_file

TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"


def env(tmp_path: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "GREENLM_HOME": str(tmp_path / "home"), "PYTHONWARNINGS": "ignore"}


def write_recipe(path: Path, task_dir: Path, name: str = "tiny", **finetune) -> Path:
    data = {
        "name": name,
        "task": str(task_dir),
        "teacher": TINY,
        "measure": {"region": "USA", "pue": 1.2},
        "evaluation": {"speed_examples": 32, "latency_examples": 4, "repeats": 1},
        "stages": {"finetune": {"epochs": 5, "learning_rate": 3e-3, "batch_size": 16, "max_length": 32, **finetune}},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def greenlm(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``greenlm ARGS`` in a process of its own, run from ``tmp_path``."""
    return subprocess.run([sys.executable, "-m", "greenlm", *args], capture_output=True, text=True,
                          env=env(tmp_path), timeout=timeout, cwd=tmp_path)


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``greenlm ARGS`` through the same entry point in this process (no seconds of imports), run from ``tmp_path``.
    The first run and the kill -9 test start real processes."""
    return greenlm_in_process(*args, env=env(tmp_path), cwd=tmp_path)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    from conftest import write_toy_task_files

    root = tmp_path_factory.mktemp("pipeline")
    write_toy_task_files(root / "toy")
    recipe = write_recipe(root / "recipe.yaml", root / "toy")
    started = time.perf_counter()
    result = greenlm(root, "run", str(recipe), "--no-progress")
    assert result.returncode == 0, result.stderr
    return root, recipe, result, time.perf_counter() - started


def test_run_writes_models_report_and_price_tags(first_run):
    root, _, result, _ = first_run
    run = root / "runs" / "tiny"
    assert {"recipe.yaml", "run.log", "report.json", "report.md", "finetune", "measurements.json"} <= {
        p.name for p in run.iterdir()}
    assert not (run / ".work" / "finetune").exists()
    stage = run / "finetune"
    assert {"model.safetensors", "config.json", "metrics.json", "pricetag.json", "stage.json"} <= {
        p.name for p in stage.iterdir()}
    report = json.loads((run / "report.json").read_text())
    (row,) = report["rows"]
    assert row["accuracy"] >= 0.9
    assert row["performance_retained_pct"] == pytest.approx(100.0)
    assert row["params"] > 0 and row["flops_per_example"] > 0 and row["throughput_examples_per_s"] > 0
    tag = json.loads((stage / "pricetag.json").read_text())
    assert tag["pue"] == 1.2 and tag["energy_kwh"] > 0
    assert tag["co2e_kg"] == pytest.approx(tag["energy_kwh"] * tag["intensity_g_per_kwh"] / 1000, rel=1e-6)
    assert row["stage_energy_kwh"] == tag["energy_kwh"]
    emissions = (run / "emissions.csv").read_text().splitlines()  # CodeCarbon's format, one row per stage run
    from greenlm.measure.emissions_csv import experiment_id

    assert len(emissions) == 2 and emissions[0].startswith("timestamp,")
    assert f",{experiment_id(tag['project'], tag['name'])}," in emissions[1]  # the stage's experiment (a UUID)
    assert "finetune" in (run / "report.md").read_text()
    assert "finetune" in result.stdout  # the table in the terminal
    resolved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert resolved["stages"]["finetune"]["batch_size"] == 16 and resolved["stages"]["finetune"]["weight_decay"] == 0.01


def test_measuring_pass_records_its_rounds_and_the_machine_load(first_run):
    root, _, result, _ = first_run
    run = root / "runs" / "tiny"
    measured = json.loads((run / "measurements.json").read_text())
    load = measured["machine"]["load"]
    assert {"loadavg_1m_before", "loadavg_1m_after", "cpus", "other_processes_cpu_share", "busy"} <= set(load)
    assert isinstance(load["busy"], bool) and load["cpus"] >= 1 and load["window_s"] > 0
    assert load["other_processes_cpu_share"] is None or 0 <= load["other_processes_cpu_share"] <= 1
    speed = measured["models"]["finetune"]["speed"]
    assert len(speed["rounds"]["throughput_examples_per_s"]) == 1  # evaluation.repeats: 1
    assert speed["throughput_examples_per_s"] == max(speed["rounds"]["throughput_examples_per_s"])
    assert "interleaved round" in measured["protocol"]["rounds"]
    assert "while timing" in (run / "report.md").read_text() and "while timing" in result.stdout
    report = json.loads((run / "report.json").read_text())
    assert report["target"] is None and report["rows"][0]["on_front"] is True


def test_second_identical_run_trains_nothing(first_run):
    root, recipe, _, first_seconds = first_run
    stage_json = root / "runs" / "tiny" / "finetune" / "stage.json"
    before = stage_json.stat().st_mtime_ns
    result = cli(root, "run", str(recipe), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "reused" in result.stderr and "finetune" in result.stderr
    assert stage_json.stat().st_mtime_ns == before
    assert "measurements: reused" in result.stderr


def test_start_within_waits_for_the_cleanest_hour_then_runs(first_run, tmp_path):
    """--start-within plans the run's start on the grid series (the job's length from the run's earlier report) and
    waits for it on a clock sped up a million times; then the run goes on (here: all stages reused)."""
    root, recipe, _, _ = first_run
    grid = tmp_path / "grid.csv"
    t0 = 1654041600  # 2022-06-01T00:00Z; cleanest at 05:00
    grid.write_text("timestamp_utc,region,gco2_per_kwh\n" + "".join(
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t0 + 3600 * h))},X,{50 if h % 24 == 5 else 400}\n"
        for h in range(-24 * 8, 48)))
    result = cli(root, "run", str(recipe), "--no-progress", "--start-within", "12h", "--grid", str(grid),
                     "--now", "2022-06-01T00:00Z", "--clock-speed", "1e6")
    assert result.returncode == 0, result.stderr
    assert "start at 2022-06-01T05:00Z (in 5.00 h)" in result.stderr and "starting run tiny" in result.stderr
    assert "runs/tiny/report.json: its stages took" in result.stderr
    assert "reused" in result.stderr
    bad = cli(root, "run", str(recipe), "--no-progress", "--start-within", "12h")
    assert bad.returncode == 2 and "needs both --start-within" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_run_within_plans_pause_and_resume_from_the_earlier_report(first_run, tmp_path):
    """greenlm run --run-within: the Pause & Resume plan is made for the run's length from its earlier report (pauses
    excluded) and said before the stages run; conflicting or incomplete carbon options: one line, exit code 2."""
    root, recipe, _, _ = first_run
    grid = tmp_path / "grid.csv"
    t0 = 1654041600  # 2022-06-01T00:00Z; cleanest at 03:00
    grid.write_text("timestamp_utc,region,gco2_per_kwh\n" + "".join(
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t0 + 3600 * h))},X,{50 if h == 3 else 400}\n"
        for h in range(0, 48)))
    result = cli(root, "run", str(recipe), "--no-progress", "--run-within", "12h", "--grid", str(grid),
                     "--now", "2022-06-01T00:00Z", "--clock-speed", "1e6")
    assert result.returncode == 0, result.stderr
    assert "Pause & Resume plan for X before 2022-06-01T12:00Z: run in 2022-06-01T03:00Z..2022-06-01T04:00Z" \
        in result.stderr
    for bad, needle in ((["--job-duration", "1h"], "give one of them"),
                        (["--run-within", "12h", "--start-within", "6h", "--grid", str(grid)], "not both")):
        run = cli(root, "run", str(recipe), "--no-progress", *bad)
        assert run.returncode == 2 and needle in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1


def test_same_stage_in_another_run_is_reused_from_it(first_run):
    root, recipe, _, _ = first_run
    result = cli(root, "run", str(recipe), "--name", "other", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "reused from" in result.stderr
    a = load_file(root / "runs" / "tiny" / "finetune" / "model.safetensors")
    b = load_file(root / "runs" / "other" / "finetune" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_changed_recipe_under_same_name_is_refused_then_resumed_or_forced(first_run):
    root, _, _, _ = first_run
    changed = write_recipe(root / "changed.yaml", root / "toy", epochs=4)
    result = cli(root, "run", str(changed), "--no-progress")
    assert result.returncode == 2
    assert "different recipe" in result.stderr and "stages.finetune.epochs" in result.stderr
    assert "Traceback" not in result.stderr
    # The refused run left the earlier run untouched.
    assert yaml.safe_load((root / "runs" / "tiny" / "recipe.yaml").read_text())["stages"]["finetune"]["epochs"] == 5


def test_bad_inputs_are_one_line_exit_2(first_run, tmp_path):
    root, recipe, _, _ = first_run
    cases = [
        (["run", str(tmp_path / "missing.yaml")], "does not exist"),
        (["run", str(recipe), "--set", "stages.finetune.epoch=3"], "did you mean 'epochs'"),
        (["run", str(recipe), "--set", "measure.pue=0.5"], "PUE"),
        (["run", "quik"], "did you mean 'quick'"),
    ]
    for args, needle in cases:
        result = cli(root, *args)
        assert result.returncode == 2, (args, result.stderr)
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0], (args, result.stderr)


def test_runs_dir_that_is_a_file(first_run, tmp_path):
    root, recipe, _, _ = first_run
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = cli(root, "run", str(recipe), "--runs-dir", str(blocker), "--no-progress")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_kill_9_mid_stage_resumes_to_the_same_model(first_run, tmp_path):
    root, _, _, _ = first_run
    recipe = write_recipe(tmp_path / "r.yaml", root / "toy", name="killed", checkpoint_every_steps=3)
    args = [sys.executable, "-m", "greenlm", "run", str(recipe), "--runs-dir", str(tmp_path / "a"), "--no-progress"]
    proc = subprocess.Popen(args, env=env(tmp_path), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "a" / "killed" / ".work" / "finetune" / "state" / "train" / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["step"] >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the stage finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "a" / "killed" / "finetune").exists()  # no stage that looks finished
    resumed = subprocess.run(args, env=env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    # Uninterrupted, in a separate runs folder (so nothing is reused from the first).
    straight = cli(tmp_path, *args[3:-3], "--runs-dir", str(tmp_path / "b"), "--no-progress")
    assert straight.returncode == 0, straight.stderr
    history = lambda root: json.loads((root / "killed" / "finetune" / "metrics.json").read_text())["train"]  # noqa: E731
    assert history(tmp_path / "a")["history"] == history(tmp_path / "b")["history"]
    a = load_file(tmp_path / "a" / "killed" / "finetune" / "model.safetensors")
    b = load_file(tmp_path / "b" / "killed" / "finetune" / "model.safetensors")
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, (different, [float((a[k] - b[k]).abs().max()) for k in different])
    # The price tag counts the killed attempt too (up to its last snapshot) and says so.
    tag = json.loads((tmp_path / "a" / "killed" / "finetune" / "pricetag.json").read_text())
    assert tag["meta"]["attempts"] == 2 and "2 attempts" in tag["warnings"][-1]
    assert json.loads((tmp_path / "b" / "killed" / "finetune" / "pricetag.json").read_text())["meta"].get(
        "attempts") is None


def test_bad_task_or_teacher_leaves_no_run_folder(first_run, tmp_path):
    root, _, _, _ = first_run
    for name, changes in (("badtask", {"task": str(tmp_path / "nowhere")}), ("badteacher", {"teacher": str(tmp_path / "none")})):
        data = {**yaml.safe_load(write_recipe(tmp_path / "r.yaml", root / "toy", name=name).read_text()), **changes}
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
        result = cli(root, "run", str(tmp_path / "r.yaml"), "--runs-dir", str(tmp_path / "runs"), "--no-progress")
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert not (tmp_path / "runs" / name).exists()


@pytest.mark.parametrize("failure", ["oserror", "safetensors"])
def test_disk_full_in_a_later_stage_keeps_earlier_ones(first_run, tmp_path, monkeypatch, failure):
    import errno

    from safetensors import SafetensorError

    from greenlm.common import GreenlmError
    from greenlm.pipeline import runner
    from greenlm.pipeline.schema import parse_recipe

    root, _, _, _ = first_run
    monkeypatch.setenv("GREENLM_HOME", str(tmp_path / "home"))
    # beside the first run, whose finetune stage it reuses (no training here): a failure after a reused stage
    # keeps it as it keeps one it ran (runner._run_locked: every finished stage)
    runs, name = root / "runs", f"full-{failure}"
    data = yaml.safe_load(write_recipe(tmp_path / "r.yaml", root / "toy", name=name).read_text())
    data["stages"]["quantize"] = {"measure_speed": False}
    from greenlm.stage.registry import Method

    real = Method.run

    def failing(self, ctx, config):
        if self.name != "quantize":
            return real(self, ctx, config)
        if failure == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.onnx"))
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(Method, "run", failing)
    with pytest.raises(GreenlmError) as err:
        runner.run_recipe(parse_recipe(data), runs, progress=False, echo=lambda *a: None)
    message = str(err.value)
    assert "stage 'quantize' could not write its files" in message and "finished stages are kept (finetune)" in message
    assert ("No space left on device" if failure == "oserror" else "StorageFull") in message
    assert (runs / name / "finetune" / "stage.json").is_file()
    assert not (runs / name / "quantize").exists()
