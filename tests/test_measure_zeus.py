"""The zeus energy backend, with a fake ``zeus`` module: its energy reaches the price tag under its own source."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from greenlm.common import GreenlmError
from greenlm.measure import Ledger, PriceTag, append_emissions_csv

pytestmark = pytest.mark.filterwarnings("ignore::greenlm.measure.PriceTagWarning")


@dataclass
class FakeMeasurement:
    time: float
    gpu_energy: dict
    cpu_energy: dict | None = None
    dram_energy: dict | None = None


class FakeZeusMonitor:
    """Joules grow by fixed amounts per window end: 2 GPUs at 30 and 20 J, 1 CPU package at 10 J, DRAM at 1 J."""

    instances: list = []
    machine = {"gpus": [0, 1], "cpus": [0], "dram": True}  # what Zeus finds on the (fake) machine

    def __init__(self, gpu_indices=None, cpu_indices=None, **kwargs):
        self.gpu_indices = list(self.machine["gpus"]) if gpu_indices is None else gpu_indices
        self.cpu_indices = list(self.machine["cpus"]) if cpu_indices is None else cpu_indices
        self.dram = self.machine["dram"]
        self.open: dict[str, int] = {}
        self.ended = 0
        self.cancelled = 0
        FakeZeusMonitor.instances.append(self)

    def begin_window(self, key, sync_execution=True):
        assert key not in self.open and sync_execution is False
        self.open[key] = 1

    def end_window(self, key, sync_execution=True, cancel=False):
        self.open.pop(key)
        if cancel:
            self.cancelled += 1
            return FakeMeasurement(0.0, {})
        self.ended += 1
        return FakeMeasurement(
            0.1, {i: (30.0, 20.0)[i] for i in self.gpu_indices},
            {i: 10.0 for i in self.cpu_indices} or None,
            {i: 1.0 for i in self.cpu_indices} if self.dram and self.cpu_indices else None)


@pytest.fixture
def fake_zeus(monkeypatch):
    zeus = types.ModuleType("zeus")
    monitor = types.ModuleType("zeus.monitor")
    monitor.ZeusMonitor = FakeZeusMonitor
    zeus.monitor = monitor
    monkeypatch.setitem(sys.modules, "zeus", zeus)
    monkeypatch.setitem(sys.modules, "zeus.monitor", monitor)
    FakeZeusMonitor.instances = []
    return FakeZeusMonitor


def _by_component(rec):
    return {c: v * 3.6e6 if v is not None else None for c, v in rec.energy_kwh_by_component.items()}


def test_zeus_energy_reaches_the_price_tag_with_its_source(fake_zeus, tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    with PriceTag("z", backend="zeus", region="FRA", pue=1.5, ledger=ledger) as tag:
        with PriceTag("phase"):
            pass
    rec = tag.record
    monitor = fake_zeus.instances[-1]
    # windows inside the tag: not the probe that looks for DRAM, nor the one read at the tag's start snapshot
    windows = monitor.ended - 2
    assert windows >= 3  # at least the phase's two edges and the tag's end
    joules = _by_component(rec)
    assert joules["gpu"] == pytest.approx(50.0 * windows)
    assert joules["cpu"] == pytest.approx(10.0 * windows) and joules["ram"] == pytest.approx(1.0 * windows)
    assert rec.energy_source_by_component == {"cpu": "zeus", "gpu": "zeus", "ram": "zeus"}
    assert rec.energy_source == "zeus"
    assert rec.energy_kwh == pytest.approx(rec.energy_kwh_hardware * 1.5)
    assert rec.co2e_kg == pytest.approx(rec.energy_kwh * rec.intensity_g_per_kwh / 1000)
    assert rec.energy_details["zeus_gpu_indices"] == [0, 1] and rec.energy_details["zeus_measures"] == ["gpu", "cpu", "ram"]
    # phases add up exactly: the phase and the unphased rest are differences of the same totals
    assert rec.phases[0].energy_kwh + rec.unphased_energy_kwh == pytest.approx(rec.energy_kwh)
    assert monitor.open == {} and monitor.cancelled == 1  # the last open window was closed, not left behind
    assert ledger.records()[0]["energy_source"] == "zeus"
    row = append_emissions_csv(tmp_path, rec).read_text().splitlines()
    assert ",machine," in row[1]  # the CPU figure is RAPL's whole package, through Zeus


def test_what_zeus_cannot_read_falls_back_to_greenlms_meters(fake_zeus, monkeypatch):
    """No GPU and no readable RAPL in Zeus: the CPU and RAM come from greenlm's estimates, the GPU is unavailable."""
    monkeypatch.setattr(fake_zeus, "machine", {"gpus": [], "cpus": [], "dram": False})
    with PriceTag("z", backend="zeus", ledger=False, _powercap_root="/nonexistent") as tag:
        sum(range(10000))
    rec = tag.record
    assert rec.energy_source_by_component == {"cpu": "estimate:tdp-utilisation", "gpu": "unavailable",
                                              "ram": "estimate:ram-per-gb"}
    assert rec.reasons["energy_kwh_by_component.gpu"] == "Zeus found no GPU it can read"


def test_zeus_without_dram_leaves_ram_to_greenlm(fake_zeus, monkeypatch):
    monkeypatch.setattr(fake_zeus, "machine", {"gpus": [0], "cpus": [0], "dram": False})
    with PriceTag("z", backend="zeus", ledger=False, _powercap_root="/nonexistent") as tag:
        pass
    assert tag.record.energy_source_by_component == {"cpu": "zeus", "gpu": "zeus", "ram": "estimate:ram-per-gb"}


def test_missing_zeus_is_one_line_naming_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "zeus", None)  # blocked: import zeus fails
    with pytest.raises(GreenlmError) as err:
        PriceTag("z", backend="zeus")
    assert str(err.value) == ("Zeus is not installed (needed for the zeus energy backend); "
                              "install it with: pip install 'greenlm[zeus]'")


def test_measure_command_without_zeus_exits_2_with_one_line():
    import os
    import subprocess

    code = ("import sys; sys.modules['zeus'] = None; from greenlm.cli.main import main; "
            "sys.argv = ['greenlm', 'measure', '--backend', 'zeus', '--no-ledger', '--', 'true']; main()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("greenlm: error: Zeus is not installed (needed for the zeus energy backend); "
                                     "install it with: pip install 'greenlm[zeus]'")
