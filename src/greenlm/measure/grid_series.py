"""Hourly grid carbon intensity as numpy arrays, read from the files people have.

    series = GridSeries.load("eia930_2022.csv")        # format found from the header
    ciso = series.values("CISO")                        # float64 g/kWh, one per UTC hour from series.start_s, NaN = gap
    series.source.label                                 # file, column, format, kind, scope, unit it came in

Formats (detected from the header row; docs/scheduling.md):

| format | columns | kind, scope | unit |
|---|---|---|---|
| greenlm CSV | ``timestamp_utc,region,gco2_per_kwh`` (the format of measure/intensity.py) | stated by the caller (``kind=``, ``scope=``), else "unstated" | g/kWh |
| Electricity Maps export | ``Datetime (UTC)``, ``Zone Id`` (else ``Country``, ``Zone Name``), ``Carbon Intensity gCO₂eq/kWh (direct)`` and ``(LCA)`` / ``(life cycle assessment)`` | average; direct or lifecycle (``scope=``) | g/kWh |
| WattTime MOER | CSV ``point_time,value`` (API v3) or ``timestamp,MOER`` (v2 downloads), optional ``region``/``ba``; or v3 JSON ``{"meta": ..., "data": [...]}`` | marginal, direct (CO2) | lbs/MWh x 0.45359237 = g/kWh |

Times become UTC instants: a time with an offset is converted; a time without one is UTC when its column says
UTC (``timestamp_utc``, ``Datetime (UTC)``), local time in ``timezone=`` when one is given (a daylight-saving hour
that happens twice or never is refused, naming the line), and refused otherwise. Rows on the hour stay as they are;
sub-hourly rows (5-minute MOER, 15-minute exports) are averaged into clock hours labelled by their start; steps
coarser than an hour are refused. A missing hour stays NaN (``missing_hours``); a row given twice with the same
value is dropped (counted in the source's notes), with two different values it is refused.
"""

from __future__ import annotations

import csv
import difflib
import functools
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from greenlm.common.inputs import check_regular_file
from greenlm.common import GreenlmError
from greenlm.measure.units import lbs_per_mwh_to_g_per_kwh

S_PER_HOUR = 3600
GREENLM_HEADER = ("timestamp_utc", "region", "gco2_per_kwh")
FORMATS_HINT = ("expected greenlm's timestamp_utc,region,gco2_per_kwh; an Electricity Maps export (Datetime (UTC), "
                "Zone Id, Carbon Intensity gCO₂eq/kWh (direct)/(LCA)); or WattTime MOER (point_time,value or "
                "timestamp,MOER)")


@dataclass(frozen=True)
class GridSource:
    """Where every figure of a GridSeries came from."""

    path: str
    format: str  # greenlm-csv | electricitymaps | watttime
    column: str  # the value column read
    kind: str  # average | marginal
    scope: str  # direct | lifecycle | as-published
    unit: str  # the unit in the file, before conversion to g/kWh
    step_s: int  # the file's step (most common spacing of its rows); < 3600 means averaged into hours
    notes: tuple = ()

    @property
    def label(self) -> str:
        unit = "g/kWh" if self.unit == "g/kWh" else f"{self.unit} converted to g/kWh"
        step = "hourly" if self.step_s >= S_PER_HOUR else f"{self.step_s / 60:g}-min steps averaged into hours"
        what = (f"{self.kind}, {self.scope}" if "unstated" not in (self.kind, self.scope)
                else f"kind {self.kind}, scope {self.scope}")
        return f"{Path(self.path).name} column {self.column!r} ({self.format}; {what}; {unit}; {step})"

    def to_dict(self) -> dict:
        return {"path": self.path, "format": self.format, "column": self.column, "kind": self.kind,
                "scope": self.scope, "unit": self.unit, "step_s": self.step_s, "notes": list(self.notes),
                "label": self.label}


