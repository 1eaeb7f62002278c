"""The benchmark's measuring helpers: peak resident memory, this machine's matrix-product peak, FLOPs of the
shapes a pass runs, and the interleaved timing rounds in which every runtime is timed alike."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from greenlm.common.hardware import cpu_has_bf16
from greenlm.data import EncodedSplit
from greenlm.measure.timing import torch_threads
from greenlm.runtime.bench_config import BenchConfig
from greenlm.runtime.speed import measure_speed

if TYPE_CHECKING:
    from greenlm.runtime.bench_candidates import _Candidate


class _PeakRss:
    """Samples this process's resident memory every 5 ms; ``peak_mb`` is the largest seen."""

    def __init__(self):
        import psutil

        self._process = psutil.Process()
        self.baseline_mb = self._process.memory_info().rss / 2**20
        self.peak_mb = self.baseline_mb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)
            self._stop.wait(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)


def matmul_peak_gflop_per_s(threads: int, dtype: str = "fp32", n_max: int = 2048, runs: int = 5,
                            budget_s: float = 3.0) -> float:
    """This machine's measured dense matrix-product rate: best of up to ``runs`` n x n x n products (2 n^3 FLOPs).

    Bounded by time, not size: n starts at 256 and doubles (to ``n_max``) only while a product stays well inside
    ``budget_s``, so a CPU that emulates bf16 (AMD Zen 3: about 100x slower than fp32) is measured in seconds
    rather than the minutes 2048^3 would take there.
    """
    import torch

    with torch_threads(threads):
        kind = torch.float32 if dtype == "fp32" else torch.bfloat16
        deadline = time.perf_counter() + budget_s
        n = 256
        while True:
            a, b = torch.randn(n, n).to(kind), torch.randn(n, n).to(kind)
            one = _seconds(lambda: torch.mm(a, b))  # also the warm-up
            if n >= n_max or one * 8 * (runs + 1) > budget_s / 2:  # the next size would not fit the budget
                break
            n *= 2
        times = [one]
        while len(times) < runs and time.perf_counter() + one < deadline:
            times.append(_seconds(lambda: torch.mm(a, b)))
        best = min(times)
    return 2.0 * n**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class _Flops:
    """Forward FLOPs per example at each length (matmul convention), from ``greenlm.measure.count_flops``."""

    def __init__(self, config):
        self.config, self._cache, self.error = config, {}, None

    def at(self, tokens: int) -> float | None:
        if self.error:
            return None
        if tokens not in self._cache:
            try:
                from greenlm.measure import count_flops

                self._cache[tokens] = count_flops(self.config, int(tokens), convention="matmul").infer_flops_per_example
            except Exception as err:  # an architecture the FLOP counter does not know: say so, do not guess
                self.error = f"count_flops: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                return None
        return self._cache[tokens]

    def of_batches(self, batch_widths_and_sizes) -> float | None:
        total = 0.0
        for width, size in batch_widths_and_sizes:
            per = self.at(width)
            if per is None:
                return None
            total += per * size
        return total


def _flops_of_pass(flops: _Flops, encoded: EncodedSplit, batch_size: int, order: str, pad_to: int | None):
    """(executed, useful) FLOPs of one throughput pass: the shapes run (padding included), the real tokens."""
    lengths = np.asarray(encoded.lengths())
    if order == "length":
        groups = [lengths[np.sort(r)] for r in np.array_split(np.argsort(-lengths, kind="stable"),
                                                              range(batch_size, len(lengths), batch_size))]
    else:
        groups = [lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
    executed = flops.of_batches((pad_to or int(g.max()), len(g)) for g in groups)
    useful = flops.of_batches((int(n), 1) for n in lengths)
    return executed, useful


def _time_interleaved(live: list[_Candidate], config: BenchConfig, threads: int, sizes: list[int],
                      on_round) -> dict[int, dict]:
    """``measure_speed`` of every runtime once per round; each keeps its best throughput per batch size and
    the latency of its round with the lowest p50. Latency (batch 1) is taken with the largest size."""
    best: dict[int, dict] = {id(c): {} for c in live}
    for round_index in range(config.rounds):
        on_round(f"{round_index + 1}/{config.rounds}")
        for c in live:
            mine = best[id(c)]
            for size in sizes:
                with_latency = size == sizes[-1] and 1 in config.batch_sizes
                report = measure_speed(c.runtime, c.data.timing, pad_token_id=c.data.pad_token_id, batch_size=size,
                                       latency_examples=config.latency_examples if with_latency else 0,
                                       repeats=config.repeats, threads=threads, order=c.order, pad_to=c.pad_to)
                if size not in mine or report.throughput_examples_per_s > mine[size].throughput_examples_per_s:
                    mine[size] = report
                held = mine.get("latency")
                if report.latency_ms_p50 is not None and (held is None or report.latency_ms_p50 < held.latency_ms_p50):
                    mine["latency"] = report
    return best


def matmul_peaks(threads: int) -> dict[str, float | None]:
    """fp32 and bf16 matrix-product peaks (GFLOP/s) of this machine; bf16 ``None`` where torch cannot run it.

    Each is bounded by time (``matmul_peak_gflop_per_s``); bf16 on a CPU without AVX512-BF16 / AMX is measured
    with a smaller budget, as it only confirms how slow the emulation is.
    """
    peaks = {"fp32": matmul_peak_gflop_per_s(threads, "fp32")}
    try:
        peaks["bf16"] = matmul_peak_gflop_per_s(threads, "bf16", budget_s=3.0 if cpu_has_bf16() else 1.0)
    except RuntimeError:
        peaks["bf16"] = None
    return peaks
