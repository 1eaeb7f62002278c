"""From the command's options to plans: read the files, resolve regions and times, check everything before any
figure is computed or any file written (each bad input: one GreenlmError line)."""

from __future__ import annotations

import time

from greenlm.common import GreenlmError
from greenlm.measure.grid_series import GridSeries
from greenlm.schedule.forecast import get_forecaster
from greenlm.schedule.job import Job, job_from_options, parse_duration_h, parse_numbers, parse_pause_h, parse_time_s
from greenlm.schedule.live import fetch_series, live_provider
from greenlm.schedule.plan import plan_job, rank_regions
from greenlm.schedule.simulate import DEFAULT_BUDGETS, DEFAULT_DURATIONS_H, DEFAULT_WINDOWS_H, simulate


def load_series(path, *, scope=None, kind=None, timezone_name=None, region=None, now_s: float | None = None,
                what: str = "history") -> GridSeries:
    """Read a series file, or fetch a live one (``electricitymaps:ZONE``, ``watttime:REGION``: ``what`` of the
    provider around ``now_s``, saved to a file first; greenlm.schedule.live)."""
    if path is None:
        raise GreenlmError("--series FILE is required: an hourly grid-intensity CSV (greenlm, Electricity Maps or "
                           "WattTime), or a live source electricitymaps:ZONE / watttime:REGION")
    if live_provider(path) is not None:
        path = fetch_series(str(path), what, time.time() if now_s is None else now_s, scope=scope)
    return GridSeries.load(path, scope=scope, kind=kind, timezone_name=timezone_name, region=region)


def split_regions(text: str | None) -> list[str]:
    return [r.strip() for r in (text or "").split(",") if r.strip()]


def plan_request(*, series: str, duration: str | None, within: str | None, region: str | None = None,
                 regions: str | None = None, now: str | None = None, energy_kwh: float | None = None,
                 pricetag: str | None = None, pause_cost: str | None = None, forecast: str | None = None,
                 forecaster: str | None = None, scope: str | None = None, kind: str | None = None,
                 timezone_name: str | None = None, live: bool = False, clock=time.time, job: Job | None = None) -> dict:
    """``greenlm schedule``: one region's plan, or (--regions) every region's plan ranked. ``job`` replaces the
    duration / energy options (a job estimated from an earlier run)."""
    job = job or job_from_options(duration, energy_kwh, pricetag, pause_cost)
    if within is None:
        raise GreenlmError("--within is required: the deadline from now, e.g. 24h")
    within_h = parse_duration_h(within, "--within")
    if within_h < job.duration_h:
        raise GreenlmError(f"the deadline (--within {within}) is shorter than the job ({job.duration_h:g} h)")
    names = split_regions(regions)
    now_s = parse_time_s(now) if now is not None else float(clock())
    one_region = region if region and not names else None
    grid = load_series(series, scope=scope, kind=kind, timezone_name=timezone_name, region=one_region, now_s=now_s)
    fc = get_forecaster(forecaster)
    fseries = (load_series(forecast, scope=scope, kind=kind, timezone_name=timezone_name, region=one_region,
                           now_s=now_s, what="forecast") if forecast else None)
    # a live series ends now: the window lies beyond it by nature
    live = live or live_provider(series) is not None
    options = dict(forecaster=fc, forecast=fseries, live=live)
    if names:
        for name in names:
            grid.region_name(name)  # every name checked before any plan
        return {"ranking": rank_regions(grid, names, job, now_s, within_h, **options)}
    if region is None:
        if len(grid.regions) != 1:
            raise GreenlmError(f"name the region with --region (or --regions A,B): {series} has "
                               f"{', '.join(grid.regions[:12])}{', ...' if len(grid.regions) > 12 else ''}")
        region = grid.regions[0]
    return {"plan": plan_job(grid, region, job, now_s, within_h, **options)}


