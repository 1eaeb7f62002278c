"""The ledger: totals, concurrent writers, locked and corrupt files; the CodeCarbon-style emissions.csv."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
import uuid

import pytest

from greenlm.common import GreenlmError
from greenlm.measure import Ledger, append_emissions_csv, default_ledger_path
from greenlm.measure.emissions_csv import COLUMNS, emissions_row


def record(name="run", project="p", stage=None, day="2025-06-01", energy=0.5, co2e=0.1, cost=None, **extra):
    return {
        "id": str(uuid.uuid4()), "name": name, "project": project, "stage": stage, "status": "ok",
        "started_at_utc": f"{day}T10:00:00.000+00:00", "ended_at_utc": f"{day}T11:00:00.000+00:00",
        "wall_s": 3600.0, "cpu_s": 100.0, "energy_kwh": energy, "co2e_kg": co2e, "cost_usd": cost,
        "energy_source": "estimate:tdp-utilisation", "intensity_source": "test", **extra,
    }


def test_default_path_follows_greenlm_home(monkeypatch, tmp_path):
    monkeypatch.setenv("GREENLM_HOME", str(tmp_path / "home"))
    assert default_ledger_path() == tmp_path / "home" / "ledger.sqlite"
    monkeypatch.delenv("GREENLM_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_ledger_path() == tmp_path / "xdg" / "greenlm" / "ledger.sqlite"


def test_totals_by_group_and_since(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.append(record(project="a", stage="finetune", day="2025-05-30", energy=1.0, co2e=0.4, cost=2.0))
    ledger.append(record(project="a", stage="distill", day="2025-06-02", energy=2.0, co2e=None))
    ledger.append(record(project="b", stage="finetune", day="2025-06-02", energy=4.0, co2e=1.0, cost=1.0))
    (total,) = ledger.totals()
    assert total["records"] == 3 and total["energy_kwh"] == 7.0
    assert total["co2e_kg"] == pytest.approx(1.4) and total["co2e_records"] == 2
    by_project = {g["group"]: g for g in ledger.totals(group_by="project")}
    assert by_project["a"]["energy_kwh"] == 3.0 and by_project["b"]["cost_usd"] == 1.0
    by_day = [g["group"] for g in ledger.totals(group_by="day")]
    assert by_day == ["2025-05-30", "2025-06-02"]
    (june,) = ledger.totals(since="2025-06-01")
    assert june["records"] == 2 and june["energy_kwh"] == 6.0
    assert [g["group"] for g in ledger.totals(group_by="stage")] == ["distill", "finetune"]
    with pytest.raises(GreenlmError, match="cannot group by 'week'"):
        ledger.totals(group_by="week")
    with pytest.raises(GreenlmError, match="--since 'last tuesday' is not a date"):
        ledger.totals(since="last tuesday")
    assert Ledger(tmp_path / "absent.sqlite").totals() == []


_WRITER = """
import sys, uuid, time
from greenlm.measure import Ledger
ledger = Ledger(sys.argv[1])
while time.time() < float(sys.argv[3]):
    pass
for i in range(int(sys.argv[2])):
    ledger.append({"id": str(uuid.uuid4()), "name": f"w{i}", "started_at_utc": "2025-06-01T00:00:00+00:00",
                   "wall_s": 1.0, "energy_kwh": 1.0})