@dataclass(frozen=True)
class GridSeries:
    """Intensities of several regions on one grid of UTC clock hours: ``gco2_per_kwh[r, i]`` is region ``regions[r]``
    in the hour starting at ``start_s + 3600 i`` (Unix s); NaN where the file has no value."""

    start_s: int
    regions: tuple
    gco2_per_kwh: np.ndarray  # (len(regions), n_hours) float64
    source: GridSource

    @classmethod
    def load(cls, path: str | os.PathLike, *, scope: str | None = None, kind: str | None = None,
             timezone_name: str | None = None, region: str | None = None) -> "GridSeries":
        """Read any supported file. ``scope`` (lifecycle | direct): the Electricity Maps column to read (default
        lifecycle), or what a greenlm CSV holds; ``kind`` (average | marginal): what a greenlm CSV holds (its
        README says; "unstated" otherwise); ``timezone_name``: the IANA zone of naive local times; ``region``: the
        name of a file's one series when it names none (default: the file's stem)."""
        return read_grid_series(path, scope=scope, kind=kind, timezone_name=timezone_name, region=region)

    @property
    def n_hours(self) -> int:
        return int(self.gco2_per_kwh.shape[1])

    @property
    def hours_s(self) -> np.ndarray:
        return self.start_s + S_PER_HOUR * np.arange(self.n_hours, dtype=np.int64)

    @property
    def end_s(self) -> int:
        """The end of the last hour (exclusive)."""
        return self.start_s + S_PER_HOUR * self.n_hours

    def region_name(self, region: str) -> str:
        """``region`` as the file spells it (exact, then case-insensitive), or a GreenlmError naming the closest."""
        if region in self.regions:
            return region
        folded = {r.upper(): r for r in self.regions}
        if region.upper() in folded:
            return folded[region.upper()]
        close = difflib.get_close_matches(region.upper(), list(folded), n=3, cutoff=0.4)
        hint = (f"closest: {', '.join(folded[c] for c in close)}" if close
                else f"it has: {', '.join(self.regions[:12])}{', ...' if len(self.regions) > 12 else ''}")
        raise GreenlmError(f"unknown region {region!r}: not in {Path(self.source.path).name} ({hint})")

    def values(self, region: str) -> np.ndarray:
        """The region's hourly g/kWh (a read-only view), NaN in gaps."""
        row = self.gco2_per_kwh[self.regions.index(self.region_name(region))]
        row.flags.writeable = False
        return row

    def hour_index(self, time_s: float) -> int:
        """Index of the clock hour holding ``time_s`` (may lie outside the series)."""
        return int(math.floor((time_s - self.start_s) / S_PER_HOUR))

    def missing_hours(self, region: str, first: int, count: int) -> list[str]:
        """ISO hours in [first, first + count) that the region lacks (outside the file, or a gap)."""
        idx = np.arange(first, first + count)
        inside = (idx >= 0) & (idx < self.n_hours)
        row = self.values(region)
        missing = ~inside
        missing[inside] = np.isnan(row[idx[inside]])
        return [iso_hour(self.start_s + S_PER_HOUR * int(i)) for i in idx[missing]]

    def window(self, region: str, first: int, count: int, what: str = "the window") -> np.ndarray:
        """g/kWh of ``count`` hours from index ``first``, or a GreenlmError naming the hours the file lacks."""
        missing = self.missing_hours(region, first, count)
        if missing:
            raise GreenlmError(
                f"{Path(self.source.path).name} has no {self.region_name(region)} value for {describe_hours(missing)} "
                f"of {what} ({iso_hour(self.start_s + S_PER_HOUR * first)}..{iso_hour(self.start_s + S_PER_HOUR * (first + count))}); "
                f"the file covers {self.span()}")
        return np.array(self.values(region)[first:first + count])

    def mean(self, region: str) -> float:
        """Mean over the hours the file has (the annual mean for a one-year file)."""
        return float(np.nanmean(self.values(region)))

    def span(self) -> str:
        return f"{iso_hour(self.start_s)}..{iso_hour(self.end_s)}"


