"""``greenlm bench``: every model on every runtime, and the peers a user would otherwise reach for.

Runtimes (one row each per model, all on the same dev inputs, in one process):

  peers (what a user does without greenlm)
    hf-eager-pad128  transformers in PyTorch, fp32, inputs in the given order, every input padded to 128
                     tokens (``padding="max_length"``, the tutorial default)
    ort-fp32         the model exported to ONNX (no transformer fusions), ONNX Runtime, batches in the
                     given order padded to their longest row
    ort-int8         that graph through ONNX Runtime's own ``quantize_dynamic`` with its defaults, same batches
  greenlm (its engine: batches of similar length, dynamic padding, a fixed thread count)
    torch-fp32, torch-bf16, onnx-fp32 (offline fusions kept where measured faster), onnx-int8 (that graph,
    int8 per-channel weights),
    saved (a folder greenlm exported or quantized: ONNX Runtime for ONNX folders, PyTorch bf16 for bf16 ones,
    PyTorch int8 for PyTorch int8 ones, with or without early exits; such a folder has no other row)

Per row: latency p50/p90 at batch 1, throughput at each batch size > 1 (``measure_speed``), peak
resident memory, bytes on disk, accuracy on the split, energy per 1,000 examples (``PriceTag``), the
speedup vs the first row and vs the first model on the same runtime, and FLOPs per second (matmul convention, ``count_flops``) next to this
machine's measured fp32 matrix-product peak. Timings run in interleaved rounds (every runtime once per
round) and keep each runtime's best round, so a load change on a shared machine hits all of them alike.

The pieces live beside this module: ``bench_config`` (runtime names, ``BenchConfig``), ``bench_candidates``
(building each runtime of a model and its pass over the split), ``bench_measure`` (memory, matmul peak, FLOPs,
interleaved timing) and ``bench_rows`` (the JSON rows and the summary).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import greenlm
from greenlm.common import GreenlmError
from greenlm.data import Task
from greenlm.runtime.bench_candidates import _build, _prepare_model  # noqa: F401 (_build re-exported)
from greenlm.runtime.bench_config import (ALIASES, ALL_RUNTIMES, DEFAULT_RUNTIMES,  # noqa: F401 (re-exported)
                                          GREENLM_RUNTIMES, NAIVE_PAD_TO, PEERS, BenchConfig, expand_runtimes)
from greenlm.runtime.bench_measure import matmul_peak_gflop_per_s, matmul_peaks  # noqa: F401 (re-exported)
from greenlm.runtime.bench_measure import _time_interleaved
from greenlm.runtime.bench_rows import _add_speedups, _notes, _row, _summary
from greenlm.runtime.runtimes import default_threads


def bench(model_specs: list[str], task: Task, config: BenchConfig, *, work_dir: Path, on_note=print,
          command: str | None = None) -> dict:
    """Benchmark every model on every runtime of ``config``; returns the JSON-ready result."""
    if not model_specs:
        raise GreenlmError("give at least one model to benchmark")
    runtimes = expand_runtimes(config.runtimes)
    threads = config.threads or default_threads()
    work_dir = Path(work_dir)
    throughput_sizes = sorted({b for b in config.batch_sizes if b > 1}) or [1]
    main_size = throughput_sizes[-1]
    if config.split not in task.splits:
        raise GreenlmError(f"task '{task.name}' has no '{config.split}' split; use one of: {', '.join(task.splits)}")
    on_note(f"measuring this machine's fp32 matrix-product peak ({threads} threads)")
    peaks = matmul_peaks(threads)

    # Every runtime of every model is built (and predicts the split) first, then all are timed in the same
    # interleaved rounds: ratios between any two rows, across models too, are taken side by side.
    models = [_prepare_model(spec, index, task, config, runtimes, threads, main_size, work_dir / f"model{index}",
                             on_note) for index, spec in enumerate(model_specs)]
    live = [c for _, candidates in models for c in candidates if c.runtime is not None]
    timings = _time_interleaved(live, config, threads, throughput_sizes, lambda r: on_note(f"timing round {r}"))
    rows = [_row(c, timings.get(id(c)), config, threads, throughput_sizes, main_size, peaks["fp32"])
            for _, candidates in models for c in candidates]
    first = _add_speedups(rows)
    from greenlm.measure.hardware import machine_summary

    return {
        "greenlm_version": greenlm.__version__,
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "task": task.name,
        "split": config.split,
        "machine": {**machine_summary(), "threads": threads, "physical_cores_used": threads},
        "matmul_peak_gflop_per_s": {k: (round(v, 1) if v else None) for k, v in peaks.items()},
        "config": {**config.to_dict(), "runtimes": list(runtimes)},
        "first_row": first and {"model": first["model"], "runtime": first["runtime"]},
        "results": rows,
        "summary": _summary(rows),
        "notes": _notes(main_size),
    }
