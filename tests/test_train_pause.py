"""Carbon-aware pauses in the training loop (greenlm/train/pause.py, greenlm/schedule/pause.py): the threshold
policy's decisions on a hand-made series, a training that pauses on a fake clock (checkpoint saved at the pause,
same weights as an unpaused run, pauses recorded), killed during a pause and resumed, and the command line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import greenlm_in_process
import torch

from greenlm.common import GreenlmError
from greenlm.measure.grid_series import GridSeries
from greenlm.schedule.pause import ThresholdPause
from greenlm.schedule.wait import FakeClock
from greenlm.train import Callback, TrainConfig, train
from greenlm.train.pause import pausing

T0 = 1654041600  # 2022-06-01T00:00Z


def _series(tmp_path, values, region="X"):
    path = tmp_path / "grid.csv"
    lines = ["timestamp_utc,region,gco2_per_kwh"]
    for h, v in enumerate(values):
        if v is not None:
            lines.append(f"{np.datetime64(T0 + 3600 * h, 's')}Z,{region},{v}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_threshold_policy_decisions(tmp_path):
    series = GridSeries.load(_series(tmp_path, [100, 500, 600, None, 200, 700, 700, 700]))
    policy = ThresholdPause(series, None, 300, FakeClock(T0))
    assert policy.paused_until(T0 + 1800) is None  # 100 <= 300: run
    assert policy.paused_until(T0 + 3600 + 60) == T0 + 3 * 3600  # 500, 600, then an unknown hour: resume there
    assert policy.paused_until(T0 + 5 * 3600) == T0 + 8 * 3600  # 700 x3, then past the series' end
    bounded = ThresholdPause(series, "X", 300, FakeClock(T0), max_pause_h=2)
    assert bounded.paused_until(T0 + 5 * 3600 + 60) == T0 + 5 * 3600 + 60 + 7200  # no clean hour within 2 h
    assert policy.paused_until(T0 + 3 * 3600 + 10) is None  # a gap never pauses
    assert policy.paused_until(T0 + 99 * 3600) is None  # outside the series
    assert "above 300" in policy.describe(T0 + 3600)
    with pytest.raises(GreenlmError, match="pause-above"):
        ThresholdPause(series, "X", -1, FakeClock(T0))


class _Flip:
    """A policy that pauses for an hour at its 3rd and 7th question (what the loop asks before each step)."""

    def __init__(self, clock):
        self.clock, self.asked = clock, 0

    def paused_until(self, now_s):
        self.asked += 1
        return now_s + 3600 if self.asked in (3, 7) else None


def _setup(toy_task, seed=0):
    from greenlm.data import encode_split
    from greenlm.models import TinySpec, build_tiny_classifier

    model, tok = build_tiny_classifier(TinySpec(layers=1, hidden=16, heads=2, ffn=16, vocab=60), list(toy_task.labels),
                                       toy_task.split("train").text_a, seed=seed)
    return model, tok, encode_split(toy_task.split("train"), tok, 32)


def test_a_paused_run_checkpoints_and_ends_like_an_unpaused_one(toy_task, tmp_path):
    config = TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, precision="fp32", checkpoint_every_steps=1000)
    straight, tok, data = _setup(toy_task)
    ref = train(straight, data, None, config, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "a", progress=False)
    paused, _, _ = _setup(toy_task)
    clock = FakeClock(T0)
    seen_checkpoints = []

    class Watch(Callback):
        def on_step_end(self, state):
            seen_checkpoints.append((tmp_path / "b" / "checkpoint").exists())

    with pausing(_Flip(clock)):
        res = train(paused, data, None, config, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "b",
                    callbacks=[Watch()], progress=False)
    assert [p["at_step"] for p in res.state.pauses] == [2, 6]
    assert all(p["paused_s"] == 3600 for p in res.state.pauses) and sum(clock.slept) == 7200
    assert seen_checkpoints[1] is False and seen_checkpoints[2] is True  # saved at the first pause (before step 3)
    for (name, a), (_, b) in zip(straight.state_dict().items(), paused.state_dict().items()):
        assert torch.equal(a, b), name
    assert ref.state.step == res.state.step and not ref.state.pauses


class _Killed(Exception):
    pass


def test_killed_during_a_pause_resumes_from_its_checkpoint(toy_task, tmp_path):
    config = TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, precision="fp32", checkpoint_every_steps=1000)
    straight, tok, data = _setup(toy_task)
    train(straight, data, None, config, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "a", progress=False)

    class KillWhileAsleep(FakeClock):
        def sleep(self, seconds):
            raise _Killed()

    first, _, _ = _setup(toy_task)
    with pytest.raises(_Killed), pausing(_Flip(KillWhileAsleep(T0))):
        train(first, data, None, config, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "b", progress=False)
    resumed, _, _ = _setup(toy_task, seed=7)  # a new process: the weights come from the pause's checkpoint
    res = train(resumed, data, None, config, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "b", progress=False)
    assert res.state.step == 8
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_greenlm_train_pauses_on_a_sped_up_clock(toy_task_dir, tmp_path):
    hours = [500, 500, 100] + [100] * 30  # dirty for the first two hours
    grid = _series(tmp_path, hours)
    out = tmp_path / "m"
    args = [sys.executable, "-m", "greenlm", "train", "--task", str(toy_task_dir), "--model",
            "tiny:layers=1,hidden=16,heads=2,ffn=16,vocab=60", "--epochs", "1", "--max-length", "32", "--out", str(out),
            "--no-progress", "--pause-above", "300", "--grid", str(grid), "--now", "2022-06-01T00:30Z",
            "--clock-speed", "1e6"]
    run = greenlm_in_process(*args[3:])  # the entry point, in this process; the clock is the command's own
    assert run.returncode == 0, run.stderr
    assert "pausing at step 0 until 2022-06-01T02:00:00Z (1.50 h)" in run.stderr
    pauses = json.loads((out / "metrics.json").read_text())["train"]["pauses"]
    assert len(pauses) == 1 and pauses[0]["from_utc"].startswith("2022-06-01T00:30")
    # priced on the grid it paused on, hour by hour, on the simulated clock: the paused hour holds only the memory
    # the sleeping process keeps; what ran in the dirty first hour and the clean third is priced at their intensities
    tag = json.loads((out / "pricetag.json").read_text())
    assert tag["meta"]["clock"].startswith("simulated: started at 2022-06-01T00:30:00Z")
    assert tag["intensity_kind"] == "time-series" and "grid.csv" in tag["intensity_source"]
    hours = {r["hour_utc"]: r for r in tag["by_hour"]}
    assert list(hours)[:3] == ["2022-06-01T00:00Z", "2022-06-01T01:00Z", "2022-06-01T02:00Z"]
    assert [hours[h]["intensity_g_per_kwh"] for h in list(hours)[:3]] == [500, 500, 100]
    assert sum(r["energy_kwh"] for r in tag["by_hour"]) == pytest.approx(tag["energy_kwh"], rel=1e-6)
    assert sum(r["co2e_kg"] for r in tag["by_hour"]) == pytest.approx(tag["co2e_kg"], rel=1e-6)
    assert "ram" in tag["energy_source"] and hours["2022-06-01T01:00Z"]["energy_kwh"] > 0
    assert tag["wall_s"] > 3600  # the simulated span, pause included
    bad = greenlm_in_process(*args[3:-6], "--pause-above", "300")
    assert bad.returncode == 2 and "--pause-above needs --grid" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_plan_policy_runs_only_in_the_planned_hours(tmp_path):
    """--run-within: the Pause & Resume plan (the cleanest whole hours before the deadline) is made once, on the
    --grid series, and the policy pauses outside its hours; past them, the job runs on."""
    from greenlm.schedule.job import Job
    from greenlm.schedule.pause import plan_pause_policy

    grid = _series(tmp_path, [500, 100, 600, 150, 400, 120, 800, 900])
    notes = []
    policy = plan_pause_policy(grid=str(grid), region="X", clock=FakeClock(T0 + 600), run_within="6h",
                               job=Job(2.5, None, "test"), log_plan=notes.append)
    # 3 hours needed before 06:00: the cleanest are 01:00 (100), 05:00 (120) and 03:00 (150)
    assert policy.blocks_s == [(T0 + 3600, T0 + 7200), (T0 + 3 * 3600, T0 + 4 * 3600), (T0 + 5 * 3600, T0 + 6 * 3600)]
    assert policy.paused_until(T0 + 600) == T0 + 3600  # 00:10 is not planned: wait for 01:00
    assert policy.paused_until(T0 + 3600 + 5) is None
    assert policy.paused_until(T0 + 2 * 3600) == T0 + 3 * 3600
    assert policy.paused_until(T0 + 6 * 3600 + 1) is None  # the plan is used up: run on
    assert "outside the Pause & Resume plan" in policy.describe(T0 + 2 * 3600)
    assert "2 pause(s)" in notes[0] and "2022-06-01T01:00Z..2022-06-01T02:00Z" in notes[0]


def test_greenlm_train_runs_a_pause_and_resume_plan(toy_task_dir, tmp_path):
    grid = _series(tmp_path, [500, 500, 100] + [700] * 30)
    out = tmp_path / "m"
    args = [sys.executable, "-m", "greenlm", "train", "--task", str(toy_task_dir), "--model",
            "tiny:layers=1,hidden=16,heads=2,ffn=16,vocab=60", "--epochs", "1", "--max-length", "32", "--out", str(out),
            "--no-progress", "--grid", str(grid), "--now", "2022-06-01T00:30Z", "--clock-speed", "1e6"]
    run = greenlm_in_process(*args[3:], "--run-within", "5h", "--job-duration", "20m")
    assert run.returncode == 0, run.stderr
    assert "Pause & Resume plan for X before 2022-06-01T05:00Z: run in 2022-06-01T02:00Z..2022-06-01T03:00Z" in run.stderr
    pauses = json.loads((out / "metrics.json").read_text())["train"]["pauses"]
    assert len(pauses) == 1 and pauses[0]["to_utc"] == "2022-06-01T02:00:00Z"
    tag = json.loads((out / "pricetag.json").read_text())
    trained = [r for r in tag["by_hour"] if r["hour_utc"] == "2022-06-01T02:00Z"]
    assert trained and trained[0]["intensity_g_per_kwh"] == 100
    for bad, needle in ((["--run-within", "5h"], "--run-within needs --job-duration"),
                        (["--run-within", "5h", "--job-duration", "1h", "--pause-above", "300"], "not both"),
                        (["--job-duration", "1h"], "give --run-within too")):
        result = greenlm_in_process(*args[3:-4], "--out", str(tmp_path / "bad"), *bad, *args[-4:])
        assert result.returncode == 2 and needle in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
