"""The benchmark's results: one JSON row per (model, runtime), every field present (measured, or ``None`` with
the reason), the speedups between rows, and per model greenlm's fastest runtime against the peers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from greenlm.runtime.bench_config import BenchConfig
from greenlm.runtime.bench_measure import _flops_of_pass

if TYPE_CHECKING:
    from greenlm.runtime.bench_candidates import _Candidate


_DESCRIPTIONS = {
    "hf-eager-pad128": ("peer", "fp32", "PyTorch + transformers, given order, padded to {pad} tokens"),
    "ort-fp32": ("peer", "fp32", "ONNX Runtime, plain export, given order, padded per batch"),
    "ort-int8": ("peer", "int8-dynamic", "ONNX Runtime quantize_dynamic defaults, given order, padded per batch"),
    "torch-fp32": ("greenlm", "fp32", "PyTorch, length-sorted batches, padded per batch"),
    "torch-bf16": ("greenlm", "bf16", "PyTorch bf16 weights and activations, length-sorted batches"),
    "onnx-fp32": ("greenlm", "fp32", "ONNX Runtime, offline fusions where measured faster, length-sorted batches"),
    "onnx-int8": ("greenlm", "int8-dynamic", "ONNX Runtime, int8 per-channel weights of that graph, length-sorted"),
    "saved": ("greenlm", None, "the folder as saved (exported / quantized by greenlm), length-sorted batches"),
}


def _row(c: _Candidate, timing: dict | None, config: BenchConfig, threads: int, sizes: list[int], main_size: int,
         peak_fp32: float | None) -> dict:
    """One JSON row: every field present, measured or ``None`` with the reason."""
    data, reference, flops = c.data, c.reference_logits, c.flops
    kind, precision, description = _DESCRIPTIONS[c.name]
    row = {
        "model": c.spec, "model_index": c.index, "runtime": c.name, "kind": kind,
        "precision": c.precision or precision, "batching": description.format(pad=config.naive_pad_to),
        "status": "ok" if c.runtime is not None else "skipped", "reason": c.skipped,
        "threads": threads, "examples": len(data.encoded), "timing_examples": len(data.timing),
        "latency_ms_p50": None, "latency_ms_p90": None,
        "latency_batch_size": 1 if 1 in config.batch_sizes else None,
        "throughput_examples_per_s": None, "throughput_batch_size": main_size,
        "throughput_examples_per_s_by_batch": {},
        "peak_rss_mb": c.memory.get("peak_rss_mb"), "peak_rss_rise_mb": c.memory.get("peak_rss_rise_mb"),
        "disk_bytes": c.disk_bytes, "disk_mb": round(c.disk_bytes / 1e6, 3) if c.disk_bytes else None,
        "accuracy": None, "agreement_with_fp32": None,
        "energy_kwh_per_1000_examples": None, "energy_source": None, "energy_reason": None,
        "gflop_per_s_executed": None, "gflop_per_s_useful": None, "share_of_fp32_matmul_peak": None,
        "flops_reason": None, "build_s": c.build_s,
    }
    if c.runtime is None:
        row["energy_reason"] = row["flops_reason"] = "runtime skipped"
        return row
    predicted = c.accuracy_pass
    row["accuracy"] = round(predicted["accuracy"], 4)
    if reference is not None:
        same = predicted["logits"].argmax(1) == reference.argmax(1)
        row["agreement_with_fp32"] = round(float(same.mean() * 100), 4)
    row.update(predicted["energy"])
    if "latency" in timing:
        latency = timing["latency"]
        row["latency_ms_p50"] = round(latency.latency_ms_p50, 3)
        row["latency_ms_p90"] = round(latency.latency_ms_p90, 3)
    for size in sizes:
        row["throughput_examples_per_s_by_batch"][str(size)] = round(timing[size].throughput_examples_per_s, 2)
    throughput = timing[main_size].throughput_examples_per_s
    row["throughput_examples_per_s"] = round(throughput, 2)
    executed, useful = _flops_of_pass(flops, data.timing, main_size, c.order, c.pad_to)
    if executed is None:
        row["flops_reason"] = flops.error
        return row
    seconds = len(data.timing) / throughput
    row["gflop_per_s_executed"] = round(executed / seconds / 1e9, 2)
    row["gflop_per_s_useful"] = round(useful / seconds / 1e9, 2)
    row["share_of_fp32_matmul_peak"] = round(executed / seconds / 1e9 / peak_fp32, 4) if peak_fp32 else None
    return row


def _ratio(a, b):
    return round(a / b, 3) if a and b else None


def _summary(rows: list[dict]) -> dict:
    """Per model: greenlm's fastest runtime and its throughput ratio to each peer (same model, same run)."""
    out = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        ok = [r for r in rows if r["model"] == model and r["status"] == "ok"]
        ours = [r for r in ok if r["kind"] == "greenlm"]
        if not ours:
            continue
        best = max(ours, key=lambda r: r["throughput_examples_per_s"])
        out[model] = {
            "fastest_runtime": best["runtime"],
            "fastest_throughput_examples_per_s": best["throughput_examples_per_s"],
            "fastest_accuracy": best["accuracy"],
            "throughput_ratio_vs": {r["runtime"]: _ratio(best["throughput_examples_per_s"],
                                                         r["throughput_examples_per_s"]) for r in ok if r is not best},
            "int8_vs_fp32": _int8_vs_fp32(ok),
        }
    return out


