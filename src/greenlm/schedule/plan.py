"""When (and where) to run one job: Flexible Start and Pause & Resume over hourly grid intensity.

Dodge et al. 2022 ("Measuring the Carbon Intensity of AI in Cloud Instances", FAccT): Flexible Start delays a
job's start within a window; Pause & Resume lets the job run in the cleanest hours before its deadline. Here,
with x[t] the intensity (g/kWh) of hour t of the window [now, deadline), H = its length in hours, n = the job's
hours (job.n_slots), e = job.slot_kwh and q = job.pause_kwh:

    now:             g = e * sum_{t<n} x[t]
    flexible start:  u* = argmin_u S[u],  S[u] = sum_{t=u}^{u+n-1} x[t]  (u = 0..H-n; cumulative sums)
    pause & resume:  the set T of n hours minimising e * sum_{t in T} x[t] + q * sum_{t in T, t-1 not in T,
                     t != min T} x[t]  (each resumption runs q kWh more, in the hour it resumes): a dynamic
                     programme over (hour, hours chosen, running or not), exact; with q = 0, the n cheapest hours.

The decision is made on a forecast f of x (forecast.py, or a forecast file), never on x itself; the plan's
realised emissions are then read from x. The oracle makes the same decision on x. Every saving is
(g_now - g_plan) / g_now, once for the forecast's plan (realised) and once for the oracle's.
"""

from __future__ import annotations

import math

import numpy as np

from greenlm.common import GreenlmError
from greenlm.measure.grid_series import S_PER_HOUR, GridSeries, describe_hours, iso_hour
from greenlm.schedule.forecast import SameHourForecaster, file_forecast, own_forecast
from greenlm.schedule.job import Job

G_PER_KG = 1000.0


def window_sums(x: np.ndarray, n: int) -> np.ndarray:
    """S[u] = x[u] + ... + x[u + n - 1] for every u, from one cumulative sum."""
    c = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
    return c[n:] - c[:-n]


