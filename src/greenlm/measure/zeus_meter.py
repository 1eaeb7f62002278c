"""The ``zeus`` energy backend: Zeus's ``ZeusMonitor`` (``pip install zeus``, ml.energy) as greenlm's meters.

Zeus reads NVIDIA GPUs (NVML), AMD GPUs (AMD SMI), Apple silicon and Jetson boards, and CPU packages and DRAM
through RAPL. greenlm uses it through measurement windows (``begin_window`` / ``end_window``, which Zeus lets
overlap): one window is open at a time per price-tag session, and every reading (the tag's edges, its phases'
edges, the sampler's ticks) ends it, adds the energy Zeus reports for each device to running totals, and opens
the next. So a Zeus reading is cumulative like every greenlm meter, and nested phases add up exactly; the
instant between two windows (microseconds) is not counted.

Each component Zeus measures (``gpu``: its GPUs; ``cpu``: RAPL packages; ``ram``: RAPL DRAM) has ``zeus`` as its
source; a component Zeus does not measure on this machine (no GPU, RAPL not readable) falls back to greenlm's own
meter for it (NVML is not asked again: a GPU Zeus cannot see is not measured), and the record says which.
"""

from __future__ import annotations

import itertools

from greenlm.common.optional import require
from greenlm.measure.energy import Meter, _cuda_sync

SOURCE = "zeus"
_WINDOWS = itertools.count()


class ZeusWindows:
    """One ``ZeusMonitor`` read through consecutive windows; joules per component since ``start``."""

    def __init__(self, monitor=None):
        if monitor is None:
            require("zeus", "the zeus energy backend")
            from zeus.monitor import ZeusMonitor

            monitor = ZeusMonitor()
        self.monitor = monitor
        self.gpu_indices = list(getattr(monitor, "gpu_indices", []) or [])
        self.cpu_indices = list(getattr(monitor, "cpu_indices", []) or [])
        self.totals = {"gpu": 0.0, "cpu": 0.0, "ram": 0.0}
        self._key: str | None = None
        self.has_dram = False
        if self.cpu_indices:  # DRAM is known only from a measurement: take an empty one
            probe = self._begin()
            self.has_dram = self._end(probe).get("ram") is not None

    def components(self) -> list[str]:
        return [c for c, ok in (("gpu", bool(self.gpu_indices)), ("cpu", bool(self.cpu_indices)),
                                ("ram", self.has_dram)) if ok]

    def _begin(self) -> str:
        key = f"greenlm-{next(_WINDOWS)}"
        self.monitor.begin_window(key, sync_execution=False)  # greenlm synchronises CUDA itself, if it is in use
        return key

    def _end(self, key: str) -> dict:
        measured = self.monitor.end_window(key, sync_execution=False)
        out = {"gpu": sum((measured.gpu_energy or {}).values())}
        for component, values in (("cpu", measured.cpu_energy), ("ram", measured.dram_energy)):
            out[component] = None if values is None else sum(values.values())
        return out

    def start(self, t: float) -> None:
        if self._key is not None:
            return  # already started by the first of its meters
        _cuda_sync()
        self.totals = {"gpu": 0.0, "cpu": 0.0, "ram": 0.0}
        self._key = self._begin()

    def advance(self) -> None:
        """End the open window, add what it measured to the totals, open the next."""
        if self._key is None:
            return
        _cuda_sync()
        measured = self._end(self._key)
        self._key = self._begin()
        for component, joules in measured.items():
            if joules is not None:
                self.totals[component] += joules

    def close(self) -> None:
        if self._key is not None:
            try:
                self.monitor.end_window(self._key, sync_execution=False, cancel=True)
            except Exception:
                pass
            self._key = None

    def details(self) -> dict:
        out = {"zeus_gpu_indices": self.gpu_indices, "zeus_cpu_indices": self.cpu_indices,
               "zeus_measures": self.components()}
        version = _zeus_version()
        if version:
            out["zeus_version"] = version
        return out


def _zeus_version() -> str | None:
    from importlib import metadata

    for name in ("zeus", "zeus-ml"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


class ZeusMeter(Meter):
    """One component (gpu, cpu or ram) of a shared ``ZeusWindows``."""

    source = SOURCE

    def __init__(self, windows: ZeusWindows, component: str, first: bool):
        self.windows, self.component, self.first = windows, component, first

    def start(self, t):
        self.windows.start(t)

    def read_j(self, t):
        if self.first:  # the session reads its meters in order, the first Zeus meter first: one window per reading
            self.windows.advance()
        return self.windows.totals[self.component]

    def details(self):
        return self.windows.details() if self.first else {}

    def close(self):
        if self.first:
            self.windows.close()


def zeus_meters(monitor=None) -> tuple[list[ZeusMeter], list[str]]:
    """Meters for the components Zeus measures here, and the components it leaves to greenlm's own meters."""
    windows = ZeusWindows(monitor)
    measured = windows.components()
    meters = [ZeusMeter(windows, c, first=i == 0) for i, c in enumerate(measured)]
    return meters, [c for c in ("gpu", "cpu", "ram") if c not in measured]
