"""Write a price tag as a row of a CodeCarbon-compatible ``emissions.csv``.

The columns are those of CodeCarbon 3.x's ``EmissionsData`` (units as CodeCarbon writes them:
duration s, emissions kg CO2e, emissions_rate kg/s, powers W, energies kWh, RAM GB), so dashboards
built on CodeCarbon's file read greenlm's runs. As in CodeCarbon, the component powers and energies
include the PUE. Each column means what CodeCarbon's means; where greenlm's figure differs, docs/pricetag.md
("CodeCarbon-compatible emissions.csv") says how, column by column:

- ``timestamp``: the end of the tag, in the local time of the machine writing the row, ``%Y-%m-%dT%H:%M:%S``
  (CodeCarbon's format: no time zone; the record keeps ``ended_at_utc``).
- ``run_id``: the record's UUID (the ledger's id). ``experiment_id``: a UUID too, derived (UUID 5) from the
  project and the tag's name, so every run of one stage of one project shares it, as runs of one CodeCarbon
  experiment share theirs.
- ``codecarbon_version``: CodeCarbon's version when its tracker measured (``backend="codecarbon"``), else empty:
  CodeCarbon did not run (the tables greenlm prices with came from CodeCarbon; their release is in the record).
- ``country_name``, ``country_iso_code``, ``region``: from the intensity region (``intensity.place_of``).
- ``tracking_mode``: ``machine`` when the CPU figure is a whole-package counter (RAPL, directly or through Zeus) or CodeCarbon's own tracker
  (in its default mode), ``process`` when it is the measured processes' share (greenlm's CPU estimate).
- ``water_consumed`` 0 and ``wue`` 0: greenlm has no water model; CodeCarbon's default WUE is 0, which gives 0.

The file is rewritten whole through a temporary file and a rename, under a lock where the platform
has ``fcntl``: a reader never sees half a row, and two writers do not lose each other's rows.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import uuid
from datetime import datetime
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_text
from greenlm.measure.intensity import place_of

# The namespace of greenlm's experiment ids: uuid5(EXPERIMENT_NAMESPACE, "project/name").
EXPERIMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://greenlm/emissions.csv/experiment_id")

COLUMNS = (
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate",
    "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed",
    "water_consumed", "country_name", "country_iso_code", "region", "cloud_provider", "cloud_region", "os",
    "python_version", "codecarbon_version", "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude",
    "latitude", "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent",
    "ram_utilization_percent", "ram_used_gb", "on_cloud", "pue", "wue",
)  # fmt: skip


def emissions_row(record) -> dict:
    """One CodeCarbon-style row from a PriceTagRecord (or its dict)."""
    rec = record if isinstance(record, dict) else record.to_dict()
    wall_s = rec.get("wall_s") or 0.0
    pue = rec.get("pue") or 1.0
    parts = rec.get("energy_kwh_by_component") or {}
    details = rec.get("energy_details") or {}
    machine = rec.get("machine") or {}
    kind = rec.get("intensity_kind")
    region = rec.get("intensity_region") or ""

    def energy(component):
        value = parts.get(component)
        return "" if value is None else value * pue

    def power(component):
        value = parts.get(component)
        return "" if value is None or wall_s <= 0 else value * pue * 3.6e6 / wall_s

    co2e = rec.get("co2e_kg")
    provider, _, cloud_region = region.partition(":") if kind == "cloud" else ("", "", "")
    place = place_of(region, kind)
    cpu_time = rec.get("cpu_s")
    cpus = machine.get("logical_cpus") or 0
    row = {
        "timestamp": local_timestamp(rec.get("ended_at_utc")),
        "project_name": rec.get("project") or "",
        "run_id": rec.get("id", ""),
        "experiment_id": experiment_id(rec.get("project"), rec.get("name")),
        "duration": wall_s,
        "emissions": "" if co2e is None else co2e,
        "emissions_rate": "" if co2e is None or wall_s <= 0 else co2e / wall_s,
        "cpu_power": power("cpu"),
        "gpu_power": power("gpu"),
        "ram_power": power("ram"),
        "cpu_energy": energy("cpu"),
        "gpu_energy": energy("gpu"),
        "ram_energy": energy("ram"),
        "energy_consumed": rec.get("energy_kwh") if rec.get("energy_kwh") is not None else "",
        "water_consumed": 0,
        "country_name": place["country_name"],
        "country_iso_code": place["country_iso_code"],
        "region": place["region"],
        "cloud_provider": provider,
        "cloud_region": cloud_region,
        "os": machine.get("os", ""),
        "python_version": machine.get("python", ""),
        "codecarbon_version": details.get("codecarbon_version") or "",
        "cpu_count": cpus,
        "cpu_model": machine.get("cpu_model", ""),
        "gpu_count": details.get("gpu_count", 0),
        "gpu_model": ", ".join(details.get("gpu_names", [])),
        "longitude": "",
        "latitude": "",
        "ram_total_size": machine.get("memory_total_gb") or "",
        "tracking_mode": tracking_mode(rec),
        "cpu_utilization_percent": (100.0 * cpu_time / (wall_s * cpus)) if cpu_time and wall_s > 0 and cpus else "",
        "gpu_utilization_percent": "",
        "ram_utilization_percent": "",
        "ram_used_gb": details.get("ram_gb_mean", ""),
        "on_cloud": "Y" if kind == "cloud" else "N",
        "pue": pue,
        "wue": 0,
    }
    return row


def local_timestamp(ended_at_utc: str | None) -> str:
    """``2025-06-01T14:03:22``: an ISO UTC instant in this machine's local time, as CodeCarbon writes it."""
    if not ended_at_utc:
        return ""
    instant = datetime.fromisoformat(ended_at_utc.replace("Z", "+00:00"))
    return instant.astimezone().strftime("%Y-%m-%dT%H:%M:%S")


def experiment_id(project: str | None, name: str | None) -> str:
    """The same UUID for every tag of one name in one project (CodeCarbon's experiments group runs the same way)."""
    return str(uuid.uuid5(EXPERIMENT_NAMESPACE, f"{project or ''}/{name or ''}"))


def tracking_mode(rec: dict) -> str:
    """``machine`` when the CPU figure covers the whole package (RAPL, directly or through Zeus; CodeCarbon's
    tracker), else ``process``."""
    sources = rec.get("energy_source_by_component") or {}
    if sources.get("cpu") == "codecarbon":
        return (rec.get("energy_details") or {}).get("codecarbon_tracking_mode") or "machine"
    return "machine" if sources.get("cpu") in ("rapl", "zeus") else "process"


def append_emissions_csv(path: str | os.PathLike, record) -> Path:
    """Append ``record`` as one row to ``path`` (a file, or a folder that gets ``emissions.csv``)."""
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        path = path / "emissions.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    row = emissions_row(record)
    with _locked(path):
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        header = COLUMNS
        if existing.strip():
            first = next(csv.reader(io.StringIO(existing)))
            if sorted(first) != sorted(COLUMNS):
                raise GreenlmError(
                    f"{path} has other columns than CodeCarbon 3.x's emissions.csv (an older CodeCarbon?); "
                    "it was left untouched: write to another file"
                )
            header = tuple(first)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if not existing.strip():
            writer.writerow(header)
        writer.writerow([row[c] for c in header])
        text = existing if existing.endswith("\n") or not existing else existing + "\n"
        atomic_write_text(path, text + out.getvalue())
    return path


@contextlib.contextmanager
def _locked(path: Path):
    try:
        import fcntl
    except ImportError:  # Windows: the rename is still atomic, concurrent writers are not serialised
        yield
        return
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