def iso_hour(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def describe_hours(hours: list[str]) -> str:
    """'2022-01-01T00:00Z, 2022-01-01T01:00Z' or 'first..last (N hours)' for long lists."""
    if len(hours) <= 3:
        return ", ".join(hours)
    return f"{hours[0]}..{hours[-1]} ({len(hours)} hours)"


# ---- reading -------------------------------------------------------------------------------------------


def read_grid_series(path, *, scope: str | None = None, kind: str | None = None, timezone_name: str | None = None,
                     region: str | None = None) -> GridSeries:
    path = Path(path)
    if scope not in (None, "lifecycle", "direct"):
        raise GreenlmError(f"scope must be lifecycle or direct, got {scope!r}")
    if kind not in (None, "average", "marginal"):
        raise GreenlmError(f"kind must be average or marginal, got {kind!r}")
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise GreenlmError(f"grid-intensity file {path} does not exist") from None
    if path.is_dir():
        raise GreenlmError(f"{path} is a folder: give a grid-intensity file (CSV or WattTime JSON)")
    return _read_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size, scope, kind, timezone_name, region)


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, _mtime_ns: int, _size: int, scope, kind, timezone_name, region) -> GridSeries:
    zone = _zone(timezone_name)
    if path.lower().endswith(".json"):
        return _read_watttime_json(path, zone, region)
    check_regular_file(path, what="intensity file")  # a FIFO or device would never end
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as err:
        raise GreenlmError(f"cannot read {path}: {err.strerror}") from None
    with f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise GreenlmError(f"{path} is empty ({FORMATS_HINT})")
        if tuple(header) == GREENLM_HEADER:
            f.seek(0)
            rows = read_greenlm_rows(path)
            return _assemble(path, [(r[0], r[2], r[3], r[4]) for r in rows],
                             dict(format="greenlm-csv", column="gco2_per_kwh", kind=kind or "unstated",
                                  scope=scope or "unstated", unit="g/kWh"))
        lower = [h.lower() for h in header]
        if "datetime (utc)" in lower and any(h.startswith("carbon intensity") for h in lower):
            return _read_electricitymaps(path, reader, header, scope or "lifecycle", zone)
        if ("point_time" in lower and "value" in lower) or ("timestamp" in lower and "moer" in lower):
            return _read_watttime_csv(path, reader, header, zone, region)
    raise GreenlmError(f"{path}: not a grid-intensity file greenlm reads; columns found: {', '.join(header)} ({FORMATS_HINT})")


def read_greenlm_rows(path) -> list[tuple]:
    """Rows of greenlm's CSV ``timestamp_utc,region,gco2_per_kwh`` as (line, stamp, time_s, region, g/kWh), checked:
    header, 3 fields, ISO-8601 time (naive = UTC), non-empty region, finite value >= 0, no (region, time) twice.
    The one parser of the format: measure/intensity.py's IntensitySeries uses it too (and adds "on the hour")."""
    check_regular_file(path, what="intensity file")  # a FIFO or device would never end
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as err:
        raise GreenlmError(f"cannot read intensity CSV {path}: {err.strerror}") from None
    rows, seen = [], {}
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise GreenlmError(f"{path} is empty: expected the header {','.join(GREENLM_HEADER)}")
        header = [h.strip() for h in header]
        if tuple(header) != GREENLM_HEADER:
            raise GreenlmError(f"{path}:1: header is {','.join(header)!r}, expected {','.join(GREENLM_HEADER)}")
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 3:
                raise GreenlmError(f"{path}:{line}: expected 3 fields (timestamp_utc,region,gco2_per_kwh), got {len(row)}")
            stamp, region, value = (cell.strip() for cell in row)
            t = _iso_seconds(stamp)
            if t is None:
                raise GreenlmError(f"{path}:{line}: timestamp_utc {stamp!r} is not an ISO-8601 time (e.g. 2022-01-01T00:00:00Z)")
            if not region:
                raise GreenlmError(f"{path}:{line}: empty region")
            g = _number(value)
            if g is None:
                raise GreenlmError(f"{path}:{line}: gco2_per_kwh {value!r} is not a number")
            if not math.isfinite(g) or g < 0:
                raise GreenlmError(f"{path}:{line}: gco2_per_kwh {value!r} must be a finite number >= 0")
            key = (region, t)
            if key in seen:
                raise GreenlmError(f"{path}:{line}: {region} {stamp} already given on line {seen[key]}")
            seen[key] = line
            rows.append((line, stamp, t, region, g))
    if not rows:
        raise GreenlmError(f"{path} has a header but no rows")
    return rows


