"""``greenlm schedule`` and ``greenlm schedule simulate`` through the real entry point: a plan, the simulation's
files, and each bad input answered with one line and exit code 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

T0 = 1640995200  # 2022-01-01T00:00Z
DAYS = 10


def greenlm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "greenlm", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("grid")
    hour = np.arange(24 * DAYS)
    rng = np.random.default_rng(0)
    lines = ["timestamp_utc,region,gco2_per_kwh"]
    for region, scale in (("CISO", 1.0), ("BPAT", 0.2), ("ERCO", 1.4)):
        values = scale * (300 - 150 * np.cos((hour % 24 - 20) * 2 * np.pi / 24)) + rng.normal(0, 5, len(hour))
        lines += [f"{np.datetime64(T0 + 3600 * int(i), 's')}Z,{region},{v:.2f}" for i, v in zip(hour, values)]
    (folder / "grid.csv").write_text("\n".join(lines) + "\n")
    return folder / "grid.csv"


def test_schedule_json_plan_and_ranking(grid, tmp_path):
    run = greenlm("schedule", "--series", str(grid), "--region", "CISO", "--duration", "3h", "--within", "24h",
                  "--now", "2022-01-09T00:00Z", "--energy-kwh", "6", "--pause-cost", "10m", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    plan = json.loads(run.stdout)["plan"]
    assert plan["job"]["energy_kwh"] == 6 and plan["window_h"] == 24 and plan["mode"] == "replay"
    for method in ("flexible_start", "pause_resume"):
        assert set(plan[method]) == {"forecast", "oracle"}
        assert plan[method]["oracle"]["saving"]["pct"] >= plan[method]["forecast"]["saving"]["pct"] - 1e-9
    assert plan["series"]["path"].endswith("grid.csv") and plan["series"]["column"] == "gco2_per_kwh"
    run = greenlm("schedule", "--series", str(grid), "--regions", "CISO,BPAT,ERCO", "--duration", "90m", "--within",
                  "12h", "--now", "2022-01-09T06:00Z", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    ranked = [line.split()[1] for line in run.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert ranked[0] == "BPAT" and sorted(ranked) == ["BPAT", "CISO", "ERCO"]


def test_simulate_writes_csv_json_and_reports(grid, tmp_path):
    out = tmp_path / "sim"
    run = greenlm("schedule", "simulate", "--series", str(grid), "--regions", "CISO,BPAT", "--durations", "1,3",
                  "--windows", "6", "--pause-budgets", "0.5", "--out", str(out), "--no-figure", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = (out / "schedule_simulation.csv").read_text().splitlines()
    assert rows[0].startswith("region,method,duration_h,slack_kind,slack,horizon_h,decision,starts")
    assert len(rows) == 1 + 2 * 2 * 3 * 2  # regions x durations x (FS, P&R window, P&R budget) x decisions
    data = json.loads((out / "schedule_simulation.json").read_text())
    assert data["meta"]["forecaster"]["name"] == "week-mean-persist"
    assert "CISO" in run.stdout and "elapsed" not in run.stderr


def bad(grid: Path, tmp_path: Path, *args: str) -> str:
    run = greenlm("schedule", *args, cwd=tmp_path)
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("greenlm: error: "), run.stderr
    assert list(tmp_path.iterdir()) == [], "nothing may be written on bad input"
    return lines[0]


@pytest.mark.parametrize("change, message", [
    ({"--region": "CISOO"}, r"unknown region 'CISOO'.*closest: CISO"),
    ({"--now": "2022-01-10T12:00Z"}, r"no CISO value for 2022-01-11T00:00Z\.\.2022-01-11T11:00Z \(12 hours\)"),
    ({"--within": "2h"}, r"deadline \(--within 2h\) is shorter than the job \(3 h\)"),
    ({"--duration": "-3h"}, r"--duration '-3h' is not a duration > 0"),
    ({"--duration": "0h"}, r"--duration must be greater than 0"),
], ids=["unknown-region", "window-not-covered", "deadline-too-short", "negative-duration", "zero-duration"])
def test_bad_inputs_are_one_line_and_exit_2(grid, tmp_path, change, message):
    import re

    options = {"--series": str(grid), "--region": "CISO", "--duration": "3h", "--within": "24h",
               "--now": "2022-01-09T00:00Z", **change}
    line = bad(grid, tmp_path, *(f"{k}={v}" for k, v in options.items()))  # --k=v: a value may start with "-"
    assert re.search(message, line), line


def test_unknown_format_and_short_forecast(grid, tmp_path):
    other = tmp_path.parent / f"{tmp_path.name}-other.csv"
    other.write_text("when,where,how_much\n2022-01-01,X,1\n")
    line = bad(grid, tmp_path, "--series", str(other), "--duration", "1h", "--within", "2h")
    assert "columns found: when, where, how_much" in line
    forecast = tmp_path.parent / f"{tmp_path.name}-forecast.csv"
    forecast.write_text("timestamp_utc,region,gco2_per_kwh\n" + "".join(
        f"{np.datetime64(T0 + 3600 * (24 * 8 + i), 's')}Z,CISO,{100 + i}\n" for i in range(12)))
    line = bad(grid, tmp_path, "--series", str(grid), "--region", "CISO", "--duration", "3h", "--within", "24h",
               "--now", "2022-01-09T00:00Z", "--forecast", str(forecast))
    assert "forecast horizon shorter than the window" in line and "(12 of 24 h covered)" in line


def test_simulate_bad_input_writes_nothing(grid, tmp_path):
    run = greenlm("schedule", "simulate", "--series", str(grid), "--regions", "CISO,NOPE", "--out", str(tmp_path / "sim"),
                  cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "unknown region 'NOPE'" in run.stderr
    assert not (tmp_path / "sim").exists()


def test_schedule_a_run_again_from_its_report(grid, tmp_path):
    run_dir = tmp_path / "runs" / "quick"
    run_dir.mkdir(parents=True)
    rows = [{"model": "finetune", "stage_wall_s": 5400.0, "stage_energy_kwh": 0.3},
            {"model": "distill", "stage_wall_s": 5400.0, "stage_paused_s": 3600.0, "stage_energy_kwh": 0.1}]  # paused 1 h
    (run_dir / "report.json").write_text(json.dumps({"rows": rows}))
    run = greenlm("schedule", "--series", str(grid), "--region", "CISO", "--run", str(run_dir), "--within", "24h",
                  "--now", "2022-01-09T00:00Z", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)["plan"]["job"]
    assert job["duration_h"] == 2.0 and job["energy_kwh"] == pytest.approx(0.4)
    assert "its stages took 7200 s" in job["energy_source"]  # the hour spent paused is not the job's
    bad = greenlm("schedule", "--series", str(grid), "--region", "CISO", "--run", str(tmp_path / "none"), "--within",
                  "24h", "--now", "2022-01-09T00:00Z", cwd=tmp_path)
    assert bad.returncode == 2 and "no earlier run at" in bad.stderr
