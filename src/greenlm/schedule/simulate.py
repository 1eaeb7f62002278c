"""Replay every start hour of a series: how much would Flexible Start and Pause & Resume save, deciding on the
forecast (realised) and with perfect knowledge (oracle)?

For a job of D hours and a horizon of H hours from its start hour s (H = D + window for the windows; for the
Pause & Resume budgets b, H = D + floor(b D), the budget being the allowed growth of the job's span as in Dodge
et al. 2022), all starts s at once, with numpy (no loop over start hours):

    A[t]        = sum_{k<D} x[t+k]                        window sums from one cumulative sum
    now(s)      = A[s]
    FS oracle   = min_{u<=H-D} A[s+u]                     min over a sliding_window_view of A
    FS forecast = A[s+u*], u* = argmin_u sum_{k<D} F[s, u+k]   (F: the forecast issued at s, forecast.py)
    PR oracle   = sum of the D smallest of x[s:s+H]         np.partition on a sliding_window_view of x
    PR forecast = sum of x at the D hours the forecast ranks cheapest   np.argpartition on F[s, :H]

With a pause cost (pause_h of job running per resumption, emitted in the hour it resumes), Pause & Resume adds
it to the D hours so chosen and keeps the Flexible Start plan instead when that is cheaper (in the forecast for
the forecast's decision, in x for the oracle): a feasible plan, not always the optimum (`greenlm schedule` on
one job solves it exactly). Saving(s) = (now - plan) / now, per start; reported as mean, median, p10, p90, and
the total (sum of savings over sum of `now`: the fleet-wide figure).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from greenlm.common import GreenlmError
from greenlm.measure.grid_series import S_PER_HOUR, GridSeries, iso_hour
from greenlm.schedule.forecast import FORECASTERS, SameHourForecaster, get_forecaster
from greenlm.schedule.plan import earliest_argmin, window_sums

DEFAULT_DURATIONS_H = (1, 3, 6, 12, 24, 72)
DEFAULT_WINDOWS_H = (6, 12, 24)
DEFAULT_BUDGETS = (0.25, 0.5, 1.0)
FIRST_START_H = max(f.history_h for f in FORECASTERS.values())  # every forecaster compared on the same starts


@dataclass(frozen=True)
class Scenario:
    method: str  # flexible_start | pause_resume
    duration_h: int
    slack_kind: str  # window (hours added) | budget (fraction of the duration added)
    slack: float
    horizon_h: int


def scenarios(durations_h, windows_h, budgets) -> list[Scenario]:
    out = []
    for d in durations_h:
        for w in windows_h:
            out += [Scenario("flexible_start", d, "window", w, d + w), Scenario("pause_resume", d, "window", w, d + w)]
        for b in budgets:
            out.append(Scenario("pause_resume", d, "budget", b, d + int(math.floor(b * d + 1e-9))))
    return out


# ---- the vectorised core: one region, one scenario, every start ----------------------------------------


def flexible_start_all(xz: np.ndarray, f: np.ndarray, starts: np.ndarray, d: int, h: int):
    """(now, forecast's plan, oracle) in g per kWh-hour slot, for every start; xz: x with gaps as 0."""
    a = window_sums(xz, d)
    now = a[starts]
    oracle = sliding_window_view(a, h - d + 1)[starts].min(axis=1)
    c = np.concatenate((np.zeros((len(starts), 1)), np.cumsum(f[:, :h], axis=1)), axis=1)
    u = earliest_argmin(c[:, d:] - c[:, :-d], axis=1)  # the forecast's cheapest start (earliest on ties)
    return now, a[starts + u], oracle, u


def pause_resume_all(xz: np.ndarray, f: np.ndarray, starts: np.ndarray, d: int, h: int, pause_h: float = 0.0):
    """(forecast's plan, oracle) for Pause & Resume over every start: the d cheapest of h hours (+ pauses)."""
    v = sliding_window_view(xz, h)[starts]  # (starts, h): a view, no copy
    fh = f[:, :h] + 1e-9 * (np.abs(f).max() + 1.0) / h * np.arange(h)  # earlier hours win the forecast's ties
    pick = np.argpartition(fh, d - 1, axis=1)[:, :d]
    realised = np.take_along_axis(v, pick, axis=1).sum(axis=1)
    if pause_h == 0:
        return realised, np.partition(v, d - 1, axis=1)[:, :d].sum(axis=1)
    oracle_pick = np.argpartition(v, d - 1, axis=1)[:, :d]
    oracle = np.take_along_axis(v, oracle_pick, axis=1).sum(axis=1) + pause_h * _resume_sum(v, oracle_pick)
    realised = realised + pause_h * _resume_sum(v, pick)
    expected = np.take_along_axis(fh, pick, axis=1).sum(axis=1) + pause_h * _resume_sum(fh, pick)
    # keep the contiguous (Flexible Start over the same horizon) plan where it is cheaper, as the decision sees it
    a = window_sums(xz, d)
    fs_oracle = sliding_window_view(a, h - d + 1)[starts].min(axis=1)
    oracle = np.minimum(oracle, fs_oracle)
    c = np.concatenate((np.zeros((len(starts), 1)), np.cumsum(fh, axis=1)), axis=1)
    fs_sums = c[:, d:] - c[:, :-d]
    u = earliest_argmin(fs_sums, axis=1)
    contiguous = fs_sums[np.arange(len(starts)), u] <= expected
    realised = np.where(contiguous, a[starts + u], realised)
    return realised, oracle


def _resume_sum(values: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """Per row: the sum of values at the hours where a chosen set resumes after a gap (its first hour excluded)."""
    chosen = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(chosen, pick, True, axis=1)
    starts = chosen.copy()
    starts[:, 1:] &= ~chosen[:, :-1]
    starts[np.arange(len(values)), np.argmax(chosen, axis=1)] = False
    return (values * starts).sum(axis=1)


# ---- the whole simulation -------------------------------------------------------------------------------


def simulate(series: GridSeries, regions: list[str] | None, durations_h=DEFAULT_DURATIONS_H,
             windows_h=DEFAULT_WINDOWS_H, budgets=DEFAULT_BUDGETS, forecaster: SameHourForecaster | None = None,
             pause_h: float = 0.0) -> dict:
    """Rows (one per region x scenario x decision) of saving statistics, and what they were computed on."""
    forecaster = forecaster or get_forecaster(None)
    names = [series.region_name(r) for r in (regions or series.regions)]
    durations_h = _whole_hours(durations_h, "--durations")
    windows_h = _whole_hours(windows_h, "--windows", allow_zero=True) if len(windows_h) else []
    budgets = [float(b) for b in budgets]
    if any(not (b >= 0 and math.isfinite(b)) for b in budgets):
        raise GreenlmError(f"--pause-budgets must be fractions >= 0 (0.5 = the job may take 50% longer), got {budgets}")
    plan = scenarios(durations_h, windows_h, budgets)
    if not plan:
        raise GreenlmError("nothing to simulate: give --windows or --pause-budgets")
    longest = max(s.horizon_h for s in plan)
    starts = np.arange(FIRST_START_H, series.n_hours - longest + 1)
    if starts.size == 0:
        raise GreenlmError(f"{series.source.path} has {series.n_hours} h: too short for {FIRST_START_H} h of forecast "
                           f"history and a {longest} h horizon")
    t0 = time.perf_counter()
    rows = []
    for region in names:
        rows += _simulate_region(series.values(region), region, forecaster, plan, starts, pause_h)
    elapsed = time.perf_counter() - t0
    return {
        "rows": rows,
        "best_regions": best_regions(rows, {r: series.mean(r) for r in names}) if len(names) > 1 else [],
        "meta": {
            "series": series.source.to_dict(),
            "regions": names,
            "forecaster": {"name": forecaster.name, "about": forecaster.about},
            "pause_h": pause_h,
            "durations_h": durations_h, "windows_h": windows_h, "budgets": budgets,
            "starts": int(starts.size),
            "first_start_utc": iso_hour(series.start_s + S_PER_HOUR * int(starts[0])),
            "last_start_utc": iso_hour(series.start_s + S_PER_HOUR * int(starts[-1])),
            "scenarios_per_region": len(plan),
            "elapsed_s": elapsed,
            "mean_gco2_per_kwh": {r: series.mean(r) for r in names},
        },
    }


def _simulate_region(x, region, forecaster, plan, starts, pause_h) -> list[dict]:
    x = np.asarray(x, dtype=np.float64)
    missing = np.concatenate(([0], np.cumsum(np.isnan(x))))
    xz = np.nan_to_num(x, nan=0.0)
    f = forecaster.matrix(x, starts, max(s.horizon_h for s in plan))
    f_missing = np.concatenate((np.zeros((len(starts), 1)), np.cumsum(np.isnan(f), axis=1)), axis=1)
    f = np.nan_to_num(f, nan=0.0)
    rows = []
    for sc in plan:
        d, h = sc.duration_h, sc.horizon_h
        ok = (missing[starts + h] - missing[starts] == 0) & (f_missing[:, h] == 0)  # gaps: the start is skipped
        s, fs = starts[ok], f[ok]
        now, fs_forecast, fs_oracle, _ = flexible_start_all(xz, fs, s, d, h)
        if sc.method == "flexible_start":
            plans = {"forecast": fs_forecast, "oracle": fs_oracle}
        else:
            pr_forecast, pr_oracle = pause_resume_all(xz, fs, s, d, h, pause_h)
            plans = {"forecast": pr_forecast, "oracle": pr_oracle}
        oracle_total = now.sum() - plans["oracle"].sum()
        for decision, g in plans.items():
            rows.append(_stats(region, sc, decision, now, g, d, oracle_total, int((~ok).sum())))
    return rows


def _stats(region, sc, decision, now, plan, d, oracle_total, skipped) -> dict:
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(now > 0, 100.0 * (now - plan) / now, 0.0) + 0.0  # + 0.0: no "-0.0"
    total = now.sum() - plan.sum()
    return {
        "region": region, **asdict(sc), "decision": decision, "starts": int(now.size), "skipped_starts": skipped,
        "mean_saving_pct": float(pct.mean()),
        "median_saving_pct": float(np.median(pct)),
        "p10_saving_pct": float(np.percentile(pct, 10)),
        "p90_saving_pct": float(np.percentile(pct, 90)),
        "total_saving_pct": float(100.0 * total / now.sum()),
        "mean_now_gco2_per_kwh": float(now.mean() / d),
        "mean_plan_gco2_per_kwh": float(plan.mean() / d),
        # the oracle saves nothing (no slack, e.g. floor(0.25 x 3 h) = 0): no share to capture
        "captured_pct": float(100.0 * total / oracle_total) if oracle_total > 1e-9 * now.sum() else None,
    }


def best_regions(rows: list[dict], mean_gco2_per_kwh: dict) -> list[dict]:
    """Per job (method, duration, slack): the region whose forecast-decided plans emit least on average, and the
    region with the lowest mean intensity."""
    best, lowest_mean = {}, min(mean_gco2_per_kwh, key=mean_gco2_per_kwh.get)
    for r in rows:
        if r["decision"] != "forecast":
            continue
        key = (r["method"], r["duration_h"], r["slack_kind"], r["slack"])
        if key not in best or r["mean_plan_gco2_per_kwh"] < best[key]["mean_plan_gco2_per_kwh"]:
            best[key] = r
    return [{"method": k[0], "duration_h": k[1], "slack_kind": k[2], "slack": k[3], "region": r["region"],
             "mean_plan_gco2_per_kwh": r["mean_plan_gco2_per_kwh"], "lowest_mean_region": lowest_mean,
             "lowest_mean_gco2_per_kwh": mean_gco2_per_kwh[lowest_mean]} for k, r in best.items()]


def _whole_hours(values, what: str, allow_zero: bool = False) -> list[int]:
    out = []
    for v in values:
        if not (float(v) == int(float(v)) and (int(float(v)) > 0 or (allow_zero and int(float(v)) == 0))):
            raise GreenlmError(f"{what} takes whole hours {'>= 0' if allow_zero else '> 0'}, got {v!r}")
        out.append(int(float(v)))
    if not out:
        raise GreenlmError(f"{what} is empty")
    return out


CSV_COLUMNS = ("region", "method", "duration_h", "slack_kind", "slack", "horizon_h", "decision", "starts",
               "skipped_starts", "mean_saving_pct", "median_saving_pct", "p10_saving_pct", "p90_saving_pct",
               "total_saving_pct", "mean_now_gco2_per_kwh", "mean_plan_gco2_per_kwh", "captured_pct")


def rows_csv(rows: list[dict]) -> str:
    lines = [",".join(CSV_COLUMNS)]
    for r in rows:
        lines.append(",".join("" if r[c] is None else (f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]))
                              for c in CSV_COLUMNS))
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, out_dir, figure: bool = True) -> dict:
    """schedule_simulation.csv, .json and (matplotlib permitting) .png in ``out_dir``, each written atomically.
    Returns the paths written and, when no figure was drawn, why."""
    from pathlib import Path

    from greenlm.common import atomic_write_json, atomic_write_text
    from greenlm.schedule.figures import figure_unavailable_reason, savings_figure

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GreenlmError(f"--out {out} is a file: give a folder")
    out.mkdir(parents=True, exist_ok=True)
    written = {"csv": out / "schedule_simulation.csv", "json": out / "schedule_simulation.json"}
    atomic_write_text(written["csv"], rows_csv(result["rows"]))
    atomic_write_json(written["json"], result)
    if figure:
        png = savings_figure(result, out / "schedule_simulation.png")
        if png is not None:
            written["figure"] = png
        else:
            written["figure_skipped"] = figure_unavailable_reason()
    return written
