"""Energy of a time window, by component (cpu, gpu, ram), each with its source.

Backends, best first:

- GPU ``nvml``: the driver's energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules,
  Volta and newer), read at the window edges after a CUDA synchronise. Where a GPU has no counter,
  ``nvml:power-polling``: ``nvmlDeviceGetPowerUsage`` sampled every ``interval_s`` and integrated
  (trapezoids), so its resolution is the sampling interval. Whole device, not just this process.
- CPU ``rapl``: the package energy counters under ``/sys/class/powercap`` (whole package, not just
  this process), wrap-around handled; RAM ``rapl`` from the ``dram`` domains where they exist.
- CPU ``estimate:tdp-utilisation``: TDP x (CPU seconds of the measured processes / logical CPUs).
  CPU seconds are kernel counters read at the window edges, so a 200 ms window is as exact as a day;
  idle power of the machine is not attributed to the process. TDP and its source are recorded.
- RAM ``estimate:ram-per-gb``: 0.375 W per GB of resident memory of the measured processes
  (3 W per 8 GB, Crucial's rule of thumb, CodeCarbon's model before v3), sampled every
  ``interval_s`` and at the edges, integrated.
- ``codecarbon``: CodeCarbon's ``OfflineEmissionsTracker`` as the meter of the whole window (optional).
- ``zeus``: Zeus's ``ZeusMonitor`` windows for the GPUs (NVIDIA, AMD, Apple, Jetson) and RAPL zones it reads,
  greenlm's own meters for the rest (optional; ``greenlm.measure.zeus_meter``).

Every meter exposes a cumulative reading since its start, so nested and sequential phases are
differences of readings of the same counters and add up exactly.
"""

from __future__ import annotations

import bisect
import glob
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from greenlm.common.optional import is_available, missing_message, require
from greenlm.measure.hardware import CpuPower, cpu_power, logical_cpus

try:
    import resource as _resource  # POSIX only
except ImportError:
    _resource = None

RAM_W_PER_GB = 3.0 / 8.0  # 0.375 W per GB resident: 3 W per 8 GB of DDR3/DDR4 (Crucial)
RAM_MODEL = "0.375 W per GB of resident memory of the measured processes (3 W / 8 GB, Crucial)"
DEFAULT_INTERVAL_S = 1.0
POWERCAP_ROOT = "/sys/class/powercap"


# ---- the processes being measured ----------------------------------------------------------------


class ProcessTree:
    """CPU seconds and resident memory of a process and all its descendants.

    CPU seconds: user + system of every live process in the tree plus the ``children_*`` counters
    (descendants already reaped), so a child that exits keeps its time. ``ProcessTree.for_command()``
    makes a tree for a command not started yet: it reads 0 until ``attach(pid)``, and once the
    command was waited for, ``finish(cpu_s)`` fixes its total from the kernel's rusage.
    """

    def __init__(self, pid: int | None = None):
        import psutil

        self._psutil = psutil
        self._root = psutil.Process(os.getpid() if pid is None else pid)
        self._final_cpu_s: float | None = None
        self._last_cpu_s = 0.0

    @classmethod
    def for_command(cls) -> "ProcessTree":
        tree = cls.__new__(cls)
        import psutil

        tree._psutil, tree._root, tree._final_cpu_s, tree._last_cpu_s = psutil, None, None, 0.0
        return tree

    def attach(self, pid: int) -> None:
        self._cache = None
        try:
            self._root = self._psutil.Process(pid)
        except self._psutil.Error:
            self._root = None  # already gone: finish() will give its CPU time

    RESCAN_S = 10.0  # how stale the list of descendants may be between window edges

    def rescan(self) -> None:
        """List the descendants again at the next read (window edges do; sampler ticks reuse the list)."""
        self._cache = None

    def _members(self):
        """The root and its live descendants. Listing them scans all of /proc (about 1-2 ms), so the
        list is reused for up to RESCAN_S between window edges. CPU counters are cumulative, so a child
        first seen late still brings all its CPU time; only its memory samples start late."""
        if self._root is None:
            return []
        now = time.monotonic()
        cached = getattr(self, "_cache", None)
        if cached is not None and now - cached[0] < self.RESCAN_S:
            return cached[1]
        pids = _descendant_pids(self._root.pid)
        if pids is None:  # no /proc/<pid>/task/<tid>/children: psutil scans every process
            try:
                members = [self._root, *self._root.children(recursive=True)]
            except self._psutil.Error:
                members = []
        else:
            known = {p.pid: p for p in (cached[1] if cached else [])}
            members = [self._root]
            for pid in pids:
                proc = known.get(pid)
                if proc is None:
                    try:
                        proc = self._psutil.Process(pid)
                    except self._psutil.Error:
                        continue
                members.append(proc)
        self._cache = (now, members)
        return members

    def cpu_s(self) -> float:
        if self._final_cpu_s is not None:
            return self._final_cpu_s
        members = self._members()
        total = 0.0
        if members and members[0].pid == os.getpid() and _resource is not None:
            # this process: getrusage has microsecond resolution, /proc only clock ticks (10 ms)
            for who in (_resource.RUSAGE_SELF, _resource.RUSAGE_CHILDREN):
                usage = _resource.getrusage(who)
                total += usage.ru_utime + usage.ru_stime
            members = members[1:]
        for proc in members:
            try:
                t = proc.cpu_times()
            except self._psutil.Error:
                continue  # exited between listing and reading: its time moves to its parent's children_*
            total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
        self._last_cpu_s = max(self._last_cpu_s, total)  # a just-exited, not-yet-reaped child dips it
        return self._last_cpu_s

    def rss_bytes(self) -> int:
        if self._final_cpu_s is not None:
            return 0
        total = 0
        for proc in self._members():
            try:
                total += proc.memory_info().rss
            except self._psutil.Error:
                continue
        return total

    @property
    def finished(self) -> bool:
        return self._final_cpu_s is not None

    def finish(self, cpu_s: float, peak_rss_bytes: int | None = None) -> None:
        """The command was reaped: its CPU time (and peak resident memory) from the kernel's rusage."""
        self._final_cpu_s = max(cpu_s, self._last_cpu_s)
        self.peak_rss_bytes = peak_rss_bytes


