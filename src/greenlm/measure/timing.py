"""The timing protocol used everywhere in greenlm: warm-up runs, then N timed runs, median and p90.

Threads are pinned (``torch.set_num_threads``) and stated in the result, so two figures are only
compared when they were taken under the same settings, side by side in one process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TimingStats:
    p50_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup_runs: int
    threads: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@contextmanager
def torch_threads(threads: int | None):
    """PyTorch's intra-op thread count is ``threads`` inside the block (None: left as it is) and the caller's again
    after it (setting it costs under a microsecond). A runtime pinned to the physical cores must not leave a later
    training or evaluation in the same process on them: the Python API runs one stage after another in one process."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None and previous != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def time_callable(fn: Callable[[], object], *, runs: int = 20, warmup_runs: int = 3,
                  threads: int | None = None, sync: Callable[[], None] | None = None) -> TimingStats:
    """Time ``fn()``: ``warmup_runs`` untimed calls, then ``runs`` timed ones (wall clock, perf_counter).

    ``threads`` pins torch's intra-op threads for the measurement (restored afterwards);
    ``sync`` is called before each clock read (e.g. ``torch.cuda.synchronize``).
    """
    if runs < 1 or warmup_runs < 0:
        raise ValueError("runs must be >= 1 and warmup_runs >= 0")
    import torch

    with torch_threads(threads):
        for _ in range(warmup_runs):
            fn()
        if sync:
            sync()
        samples_ms = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            if sync:
                sync()
            samples_ms.append((time.perf_counter() - start) * 1000.0)
        used_threads = torch.get_num_threads()
    return TimingStats(
        p50_ms=statistics.median(samples_ms),
        p90_ms=percentile(samples_ms, 90),
        mean_ms=statistics.fmean(samples_ms),
        min_ms=min(samples_ms),
        runs=runs,
        warmup_runs=warmup_runs,
        threads=used_threads,
    )
