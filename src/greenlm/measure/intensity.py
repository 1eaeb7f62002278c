"""Carbon intensity of electricity (gCO2e/kWh), with the table or file and year it came from.

Annual figures come from the tables packaged with CodeCarbon, read from the installed package
(nothing re-typed here):

| region form | example | CodeCarbon file |
|---|---|---|
| country, ISO 3166 alpha-3 or name | ``USA``, ``France`` | ``data/private_infra/global_energy_mix.json`` |
| US state | ``USA/CA``, ``USA/california`` | ``data/private_infra/2023/usa_emissions.json`` (EPA eGRID) |
| Canadian province | ``CAN/quebec`` | ``data/private_infra/2023/canada_energy_mix.json`` (via CodeCarbon's mix formula) |
| Chinese province | ``CHN/CN-BJ``, ``CHN/beijing`` | ``data/private_infra/2023/china_provincial_emissions.json`` |
| Nordic bidding zone | ``SE3``, ``NO1``, ``FI`` | ``data/private_infra/nordic_emissions.json`` |
| cloud region | ``gcp:us-central1`` | ``data/cloud/impact.csv`` |
| world average | ``WORLD`` | ``data/private_infra/carbon_intensity_per_source.json`` |

Hourly figures come from a user's CSV ``timestamp_utc,region,gco2_per_kwh`` (one row per region and
clock hour, the hour starting at ``timestamp_utc``): the CO2e of a run is then the energy of each
clock hour times that hour's intensity.
"""

from __future__ import annotations

import csv
import difflib
import functools
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.common.optional import is_available, missing_message
from greenlm.measure.hardware import codecarbon_data_file
from greenlm.measure.units import check_non_negative, lbs_per_mwh_to_g_per_kwh

SERIES_HEADER = ("timestamp_utc", "region", "gco2_per_kwh")  # read by grid_series.read_greenlm_rows


@dataclass(frozen=True)
class Intensity:
    """One annual intensity and its provenance."""

    g_per_kwh: float
    region: str
    source: str
    year: int | None
    kind: str  # country | us-state | canada-province | china-province | nordic-zone | cloud | world | user


def user_intensity(g_per_kwh: float) -> Intensity:
    value = check_non_negative(g_per_kwh, "carbon intensity (gCO2e/kWh)")
    return Intensity(value, "user", "user: intensity_g_per_kwh", None, "user")


# ---- annual tables ---------------------------------------------------------------------------------


def _codecarbon_json(relative: str):
    found = codecarbon_data_file(relative)
    if found is None:
        if not is_available("codecarbon"):
            raise GreenlmError(missing_message(
                "codecarbon", "carbon intensities by region; a gCO2e/kWh figure or an hourly CSV works without it"))
        raise GreenlmError(f"the installed CodeCarbon has no {relative}: reinstall it")
    path, version = found
    with open(path, encoding="utf-8-sig") as f:
        return json.load(f), f"CodeCarbon {version} {relative}"