def simulate_request(*, series: str, regions: str | None = None, durations: str | None = None,
                     windows: str | None = None, pause_budgets: str | None = None, pause_cost: str | None = None,
                     forecaster: str | None = None, scope: str | None = None, kind: str | None = None,
                     timezone_name: str | None = None) -> dict:
    """``greenlm schedule simulate``: the result dict (rows, best regions, meta); nothing written here."""
    grid = load_series(series, scope=scope, kind=kind, timezone_name=timezone_name)
    names = split_regions(regions) or None
    return simulate(grid, names,
                    durations_h=parse_numbers(durations, "--durations", DEFAULT_DURATIONS_H),
                    windows_h=parse_numbers(windows, "--windows", DEFAULT_WINDOWS_H),
                    budgets=parse_numbers(pause_budgets, "--pause-budgets", DEFAULT_BUDGETS),
                    forecaster=get_forecaster(forecaster), pause_h=parse_pause_h(pause_cost))


def exec_request(*, command: list[str], clock, run=None, log=None, pause_above: float | None = None,
                 max_pause: str | None = None, **plan_options) -> int:
    """``greenlm schedule exec``: plan the job (Flexible Start, decided on the forecast; the window may lie beyond
    the series), wait on ``clock`` until its start, run ``command``; returns the command's exit code. With
    ``pause_above``, the command is stopped by signal while the series' hour is above it (greenlm.schedule.wait)."""
    from greenlm.schedule.pause import pause_policy_from_options
    from greenlm.schedule.wait import run_command, run_command_with_pauses

    if not command:
        raise GreenlmError("give the command after --: greenlm schedule exec --series F --region R --duration 2h "
                           "--within 12h -- python train.py")
    policy = pause_policy_from_options(pause_above=pause_above, grid=plan_options.get("series"),
                                       region=plan_options.get("region"), clock=clock, max_pause=max_pause,
                                       scope=plan_options.get("scope"), kind=plan_options.get("kind"))
    wait_for_best_start(clock=clock, log=log, **plan_options)
    if log is not None:
        log(f"starting: {' '.join(command)}")
    if policy is None:
        return (run or run_command)(list(command))
    code, pauses = run_command_with_pauses(list(command), policy, log=log)
    if log is not None and pauses:
        held = max(p["held_rss_mb"] for p in pauses)
        log(f"{len(pauses)} pause(s), {sum(p.get('resumed_s', p['until_s']) - p['from_s'] for p in pauses) / 3600:.2f} h"
            f" in all; at most {held:.0f} MB held while stopped")
    return code


def wait_for_best_start(*, clock, log=None, **plan_options) -> dict:
    """Plan a job now (Flexible Start, decided on the forecast; the window may lie beyond the series), say so through
    ``log``, wait on ``clock`` until the planned start, and return the plan (``greenlm schedule exec``,
    ``greenlm run --start-within``)."""
    from greenlm.schedule.wait import wait_until

    if plan_options.get("regions"):
        raise GreenlmError("a job runs in one region: give --region, not --regions")
    result = plan_request(**plan_options, now=None, live=True, clock=clock.now)
    plan = result["plan"]
    choice = plan["flexible_start"]["forecast"]
    start_s = parse_time_s(choice["hours_utc"][0][0])
    now_g, plan_g = plan["now"]["expected"]["gco2_per_job_kwh"], choice["expected"]["gco2_per_job_kwh"]
    if log is not None:
        saving = 100.0 * (now_g - plan_g) / now_g if now_g > 0 else 0.0
        wait_h = max(0.0, start_s - clock.now()) / 3600.0
        log(f"plan for {plan['region']}: start at {choice['hours_utc'][0][0]} (in {wait_h:.2f} h), forecast "
            f"{plan_g:.4g} g/kWh vs {now_g:.4g} starting now ({saving:.1f}% less); {plan['forecast']}; job "
            f"{plan['job']['duration_h']:.3g} h ({plan['job']['energy_source']})")
    wait_until(start_s, clock)
    return plan