def _int8_vs_fp32(ok: list[dict]) -> dict | None:
    """greenlm's int8 row against the same model's fp32 rows: throughput ratio and accuracy drop."""
    int8 = next((r for r in ok if r["kind"] == "greenlm" and str(r["precision"]).startswith("int8")), None)
    fp32 = [r for r in ok if r["precision"] == "fp32"]
    if not int8 or not fp32:
        return None
    return {"int8_runtime": int8["runtime"],
            "vs": {r["runtime"]: {"throughput_ratio": _ratio(int8["throughput_examples_per_s"],
                                                             r["throughput_examples_per_s"]),
                                  "accuracy_drop_points": round(r["accuracy"] - int8["accuracy"], 4)} for r in fp32}}


def _add_speedups(rows: list[dict]) -> dict | None:
    """Each row's speedups against the first row and against the first model on the same runtime; returns the
    first measured row."""
    first = next((r for r in rows if r["status"] == "ok"), None)
    # The first model on the same runtime: what compressing the model gained, the runtime held fixed.
    first_model = {r["runtime"]: r for r in rows if r["model_index"] == 0 and r["status"] == "ok"}
    for row in rows:
        row["speedup_vs_first"] = _ratio(row["throughput_examples_per_s"], first and first["throughput_examples_per_s"])
        row["latency_speedup_vs_first"] = _ratio(first and first["latency_ms_p50"], row["latency_ms_p50"])
        same = first_model.get(row["runtime"])
        row["speedup_vs_first_model_same_runtime"] = _ratio(row["throughput_examples_per_s"],
                                                            same and same["throughput_examples_per_s"])
    return first


def _notes(main_size: int) -> list[str]:
    """How to read the figures, as the result's ``notes``."""
    return [
        "timings: interleaved rounds, best round per runtime; the machine may be shared, so figures are noisy",
        "latency: batch 1, median (p50) and p90 over inputs of each input's median call time",
        f"throughput: examples/s over the timing inputs at batch {main_size}, best pass",
        "FLOP/s: matmul-convention forward FLOPs (count_flops) of the shapes run (executed, padding included)"
        " and of the real tokens only (useful), per second of the best throughput pass",
        "energy: PriceTag around one pass over the whole split at the throughput batch size",
        "memory: peak resident memory of the process while the runtime was built and ran the split, and its"
        " rise above the resident memory just before (allocators keep freed memory, so rises can read low)",
    ]
