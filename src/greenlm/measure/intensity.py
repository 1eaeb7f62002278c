"""Carbon intensity of electricity (gCO2e/kWh), with the table or file and year it came from.

Annual figures come from the tables greenlm ships in ``greenlm/measure/data/intensity/`` (one JSON file per
table, written by ``scripts/build_measure_tables.py`` from CodeCarbon's package data; origins and licences in
``greenlm/measure/data/README.md``). Nothing is read from CodeCarbon at run time, so a plain ``pip install
greenlm`` knows every region, and a figure does not change with the CodeCarbon installed:

| region form | example | table (original source) |
|---|---|---|
| country, ISO 3166 alpha-3 or name | ``USA``, ``France`` | ``countries.json`` (Our World in Data) |
| US state | ``USA/CA``, ``USA/california`` | ``us_states.json`` (EPA eGRID) |
| Canadian province | ``CAN/quebec`` | ``canada_provinces.json`` (generation mix, CodeCarbon's formula) |
| Chinese province | ``CHN/CN-BJ``, ``CHN/beijing`` | ``china_provinces.json`` (MEE/NBS) |
| Nordic bidding zone | ``SE3``, ``NO1``, ``FI`` | ``nordic_zones.json`` (ENTSO-E) |
| cloud region | ``gcp:us-central1`` | ``cloud_regions.json`` (the providers) |
| world average | ``WORLD`` | ``world.json`` (IEA) |

Each table is loaded on its own: one that is missing or unreadable is skipped, and ``table_notes()`` (and the
error for a region it would have held) says which and why.

Hourly figures come from a user's CSV ``timestamp_utc,region,gco2_per_kwh`` (one row per region and
clock hour, the hour starting at ``timestamp_utc``): the CO2e of a run is then the energy of each
clock hour times that hour's intensity.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.measure.units import check_non_negative

SERIES_HEADER = ("timestamp_utc", "region", "gco2_per_kwh")  # read by grid_series.read_greenlm_rows

# The shipped tables, in lookup order (a name in two tables keeps the first one's figure).
TABLES = ("countries", "us_states", "canada_provinces", "china_provinces", "nordic_zones", "cloud_regions", "world")


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


def _data_folder():
    return importlib.resources.files("greenlm.measure") / "data" / "intensity"


# Where a region lies, for CodeCarbon's columns (``place_of``): a Nordic bidding zone's country by its prefix.
_NORDIC_COUNTRIES = {"SE": "SWE", "NO": "NOR", "FI": "FIN", "DK": "DNK"}
_COUNTRY_OF_KIND = {"us-state": "USA", "canada-province": "CAN", "china-province": "CHN"}


def _read_table(name: str) -> dict:
    """One shipped table as {UPPER-CASE NAME: (kind, name, g/kWh, year, source, label, country ISO)}; OSError or
    ValueError if unreadable."""
    resource = _data_folder() / f"{name}.json"
    data = json.loads(resource.read_text(encoding="utf-8"))
    kind, via = data["kind"], data["via"]
    out: dict[str, tuple] = {}
    for row in data["regions"]:
        g = float(row["g_per_kwh"])
        if not g >= 0:  # also refuses NaN
            raise ValueError(f"{row['name']}: intensity {row['g_per_kwh']!r} is not a number >= 0")
        detail = row.get("label", row["name"])
        if row.get("published"):
            detail += f", published as {row['published']}"
        source = f"{data['origin']}, via {via}, shipped as greenlm data/intensity/{name}.json ({detail})"
        entry = (kind, row["name"], g, row.get("year"), source, row.get("label", ""), row.get("country", ""))
        out.setdefault(row["name"].upper(), entry)
        for alias in row.get("aliases", []):
            out.setdefault(alias.upper(), entry)
    return out


@functools.lru_cache(maxsize=1)
def _load() -> tuple[dict, tuple[str, ...]]:
    """(every region name greenlm knows -> its entry, notes on tables that could not be loaded). Built once."""
    table: dict[str, tuple] = {}
    notes = []
    for name in TABLES:
        try:
            rows = _read_table(name)
        except FileNotFoundError:
            notes.append(f"intensity table {name}.json is missing from this greenlm install; its regions are unknown")
            continue
        except (OSError, ValueError, KeyError, TypeError) as err:
            notes.append(f"intensity table {name}.json could not be read ({type(err).__name__}: {err}); "
                         "its regions are unknown")
            continue
        for key, entry in rows.items():
            table.setdefault(key, entry)
    return table, tuple(notes)


def _tables() -> dict:
    return _load()[0]


def table_notes() -> list[str]:
    """One line per shipped intensity table that could not be loaded (empty when all are there)."""
    return list(_load()[1])


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
        skipped = f"; not loaded: {'; '.join(table_notes())}" if table_notes() else ""
        raise GreenlmError(
            f"unknown region {region!r}{hint} (forms: USA, France, USA/CA, CAN/quebec, CHN/CN-BJ, SE3, "
            f"gcp:us-central1, WORLD; `greenlm calc --list-regions` lists them all){skipped}"
        )
    kind, name, value, year, source = entry[:5]
    return Intensity(value, name, source, year, kind)


def place_of(region: str | None, kind: str | None) -> dict:
    """Where an intensity region lies, in CodeCarbon's terms: ``country_iso_code`` (ISO 3166 alpha-3),
    ``country_name`` (as the countries table names it) and ``region`` (the state or province, lower case as
    CodeCarbon writes it; a Nordic zone's code); '' for what greenlm does not know (a user's figure, WORLD, a
    series region such as CISO)."""
    place = {"country_iso_code": "", "country_name": "", "region": ""}
    if not region:
        return place
    table = _tables()
    entry = table.get(region.upper())
    if kind == "country" and entry is not None:
        place["country_iso_code"] = entry[1]
    elif kind in _COUNTRY_OF_KIND:
        place["country_iso_code"] = _COUNTRY_OF_KIND[kind]
        place["region"] = (entry[5] if entry is not None else region.split("/", 1)[-1]).lower()
    elif kind == "nordic-zone":
        place["country_iso_code"] = _NORDIC_COUNTRIES.get(region[:2].upper(), "")
        place["region"] = region
    elif kind == "cloud" and entry is not None:
        place["country_iso_code"] = entry[6]
    country = table.get(place["country_iso_code"].upper()) if place["country_iso_code"] else None
    if country is not None and country[0] == "country":
        place["country_name"] = country[5]
    return place


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