def _descendant_pids(root: int) -> list[int] | None:
    """Live descendants of ``root`` from Linux's /proc/<pid>/task/<tid>/children files (a few reads,
    where psutil would read the stat file of every process on the machine); None where unsupported."""
    if not os.path.exists(f"/proc/{root}/task/{root}/children"):
        return None
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # exited meanwhile
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


# ---- meters ---------------------------------------------------------------------------------------


class Meter:
    """One component's energy. ``read_j(t)`` is the energy in joules since ``start(t)``."""

    component = ""
    source = ""
    needs_polling = False  # True when the reading integrates samples (power polling, RSS)

    def start(self, t: float) -> None: ...

    def read_j(self, t: float) -> float:
        raise NotImplementedError

    def details(self) -> dict:
        return {}

    def close(self) -> None: ...


class CpuTdpMeter(Meter):
    component, source = "cpu", "estimate:tdp-utilisation"

    def __init__(self, tree: ProcessTree, power: CpuPower, n_cpus: int | None = None):
        self.tree, self.power = tree, power
        self.n_cpus = n_cpus or logical_cpus()
        self._cpu0 = 0.0

    def start(self, t):
        self._cpu0 = self.tree.cpu_s()

    def cpu_s(self) -> float:
        return self.tree.cpu_s() - self._cpu0

    def read_j(self, t):
        return self.power.tdp_w * self.cpu_s() / self.n_cpus

    def details(self):
        return {
            "cpu_tdp_w": self.power.tdp_w,
            "cpu_tdp_source": self.power.source,
            "cpu_model": self.power.cpu_model,
            "logical_cpus": self.n_cpus,
            "cpu_model_formula": "TDP x CPU seconds of the measured processes / logical CPUs (idle power not attributed)",
        }


@dataclass
class _Counter:
    """One wrapping energy counter (RAPL ``energy_uj``): accumulates deltas across wrap-arounds."""

    path: Path
    max_range: float
    last: float = 0.0
    total: float = 0.0

    def read_raw(self) -> float:
        return float(self.path.read_text().strip())

    def reset(self) -> None:
        self.last, self.total = self.read_raw(), 0.0

    def update(self) -> float:
        now = self.read_raw()
        delta = now - self.last
        if delta < 0:  # wrapped once (it must be polled at least once per wrap period)
            delta += self.max_range
        self.total += delta
        self.last = now
        return self.total


class RaplMeter(Meter):
    """Sum of RAPL domains (package-N for cpu, dram for ram). Counters in microjoules."""

    source = "rapl"
    needs_polling = True  # to catch wrap-arounds on long runs

    def __init__(self, component: str, counters: list[_Counter], names: list[str]):
        self.component = component
        self.counters, self.names = counters, names

    def start(self, t):
        for c in self.counters:
            c.reset()

    def read_j(self, t):
        return sum(c.update() for c in self.counters) / 1e6

    def details(self):
        return {f"rapl_{self.component}_domains": self.names}