def _read_electricitymaps(path, reader, header, scope, zone) -> GridSeries:
    lower = [h.lower() for h in header]
    time_col = lower.index("datetime (utc)")
    region_col = next((lower.index(c) for c in ("zone id", "country", "zone name") if c in lower), None)
    intensity = [i for i, h in enumerate(lower) if h.startswith("carbon intensity")]
    wanted = [i for i in intensity if _em_scope(lower[i]) == scope]
    if not wanted:
        found = ", ".join(header[i] for i in intensity)
        raise GreenlmError(f"{path}: no {scope} carbon-intensity column (found: {found}); pass the other scope")
    value_col = wanted[0]
    kind = "marginal" if "marginal" in lower[value_col] else "average"
    rows = list(_column_rows(path, reader, header, time_col, value_col, region_col, Path(path).stem,
                             utc_column=True, zone=zone))
    return _assemble(path, rows, dict(format="electricitymaps", column=header[value_col], kind=kind,
                                      scope=scope, unit="g/kWh"))


def _column_rows(path, reader, header, time_col: int, value_col: int, region_col: int | None, default_region: str,
                 *, utc_column: bool, zone):
    """(line, time, region, value in the file's unit) of each row of a vendor export; an empty value is a gap."""
    for row in reader:
        if not row or all(not c.strip() for c in row):
            continue
        line = reader.line_num
        cell = row[value_col].strip() if value_col < len(row) else ""
        if cell == "":  # the export leaves a value empty where it has none: a gap
            continue
        t = _parse_time(row[time_col].strip(), path, line, header[time_col], utc_column=utc_column, zone=zone)
        name = row[region_col].strip() if region_col is not None else default_region
        yield line, t, name, _value(cell, path, line, header[value_col])


def _em_scope(column: str) -> str | None:
    if "direct" in column:
        return "direct"
    if "lca" in column or "life cycle" in column or "lifecycle" in column:
        return "lifecycle"
    return None


def _read_watttime_csv(path, reader, header, zone, region) -> GridSeries:
    lower = [h.lower() for h in header]
    time_col = lower.index("point_time") if "point_time" in lower else lower.index("timestamp")
    value_col = lower.index("value") if "point_time" in lower else lower.index("moer")
    region_col = next((lower.index(c) for c in ("region", "ba") if c in lower), None)
    rows = [(line, t, name, lbs_per_mwh_to_g_per_kwh(value))
            for line, t, name, value in _column_rows(path, reader, header, time_col, value_col, region_col,
                                                     region or Path(path).stem, utc_column=False, zone=zone)]
    return _assemble(path, rows, dict(format="watttime", column=header[value_col], kind="marginal", scope="direct",
                                      unit="lbs/MWh"))


