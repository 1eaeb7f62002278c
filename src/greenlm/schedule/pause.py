"""The pause policy greenlm builds from a grid series: pause while the hour's intensity is above a threshold.

``ThresholdPause(series, region, threshold_g_per_kwh, clock)`` answers the training loop's question "may I run
now?" (``greenlm.train.pause``): the clock hour holding ``now`` is looked up in the series (a file that covers the
training period: a forecast or a replayed year; or a live source, saved as a file first). Above the threshold, the
run pauses until the start of the next hour that would not pause (at or below it, or unknown), at most
``max_pause_h`` ahead (a long dirty spell does
not stop a job for ever: at the bound it runs, and says so). An hour the series lacks never pauses the run (the
first such hour is noted). Pausing costs a checkpoint and a restart's warm-up; the plan of ``greenlm schedule``
(``--pause-cost``) is where that cost is weighed before choosing a threshold.
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
        if region is None:
            if len(series.regions) != 1:
                raise GreenlmError(f"name the region of the grid series (--grid-region): it holds "
                                   f"{', '.join(series.regions[:12])}")
            region = series.regions[0]
        self.series, self.region = series, series.region_name(region)
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


def pause_policy_from_options(*, pause_above: float | None, grid: str | None, region: str | None, clock,
                              max_pause: str | None = None, scope: str | None = None, kind: str | None = None):
    """The policy of the command-line options (None when --pause-above is not given); every check before any work."""
    from greenlm.schedule.job import parse_duration_h
    from greenlm.schedule.request import load_series

    if pause_above is None:
        return None
    if grid is None:
        raise GreenlmError("--pause-above needs --grid: the grid-intensity series (file, or electricitymaps:ZONE / "
                           "watttime:REGION) whose hours decide the pauses")
    series = load_series(grid, scope=scope, kind=kind, region=region, now_s=clock.now(), what="forecast")
    max_pause_h = parse_duration_h(max_pause, "--max-pause") if max_pause else DEFAULT_MAX_PAUSE_H
    return ThresholdPause(series, region, pause_above, clock, max_pause_h)
