"""Scheduling algorithms against brute force on random series (seeded loops: hypothesis is not a dependency),
the forecaster's use of the past only, one job's plan end to end, and the simulation's speed."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from greenlm.common import GreenlmError
from greenlm.measure.grid_series import GridSeries
from greenlm.schedule.forecast import FORECASTERS, get_forecaster
from greenlm.schedule.job import Job, job_from_options, parse_duration_h
from greenlm.schedule.plan import best_hours, best_start, blocks, plan_grams, plan_job, rank_regions, window_sums
from greenlm.schedule.simulate import flexible_start_all, pause_resume_all, scenarios, simulate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "carbon" / "eia930_us_balancing_authorities_2022_hourly.csv"
T0 = 1640995200  # 2022-01-01T00:00Z


def brute_best_subset(x, n, q):
    return min(plan_grams(np.array(c), x, 1.0, q) for c in itertools.combinations(range(len(x)), n))


def test_durations_parse():
    assert parse_duration_h("90m") == 1.5 and parse_duration_h("6h") == 6 and parse_duration_h("2d") == 48
    assert parse_duration_h(" 30 min ") == 0.5 and parse_duration_h("5400s") == 1.5
    for bad in ("0h", "-2h", "6", "six hours", ""):
        with pytest.raises(GreenlmError):
            parse_duration_h(bad)


def test_flexible_start_and_pause_resume_equal_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(300):
        hours = int(rng.integers(1, 11))
        n = int(rng.integers(1, hours + 1))
        x = rng.uniform(0, 600, hours).round(int(rng.integers(0, 2)))  # rounding makes ties
        q = float(rng.choice([0.0, 0.1, 0.5, 3.0]))
        u = best_start(x, n)
        assert x[u:u + n].sum() == pytest.approx(min(x[v:v + n].sum() for v in range(hours - n + 1)))
        chosen = best_hours(x, n, x * q)
        assert len(chosen) == n and len(set(chosen.tolist())) == n
        assert plan_grams(chosen, x, 1.0, q) == pytest.approx(brute_best_subset(x, n, q), abs=1e-6)


def test_pause_cost_keeps_a_job_in_one_block():
    x = np.array([100.0, 10, 100, 10, 100, 10])
    assert best_hours(x, 3).tolist() == [1, 3, 5]  # free pauses: the three cheap hours
    assert best_hours(x, 3, x * 10.0).tolist() == [1, 2, 3]  # resuming costs 10 hours' worth: one block
    assert blocks(np.array([1, 2, 5, 6, 7])) == [(1, 3), (5, 8)]


def test_window_sums_match_slices():
    x = np.arange(10.0) ** 1.5
    np.testing.assert_allclose(window_sums(x, 3), [x[i:i + 3].sum() for i in range(8)])


def test_vectorised_simulation_equals_a_python_loop_per_start():
    rng = np.random.default_rng(1)
    x = rng.uniform(50, 500, 400)
    f = rng.uniform(50, 500, (60, 30))  # any forecast matrix: the loop must take the same decisions
    starts = np.arange(200, 260)
    for d, h in ((1, 7), (3, 15), (6, 30), (5, 5)):
        now, fs_forecast, fs_oracle, _ = flexible_start_all(x, f, starts, d, h)
        pr_forecast, pr_oracle = pause_resume_all(x, f, starts, d, h)
        for k, s in enumerate(starts):
            window, fk = x[s:s + h], f[k, :h]
            sums = [window[u:u + d].sum() for u in range(h - d + 1)]
            fsums = [fk[u:u + d].sum() for u in range(h - d + 1)]
            assert now[k] == pytest.approx(sums[0])
            assert fs_oracle[k] == pytest.approx(min(sums))
            assert fs_forecast[k] == pytest.approx(sums[int(np.argmin(fsums))])
            assert pr_oracle[k] == pytest.approx(np.sort(window)[:d].sum())
            assert pr_forecast[k] == pytest.approx(window[np.argsort(fk, kind="stable")[:d]].sum())


def test_vectorised_pause_cost_plan_is_feasible_and_never_beats_the_exact_one():
    rng = np.random.default_rng(2)
    x = rng.uniform(50, 500, 300)
    starts = np.arange(100, 140)
    d, h, q = 3, 9, 0.5
    _, oracle = pause_resume_all(x, np.tile(x[:h], (len(starts), 1)), starts, d, h, pause_h=q)
    for k, s in enumerate(starts):
        exact = plan_grams(best_hours(x[s:s + h], d, x[s:s + h] * q), x[s:s + h], 1.0, q)
        assert oracle[k] >= exact - 1e-9


def test_forecaster_reads_only_the_past():
    rng = np.random.default_rng(3)
    x = 300 + 100 * np.sin(np.arange(24 * 30) * 2 * np.pi / 24) + rng.normal(0, 20, 24 * 30)
    issue = 24 * 20
    for forecaster in FORECASTERS.values():
        before = forecaster.forecast(x, issue, 48)
        changed = x.copy()
        changed[issue:] = rng.uniform(0, 1000, len(x) - issue)  # the future, perturbed
        np.testing.assert_array_equal(forecaster.forecast(changed, issue, 48), before)
        starts = np.array([issue, issue + 5])
        m = forecaster.matrix(x, starts, 30)
        later = x.copy()
        later[issue + 5:] += 500
        np.testing.assert_array_equal(forecaster.matrix(later, starts, 30), m)
    week = FORECASTERS["week-mean"].forecast(x, issue, 24)
    np.testing.assert_allclose(week[0], np.mean([x[issue - 24 * j] for j in range(1, 8)]))
    np.testing.assert_allclose(FORECASTERS["yesterday"].forecast(x, issue, 30), np.r_[x[issue - 24:issue], x[issue - 24:issue - 18]])


def csv_series(tmp_path, values_by_region: dict, name: str = "grid.csv") -> Path:
    lines = ["timestamp_utc,region,gco2_per_kwh"]
    for region, values in values_by_region.items():
        lines += [f"{np.datetime64(T0 + 3600 * i, 's')}Z,{region},{v:.3f}" for i, v in enumerate(values)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_decides_on_the_past_and_reports_forecast_and_oracle(tmp_path):
    rng = np.random.default_rng(4)
    days = 10
    hour = np.arange(24 * days)
    clean_noon = 400 - 300 * np.exp(-((hour % 24 - 12) ** 2) / 8) + rng.normal(0, 5, len(hour))
    path = csv_series(tmp_path, {"A": clean_noon, "B": clean_noon * 0.5})
    series = GridSeries.load(path, kind="average", scope="lifecycle")
    job = job_from_options("4h", 8.0, None, None)
    now = T0 + 3600 * 24 * 8  # midnight of day 9; the clean hours are around noon
    plan = plan_job(series, "A", job, now, 24, forecaster=get_forecaster(None))
    start = plan["flexible_start"]["forecast"]["hours_utc"][0][0]
    assert start[11:13] in ("10", "11")  # the window around noon
    fs = plan["flexible_start"]
    assert fs["oracle"]["realised"]["co2e_kg"] <= fs["forecast"]["realised"]["co2e_kg"] + 1e-12
    assert plan["pause_resume"]["oracle"]["realised"]["co2e_kg"] <= fs["oracle"]["realised"]["co2e_kg"] + 1e-12
    assert fs["forecast"]["saving"]["pct"] > 50
    assert plan["now"]["realised"]["co2e_kg"] == pytest.approx(8.0 * clean_noon[24 * 8:24 * 8 + 4].mean() / 1000)
    # perturbing the window (the future at decision time) changes realised figures, never the decision
    future = clean_noon.copy()
    future[24 * 8:] = rng.uniform(0, 800, len(future) - 24 * 8)
    other = plan_job(GridSeries.load(csv_series(tmp_path, {"A": future}, "future.csv")), "A", job, now, 24,
                     forecaster=get_forecaster(None))
    for method in ("flexible_start", "pause_resume"):
        assert other[method]["forecast"]["hours_utc"] == plan[method]["forecast"]["hours_utc"]
    ranking = rank_regions(series, ["A", "B"], job, now, 24, forecaster=get_forecaster(None))
    assert [r["region"] for r in ranking["regions"]] == ["B", "A"]
    assert ranking["regions"][0]["rank_on_mean"] == 1


def test_plan_refuses_what_it_cannot_answer(tmp_path):
    path = csv_series(tmp_path, {"A": np.full(24 * 9, 100.0)})
    series = GridSeries.load(path)
    job = job_from_options("6h", None, None, None)
    with pytest.raises(GreenlmError, match=r"has no A value for .*2022-01-10T00:00Z.*\(18 hours\)"):
        plan_job(series, "A", job, T0 + 3600 * (24 * 9 - 6), 24, forecaster=get_forecaster(None))
    with pytest.raises(GreenlmError, match=r"needs 169 h of A before"):
        plan_job(series, "A", job, T0 + 3600 * 24, 24, forecaster=get_forecaster(None))
    with pytest.raises(GreenlmError, match=r"deadline .* shorter than the job"):
        plan_job(series, "A", job, T0 + 3600 * 24 * 8, 5, forecaster=get_forecaster(None))
    forecast = GridSeries.load(csv_series(tmp_path, {"A": np.full(24 * 8 + 12, 90.0)}, "forecast.csv"))
    with pytest.raises(GreenlmError, match=r"forecast horizon shorter than the window.*\(12 of 24 h covered\)"):
        plan_job(series, "A", job, T0 + 3600 * 24 * 8, 24, forecast=forecast)


def test_live_plan_beyond_the_data_has_no_realised_figures(tmp_path):
    path = csv_series(tmp_path, {"A": 300 + 100 * np.cos(np.arange(24 * 9) * 2 * np.pi / 24)})
    series = GridSeries.load(path)
    plan = plan_job(series, "A", Job(3, 3.0, "test"), T0 + 3600 * (24 * 9 + 2), 12, forecaster=get_forecaster(None),
                    live=True)
    assert plan["mode"] == "live" and "realised" not in plan["flexible_start"]["forecast"]
    assert "oracle" not in plan["pause_resume"] and "not known yet" in plan["note"]


def test_energy_from_a_pricetag(tmp_path):
    (tmp_path / "pricetag.json").write_text('{"energy_kwh": 2.0, "wall_s": 7200}')
    job = job_from_options(None, None, str(tmp_path), "15m")
    assert job.duration_h == 2 and job.power_kw == pytest.approx(1.0) and job.pause_kwh == pytest.approx(0.25)
    longer = job_from_options("6h", None, str(tmp_path / "pricetag.json"), None)
    assert longer.energy_kwh == pytest.approx(6.0)
    (tmp_path / "pricetag.json").write_text('{"energy_kwh": null, "wall_s": 7200}')
    with pytest.raises(GreenlmError, match="no energy_kwh"):
        job_from_options(None, None, str(tmp_path), None)


def test_scenarios_follow_windows_and_budgets():
    plan = scenarios([4], [6], [0.25, 1.0])
    assert [(s.method, s.horizon_h) for s in plan] == [("flexible_start", 10), ("pause_resume", 10),
                                                       ("pause_resume", 5), ("pause_resume", 8)]


@pytest.mark.skipif(not SHARED.exists(), reason="shared carbon data not present")
def test_simulation_of_a_year_is_fast_and_sane():
    series = GridSeries.load(SHARED, kind="average", scope="lifecycle")
    t = time.perf_counter()
    result = simulate(series, ["CISO"], durations_h=(1, 3, 6, 12, 24), windows_h=(24,), budgets=())
    elapsed = time.perf_counter() - t
    print(f"\nsimulate: CISO, {result['meta']['starts']} start hours x 5 durations x 2 methods: {elapsed:.3f} s")
    assert elapsed < 30  # target < 10 s; generous for slow CI machines
    rows = result["rows"]
    assert result["meta"]["starts"] > 8000
    for r in rows:
        assert r["starts"] + r["skipped_starts"] == result["meta"]["starts"]
        if r["decision"] == "oracle":
            assert r["p10_saving_pct"] >= -1e-9  # the oracle never does worse than starting now
            forecast = next(f for f in rows if f["decision"] == "forecast" and
                            all(f[k] == r[k] for k in ("method", "duration_h", "slack")))
            assert r["total_saving_pct"] >= forecast["total_saving_pct"] - 1e-9
    fs6 = next(r for r in rows if r["method"] == "flexible_start" and r["duration_h"] == 6 and r["decision"] == "oracle")
    assert 10 < fs6["mean_saving_pct"] < 60  # CISO's solar noon: large daily swings
