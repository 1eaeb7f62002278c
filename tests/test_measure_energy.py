"""Energy backends on recorded counter files and a fake NVML; the CPU and RAM models; hour splitting."""

from __future__ import annotations

import pytest

from greenlm.measure import energy
from greenlm.measure.hardware import CpuPower, cpu_power, match_cpu


class FakeTree:
    """A process tree whose CPU seconds and RSS the test sets."""

    def __init__(self, cpu_s=0.0, rss_bytes=0):
        self.cpu, self.rss, self.finished, self.peak_rss_bytes = cpu_s, rss_bytes, False, None

    def cpu_s(self):
        return self.cpu

    def rss_bytes(self):
        return self.rss


def _domain(root, name, folder, energy_uj, max_range=1_000_000):
    d = root / folder
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def test_rapl_counters_with_wraparound_and_dram(tmp_path):
    pkg0 = _domain(tmp_path, "package-0", "intel-rapl:0", 900_000)
    pkg1 = _domain(tmp_path, "package-1", "intel-rapl:1", 100)
    dram = _domain(tmp_path / "intel-rapl:0", "dram", "intel-rapl:0:0", 5_000)
    _domain(tmp_path / "intel-rapl:0", "core", "intel-rapl:0:1", 0)  # a sub-domain of the package: not summed
    meters, why = energy.find_rapl(tmp_path)
    assert why is None and set(meters) == {"cpu", "ram"}
    cpu, ram = meters["cpu"], meters["ram"]
    cpu.start(0.0)
    ram.start(0.0)
    (pkg0 / "energy_uj").write_text("50000\n")  # wrapped: 900000 -> 1000000 -> 50000 = 150000 uJ
    (pkg1 / "energy_uj").write_text("2100\n")  # 2000 uJ
    (dram / "energy_uj").write_text("7000\n")
    assert cpu.read_j(1.0) == pytest.approx(0.152)
    assert ram.read_j(1.0) == pytest.approx(0.002)
    (pkg0 / "energy_uj").write_text("60000\n")
    assert cpu.read_j(2.0) == pytest.approx(0.162)
    assert cpu.source == "rapl" and "intel-rapl:0:package-0" in cpu.details()["rapl_cpu_domains"]


def test_rapl_missing_or_unreadable_is_reported(tmp_path):
    meters, why = energy.find_rapl(tmp_path / "nothing")
    assert meters == {} and "no RAPL package domains" in why
    pkg = _domain(tmp_path, "package-0", "intel-rapl:0", 10)
    (pkg / "energy_uj").chmod(0)
    meters, why = energy.find_rapl(tmp_path)
    import os

    if os.geteuid() != 0:  # root reads anything
        assert meters == {} and "permission denied" in why


class FakeNvml:
    """pynvml's calls used by greenlm, with counters and power the test drives."""

    class NotSupported(Exception):
        pass

    def __init__(self, energy_mj=None, power_mw=None, names=("Fake H100",)):
        self.energy_mj = list(energy_mj) if energy_mj is not None else None
        self.power_mw = list(power_mw) if power_mw is not None else [0] * len(names)
        self.names = list(names)
        self.shutdown = False

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shutdown = True

    def nvmlDeviceGetCount(self):
        return len(self.names)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, handle):
        return self.names[handle].encode()

    def nvmlDeviceGetUUID(self, handle):
        return f"GPU-{handle:04d}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.energy_mj is None:
            raise self.NotSupported()
        return self.energy_mj[handle]

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.power_mw[handle]