def earliest_argmin(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """argmin along ``axis``, the earliest of values equal up to rounding (a forecast repeating a daily profile
    ties hour h with h + 24: cumulative sums must not break the tie at random)."""
    index = np.arange(values.shape[axis]).reshape([-1 if a == axis % values.ndim else 1 for a in range(values.ndim)])
    scale = 1e-9 * (np.nanmax(np.abs(values)) + 1.0) / values.shape[axis]
    return np.argmin(values + scale * index, axis=axis)


def best_start(cost: np.ndarray, n: int) -> int:
    """Flexible Start: the first index of the cheapest run of n consecutive hours (the earliest on ties)."""
    return int(earliest_argmin(window_sums(cost, n)))


def best_hours(cost: np.ndarray, n: int, resume_cost: np.ndarray | None = None) -> np.ndarray:
    """Pause & Resume: the n hours (sorted indices) minimising sum(cost[T]) + sum(resume_cost[t]) over the hours t
    at which the job resumes after a pause. Exact dynamic programme, O(H n); ties go to fewer pauses, then
    earlier hours."""
    cost = np.asarray(cost, dtype=np.float64)
    hours = len(cost)
    if not 0 < n <= hours:
        raise GreenlmError(f"cannot place {n} hour(s) in a window of {hours}")
    resume = np.zeros(hours) if resume_cost is None else np.asarray(resume_cost, dtype=np.float64)
    # earlier hours win ties: a nudge far below any real difference
    nudge = 1e-12 * (np.abs(cost).max() + np.abs(resume).max() + 1.0) * np.arange(hours) / hours
    cost = cost + nudge
    resumes = np.arange(n) > 0  # from k = 0 hours chosen, the first block starts: no resumption
    off = np.full(n + 1, np.inf)  # best total with k hours chosen so far, the last hour not chosen
    on = np.full(n + 1, np.inf)  # ... the last hour chosen
    off[0] = 0.0
    on_from_on = np.zeros((hours, n + 1), dtype=bool)
    off_from_on = np.zeros((hours, n + 1), dtype=bool)
    for t in range(hours):  # one step per hour of the window; each step is vectorised over k
        keep_running = on[:-1] + cost[t]
        resume_here = off[:-1] + cost[t] + np.where(resumes, resume[t], 0.0)
        new_on = np.full(n + 1, np.inf)
        new_on[1:] = np.minimum(keep_running, resume_here)
        on_from_on[t, 1:] = keep_running <= resume_here
        off_from_on[t] = on < off
        off, on = np.minimum(off, on), new_on
    running, k, chosen = bool(on[n] <= off[n]), n, []
    for t in range(hours - 1, -1, -1):
        if running:
            chosen.append(t)
            running = bool(on_from_on[t, k])
            k -= 1
        else:
            running = bool(off_from_on[t, k])
    return np.array(sorted(chosen), dtype=np.int64)


def plan_grams(hours: np.ndarray, x: np.ndarray, slot_kwh: float, pause_kwh: float) -> float:
    """g CO2e of running ``slot_kwh`` in each of ``hours`` plus ``pause_kwh`` in each hour it resumes."""
    hours = np.asarray(hours)
    resumes = hours[1:][np.diff(hours) > 1]
    return float(slot_kwh * x[hours].sum() + pause_kwh * x[resumes].sum())


def blocks(hours: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive hours as (first, end) index pairs, end exclusive."""
    hours = np.asarray(hours)
    cut = np.flatnonzero(np.diff(hours) > 1) + 1
    return [(int(b[0]), int(b[-1]) + 1) for b in np.split(hours, cut)]


def plan_job(series: GridSeries, region: str, job: Job, now_s: float, within_h: float, *,
             forecaster: SameHourForecaster | None = None, forecast: GridSeries | None = None,
             live: bool = False) -> dict:
    """Plan one job in one region: starting now, Flexible Start and Pause & Resume, each decided on the forecast
    and reported realised (from the series) and by the oracle. With ``live`` the window may lie beyond the series:
    the plan is then the forecast's alone (realised and oracle: None)."""
    region = series.region_name(region)
    if not within_h >= job.duration_h:
        raise GreenlmError(f"the deadline (--within {within_h:g} h) is shorter than the job ({job.duration_h:g} h)")
    n, hours = job.n_slots, int(math.floor(within_h + 1e-9))
    if hours < n:
        raise GreenlmError(f"the deadline ({within_h:g} h) holds {hours} whole hour(s); the job needs {n}")
    first = series.hour_index(now_s)
    first_s = series.start_s + S_PER_HOUR * first
    missing = series.missing_hours(region, first, hours)
    known = not missing
    if missing and not live:
        series.window(region, first, hours)  # raises, naming the missing hours
    actual = series.values(region)[first:first + hours] if known else None

    if forecast is not None:
        f = file_forecast(forecast, region, first_s, hours)
        forecast_about = f"forecast file: {forecast.source.label}"
        issued = first
    else:
        issued, lead = _issue_hour(series, region, first, known, forecaster)
        f = own_forecast(series, region, forecaster, issued, hours, lead)
        forecast_about = (f"greenlm {forecaster.name}: {forecaster.about}, issued at "
                          f"{iso_hour(series.start_s + S_PER_HOUR * issued)} from the series' past only")

    e, q = job.slot_kwh, job.pause_kwh
    now_hours = np.arange(n)
    fs_f = np.arange(best_start(f, n), best_start(f, n) + n)
    pr_f = best_hours(f * e, n, f * q)
    plans = {"flexible_start": {"forecast": fs_f}, "pause_resume": {"forecast": pr_f}}
    if known:
        u = best_start(actual, n)
        plans["flexible_start"]["oracle"] = np.arange(u, u + n)
        plans["pause_resume"]["oracle"] = best_hours(actual * e, n, actual * q)

    baseline_g = plan_grams(now_hours, actual, e, q) if known else None

    def describe(idx: np.ndarray) -> dict:
        expected_g = plan_grams(idx, f, e, q)
        out = {"hours_utc": [[iso_hour(first_s + S_PER_HOUR * a), iso_hour(first_s + S_PER_HOUR * b)]
                             for a, b in blocks(idx)],
               "pauses": len(blocks(idx)) - 1, "expected": _figure(expected_g, job)}
        if known:
            realised_g = plan_grams(idx, actual, e, q)
            out["realised"] = _figure(realised_g, job)
            out["saving"] = _saving(baseline_g, realised_g, job)
        return out

    result = {
        "region": region,
        "series": series.source.to_dict(),
        "forecast": forecast_about,
        "job": job.to_dict(),
        "now_utc": iso_hour(first_s),
        "deadline_utc": iso_hour(first_s + S_PER_HOUR * hours),
        "window_h": hours,
        "mode": "replay" if known else "live",
        "now": ({"hours_utc": [[iso_hour(first_s), iso_hour(first_s + S_PER_HOUR * n)]],
                 "expected": _figure(plan_grams(now_hours, f, e, q), job),
                 **({"realised": _figure(baseline_g, job)} if known else {})}),
        "mean_gco2_per_kwh": series.mean(region),
        "mean_over": series.span(),
    }
    for method, choices in plans.items():
        result[method] = {who: describe(idx) for who, idx in choices.items()}
    notes = []
    if now_s != first_s:
        notes.append(f"the decision time {iso_hour(now_s)[:-1]}:{int(now_s) % 60:02d}Z is planned from its clock hour "
                     f"{iso_hour(first_s)} (the series is hourly)")
    if not known:
        notes.append(f"the series has no values for {describe_hours(missing)}: realised emissions and the oracle are "
                     "not known yet")
    if notes:
        result["note"] = "; ".join(notes)
    return result


def _issue_hour(series: GridSeries, region: str, first: int, known: bool, forecaster) -> tuple[int, int]:
    """The forecast is issued at the decision hour; in a live plan whose data ends earlier, at the data's end
    (lead = the hours between), refused when that is older than the forecaster's memory."""
    if known:
        return first, 0
    valid = np.flatnonzero(~np.isnan(series.values(region)[:max(first, 0)]))
    if valid.size == 0:
        raise GreenlmError(f"{series.source.path} has no {region} value before {iso_hour(series.start_s + S_PER_HOUR * first)}"
                           " to forecast from")
    issue = int(valid[-1]) + 1
    lead = first - issue
    if lead > forecaster.history_h:
        raise GreenlmError(f"the series ends at {iso_hour(series.start_s + S_PER_HOUR * issue)}, {lead} h before the "
                           f"decision: too old for the {forecaster.name} forecaster; give newer data or --forecast FILE")
    return issue, lead


def _figure(grams: float, job: Job) -> dict:
    """kg when the job's energy is known; g per kWh of the job's energy always."""
    return {"co2e_kg": grams / G_PER_KG if job.energy_kwh is not None else None,
            "gco2_per_job_kwh": grams / job.plan_kwh}


def _saving(baseline_g: float, plan_g: float, job: Job) -> dict:
    return {"co2e_kg": (baseline_g - plan_g) / G_PER_KG if job.energy_kwh is not None else None,
            "pct": 100.0 * (baseline_g - plan_g) / baseline_g if baseline_g > 0 else 0.0}


def rank_regions(series: GridSeries, regions: list[str], job: Job, now_s: float, within_h: float, **kw) -> dict:
    """Plan the job in each region; rank them by the forecast's expected emissions of the Pause & Resume plan (what
    is known when deciding) and by the region's mean intensity over the series (the annual mean for a year)."""
    plans = [plan_job(series, r, job, now_s, within_h, **kw) for r in dict.fromkeys(regions)]
    by_plan = sorted(plans, key=lambda p: p["pause_resume"]["forecast"]["expected"]["gco2_per_job_kwh"])
    by_mean = sorted(plans, key=lambda p: p["mean_gco2_per_kwh"])
    rows = []
    for p in by_plan:
        mean_g = p["mean_gco2_per_kwh"] * job.plan_kwh
        rows.append({"region": p["region"], "rank_at_chosen_hours": by_plan.index(p) + 1,
                     "rank_on_mean": by_mean.index(p) + 1, "at_mean": _figure(mean_g, job),
                     "now": p["now"], "flexible_start": p["flexible_start"], "pause_resume": p["pause_resume"]})
    return {"regions": rows, "plans": plans}