def find_rapl(root: str | os.PathLike = POWERCAP_ROOT) -> tuple[dict[str, RaplMeter], str | None]:
    """RAPL meters by component, and why there are none (None when found)."""
    root = Path(root)
    packages, drams, unreadable = [], [], []
    # /sys/class/powercap lists zones flat (intel-rapl:0, intel-rapl:0:0); their parents nest them too
    seen = set()
    for domain in sorted(glob.glob(str(root / "intel-rapl:*")) + glob.glob(str(root / "intel-rapl:*" / "intel-rapl:*"))):
        domain = Path(domain)
        if domain.name in seen:
            continue
        seen.add(domain.name)
        try:
            name = (domain / "name").read_text().strip()
        except OSError:
            continue
        if name.startswith("package"):
            packages.append((domain, name))
        elif name == "dram":
            drams.append((domain, name))
    if not packages:
        return {}, f"no RAPL package domains under {root}"
    meters = {}
    for component, domains in (("cpu", packages), ("ram", drams)):
        counters, names = [], []
        for domain, name in domains:
            try:
                counter = _Counter(domain / "energy_uj", float((domain / "max_energy_range_uj").read_text()))
                counter.read_raw()
            except PermissionError:
                unreadable.append(str(domain / "energy_uj"))
                continue
            except (OSError, ValueError):
                continue
            counters.append(counter)
            names.append(f"{domain.name}:{name}")
        if counters:
            meters[component] = RaplMeter(component, counters, names)
    if "cpu" not in meters:
        why = "RAPL counters exist but cannot be read"
        if unreadable:
            why += f" (permission denied: {unreadable[0]}; root-only since Linux 5.10)"
        return {}, why
    return meters, None


class RamModelMeter(Meter):
    component, source = "ram", "estimate:ram-per-gb"
    needs_polling = True

    def __init__(self, tree: ProcessTree, w_per_gb: float = RAM_W_PER_GB):
        self.tree, self.w_per_gb = tree, w_per_gb
        self._t = self._gb = self._j = 0.0
        self._gb_max = self._gb_s = self._span = 0.0
        self._peak_used = False

    def start(self, t):
        self._t0 = self._t = t
        self._gb, self._j = self.tree.rss_bytes() / 1e9, 0.0
        self._gb_max, self._gb_s, self._span = self._gb, 0.0, 0.0

    def read_j(self, t):
        if self.tree.finished:
            gb = self._gb
            peak = getattr(self.tree, "peak_rss_bytes", None)
            if self._gb_max == 0.0 and peak and not self._peak_used:
                # the command ended before any sample saw it: charge its peak RSS over the whole window
                self._gb = gb = self._gb_max = peak / 1e9
                self._j = self._gb_s = 0.0
                self._t, self._span = self._t0, 0.0
                self._peak_used = True
        else:
            gb = self.tree.rss_bytes() / 1e9
        dt = max(t - self._t, 0.0)
        self._j += self.w_per_gb * (self._gb + gb) / 2 * dt
        self._gb_s += (self._gb + gb) / 2 * dt
        self._span += dt
        self._t, self._gb = t, gb
        self._gb_max = max(self._gb_max, gb)
        return self._j

    def details(self):
        mean = self._gb_s / self._span if self._span > 0 else self._gb
        out = {
            "ram_model": RAM_MODEL,
            "ram_w_per_gb": self.w_per_gb,
            "ram_gb_mean": round(mean, 4),
            "ram_gb_max": round(self._gb_max, 4),
        }
        if self._peak_used:
            out["ram_note"] = "shorter than one sample: the command's peak RSS (rusage) charged over its run"
        return out


