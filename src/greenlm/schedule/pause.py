"""The pause policies greenlm builds from a grid series: pause while the hour's intensity is above a threshold, or
run only in the hours of a Pause & Resume plan.

``ThresholdPause(series, region, threshold_g_per_kwh, clock)`` answers the training loop's question "may I run
now?" (``greenlm.train.pause``): the clock hour holding ``now`` is looked up in the series (a file that covers the
training period: a forecast or a replayed year; or a live source, saved as a file first). Above the threshold, the
run pauses until the start of the next hour that would not pause (at or below it, or unknown), at most
``max_pause_h`` ahead (a long dirty spell does
not stop a job for ever: at the bound it runs, and says so). An hour the series lacks never pauses the run (the
first such hour is noted). Pausing costs a checkpoint and a restart's warm-up; the plan of ``greenlm schedule``
(``--pause-cost``) is where that cost is weighed before choosing a threshold.

``PlanPause`` executes Dodge et al.'s Pause & Resume itself (``--run-within 24h --job-duration 6h``): ``greenlm
schedule``'s plan (the set of whole hours before the deadline with the least forecast emissions: schedule/plan.py,
here with a pause cost of 0, i.e. the cleanest hours) is made once, at the start, on the forecast; the training then
runs in those hours and pauses between them. A job that outlasts its planned hours runs on (said once); one that finishes
early simply leaves the rest unused.
"""

from __future__ import annotations

import logging
import math

from greenlm.common import GreenlmError
from greenlm.measure.grid_series import S_PER_HOUR, GridSeries, iso_hour

log = logging.getLogger("greenlm")
DEFAULT_MAX_PAUSE_H = 24.0


class ThresholdPause:
    def __init__(self, series: GridSeries, region: str | None, threshold_g_per_kwh: float, clock,
                 max_pause_h: float = DEFAULT_MAX_PAUSE_H):
        if not (math.isfinite(threshold_g_per_kwh) and threshold_g_per_kwh >= 0):
            raise GreenlmError(f"--pause-above must be a number of g/kWh >= 0, got {threshold_g_per_kwh!r}")
        if not max_pause_h > 0:
            raise GreenlmError(f"--max-pause must be greater than 0, got {max_pause_h!r} h")
        self.series, self.region = series, _region(series, region)
        self.threshold_g_per_kwh, self.clock, self.max_pause_h = float(threshold_g_per_kwh), clock, float(max_pause_h)
        self._values = series.values(self.region)
        self._noted_gap = False

    def intensity_at(self, time_s: float) -> float | None:
        """g/kWh of the clock hour holding ``time_s``; None outside the series or in a gap."""
        i = self.series.hour_index(time_s)
        if not 0 <= i < self.series.n_hours or math.isnan(self._values[i]):
            return None
        return float(self._values[i])

    def paused_until(self, now_s: float) -> float | None:
        value = self.intensity_at(now_s)
        if value is None:
            if not self._noted_gap:
                log.info("the grid series has no %s value for %s: running (an unknown hour never pauses)",
                         self.region, iso_hour(now_s))
                self._noted_gap = True
            return None
        if value <= self.threshold_g_per_kwh:
            return None
        hour_start = self.series.start_s + S_PER_HOUR * self.series.hour_index(now_s)
        bound_s = now_s + self.max_pause_h * S_PER_HOUR
        t = hour_start + S_PER_HOUR
        while t < bound_s:
            ahead = self.intensity_at(t)
            if ahead is None or ahead <= self.threshold_g_per_kwh:  # the first hour that would not pause
                return t
            t += S_PER_HOUR
        log.info("no %s hour at or below %g g/kWh in the next %g h: pausing for that long, then running",
                 self.region, self.threshold_g_per_kwh, self.max_pause_h)
        return bound_s

    def describe(self, now_s: float) -> str:
        return (f"{self.region} at {self.intensity_at(now_s):.4g} g/kWh in {iso_hour(now_s)} is above "
                f"{self.threshold_g_per_kwh:g} ({self.series.source.label})")


def _region(series: GridSeries, region: str | None) -> str:
    """The series' region the policy follows: the one named (as the file spells it), or its only one."""
    if region is None:
        if len(series.regions) != 1:
            raise GreenlmError(f"name the region of the grid series (--grid-region): it holds "
                               f"{', '.join(series.regions[:12])}")
        return series.regions[0]
    return series.region_name(region)