@functools.lru_cache(maxsize=1)
def _tables() -> dict:
    """Every region name greenlm knows -> a loader for its Intensity. Built once, lazily."""
    table: dict[str, tuple] = {}
    mix, mix_src = _codecarbon_json("data/private_infra/global_energy_mix.json")
    for iso, row in mix.items():
        if row.get("carbon_intensity") is None:
            continue
        entry = ("country", iso, row["carbon_intensity"], row.get("year"), f"{mix_src} ({row.get('country_name', iso)})")
        table[iso.upper()] = entry
        if row.get("country_name"):
            table.setdefault(row["country_name"].upper(), entry)

    usa, usa_src = _codecarbon_json("data/private_infra/2023/usa_emissions.json")
    meta = usa.get("_source", {})
    year = meta.get("year", 2023)
    origin = meta.get("name", "EPA eGRID")
    for state, row in usa.items():
        if state.startswith("_") or not isinstance(row, dict) or "emissions" not in row:
            continue
        g = lbs_per_mwh_to_g_per_kwh(row["emissions"])
        entry = ("us-state", f"USA/{row['regionCode']}", g, year, f"{origin} via {usa_src} ({state}, lbs/MWh converted)")
        table[f"USA/{row['regionCode']}".upper()] = entry
        table[f"USA/{state}".upper()] = entry

    can, can_src = _codecarbon_json("data/private_infra/2023/canada_energy_mix.json")
    for province, row in can.items():
        entry = ("canada-province", f"CAN/{province}", row, 2023, f"{can_src} ({province}; CodeCarbon's fossil-share formula)")
        table[f"CAN/{province}".upper()] = entry

    chn, chn_src = _codecarbon_json("data/private_infra/2023/china_provincial_emissions.json")
    chn_meta = chn.get("metadata", {})
    for code, row in chn.get("data", {}).items():
        src = f"{chn_src} ({row.get('description', code)}; {chn_meta.get('announcement', 'MEE/NBS')}; CO2 only)"
        entry = ("china-province", f"CHN/{code}", row["emission_factor"], row.get("year", chn_meta.get("year")), src)
        table[f"CHN/{code}".upper()] = entry
        for name in row.get("names", []):
            table.setdefault(f"CHN/{name}".upper(), entry)

    nordic, nordic_src = _codecarbon_json("data/private_infra/nordic_emissions.json")
    for zone, row in nordic.get("data", {}).items():
        src = f"{nordic_src} ({row.get('description', zone)})"
        table[zone.upper()] = ("nordic-zone", zone, row["emission_factor"], row.get("year"), src)

    found = codecarbon_data_file("data/cloud/impact.csv")
    if found is not None:
        path, version = found
        with open(path, newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                try:
                    g = float(row["impact"])
                except (KeyError, TypeError, ValueError):
                    continue
                name = f"{row['provider']}:{row['region']}"
                src = f"CodeCarbon {version} data/cloud/impact.csv ({row.get('source') or 'provider'}; year not stated)"
                table[name.upper()] = ("cloud", name, g, None, src)

    per_source, ps_src = _codecarbon_json("data/private_infra/carbon_intensity_per_source.json")
    world = per_source.get("world_average")
    if world is not None:
        table["WORLD"] = ("world", "WORLD", world, None, f"{ps_src} (world_average: {per_source.get('world_average_source', '')})")
    return table


def lookup_intensity(region: str) -> Intensity:
    """The annual intensity of ``region`` (see the module docstring for the forms), or a GreenlmError
    naming the closest known regions."""
    if not isinstance(region, str) or not region.strip():
        raise GreenlmError("region must be a non-empty name such as USA, USA/CA, FRA, SE3 or gcp:us-central1")
    key = region.strip().upper().replace("\\", "/")
    if key.startswith("US-") and len(key) == 5:
        key = "USA/" + key[3:]
    table = _tables()
    entry = table.get(key)
    if entry is None:
        close = difflib.get_close_matches(key, list(table), n=5, cutoff=0.6)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise GreenlmError(
            f"unknown region {region!r}{hint} (forms: USA, France, USA/CA, CAN/quebec, CHN/CN-BJ, SE3, "
            "gcp:us-central1, WORLD; `greenlm calc --list-regions` lists them all)"
        )
    kind, name, value, year, source = entry
    if kind == "canada-province":
        value = _canada_g_per_kwh(value)
    return Intensity(float(value), name, source, year, kind)


def _canada_g_per_kwh(mix: dict) -> float:
    """Intensity of a Canadian province from its generation mix, with CodeCarbon's own formula."""
    try:
        from codecarbon.core.emissions import Emissions

        return Emissions._region_energy_mix_to_emissions_rate(mix).kgs_per_kWh * 1000.0
    except (ImportError, AttributeError) as err:
        raise GreenlmError(
            f"this CodeCarbon version does not expose its energy-mix formula ({err}); use a country or a "
            "gCO2e/kWh figure"
        ) from None


def known_regions() -> list[str]:
    """Every region name lookup_intensity accepts (upper case)."""
    return sorted(_tables())


# ---- hourly time series ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesCo2e:
    """CO2e of a window from an hourly series, and what had to be filled in."""

    co2e_kg: float
    intensity_g_per_kwh: float  # energy-weighted mean over the window
    missing_hours_utc: list
    fill_g_per_kwh: float | None
    source: str
    by_hour: tuple = ()  # (hour start Unix s, kWh, g/kWh used) of each clock hour of the window, in order


@dataclass
class IntensitySeries:
    """Hourly intensities: region -> {hour start (Unix s): gCO2e/kWh}."""

    path: Path
    by_region: dict = field(default_factory=dict)
    label: str | None = None  # where the figures came from, when not greenlm's CSV at ``path``

    @classmethod
    def from_grid(cls, grid, region: str) -> "IntensitySeries":
        """One region of a ``grid_series.GridSeries`` (any file format greenlm reads: Electricity Maps, WattTime...),
        its gaps left out (an hour it lacks gets the mean, as in a CSV)."""
        name = grid.region_name(region)
        hours = {int(t): float(g) for t, g in zip(grid.hours_s, grid.values(name)) if g == g}  # g == g: not NaN
        if not hours:
            raise GreenlmError(f"{Path(grid.source.path).name} has no {name} value at all")
        return cls(Path(grid.source.path), {name: hours}, label=grid.source.label)

    @property
    def regions(self) -> list[str]:
        return sorted(self.by_region)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "IntensitySeries":
        path = Path(path)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise GreenlmError(f"intensity CSV {path} does not exist") from None
        return _load_series(str(path.resolve()), stat.st_mtime_ns, stat.st_size)

    def region(self, region: str) -> dict:
        if region in self.by_region:
            return self.by_region[region]
        close = difflib.get_close_matches(region, self.regions, n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"it has: {', '.join(self.regions[:12])}"
        raise GreenlmError(f"region {region!r} is not in {self.path} ({hint})")

    def co2e(self, region: str, kwh_by_hour: dict[float, float]) -> SeriesCo2e:
        """CO2e of energy split by clock hour (hour start, Unix s -> kWh). An hour the series lacks gets
        the region's mean over the file, and is listed."""
        hours = self.region(region)
        mean = sum(hours.values()) / len(hours)
        co2e_g = energy = 0.0
        missing, by_hour = [], []
        for hour, kwh in sorted(kwh_by_hour.items()):
            g = hours.get(int(hour))
            if g is None:
                missing.append(_iso_hour(hour))
                g = mean
            co2e_g += kwh * g
            energy += kwh
            by_hour.append((float(hour), kwh, g))
        effective = co2e_g / energy if energy > 0 else _mean_of(hours, kwh_by_hour, mean)
        return SeriesCo2e(
            co2e_kg=co2e_g / 1000.0,
            intensity_g_per_kwh=effective,
            missing_hours_utc=missing,
            fill_g_per_kwh=mean if missing else None,
            source=f"hourly series {self.label or self.path} (region {region})",
            by_hour=tuple(by_hour),
        )


def _mean_of(hours, kwh_by_hour, fallback):
    values = [hours[int(h)] for h in kwh_by_hour if int(h) in hours]
    return sum(values) / len(values) if values else fallback


def _iso_hour(hour: float) -> str:
    return datetime.fromtimestamp(hour, tz=timezone.utc).strftime("%Y-%m-%dT%H:00Z")


def describe_missing(hours: list[str]) -> str:
    """'2025-01-01T00:00Z..2025-01-01T02:00Z (3 hours)' style, short for long lists."""
    if not hours:
        return ""
    if len(hours) <= 3:
        return ", ".join(hours)
    return f"{hours[0]}..{hours[-1]} ({len(hours)} hours)"


@functools.lru_cache(maxsize=8)
def _load_series(path: str, mtime_ns: int, size: int) -> IntensitySeries:
    # greenlm's CSV has one parser, in grid_series (imported here: it brings numpy, which `import greenlm.measure`
    # does not need); it checks every row, and this series is hourly: each row starts on the hour.
    from greenlm.measure.grid_series import read_greenlm_rows

    series = IntensitySeries(Path(path))
    for line, stamp, time_s, region, g in read_greenlm_rows(path):
        if time_s % 3600:
            raise GreenlmError(f"{path}:{line}: timestamp_utc {stamp!r} is not on the hour (the series is hourly)")
        series.by_region.setdefault(region, {})[int(time_s)] = g
    return series