def _read_watttime_json(path, zone, region) -> GridSeries:
    check_regular_file(path, what="intensity file")
    try:
        with open(path, encoding="utf-8-sig") as f:
            doc = json.load(f)
    except (OSError, ValueError) as err:
        raise GreenlmError(f"cannot read {path} as JSON: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        keys = ", ".join(doc) if isinstance(doc, dict) else type(doc).__name__
        raise GreenlmError(f"{path}: not a WattTime response (expected keys meta, data; found: {keys})")
    meta = doc.get("meta") or {}
    units = str(meta.get("units", "lbs_co2_per_mwh")).lower()
    if units not in ("lbs_co2_per_mwh", "g_co2_per_kwh"):
        raise GreenlmError(f"{path}: WattTime units {units!r} not supported (lbs_co2_per_mwh or g_co2_per_kwh)")
    signal = str(meta.get("signal_type", "co2_moer"))
    name = meta.get("region") or region or Path(path).stem
    rows = []
    for i, point in enumerate(doc["data"]):
        where = f"data[{i}]"
        if not isinstance(point, dict) or "point_time" not in point or "value" not in point:
            raise GreenlmError(f"{path}: {where} has no point_time and value")
        if point["value"] is None:
            continue
        t = _parse_time(str(point["point_time"]), path, where, "point_time", utc_column=False, zone=zone)
        g = _value(str(point["value"]), path, where, "value")
        rows.append((where, t, name, lbs_per_mwh_to_g_per_kwh(g) if units == "lbs_co2_per_mwh" else g))
    return _assemble(path, rows, dict(format="watttime", column=f"value ({signal})",
                                      kind="average" if "aoer" in signal else "marginal", scope="direct",
                                      unit="lbs/MWh" if units == "lbs_co2_per_mwh" else "g/kWh"))


# ---- turning rows into the hour grid ------------------------------------------------------------------


def _assemble(path: str, rows: list, meta: dict) -> GridSeries:
    """rows: (line, time_s, region, g/kWh). Dedupe, check the step, average sub-hourly rows into clock hours."""
    if not rows:
        raise GreenlmError(f"{path} has a header but no values")
    lines = [r[0] for r in rows]
    t = np.array([r[1] for r in rows], dtype=np.float64)
    names = sorted({r[2] for r in rows})
    code = {n: i for i, n in enumerate(names)}
    reg = np.array([code[r[2]] for r in rows], dtype=np.int64)
    g = np.array([r[3] for r in rows], dtype=np.float64)
    notes = []

    order = np.lexsort((t, reg))  # by region, then time
    same = (reg[order][1:] == reg[order][:-1]) & (t[order][1:] == t[order][:-1])
    if same.any():
        a, b = order[:-1][same], order[1:][same]
        differ = g[a] != g[b]
        if differ.any():
            i, j = int(a[differ][0]), int(b[differ][0])
            raise GreenlmError(f"{path}:{lines[j]}: {names[reg[j]]} {iso_hour(t[j])} given twice with different values "
                               f"(also at {lines[i]}); remove one")
        keep = np.ones(len(t), bool)
        keep[b] = False
        t, reg, g, lines = t[keep], reg[keep], g[keep], [ln for ln, k in zip(lines, keep) if k]
        notes.append(f"dropped {int(same.sum())} repeated row(s) with the same value")
        order = np.lexsort((t, reg))

    ts, rs = t[order], reg[order]
    gaps = np.diff(ts)[rs[1:] == rs[:-1]]
    if gaps.size:  # the file's step: its most common spacing (the smallest of equally common ones)
        spacings, counts = np.unique(gaps, return_counts=True)
        step_s = int(spacings[np.argmax(counts)])
    else:
        step_s = S_PER_HOUR
    if step_s > S_PER_HOUR:
        raise GreenlmError(f"{path}: rows are {step_s / S_PER_HOUR:g} h apart (most often); the scheduler needs "
                           "hourly or finer intensities")
    if step_s == S_PER_HOUR:
        off = np.flatnonzero(t % S_PER_HOUR != 0)
        if off.size:
            k = int(off[0])
            raise GreenlmError(f"{path}:{lines[k]}: {iso_hour(t[k])} is not on the UTC hour (hourly rows must start "
                               "on the hour; sub-hourly rows are averaged into hours)")
    hour = np.floor(t / S_PER_HOUR).astype(np.int64)
    first = int(hour.min())
    n_hours = int(hour.max()) - first + 1
    flat = reg * n_hours + (hour - first)
    size = len(names) * n_hours
    total = np.bincount(flat, weights=g, minlength=size)
    count = np.bincount(flat, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(count > 0, total / np.maximum(count, 1), np.nan).reshape(len(names), n_hours)
    if step_s < S_PER_HOUR:
        expected = S_PER_HOUR // step_s if S_PER_HOUR % step_s == 0 else None
        short = int(((count > 0) & (count < expected)).sum()) if expected else 0
        notes.append(f"{step_s / 60:g}-minute rows averaged into clock hours"
                     + (f"; {short} hour(s) averaged from fewer than {expected} rows" if short else ""))
    gaps_total = int(np.isnan(grid).sum())
    if gaps_total:
        notes.append(f"{gaps_total} region-hour(s) missing (NaN) inside {iso_hour(first * S_PER_HOUR)}.."
                     f"{iso_hour((first + n_hours) * S_PER_HOUR)}")
    source = GridSource(path=path, step_s=step_s, notes=tuple(notes), **meta)
    return GridSeries(start_s=first * S_PER_HOUR, regions=tuple(names), gco2_per_kwh=grid, source=source)


# ---- cells ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=200_000)
def _iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def _iso_seconds(stamp: str) -> float | None:
    """Unix seconds of an ISO-8601 time; a naive one is UTC (greenlm's column is timestamp_utc)."""
    moment = _iso(stamp)
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _parse_time(text: str, path, line, column: str, *, utc_column: bool, zone) -> float:
    moment = _iso(text)
    if moment is None:
        raise GreenlmError(f"{path}:{line}: {column} {text!r} is not an ISO-8601 time (e.g. 2022-01-01T00:00:00Z)")
    if moment.tzinfo is not None:
        return moment.timestamp()
    if utc_column or "utc" in column.lower():
        return moment.replace(tzinfo=timezone.utc).timestamp()
    if zone is None:
        raise GreenlmError(f"{path}:{line}: {column} {text!r} has no UTC offset and the column does not say UTC: "
                           "give the times' zone (--timezone, e.g. America/Los_Angeles) or write them in UTC")
    return _local_to_utc(moment, zone, path, line, column, text)


def _local_to_utc(moment: datetime, zone, path, line, column, text) -> float:
    """A naive local time in ``zone`` as UTC seconds; refuses the daylight-saving hour that happens twice (autumn)
    and the one that never happens (spring)."""
    early, late = moment.replace(tzinfo=zone, fold=0), moment.replace(tzinfo=zone, fold=1)
    if early.utcoffset() != late.utcoffset():
        if early.utcoffset() > late.utcoffset():  # clocks went back: the hour happened twice
            raise GreenlmError(f"{path}:{line}: {column} {text!r} is ambiguous in {zone.key} (the daylight-saving hour "
                               "that happens twice); write the times in UTC or with offsets")
        raise GreenlmError(f"{path}:{line}: {column} {text!r} does not exist in {zone.key} (skipped by daylight "
                           "saving); write the times in UTC or with offsets")
    return early.astimezone(timezone.utc).timestamp()


def _zone(name: str | None):
    if not name:
        return None
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError on odd names
        raise GreenlmError(f"unknown time zone {name!r}: give an IANA name such as America/Los_Angeles or "
                           "Europe/Berlin") from None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _value(text: str, path, line, column: str) -> float:
    g = _number(text)
    if g is None or not math.isfinite(g) or g < 0:
        raise GreenlmError(f"{path}:{line}: {column} {text!r} must be a finite number >= 0")
    return g


__all__ = ["S_PER_HOUR", "GridSeries", "GridSource", "describe_hours", "iso_hour", "read_greenlm_rows",
           "read_grid_series"]
