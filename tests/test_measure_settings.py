"""Settings for region, PUE, price and ledger: option > environment > settings file (project, then user) > recipe >
default, each level tested; bad files and values are one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from greenlm.common import GreenlmError
from greenlm.measure import PriceTag, default_ledger_path
from greenlm.measure.settings import machine_settings, resolve
from greenlm.pipeline.recipes import load_recipe

pytestmark = pytest.mark.filterwarnings("ignore::greenlm.measure.PriceTagWarning")
ENV = ("GREENLM_REGION", "GREENLM_PUE", "GREENLM_USD_PER_HOUR", "GREENLM_LEDGER", "GREENLM_SETTINGS")


@pytest.fixture
def place(tmp_path, monkeypatch):
    """An empty GREENLM_HOME (the user's settings.toml goes there) and an empty working folder."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("GREENLM_HOME", str(home))
    monkeypatch.chdir(work)
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return home, work


def tag(**given):
    with PriceTag("t", ledger=False, backend="estimate", **given) as t:
        pass
    return t.record


def test_each_level_in_order(place, monkeypatch):
    home, work = place
    assert resolve("pue", default=1.0).value == 1.0 and resolve("pue").source == "default"
    rec = tag()
    assert rec.pue_source == "default" and rec.intensity_region is None and rec.cost_usd is None

    (home / "settings.toml").write_text('region = "DEU"\npue = 1.2\nusd_per_hour = 2.0\n')
    rec = tag()
    assert (rec.pue, rec.intensity_region, rec.usd_per_hour) == (1.2, "DEU", 2.0)
    assert rec.pue_source == f"setting: {home / 'settings.toml'}" and rec.cost_source.startswith("setting: ")
    assert "region set by" in rec.intensity_source

    (work / "greenlm.toml").write_text("pue = 1.3\n")  # the project's file beats the user's, key by key
    rec = tag()
    assert (rec.pue, rec.intensity_region) == (1.3, "DEU")
    assert rec.pue_source == f"setting: {work / 'greenlm.toml'}"

    monkeypatch.setenv("GREENLM_PUE", "1.4")
    monkeypatch.setenv("GREENLM_REGION", "FRA")
    monkeypatch.setenv("GREENLM_USD_PER_HOUR", "3.5")
    rec = tag()
    assert (rec.pue, rec.intensity_region, rec.usd_per_hour) == (1.4, "FRA", 3.5)
    assert rec.pue_source == "setting: GREENLM_PUE" and "region set by GREENLM_REGION" in rec.intensity_source

    rec = tag(pue=1.5, region="SE3", usd_per_hour=1.0)  # the option beats everything
    assert (rec.pue, rec.intensity_region, rec.usd_per_hour, rec.pue_source) == (1.5, "SE3", 1.0, "user")
    assert "region set by" not in rec.intensity_source
    rec = tag(intensity_g_per_kwh=100.0)  # a figure given is an intensity given: no region from the settings
    assert rec.intensity_g_per_kwh == 100.0 and rec.intensity_source == "user: intensity_g_per_kwh"


def test_a_phase_inherits_its_parent_not_the_settings(place, monkeypatch):
    monkeypatch.setenv("GREENLM_PUE", "1.4")
    monkeypatch.setenv("GREENLM_REGION", "FRA")
    with PriceTag("run", pue=1.1, region="DEU", ledger=False, backend="estimate") as run:
        with PriceTag("phase"):
            pass
    (phase,) = run.record.phases
    assert (phase.pue, phase.pue_source, phase.intensity_region) == (1.1, "parent", "DEU")


def test_ledger_location(place, monkeypatch, tmp_path):
    home, work = place
    assert default_ledger_path() == home / "ledger.sqlite"  # the default (GREENLM_HOME)
    (home / "settings.toml").write_text(f'ledger = "{tmp_path / "from-file.sqlite"}"\n')
    assert default_ledger_path() == tmp_path / "from-file.sqlite"
    monkeypatch.setenv("GREENLM_LEDGER", str(tmp_path / "from-env.sqlite"))
    assert default_ledger_path() == tmp_path / "from-env.sqlite"
    with PriceTag("t", pue=1.0, backend="estimate"):
        pass
    assert (tmp_path / "from-env.sqlite").is_file()


def test_greenlm_settings_names_one_file(place, monkeypatch, tmp_path):
    home, work = place
    (work / "greenlm.toml").write_text("pue = 1.3\n")
    named = tmp_path / "team.toml"
    named.write_text('region = "NOR"\n')
    monkeypatch.setenv("GREENLM_SETTINGS", str(named))
    found = machine_settings()
    assert set(found) == {"region"} and found["region"].source == str(named)  # the project file is not read
    monkeypatch.setenv("GREENLM_SETTINGS", str(tmp_path / "missing.toml"))
    with pytest.raises(GreenlmError, match="no such settings file"):
        machine_settings()


def test_a_recipe_yields_to_this_machine_and_set_beats_both(place, monkeypatch):
    assert load_recipe("quick").measure.region == "USA" and load_recipe("quick").measure.pue == 1.0
    monkeypatch.setenv("GREENLM_REGION", "FRA")
    monkeypatch.setenv("GREENLM_PUE", "1.25")
    measure = load_recipe("quick").measure
    assert measure.region is None and measure.pue is None  # left to the price tag, which reads the settings
    assert load_recipe("quick", ["measure.pue=1.5"]).measure.pue == 1.5
    assert load_recipe("quick", machine=False).measure.region == "USA"  # `recipes show --resolved`
    kept = load_recipe("quick", ["measure.intensity_g_per_kwh=50"]).measure
    assert kept.intensity_g_per_kwh == 50  # an intensity in the recipe keeps... its own
    with_series = load_recipe("quick", ["measure.intensity_csv=grid.csv", "measure.region=CISO"]).measure
    assert with_series.region == "CISO"


@pytest.mark.parametrize("text, message", [
    ('regoin = "FRA"\n', "unknown key 'regoin'; did you mean 'region'?"),
    ("pue = 0.9\n", "pue must be the facility's PUE, a number >= 1, got 0.9"),
    ("usd_per_hour = 0\n", "usd_per_hour must be the machine's price in USD per hour, a number > 0, got 0"),
    ("usd_per_hour = -2.5\n", "a number > 0, got -2.5"),
    ('pue = "high"\n', "got 'high'"),
    ("region = [\n", "is not valid TOML"),
])
def test_bad_settings_file_is_one_line(place, text, message):
    home, _ = place
    (home / "settings.toml").write_text(text)
    with pytest.raises(GreenlmError, match="settings file .*settings.toml") as err:
        PriceTag("t")
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name, value, message", [
    ("GREENLM_PUE", "0", "GREENLM_PUE: pue must be"),
    ("GREENLM_PUE", "-1", "GREENLM_PUE: pue must be"),
    ("GREENLM_USD_PER_HOUR", "0", "GREENLM_USD_PER_HOUR: usd_per_hour must be"),
    ("GREENLM_USD_PER_HOUR", "cheap", "got 'cheap'"),
    ("GREENLM_REGION", "FRAA", "GREENLM_REGION: unknown region 'FRAA'; closest: FRA"),
])
def test_bad_environment_value_is_one_line(place, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(GreenlmError, match=message):
        PriceTag("t")


def test_cli_bad_settings_exit_2_with_one_line(tmp_path):
    (tmp_path / "settings.toml").write_text("pu = 1.2\n")
    env = {**{k: v for k, v in os.environ.items() if k not in ENV}, "GREENLM_HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "greenlm", "measure", "--", sys.executable, "-c", "pass"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"greenlm: error: settings file {tmp_path / 'settings.toml'}: unknown key 'pu'; did you mean 'pue'? "
        "(keys: region, pue, usd_per_hour, ledger)"]
    env["GREENLM_PUE"] = "0"
    (tmp_path / "settings.toml").unlink()
    run = subprocess.run([sys.executable, "-m", "greenlm", "measure", "--", sys.executable, "-c", "pass"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "GREENLM_PUE" in run.stderr