class NvmlMeter(Meter):
    """All visible NVIDIA GPUs through NVML: energy counters, else integrated power polling."""

    component = "gpu"

    def __init__(self, nvml, handles: list, names: list[str]):
        self.nvml, self.handles, self.names = nvml, handles, names
        self.counter = []  # per device: True when it has an energy counter
        for handle in handles:
            try:
                nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                self.counter.append(True)
            except Exception:  # NVMLError_NotSupported on pre-Volta GPUs
                self.counter.append(False)
        self.needs_polling = not all(self.counter)
        self.source = "nvml" if all(self.counter) else "nvml:power-polling"
        self._mj0 = [0.0] * len(handles)
        self._t = 0.0
        self._w = [0.0] * len(handles)
        self._poll_j = [0.0] * len(handles)

    def _power_w(self, i):
        return self.nvml.nvmlDeviceGetPowerUsage(self.handles[i]) / 1000.0  # milliwatts

    def start(self, t):
        _cuda_sync()
        self._t = t
        for i, handle in enumerate(self.handles):
            if self.counter[i]:
                self._mj0[i] = float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            else:
                self._w[i], self._poll_j[i] = self._power_w(i), 0.0

    def read_j(self, t):
        _cuda_sync()
        total = 0.0
        dt = max(t - self._t, 0.0)
        for i, handle in enumerate(self.handles):
            if self.counter[i]:
                total += (float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)) - self._mj0[i]) / 1000.0
            else:
                w = self._power_w(i)
                self._poll_j[i] += (self._w[i] + w) / 2 * dt
                self._w[i] = w
                total += self._poll_j[i]
        self._t = t
        return total

    def details(self):
        out = {"gpu_names": self.names, "gpu_count": len(self.handles)}
        if not all(self.counter):
            out["gpu_note"] = "no NVML energy counter on some GPUs: their power was polled and integrated"
        return out

    def close(self):
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass


def _cuda_sync() -> None:
    """Wait for queued CUDA work so that it falls inside the window (only if torch is already loaded)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
    except Exception:
        pass


def find_nvml(nvml=None, indices: list[int] | None = None) -> tuple[NvmlMeter | None, str | None]:
    """An NVML meter over the visible GPUs, or (None, why). ``nvml`` replaces pynvml (tests)."""
    if nvml is None:
        if not is_available("nvidia-ml-py"):
            return None, missing_message("nvidia-ml-py")
        import pynvml as nvml
    try:
        nvml.nvmlInit()
        count = nvml.nvmlDeviceGetCount()
    except Exception as err:
        return None, f"NVML not available ({type(err).__name__}: no NVIDIA driver or GPU)"
    if count == 0:
        return None, "NVML found no GPU"
    if indices is None:
        indices = _visible_gpu_indices(nvml, count)
    handles, names = [], []
    for i in indices:
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        name = nvml.nvmlDeviceGetName(handle)
        handles.append(handle)
        names.append(name.decode() if isinstance(name, bytes) else str(name))
    if not handles:
        return None, "CUDA_VISIBLE_DEVICES hides every GPU"
    return NvmlMeter(nvml, handles, names), None


def _visible_gpu_indices(nvml, count: int) -> list[int]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    wanted = [v.strip() for v in visible.split(",") if v.strip()]
    if all(v.isdigit() for v in wanted):
        return [int(v) for v in wanted if int(v) < count]
    indices = []
    for i in range(count):  # UUIDs (GPU-xxxx / MIG-xxxx)
        uuid = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))
        uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
        if any(uuid.startswith(v) for v in wanted):
            indices.append(i)
    return indices


class CodeCarbonMeter(Meter):
    """CodeCarbon's OfflineEmissionsTracker as the meter of a whole window: readings only at its end."""

    component, source = "all", "codecarbon"

    def __init__(self, interval_s: float):
        codecarbon = require("codecarbon", "the codecarbon energy backend")

        options = dict(
            country_iso_code="USA",  # unused: greenlm applies its own intensity and PUE
            measure_power_secs=max(interval_s, 1.0),
            log_level="error",
            pue=1.0,
            allow_multiple_runs=True,
        )
        try:  # CodeCarbon 3: no output at all
            self.tracker = codecarbon.OfflineEmissionsTracker(output_methods=[], **options)
        except TypeError:  # CodeCarbon 2
            self.tracker = codecarbon.OfflineEmissionsTracker(save_to_file=False, **options)
        self.by_component: dict[str, float] | None = None

    def start(self, t):
        self.tracker.start()

    def stop(self) -> dict[str, float]:
        self.tracker.stop()
        data = self.tracker.final_emissions_data
        self.by_component = {
            "cpu": data.cpu_energy * 3.6e6,
            "gpu": data.gpu_energy * 3.6e6,
            "ram": data.ram_energy * 3.6e6,
        }
        self.info = {
            "codecarbon_cpu_model": data.cpu_model,
            "codecarbon_tracking_mode": data.tracking_mode,
            "codecarbon_version": data.codecarbon_version,
        }
        return self.by_component

    def details(self):
        return getattr(self, "info", {})


