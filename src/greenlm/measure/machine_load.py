"""How busy the machine was while something was timed: the load average, and the CPU time other processes took.

Speeds taken on a shared machine are low and noisy; ratios taken side by side in interleaved rounds hold up
better, but the reader should know. ``CpuWindow`` brackets the timed code and reads, from ``/proc/stat``, the
CPU time spent on the CPUs this process may run on (its affinity), minus this process's own CPU time: what is
left is other processes (and, on a virtual machine, time the hypervisor gave to other guests: ``steal``).

    before = loadavg_1m()
    with CpuWindow() as window:
        ...  # the timing
    record = load_record(before, loadavg_1m(), window, threads=4)
    record["busy"], record["other_processes_cpu_share"]

The rule for ``busy`` (``BUSY_RULE``): other processes kept more than ``OTHER_CPUS_BUSY`` (a quarter) of one
CPU busy on average during the timed window. Where ``/proc/stat`` cannot be read (macOS, Windows), the rule
falls back to the 1-minute load average before the pass: busy when it exceeds ``cpus - threads + 0.5`` (the
load already there leaves the timing threads less than a free CPU each). The load average counts this
process's own recent work too, so the fallback can call a machine busy right after training.

Standard library only.
"""

from __future__ import annotations

import os
import time

PROC_STAT = "/proc/stat"
OTHER_CPUS_BUSY = 0.25  # average CPUs used by other processes above which the machine counts as shared
BUSY_RULE = (f"busy when other processes used more than {OTHER_CPUS_BUSY:g} of a CPU on average during the timed"
             " window (/proc/stat over this process's CPUs, minus its own CPU time); where /proc/stat cannot be"
             " read, when the 1-minute load average before the pass exceeded cpus - threads + 0.5")


def loadavg_1m() -> float | None:
    """The 1-minute load average, or None where the system has none."""
    try:
        return round(os.getloadavg()[0], 3)
    except (OSError, AttributeError):
        return None


def allowed_cpus() -> list[int] | None:
    """The CPU numbers this process may run on (its affinity), or None where the system does not say."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (AttributeError, ValueError, OSError):
        return 100


def busy_cpu_seconds(cpus: list[int] | None = None, path: str = PROC_STAT) -> tuple[float, int] | None:
    """(CPU seconds spent busy since boot, number of CPUs counted) from ``/proc/stat``; None when unreadable.

    Busy is user + nice + system + irq + softirq + steal (guest time is already inside user; idle and
    iowait are not busy). ``cpus``: count only these CPUs (the ``cpuN`` lines); None, or CPUs the file does
    not list: the machine's total (the ``cpu`` line).
    """
    try:
        with open(path, encoding="ascii") as handle:
            lines = [line.split() for line in handle if line.startswith("cpu")]
    except (OSError, ValueError):
        return None
    total, per_cpu = None, {}
    for fields in lines:
        try:
            values = [int(v) for v in fields[1:]]
        except ValueError:
            return None
        if len(values) < 4:
            continue
        busy = sum(values[:3]) + sum(values[5:8])
        if fields[0] == "cpu":
            total = busy
        elif fields[0][3:].isdigit():
            per_cpu[int(fields[0][3:])] = busy
    ticks = _clock_ticks()
    if cpus and per_cpu and all(c in per_cpu for c in cpus):
        return sum(per_cpu[c] for c in cpus) / ticks, len(cpus)
    if total is None:
        return None
    return total / ticks, len(per_cpu) or (os.cpu_count() or 1)


class CpuWindow:
    """Bracket a block: its wall time, this process's CPU time, and the busy CPU time of the CPUs it may use."""

    def __init__(self, path: str = PROC_STAT):
        self.path = path
        self.cpus_allowed = allowed_cpus()
        self.wall_s = 0.0
        self.own_cpu_s = 0.0
        self.busy_cpu_s: float | None = None  # every process, on the CPUs counted
        self.cpus = len(self.cpus_allowed) if self.cpus_allowed else (os.cpu_count() or 1)

    def __enter__(self) -> CpuWindow:
        self._busy0 = busy_cpu_seconds(self.cpus_allowed, self.path)
        self._own0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> bool:
        self.wall_s = time.perf_counter() - self._wall0
        self.own_cpu_s = time.process_time() - self._own0
        busy1 = busy_cpu_seconds(self.cpus_allowed, self.path)
        if self._busy0 is not None and busy1 is not None and busy1[1] == self._busy0[1]:
            self.busy_cpu_s = busy1[0] - self._busy0[0]
            self.cpus = busy1[1]
        return False

    @property
    def other_cpu_s(self) -> float | None:
        """CPU seconds other processes took on these CPUs during the block (None without /proc/stat)."""
        return None if self.busy_cpu_s is None else max(0.0, self.busy_cpu_s - self.own_cpu_s)


def is_busy(*, other_cpu_s: float | None, wall_s: float, cpus: int, threads: int,
            loadavg_before: float | None) -> bool:
    """``BUSY_RULE``: other processes' average CPUs over the window, else the load average before it."""
    if other_cpu_s is not None and wall_s > 0:
        return other_cpu_s / wall_s > OTHER_CPUS_BUSY
    if loadavg_before is not None:
        return loadavg_before > cpus - threads + 0.5
    return False


def load_record(loadavg_before: float | None, loadavg_after: float | None, window: CpuWindow, *,
                threads: int) -> dict:
    """What a report says about the machine's load while timing (``measurements["machine"]["load"]``)."""
    other = window.other_cpu_s
    share = None
    if other is not None and window.wall_s > 0:
        share = round(min(1.0, max(0.0, other / (window.wall_s * window.cpus))), 4)
    return {
        "loadavg_1m_before": loadavg_before,
        "loadavg_1m_after": loadavg_after,
        "cpus": window.cpus,
        "threads": threads,
        "window_s": round(window.wall_s, 3),
        "other_processes_cpu_share": share,
        "busy": is_busy(other_cpu_s=other, wall_s=window.wall_s, cpus=window.cpus, threads=threads,
                        loadavg_before=loadavg_before),
        "rule": BUSY_RULE,
    }
