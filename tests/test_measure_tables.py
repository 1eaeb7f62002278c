"""The intensity and CPU tables greenlm ships: every region resolves without CodeCarbon, each table is loaded on
its own (a missing one is skipped with a note), and the figures keep their provenance."""

from __future__ import annotations

import importlib.resources
import json
import shutil
import sys

import pytest

from greenlm.common import GreenlmError
from greenlm.measure import PriceTag, hardware, intensity
from greenlm.measure.intensity import TABLES, known_regions, lookup_intensity, table_notes
from greenlm.pipeline.recipes import load_recipe

pytestmark = pytest.mark.filterwarnings("ignore::greenlm.measure.PriceTagWarning")


@pytest.fixture
def fresh_tables():
    """Reload the tables inside the test (they are cached per process) and leave a clean cache behind."""
    intensity._load.cache_clear()
    hardware._cpu_table.cache_clear()
    hardware._table_power.cache_clear()
    yield
    intensity._load.cache_clear()
    hardware._cpu_table.cache_clear()
    hardware._table_power.cache_clear()


@pytest.fixture
def no_codecarbon(monkeypatch, fresh_tables):
    """CodeCarbon made unimportable, as in `pip install greenlm` without extras."""
    for name in [m for m in sys.modules if m == "codecarbon" or m.startswith("codecarbon.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    with pytest.raises(ImportError):
        import codecarbon  # noqa: F401
    return monkeypatch


def test_default_recipe_region_resolves_without_codecarbon(no_codecarbon):
    region = load_recipe("quick").measure.region
    found = lookup_intensity(region)
    assert found.region == "USA" and found.kind == "country" and 300 < found.g_per_kwh < 500
    assert "countries.json" in found.source and "Our World in Data" in found.source
    for name, kind in [("USA/CA", "us-state"), ("CAN/quebec", "canada-province"), ("CHN/beijing", "china-province"),
                       ("SE3", "nordic-zone"), ("gcp:us-central1", "cloud"), ("WORLD", "world")]:
        assert lookup_intensity(name).kind == kind
    assert table_notes() == [] and len(known_regions()) > 600


def test_a_tag_is_priced_in_the_default_region_without_codecarbon(no_codecarbon):
    with PriceTag("plain", region="USA", pue=1.0, ledger=False, backend="estimate") as tag:
        sum(range(10_000))
    rec = tag.record
    assert rec.intensity_region == "USA" and rec.co2e_kg is not None and rec.co2e_kg >= 0
    assert "codecarbon" not in rec.energy_source  # the estimate, not CodeCarbon's tracker


def test_cpu_table_is_shipped(no_codecarbon):
    found = hardware.cpu_power(model="Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz")
    assert found.tdp_w == 125.0
    assert "greenlm data/cpu_tdp.csv" in found.source and "CodeCarbon 3.3.2 cpu_power.csv" in found.source


def test_us_state_keeps_the_published_figure_and_conversion():
    found = lookup_intensity("US-CA")
    assert found.region == "USA/CA" and found.year == 2023
    published = float(found.source.split("published as ")[1].split(" lbs/MWh")[0])
    assert found.g_per_kwh == pytest.approx(published * 0.45359237)
    assert "EPA eGRID2023" in found.source and "CodeCarbon 3.3.2" in found.source


def _copy_tables(tmp_path, monkeypatch):
    folder = tmp_path / "intensity"
    shutil.copytree(str(importlib.resources.files("greenlm.measure") / "data" / "intensity"), folder)
    monkeypatch.setattr(intensity, "_data_folder", lambda: folder)
    return folder


def test_a_missing_table_is_skipped_with_a_note(tmp_path, monkeypatch, fresh_tables):
    folder = _copy_tables(tmp_path, monkeypatch)
    (folder / "us_states.json").unlink()
    assert lookup_intensity("USA").g_per_kwh > 0  # the other tables still load
    assert lookup_intensity("SE3").kind == "nordic-zone"
    notes = table_notes()
    assert len(notes) == 1 and "us_states.json is missing" in notes[0]
    with pytest.raises(GreenlmError, match="us_states.json is missing"):
        lookup_intensity("USA/CA")


def test_a_damaged_table_is_skipped_with_the_reason(tmp_path, monkeypatch, fresh_tables):
    folder = _copy_tables(tmp_path, monkeypatch)
    (folder / "world.json").write_text("{not json", encoding="utf-8")
    data = json.loads((folder / "nordic_zones.json").read_text(encoding="utf-8"))
    data["regions"][0]["g_per_kwh"] = -5
    (folder / "nordic_zones.json").write_text(json.dumps(data), encoding="utf-8")
    assert lookup_intensity("FRA").kind == "country"
    notes = " | ".join(table_notes())
    assert "world.json could not be read (JSONDecodeError" in notes and "nordic_zones.json could not be read" in notes
    with pytest.raises(GreenlmError, match="unknown region 'WORLD'"):
        lookup_intensity("WORLD")


def test_every_shipped_table_names_its_origin_and_release():
    folder = importlib.resources.files("greenlm.measure") / "data"
    for name in TABLES:
        data = json.loads((folder / "intensity" / f"{name}.json").read_text(encoding="utf-8"))
        assert data["origin"] and data["via"].startswith("CodeCarbon ") and data["regions"], name
        assert all(row["g_per_kwh"] >= 0 for row in data["regions"]), name
    assert f"`intensity/{TABLES[0]}.json`" in (folder / "README.md").read_text(encoding="utf-8")