def test_nvml_energy_counters(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml(energy_mj=[1_000_000, 5_000], names=("A", "B"))
    meter, why = energy.find_nvml(nvml)
    assert why is None and meter.source == "nvml" and not meter.needs_polling
    meter.start(0.0)
    nvml.energy_mj = [1_250_000, 6_000]  # +250 J and +1 J
    assert meter.read_j(10.0) == pytest.approx(251.0)
    assert meter.details()["gpu_names"] == ["A", "B"]
    meter.close()
    assert nvml.shutdown


def test_nvml_power_polling_integrates_trapezoids(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml(energy_mj=None, power_mw=[100_000])
    meter, _ = energy.find_nvml(nvml)
    assert meter.source == "nvml:power-polling" and meter.needs_polling
    meter.start(0.0)
    nvml.power_mw = [300_000]
    assert meter.read_j(2.0) == pytest.approx((100 + 300) / 2 * 2)  # 400 J
    nvml.power_mw = [300_000]
    assert meter.read_j(3.0) == pytest.approx(400 + 300)


def test_nvml_respects_cuda_visible_devices(monkeypatch):
    nvml = FakeNvml(energy_mj=[0, 0, 0], names=("A", "B", "C"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    meter, _ = energy.find_nvml(nvml)
    assert meter.names == ["C", "A"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-0001")
    meter, _ = energy.find_nvml(nvml)
    assert meter.names == ["B"]


def test_nvml_absent_is_a_reason_not_an_error():
    class Broken:
        def nvmlInit(self):
            raise RuntimeError("driver not loaded")

    meter, why = energy.find_nvml(Broken())
    assert meter is None and "NVML not available" in why


def test_cpu_tdp_utilisation_model():
    tree = FakeTree(cpu_s=10.0)
    meter = energy.CpuTdpMeter(tree, CpuPower(120.0, "test", "Test CPU"), n_cpus=8)
    meter.start(0.0)
    tree.cpu = 10.0 + 4.0  # 4 CPU-seconds on an 8-CPU machine: half a CPU-second of the whole package... x TDP
    assert meter.read_j(1.0) == pytest.approx(120.0 * 4.0 / 8)


def test_ram_model_integrates_resident_memory():
    tree = FakeTree(rss_bytes=2e9)
    meter = energy.RamModelMeter(tree)
    meter.start(0.0)
    tree.rss = 4e9
    assert meter.read_j(10.0) == pytest.approx(0.375 * 3.0 * 10)  # mean 3 GB over 10 s
    assert meter.details()["ram_gb_max"] == 4.0


def test_ram_model_uses_peak_rss_of_a_command_shorter_than_a_sample():
    tree = FakeTree(rss_bytes=0)
    meter = energy.RamModelMeter(tree)
    meter.start(0.0)
    tree.finished, tree.peak_rss_bytes = True, 1e9
    assert meter.read_j(0.2) == pytest.approx(0.375 * 1.0 * 0.2)
    assert "peak RSS" in meter.details()["ram_note"]


def test_timeline_splits_energy_by_clock_hour():
    line = energy.Timeline()
    start = 9.5 * 3600  # 09:30 on 1970-01-01, energy rising 1 J/s
    line.add(start, 0.0, keep=True)
    for t in range(int(start) + 600, int(11.25 * 3600), 600):  # samples every 10 min, not kept
        line.add(float(t), t - start, keep=False)
    end = 11.25 * 3600
    line.add(end, end - start, keep=True)
    hours = line.by_hour(start, end)
    assert list(hours) == [9 * 3600.0, 10 * 3600.0, 11 * 3600.0]
    assert [round(v) for v in hours.values()] == [1800, 3600, 900]
    assert len(line.t) == 4  # edges + 2 hour boundaries: memory grows by hours, not by samples


def test_cpu_table_matching():
    names = ["Intel Xeon Gold 6130", "Intel Xeon Gold 6130F", "AMD EPYC 7763", "AMD EPYC 7713"]
    assert match_cpu("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", names) == "Intel Xeon Gold 6130"
    assert match_cpu("AMD EPYC 7763 64-Core Processor", names) == "AMD EPYC 7763"
    assert match_cpu("Intel(R) Xeon(R) Processor", names) is None


def test_cpu_power_sources(monkeypatch):
    monkeypatch.delenv("GREENLM_CPU_TDP_W", raising=False)
    assert cpu_power(95).source == "user: cpu_tdp_w"
    monkeypatch.setenv("GREENLM_CPU_TDP_W", "65")
    assert cpu_power().tdp_w == 65.0
    monkeypatch.delenv("GREENLM_CPU_TDP_W")
    unknown = cpu_power(model="Imaginary CPU 1")
    assert unknown.source.startswith("fallback: 4 W x")
    known = cpu_power(model="Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz")  # the shipped table: no CodeCarbon needed
    assert known.tdp_w == 125.0 and "cpu_power.csv" in known.source
