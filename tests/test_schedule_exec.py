"""``greenlm schedule exec``: waits on an injectable clock until the plan's start (never sleeping for real in the
unit test), then runs the command and passes its exit code on."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from greenlm.common import GreenlmError
from greenlm.schedule.job import parse_time_s
from greenlm.schedule.request import exec_request
from greenlm.schedule.wait import FakeClock, wait_until

T0 = 1640995200  # 2022-01-01T00:00Z


@pytest.fixture()
def grid(tmp_path):
    hour = np.arange(24 * 9)
    values = 300 - 200 * np.exp(-((hour % 24 - 13) ** 2) / 6)  # clean around 13:00 UTC every day
    lines = ["timestamp_utc,region,gco2_per_kwh"] + [
        f"{np.datetime64(T0 + 3600 * int(i), 's')}Z,CISO,{v:.3f}" for i, v in zip(hour, values)]
    path = tmp_path / "grid.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_wait_until_sleeps_on_the_clock_only():
    clock = FakeClock(1000.0)
    assert wait_until(1000.0 + 150, clock, step_s=60) == 3
    assert clock.slept == [60, 60, 30] and clock.now() == 1150.0
    assert wait_until(900.0, clock) == 0  # the start has passed: no wait


def test_exec_waits_for_the_planned_start_then_runs(grid):
    decided_at = T0 + 3600 * (24 * 8 + 2) + 600  # day 9, 02:10 UTC
    clock = FakeClock(float(decided_at))
    ran, logs = [], []

    def run(argv):
        ran.append((argv, clock.now()))
        return 7

    code = exec_request(command=["train", "--fast"], clock=clock, run=run, log=logs.append, series=str(grid),
                        region="CISO", duration="2h", within="18h")
    assert code == 7
    (argv, started), = ran
    assert argv == ["train", "--fast"]
    assert started == parse_time_s("2022-01-09T12:00Z")  # the 2 h around the clean 13:00
    assert sum(clock.slept) == pytest.approx(started - decided_at)
    assert "start at 2022-01-09T12:00Z" in logs[0]


def test_exec_refuses_without_a_command(grid):
    with pytest.raises(GreenlmError, match="give the command after --"):
        exec_request(command=[], clock=FakeClock(T0), series=str(grid), region="CISO", duration="1h", within="2h")


def test_exec_cli_passes_the_exit_code_on(grid, tmp_path):
    run = subprocess.run([sys.executable, "-m", "greenlm", "schedule", "exec", "--series", str(grid), "--region", "CISO",
                          "--duration", "1h", "--within", "6h", "--now", "2022-01-09T10:00Z", "--clock-speed", "1e9",
                          "--", sys.executable, "-c", "raise SystemExit(5)"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert run.returncode == 5, run.stderr
    assert "start at 2022-01-09T13:00Z" in run.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP/SIGCONT are POSIX")
def test_exec_stops_the_command_while_the_grid_is_dirty(tmp_path):
    """A real child process, a clock 3,600 times faster than real time (an hour per second): the command is stopped
    by signal through the dirty hour (its own timestamps show the gap) and continued after; its exit code passes."""
    from greenlm.schedule.wait import ScaledClock

    values = [100] * (24 * 8) + [100, 500] + [100] * 30  # a week of history for the forecaster; day 9 01:00 dirty
    lines = ["timestamp_utc,region,gco2_per_kwh"] + [
        f"{np.datetime64(T0 + 3600 * h, 's')}Z,CISO,{v}" for h, v in enumerate(values)]
    grid = tmp_path / "grid.csv"
    grid.write_text("\n".join(lines) + "\n")
    ticks = tmp_path / "ticks.txt"
    child = ("import time,sys\nfor _ in range(40):\n    open(sys.argv[1], 'a').write(f'{time.time()}\\n')\n"
             "    time.sleep(0.05)\nsys.exit(3)")
    logs = []
    clock = ScaledClock(T0 + 8 * 86400 + 3000, 3600.0)  # 00:50; dirty from 01:00, i.e. ~0.17 s from now
    code = exec_request(command=[sys.executable, "-c", child, str(ticks)], clock=clock, log=logs.append,
                        series=str(grid), region="CISO", duration="1h", within="1h", pause_above=300)
    assert code == 3
    stamps = [float(x) for x in ticks.read_text().split()]
    assert len(stamps) == 40
    assert max(b - a for a, b in zip(stamps, stamps[1:])) > 0.6  # stopped for most of a (1 s) dirty hour
    assert any("paused the command (SIGSTOP)" in m for m in logs) and any("resumed" in m for m in logs)
    assert any("MB held while stopped" in m for m in logs)
