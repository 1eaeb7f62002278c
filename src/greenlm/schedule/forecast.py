"""Forecasting the hours ahead from the series' past only (or reading a forecast file).

Seasonal naive with a few days' memory (Hyndman & Athanasopoulos, "Forecasting: Principles and Practice", the
seasonal naive and simple average methods, the season being the day), optionally plus a decaying persistence of
the latest hour's anomaly. Issued at hour i, when every hour < i is known, for a target hour t >= i:

    d0(t) = floor((t - i) / 24) + 1                         the latest day back whose same hour is < i
    p(t)  = sum_j w_j x[t - 24 (d0 + j)] / sum_j w_j        j = 0..days-1, w_j = decay**j, missing days skipped
    a     = x[i-1] - p'(i-1)                                the last known hour against its own same-hour mean
                                                            over the `days` days before it
    f(t)  = p(t) + a phi**(t - i + 1)                       phi = persistence per hour (0: none)

p is a 24-hour profile of the last `days` days, repeated over the horizon: p(t) = G[i - 24 + (t - i) mod 24] with
G[u] = the weighted mean of x[u], x[u - 24], ..., x[u - 24 (days - 1)]. A profile alone ranks every 24-hour run
of hours the same; the anomaly term is what tells a windy (or still) next day from the average one. Nothing at or
after i is read (tests/test_schedule_forecast.py perturbs the future and checks the decision does not move).

The default was chosen by measurement on the 2022 EIA-930 file (benchmarks/carbon_schedule.py): the share of the
oracle's saving each forecaster captures is in docs/benchmarks.md, the reasoning in docs/scheduling.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from greenlm.common import GreenlmError
from greenlm.measure.grid_series import S_PER_HOUR, GridSeries, describe_hours, iso_hour

HOURS_PER_DAY = 24


@dataclass(frozen=True)
class SameHourForecaster:
    name: str
    days: int  # how many past days of the same clock hour
    decay: float  # weight of day j back is decay**j (1.0: a plain mean)
    persistence: float  # phi: the latest hour's anomaly decays by this factor per hour ahead (0: not used)
    about: str

    @property
    def history_h(self) -> int:
        """Hours of past the forecast reads."""
        return HOURS_PER_DAY * self.days + (1 if self.persistence else 0)

    @property
    def weights(self) -> np.ndarray:
        return self.decay ** np.arange(self.days, dtype=np.float64)

    def profile(self, x: np.ndarray) -> np.ndarray:
        """G[u] = weighted mean of x[u - 24 j], j < days, skipping NaN; NaN where no day has a value."""
        num, den = np.zeros(len(x)), np.zeros(len(x))
        for j, w in enumerate(self.weights):  # a loop over days (<= 7), not over hours
            lag = HOURS_PER_DAY * j
            past = np.full(len(x), np.nan)
            past[lag:] = x[:len(x) - lag]
            ok = ~np.isnan(past)
            num[ok] += w * past[ok]
            den[ok] += w
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    def matrix(self, x: np.ndarray, starts: np.ndarray, horizon_h: int, lead_h: int = 0) -> np.ndarray:
        """F[k, h]: the forecast issued at hour starts[k] for hour starts[k] + lead_h + h, h < horizon_h
        (starts >= history_h; reads x[: starts[k]] only)."""
        x = np.asarray(x, dtype=np.float64)
        g = self.profile(x)
        ahead = lead_h + np.arange(horizon_h)
        f = g[starts[:, None] - HOURS_PER_DAY + (ahead % HOURS_PER_DAY)[None, :]]
        if self.persistence:
            anomaly = np.nan_to_num(x[starts - 1] - g[starts - 1 - HOURS_PER_DAY])  # unknown: no correction
            f = f + anomaly[:, None] * self.persistence ** (ahead + 1.0)[None, :]
        return f

    def forecast(self, x: np.ndarray, issue: int, horizon_h: int, lead_h: int = 0) -> np.ndarray:
        """The forecast issued at hour index ``issue`` for ``horizon_h`` hours from ``issue + lead_h`` (lead_h > 0:
        the data ends before the window starts). Reads x[:issue] only."""
        return self.matrix(np.asarray(x[:issue], dtype=np.float64), np.array([issue]), horizon_h, lead_h)[0]


FORECASTERS = {
    f.name: f
    for f in (
        SameHourForecaster("yesterday", 1, 1.0, 0.0, "the same hour yesterday (seasonal naive)"),
        SameHourForecaster("week-mean", 7, 1.0, 0.0, "the mean of the same hour over the last 7 days"),
        SameHourForecaster("week-weighted", 7, 0.7, 0.0, "the same hour over the last 7 days, day j back weighted 0.7^j"),
        SameHourForecaster("week-mean-persist", 7, 1.0, 0.95,
                           "the mean of the same hour over the last 7 days, plus the last hour's departure from its "
                           "own 7-day mean decaying by 0.95 per hour ahead"),
    )
}
DEFAULT_FORECASTER = "week-mean-persist"  # chosen by measurement: docs/scheduling.md, "The forecaster"


def get_forecaster(name: str | None) -> SameHourForecaster:
    name = name or DEFAULT_FORECASTER
    if name not in FORECASTERS:
        raise GreenlmError(f"unknown forecaster {name!r}: one of {', '.join(FORECASTERS)}")
    return FORECASTERS[name]


def own_forecast(series: GridSeries, region: str, forecaster: SameHourForecaster, issue: int,
                 horizon_h: int, lead_h: int = 0) -> np.ndarray:
    """greenlm's forecast for ``horizon_h`` hours from index ``issue + lead_h``, issued at ``issue`` from the series'
    past only; refuses when the past it needs is outside the file or has no value for some clock hour."""
    first = issue - forecaster.history_h
    if first < 0:
        raise GreenlmError(
            f"the {forecaster.name} forecaster needs {forecaster.history_h} h of {series.region_name(region)} before "
            f"{iso_hour(series.start_s + S_PER_HOUR * issue)}; {series.source.path} starts at {iso_hour(series.start_s)} "
            "(choose a later --now, or give --forecast FILE)")
    values = forecaster.forecast(series.values(region), issue, horizon_h, lead_h)
    if np.isnan(values).any():
        gap = series.missing_hours(region, first, forecaster.history_h)
        raise GreenlmError(f"the {forecaster.name} forecaster has no value for some clock hours: the series lacks "
                           f"{describe_hours(gap)} of the {forecaster.history_h} h before the decision")
    return values


def file_forecast(forecast: GridSeries, region: str, first_s: int, horizon_h: int) -> np.ndarray:
    """The window's hours read from a forecast file (any format GridSeries reads); refuses a horizon that ends
    before the window does, naming both ends."""
    name = forecast.region_name(region)
    first = forecast.hour_index(first_s)
    end_s = first_s + S_PER_HOUR * horizon_h
    if forecast.end_s < end_s or first < 0:
        covered = max(0, min(forecast.end_s, end_s) - max(forecast.start_s, first_s)) // S_PER_HOUR
        raise GreenlmError(
            f"forecast horizon shorter than the window: {forecast.source.path} covers {forecast.span()}, the window "
            f"needs {iso_hour(first_s)}..{iso_hour(end_s)} ({covered} of {horizon_h} h covered)")
    return forecast.window(name, first, horizon_h, what="the window, in the forecast file")


def day_ahead_mae(x: np.ndarray, forecaster: SameHourForecaster, starts: np.ndarray) -> float:
    """Mean absolute error (g/kWh) of the next 24 hours' forecast, over the given issue hours (NaN skipped)."""
    f = forecaster.matrix(x, starts, HOURS_PER_DAY)
    actual = x[starts[:, None] + np.arange(HOURS_PER_DAY)[None, :]]
    return float(np.nanmean(np.abs(f - actual)))