# ---- a timeline of cumulative energy, for splitting a window by clock hour -----------------------


class Timeline:
    """Cumulative hardware energy (J) against Unix time: points at every window edge and at every
    clock-hour boundary (interpolated between the samples around it). Memory grows by hours, not samples."""

    def __init__(self):
        self.t: list[float] = []
        self.j: list[float] = []
        self._last: tuple[float, float] | None = None

    def add(self, t: float, j: float, keep: bool) -> None:
        if self._last is not None:
            t0, j0 = self._last
            boundary = (int(t0 // 3600) + 1) * 3600.0
            while boundary <= t:
                share = (boundary - t0) / (t - t0) if t > t0 else 1.0
                self._append(boundary, j0 + share * (j - j0))
                boundary += 3600.0
        if keep:
            self._append(t, j)
        self._last = (t, j)

    def _append(self, t, j):
        if self.t and t <= self.t[-1]:
            return
        self.t.append(t)
        self.j.append(j)

    def at(self, t: float) -> float:
        i = bisect.bisect_left(self.t, t)
        if i < len(self.t) and self.t[i] == t:
            return self.j[i]
        if i == 0 or i == len(self.t):
            return self.j[0] if i == 0 else self.j[-1]
        t0, t1, j0, j1 = self.t[i - 1], self.t[i], self.j[i - 1], self.j[i]
        return j0 + (j1 - j0) * (t - t0) / (t1 - t0)

    def by_hour(self, start: float, end: float) -> dict[float, float]:
        """Joules in each clock hour (keyed by the hour's start, Unix s) of the window [start, end]."""
        out = {}
        hour = int(start // 3600) * 3600.0
        while True:
            a, b = max(start, hour), min(end, hour + 3600.0)
            out[hour] = max(self.at(b) - self.at(a), 0.0) if b > a else 0.0
            hour += 3600.0
            if hour >= end:
                return out


# ---- a measuring session: the meters, a sampler thread, snapshots --------------------------------


@dataclass(frozen=True)
class Snapshot:
    t_unix: float  # wall clock, for clock hours
    t_mono: float  # monotonic, for durations
    cpu_s: float  # CPU seconds of the measured processes since the session start
    energy_j: dict  # component -> joules since the session start (hardware, before PUE)


@dataclass
class EnergySetup:
    """Which meters run, and why a component has none."""

    meters: list = field(default_factory=list)
    unavailable: dict = field(default_factory=dict)  # component -> reason


def build_meters(
    tree: ProcessTree,
    *,
    backend: str = "auto",
    cpu_tdp_w: float | None = None,
    powercap_root: str | os.PathLike = POWERCAP_ROOT,
    nvml=None,
    gpu_indices: list[int] | None = None,
) -> EnergySetup:
    """The best meter for each component on this machine (``backend``: auto | estimate | codecarbon | zeus).

    ``zeus``: Zeus's monitor for what it measures here (greenlm.measure.zeus_meter), greenlm's own meters for the
    rest (RAPL or the estimates; no second GPU reader)."""
    setup = EnergySetup()
    if backend == "codecarbon":
        setup.meters.append(CodeCarbonMeter(DEFAULT_INTERVAL_S))
        return setup
    left = ("gpu", "cpu", "ram")
    if backend == "zeus":
        from greenlm.measure.zeus_meter import zeus_meters

        meters, left = zeus_meters()
        setup.meters.extend(meters)
    if "gpu" not in left:
        pass
    elif backend == "auto":
        gpu, why = find_nvml(nvml, gpu_indices)
        if gpu is not None:
            setup.meters.append(gpu)
        else:
            setup.unavailable["gpu"] = why
    else:
        setup.unavailable["gpu"] = ("Zeus found no GPU it can read" if backend == "zeus"
                                    else "backend 'estimate' reads no GPU")
    rapl, why = find_rapl(powercap_root) if backend != "estimate" else ({}, "backend 'estimate'")
    if "cpu" not in left:
        pass
    elif "cpu" in rapl:
        setup.meters.append(rapl["cpu"])
    else:
        setup.meters.append(CpuTdpMeter(tree, cpu_power(cpu_tdp_w)))
        setup.unavailable["rapl"] = why
    if "ram" in left:
        setup.meters.append(rapl["ram"] if "ram" in rapl else RamModelMeter(tree))
    return setup


class _Sampler:
    """One daemon thread per process that ticks every open session at its interval.

    Sharing one thread means opening a tag creates no thread (thread creation and start-up waits cost
    milliseconds on a busy machine) and stopping one joins none. Re-created in a forked child.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._sessions: dict[int, EnergySession] = {}
        self._thread: threading.Thread | None = None

    def add(self, session: "EnergySession") -> None:
        with self._lock:
            self._sessions[id(session)] = session
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="greenlm-pricetag-sampler", daemon=True)
                self._thread.start()
        self._wake.set()  # re-plan: the new session may be due sooner than the current sleep

    def remove(self, session: "EnergySession") -> None:
        with self._lock:
            self._sessions.pop(id(session), None)

    def _run(self) -> None:
        while True:
            with self._lock:
                sessions = list(self._sessions.values())
            now = time.monotonic()
            wait = 60.0
            for session in sessions:
                if now >= session.next_tick:
                    session.tick()
                    session.next_tick = now + session.interval_s
                wait = min(wait, max(session.next_tick - now, 0.0))
            self._wake.wait(wait)
            self._wake.clear()


_SAMPLER = _Sampler()
if hasattr(os, "register_at_fork"):  # the thread does not survive a fork: start afresh in the child
    os.register_at_fork(after_in_child=lambda: globals().__setitem__("_SAMPLER", _Sampler()))


class EnergySession:
    """Starts the meters, has them sampled every ``interval_s`` (one shared sampler thread), gives snapshots."""

    def __init__(self, tree: ProcessTree, setup: EnergySetup, interval_s: float = DEFAULT_INTERVAL_S, clock=None):
        self.tree, self.setup, self.interval_s = tree, setup, interval_s
        self._clock = clock  # tests: one fake clock for wall time and clock hours
        self.timeline = Timeline()
        self._lock = threading.Lock()
        self._closed = False
        self._cpu0 = 0.0
        self.next_tick = 0.0
        self.sampler_errors, self.sampler_last_error = 0, ""
        self.codecarbon = next((m for m in setup.meters if isinstance(m, CodeCarbonMeter)), None)

    def _now(self) -> tuple[float, float]:
        if self._clock is not None:
            t = self._clock()
            return t, t
        return time.time(), time.monotonic()

    def start(self) -> Snapshot:
        t = self._now()[0]
        if hasattr(self.tree, "rescan"):
            self.tree.rescan()
        self._cpu0 = self.tree.cpu_s()
        for meter in self.setup.meters:
            meter.start(t)
        first = self._read(keep=True, rescan=False)  # the descendants were just listed
        self.next_tick = time.monotonic() + self.interval_s
        _SAMPLER.add(self)
        return first

    def tick(self) -> None:
        """One sample (called by the sampler thread): polled figures, RAPL wrap-arounds, hour boundaries."""
        if self._closed:
            return
        try:
            self._read(keep=False)
        except Exception as err:  # never kill the user's run: the edges still read the counters
            self.sampler_errors += 1
            self.sampler_last_error = f"{type(err).__name__}: {err}"

    def _read(self, keep: bool, rescan: bool = True) -> Snapshot:
        with self._lock:
            if self._closed:
                raise RuntimeError("energy session already stopped")
            if keep and rescan and hasattr(self.tree, "rescan"):  # window edges see every live descendant
                self.tree.rescan()
            t_unix, t_mono = self._now()
            energy = {}
            for meter in self.setup.meters:
                if isinstance(meter, CodeCarbonMeter):
                    continue
                energy[meter.component] = energy.get(meter.component, 0.0) + meter.read_j(t_unix)
            cpu_s = self.tree.cpu_s() - self._cpu0
            self.timeline.add(t_unix, sum(energy.values()), keep)
            return Snapshot(t_unix, t_mono, cpu_s, energy)

    def snapshot(self) -> Snapshot:
        return self._read(keep=True)

    def stop(self) -> tuple[Snapshot, dict | None]:
        """Final snapshot, and CodeCarbon's per-component joules when it was the backend."""
        _SAMPLER.remove(self)
        last = self.snapshot()
        cc = self.codecarbon.stop() if self.codecarbon is not None else None
        with self._lock:  # a tick in progress finishes first; later ones find the session closed
            self._closed = True
            for meter in self.setup.meters:
                meter.close()
        return last, cc

    def details(self) -> dict:
        out = {"sample_interval_s": self.interval_s}
        for meter in self.setup.meters:
            out.update(meter.details())
        if self.sampler_errors:
            out["sampler_errors"] = f"{self.sampler_errors} failed samples (last: {self.sampler_last_error})"
        return out