class PlanPause:
    """Run only inside ``blocks_s`` ([(start, end)] Unix s, sorted, disjoint): the hours of a Pause & Resume plan."""

    def __init__(self, series: GridSeries, region: str, blocks_s: list[tuple[float, float]], clock, plan: dict):
        if not blocks_s:
            raise GreenlmError("the Pause & Resume plan holds no hours to run in")
        self.series, self.region, self.clock, self.plan = series, series.region_name(region), clock, plan
        self.blocks_s = [(float(a), float(b)) for a, b in blocks_s]
        self._noted_end = False

    def paused_until(self, now_s: float) -> float | None:
        for start_s, end_s in self.blocks_s:
            if start_s <= now_s < end_s:
                return None
            if now_s < start_s:
                return start_s
        if not self._noted_end:
            log.info("the plan's hours are used up (the job took longer than --job-duration): running on")
            self._noted_end = True
        return None

    def describe(self, now_s: float) -> str:
        hours = ", ".join(f"{iso_hour(a)}..{iso_hour(b)}" for a, b in self.blocks_s)
        return (f"{iso_hour(now_s)} is outside the Pause & Resume plan for {self.region} (run in {hours}, decided on"
                f" the forecast at the start; {self.series.source.label})")


def plan_pause_policy(*, grid: str, region: str | None, clock, run_within: str, job, scope: str | None = None,
                      kind: str | None = None, log_plan=None) -> PlanPause:
    """Plan Pause & Resume now, on the forecast (``greenlm schedule``'s planner), and return the policy that runs it."""
    from dataclasses import replace

    from greenlm.schedule.job import parse_duration_h, parse_time_s
    from greenlm.schedule.plan import plan_job
    from greenlm.schedule.request import load_series

    within_h = parse_duration_h(run_within, "--run-within")
    # --grid is what the run's hours will be (a forecast file, a replayed year, or a live source's forecast, fetched
    # once), as for the threshold rule: the plan is decided on it
    series = load_series(grid, scope=scope, kind=kind, region=region, now_s=clock.now(), what="forecast")
    region = _region(series, region)
    # The planner counts whole clock hours from the one holding now; if now is past the hour's start, that hour has
    # less left than a slot: the job is planned a slot's worth longer by what has elapsed, so its hours suffice even
    # when the current hour is among them (a job that ends early leaves the rest unused).
    elapsed_h = (clock.now() % S_PER_HOUR) / S_PER_HOUR
    if elapsed_h > 0:
        job = replace(job, duration_h=job.duration_h + elapsed_h)
    result = plan_job(series, region, job, clock.now(), within_h, forecast=series, live=True)
    choice = result["pause_resume"]["forecast"]
    blocks = [(parse_time_s(a), parse_time_s(b)) for a, b in choice["hours_utc"]]
    if log_plan is not None:
        now_g, plan_g = result["now"]["expected"]["gco2_per_job_kwh"], choice["expected"]["gco2_per_job_kwh"]
        saving = 100.0 * (now_g - plan_g) / now_g if now_g > 0 else 0.0
        log_plan(f"Pause & Resume plan for {result['region']} before {result['deadline_utc']}: run in "
                 f"{', '.join(f'{a}..{b}' for a, b in choice['hours_utc'])} ({choice['pauses']} pause(s)); forecast "
                 f"{plan_g:.4g} g/kWh vs {now_g:.4g} running now ({saving:.1f}% less); {result['forecast']}")
    return PlanPause(series, region, blocks, clock, result)


def pause_policy_from_options(*, pause_above: float | None, grid: str | None, region: str | None, clock,
                              max_pause: str | None = None, scope: str | None = None, kind: str | None = None,
                              run_within: str | None = None, job_duration: str | None = None, job=None,
                              log_plan=None):
    """The policy of the command-line options (None without --pause-above or --run-within); every check before any
    work. ``job``: the job to plan when --job-duration is not given (``greenlm run``: its earlier report)."""
    from greenlm.schedule.job import job_from_options, parse_duration_h
    from greenlm.schedule.request import load_series

    if run_within is not None:
        if pause_above is not None:
            raise GreenlmError("give --pause-above (a threshold) or --run-within (a Pause & Resume plan), not both")
        if grid is None:
            raise GreenlmError("--run-within needs --grid: the grid-intensity series (file, or electricitymaps:ZONE / "
                               "watttime:REGION) the plan is made on")
        if job_duration is not None:
            job = job_from_options(job_duration, None, None)
        if job is None:
            raise GreenlmError("--run-within needs --job-duration: how long the training takes (e.g. 3h)")
        return plan_pause_policy(grid=grid, region=region, clock=clock, run_within=run_within, job=job, scope=scope,
                                 kind=kind, log_plan=log_plan)
    if job_duration is not None:
        raise GreenlmError("--job-duration is the length --run-within plans for; give --run-within too")
    if pause_above is None:
        return None
    if grid is None:
        raise GreenlmError("--pause-above needs --grid: the grid-intensity series (file, or electricitymaps:ZONE / "
                           "watttime:REGION) whose hours decide the pauses")
    series = load_series(grid, scope=scope, kind=kind, region=region, now_s=clock.now(), what="forecast")
    max_pause_h = parse_duration_h(max_pause, "--max-pause") if max_pause else DEFAULT_MAX_PAUSE_H
    return ThresholdPause(series, region, pause_above, clock, max_pause_h)