"""


@pytest.mark.slow
def test_concurrent_writers_lose_nothing(tmp_path):
    import time

    path = tmp_path / "ledger.sqlite"
    Ledger(path).append(record())
    start_at = time.time() + 1.5  # both processes begin appending at the same moment
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "60", str(start_at)]) for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    rows = Ledger(path).records()
    assert len(rows) == 121 and len({r["id"] for r in rows}) == 121


def test_locked_ledger_keeps_the_record_aside_and_imports_it_later(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, timeout_s=0.2)
    ledger.append(record(name="first"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(GreenlmError, match="locked by another process.*saved to") as err:
            ledger.append(record(name="second"))
        assert "\n" not in str(err.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(list(ledger.pending_dir.glob("*.json"))) == 1
    ledger.append(record(name="third"))
    assert sorted(r["name"] for r in ledger.records()) == ["first", "second", "third"]
    assert list(ledger.pending_dir.glob("*.json")) == []


def test_corrupt_ledger_is_reported_never_overwritten(tmp_path):
    path = tmp_path / "ledger.sqlite"
    garbage = b"this is not a database\x00" * 10
    path.write_bytes(garbage)
    ledger = Ledger(path)
    with pytest.raises(GreenlmError, match="not an SQLite file.*left untouched.*saved to"):
        ledger.append(record())
    with pytest.raises(GreenlmError, match="not an SQLite file"):
        ledger.totals()
    assert path.read_bytes() == garbage
    assert len(list(ledger.pending_dir.glob("*.json"))) == 1

    damaged = tmp_path / "damaged.sqlite"
    Ledger(damaged).append(record())
    data = bytearray(damaged.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # keep the magic header, wreck the schema page
    damaged.write_bytes(bytes(data))
    with pytest.raises(GreenlmError, match="cannot be read|not a greenlm ledger"):
        Ledger(damaged).append(record())
    assert damaged.read_bytes() == bytes(data)

    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(GreenlmError, match="not a greenlm ledger"):
        Ledger(other).append(record())


def test_pricetag_appends_to_ledger(tmp_path):
    from greenlm.measure import PriceTag

    ledger = Ledger(tmp_path / "l.sqlite")
    with PriceTag("unit", project="proj", pue=1.0, region="USA", ledger=ledger):
        with PriceTag("phase"):
            pass
    rows = ledger.records()
    assert len(rows) == 1 and rows[0]["name"] == "unit" and rows[0]["phases"][0]["name"] == "phase"


def test_pricetag_reports_a_broken_ledger_without_failing_the_work(tmp_path):
    from greenlm.measure import PriceTag, PriceTagWarning

    path = tmp_path / "l.sqlite"
    path.write_bytes(b"garbage" * 10)
    with pytest.warns(PriceTagWarning, match="not added to the ledger"):
        with PriceTag("unit", pue=1.0, ledger=Ledger(path)) as tag:
            pass
    assert any("not added to the ledger" in w for w in tag.record.warnings)


def test_emissions_csv_has_codecarbon_columns_and_appends(tmp_path):
    rec = record(energy=0.3, co2e=0.12, pue=1.5, intensity_region="USA/CA", intensity_kind="us-state",
                 energy_kwh_by_component={"cpu": 0.1, "gpu": 0.1, "ram": None},
                 machine={"os": "Linux", "python": "3.11", "cpu_model": "X", "logical_cpus": 4})
    path = append_emissions_csv(tmp_path, rec)
    append_emissions_csv(path, rec)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 2
    assert float(rows[0]["emissions"]) == 0.12 and float(rows[0]["duration"]) == 3600.0
    assert float(rows[0]["cpu_energy"]) == pytest.approx(0.15)  # CodeCarbon's energies include the PUE
    assert float(rows[0]["cpu_power"]) == pytest.approx(150.0)
    assert rows[0]["ram_energy"] == ""
    assert (rows[0]["country_iso_code"], rows[0]["country_name"], rows[0]["region"]) == ("USA", "United States",
                                                                                         "california")
    codecarbon = pytest.importorskip("codecarbon.output_methods.emissions_data")
    import dataclasses

    assert [f.name for f in dataclasses.fields(codecarbon.EmissionsData)] == list(COLUMNS)


def test_emissions_csv_columns_mean_what_codecarbon_means(tmp_path, monkeypatch):
    import time
    import uuid as uuid_module

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+5:30, no daylight saving: local time is unambiguous
    if not hasattr(time, "tzset"):
        pytest.skip("no time.tzset on this platform")
    time.tzset()
    try:
        first = emissions_row(record(name="distill", project="sst2", intensity_region="SE3", intensity_kind="nordic-zone",
                                     energy_source_by_component={"cpu": "rapl", "gpu": None, "ram": "estimate"}))
        again = emissions_row(record(name="distill", project="sst2", intensity_region="FRA", intensity_kind="country"))
        other = emissions_row(record(name="prune", project="sst2"))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert first["timestamp"] == "2025-06-01T16:30:00"  # 11:00 UTC in local time, CodeCarbon's format
    assert uuid_module.UUID(first["run_id"]).version == 4
    assert uuid_module.UUID(first["experiment_id"]).version == 5
    assert first["experiment_id"] == again["experiment_id"] != other["experiment_id"]  # one stage, one experiment
    assert (first["country_iso_code"], first["country_name"], first["region"]) == ("SWE", "Sweden", "SE3")
    assert (again["country_iso_code"], again["country_name"], again["region"]) == ("FRA", "France", "")
    assert first["tracking_mode"] == "machine" and again["tracking_mode"] == "process"  # RAPL vs the estimate
    assert first["codecarbon_version"] == ""  # CodeCarbon did not measure
    measured_by_cc = record(energy_source_by_component={"cpu": "codecarbon"},
                            energy_details={"codecarbon_version": "3.3.2", "codecarbon_tracking_mode": "machine"})
    assert emissions_row(measured_by_cc)["codecarbon_version"] == "3.3.2"
    assert emissions_row(measured_by_cc)["tracking_mode"] == "machine"
    cloud = emissions_row(record(intensity_region="gcp:us-central1", intensity_kind="cloud"))
    assert (cloud["cloud_provider"], cloud["cloud_region"], cloud["country_iso_code"], cloud["on_cloud"]) == \
        ("gcp", "us-central1", "USA", "Y")
    assert first["water_consumed"] == 0 and first["wue"] == 0


def test_emissions_csv_with_other_columns_is_left_alone(tmp_path):
    path = tmp_path / "emissions.csv"
    path.write_text("timestamp,emissions\n2020,1\n")
    with pytest.raises(GreenlmError, match="other columns"):
        append_emissions_csv(path, record())
    assert path.read_text() == "timestamp,emissions\n2020,1\n"
