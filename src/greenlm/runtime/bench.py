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
    saved (a folder greenlm exported or quantized: ONNX Runtime for ONNX folders, PyTorch bf16 for bf16 ones)

Per row: latency p50/p90 at batch 1, throughput at each batch size > 1 (``measure_speed``), peak
resident memory, bytes on disk, accuracy on the split, energy per 1,000 examples (``PriceTag``), the
speedup vs the first row and vs the first model on the same runtime, and FLOPs per second (matmul convention, ``count_flops``) next to this
machine's measured fp32 matrix-product peak. Timings run in interleaved rounds (every runtime once per
round) and keep each runtime's best round, so a load change on a shared machine hits all of them alike.
"""

from __future__ import annotations

import copy
import gc
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import greenlm
from greenlm.common import GreenlmError
from greenlm.data import UNLABELED, EncodedSplit, Task, align_labels, encode_split
from greenlm.runtime import onnx as gx
from greenlm.models.loading import LoadedModel, load_classifier, model_max_length
from greenlm.runtime.engine import (OnnxClassifier, OrtRuntime, Runtime, TorchRuntime, default_threads, pack,
                                    require_classifier, run_engine, saved_max_length, weight_files)
from greenlm.runtime.speed import measure_speed, speed_inputs

PEERS = ("hf-eager-pad128", "ort-fp32", "ort-int8")
GREENLM_RUNTIMES = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "saved")
ALL_RUNTIMES = PEERS + GREENLM_RUNTIMES
ALIASES = {"torch": ("torch-fp32", "torch-bf16"), "onnx": ("onnx-fp32", "onnx-int8"), "peers": PEERS,
           "greenlm": GREENLM_RUNTIMES, "all": ALL_RUNTIMES}
DEFAULT_RUNTIMES = ALL_RUNTIMES
NAIVE_PAD_TO = 128

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


def expand_runtimes(names) -> tuple[str, ...]:
    """``torch,onnx,peers`` -> the runtime names, in order, without repeats."""
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        group = ALIASES.get(name, (name,))
        for item in group:
            if item not in ALL_RUNTIMES:
                raise GreenlmError(f"unknown runtime {name!r}; use runtimes {', '.join(ALL_RUNTIMES)}"
                                   f" or groups {', '.join(ALIASES)}")
            if item not in out:
                out.append(item)
    if not out:
        raise GreenlmError("no runtime given; e.g. --runtimes peers,torch,onnx")
    return tuple(out)


@dataclass(frozen=True)
class BenchConfig:
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES  # runtime names (see module doc), in row order
    batch_sizes: tuple[int, ...] = (1, 32)  # 1: latency; each size > 1: throughput
    split: str = "dev"  # the task split every runtime predicts (accuracy) and is timed on
    max_examples: int | None = None  # timing inputs: a seeded sample of the split (None: all of it)
    latency_examples: int = 64  # inputs timed one at a time
    repeats: int = 3  # timed passes per round (after a warm-up pass)
    rounds: int = 3  # interleaved rounds; each runtime keeps its best
    threads: int | None = None  # intra-op threads for every runtime (None: physical cores)
    naive_pad_to: int = NAIVE_PAD_TO  # tokens the naive peer pads every input to
    max_length: int | None = None  # truncation (None: the model's saved max_length, else 128)
    energy: bool = True  # energy per 1,000 examples from a PriceTag around the accuracy pass
    pue: float | None = None  # data-centre PUE for the energy figure (None: 1.0, the machine's own)
    seed: int = 0

    def __post_init__(self):
        if not self.batch_sizes or any(not isinstance(b, int) or b < 1 for b in self.batch_sizes):
            raise GreenlmError(f"batch sizes must be positive whole numbers, got {list(self.batch_sizes)}")
        for name in ("latency_examples", "repeats", "rounds", "naive_pad_to"):
            if getattr(self, name) < 1:
                raise GreenlmError(f"bench: {name} must be at least 1, got {getattr(self, name)}")
        expand_runtimes(self.runtimes)

    def to_dict(self) -> dict:
        return asdict(self)


# ---- measurement helpers -------------------------------------------------------------------------


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


def matmul_peak_gflop_per_s(threads: int, dtype: str = "fp32", n: int = 2048, runs: int = 5) -> float:
    """This machine's measured dense matrix-product rate: best of ``runs`` n x n x n products (2 n^3 FLOPs)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        kind = torch.float32 if dtype == "fp32" else torch.bfloat16
        a, b = torch.randn(n, n).to(kind), torch.randn(n, n).to(kind)
        torch.mm(a, b)
        best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(runs))
    finally:
        torch.set_num_threads(previous)
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


# ---- runtimes of one model -----------------------------------------------------------------------


@dataclass
class _Candidate:
    name: str
    runtime: Runtime | None  # None when skipped
    order: str = "length"  # "length" | "given"
    pad_to: int | None = None
    disk_bytes: int | None = None
    precision: str | None = None
    skipped: str | None = None  # reason
    build_s: float | None = None
    memory: dict = field(default_factory=dict)
    accuracy_pass: dict | None = None  # logits, accuracy and energy of the pass over the whole split
    spec: str = ""  # the model this runtime runs, its index, inputs and FLOP counter
    index: int = 0
    data: object = None
    flops: object = None
    reference_logits: object = None  # the model's PyTorch fp32 predictions, for agreement


class _ForwardOnly(Runtime):
    """A peer: the HF module called as a user would, ``model(**batch).logits`` under ``torch.inference_mode``."""

    def __init__(self, model, threads, files):
        self.model, self.threads, self.files = model.float().eval(), threads, files
        self.name, self.precision = "hf-eager-pad128", "fp32"

    def __call__(self, batch):
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return self.model(**{k: _torch(v) for k, v in batch.items()}).logits.numpy()


def _torch(value):
    import torch

    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def _build(name: str, loaded: LoadedModel, threads: int, work: Path, check_batches, config: BenchConfig) -> _Candidate:
    """One runtime for one model (exports and conversions written under ``work``)."""
    model = loaded.model
    saved_onnx = isinstance(model, OnnxClassifier)
    quantized_torch = (getattr(model.config, "greenlm", None) or {}).get("quantization") is not None
    weights = weight_files(loaded)
    if name == "saved":
        if saved_onnx:
            rt = OrtRuntime(model.runtime.files[0], precision=model.runtime.precision, threads=threads)
        elif quantized_torch:  # a bf16 folder from greenlm quantize: PyTorch in the dtype it was saved in
            rt = TorchRuntime(copy.deepcopy(model), precision=_params_dtype(model), threads=threads, files=weights)
        else:
            return _Candidate(name, None, skipped="'saved' is for folders greenlm exported or quantized;"
                                                  " this is a plain PyTorch model")
        return _Candidate(name, rt, disk_bytes=rt.disk_bytes(), precision=rt.precision)
    if saved_onnx:
        return _Candidate(name, None, skipped="the model is a saved ONNX folder: only 'saved' applies")
    if name == "hf-eager-pad128":
        rt = _ForwardOnly(copy.deepcopy(model), threads, weights)
        return _Candidate(name, rt, order="given", pad_to=config.naive_pad_to, disk_bytes=rt.disk_bytes(),
                          precision="fp32")
    if name in ("torch-fp32", "torch-bf16"):
        precision = name.split("-")[1]
        rt = TorchRuntime(copy.deepcopy(model), precision=precision, threads=threads, files=weights)
        disk = rt.disk_bytes() if _params_dtype(model) == precision else _safetensors_bytes(rt.model, work / name)
        return _Candidate(name, rt, disk_bytes=disk, precision=precision)
    gx.require_onnxruntime()
    if name in ("ort-fp32", "ort-int8"):
        plain = work / "plain.onnx"
        if not plain.is_file():
            gx.export_onnx(model, plain, check_batches=check_batches, optimize=False)
        path = plain
        if name == "ort-int8":
            path = work / "ort-int8.onnx"
            if not path.is_file():
                from onnxruntime.quantization import quantize_dynamic

                with gx.quiet_onnx():
                    quantize_dynamic(str(plain), str(path))  # ONNX Runtime's defaults, as its docs show
        rt = OrtRuntime(path, precision="fp32" if name == "ort-fp32" else "int8-dynamic", threads=threads)
        return _Candidate(name, rt, order="given", disk_bytes=rt.disk_bytes(), precision=rt.precision)
    fused = work / "greenlm-fp32.onnx"
    if not fused.is_file():
        gx.export_onnx(model, fused, check_batches=check_batches, optimize=None)  # fusions where they help
    path = fused
    if name == "onnx-int8":
        path = work / "greenlm-int8.onnx"
        if not path.is_file():
            gx.quantize_onnx_dynamic(fused, path, per_channel=True)
    rt = OrtRuntime(path, precision="fp32" if name == "onnx-fp32" else "int8-dynamic", threads=threads)
    return _Candidate(name, rt, disk_bytes=rt.disk_bytes(), precision=rt.precision)


def _params_dtype(model) -> str:
    dtype = next((p.dtype for p in model.parameters() if p.numel()), None)
    return "bf16" if str(dtype).endswith("bfloat16") else "fp32"


def _safetensors_bytes(model, folder: Path) -> int:
    """Bytes of the model's weights saved as safetensors in its runtime dtype (written, then measured)."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.safetensors"
    save_model(model, str(path))
    return path.stat().st_size


# ---- the benchmark -------------------------------------------------------------------------------


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
    peaks = {"fp32": matmul_peak_gflop_per_s(threads, "fp32")}
    try:
        peaks["bf16"] = matmul_peak_gflop_per_s(threads, "bf16")
    except RuntimeError:
        peaks["bf16"] = None

    # Every runtime of every model is built (and predicts the split) first, then all are timed in the same
    # interleaved rounds: ratios between any two rows, across models too, are taken side by side.
    models = [_prepare_model(spec, index, task, config, runtimes, threads, main_size, work_dir / f"model{index}",
                             on_note) for index, spec in enumerate(model_specs)]
    live = [c for _, candidates in models for c in candidates if c.runtime is not None]
    timings = _time_interleaved(live, config, threads, throughput_sizes, lambda r: on_note(f"timing round {r}"))
    rows = [_row(c, timings.get(id(c)), config, threads, throughput_sizes, main_size, peaks["fp32"])
            for _, candidates in models for c in candidates]
    first = next((r for r in rows if r["status"] == "ok"), None)
    # The first model on the same runtime: what compressing the model gained, the runtime held fixed.
    first_model = {r["runtime"]: r for r in rows if r["model_index"] == 0 and r["status"] == "ok"}
    for row in rows:
        row["speedup_vs_first"] = _ratio(row["throughput_examples_per_s"], first and first["throughput_examples_per_s"])
        row["latency_speedup_vs_first"] = _ratio(first and first["latency_ms_p50"], row["latency_ms_p50"])
        same = first_model.get(row["runtime"])
        row["speedup_vs_first_model_same_runtime"] = _ratio(row["throughput_examples_per_s"],
                                                            same and same["throughput_examples_per_s"])
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
        "notes": [
            "timings: interleaved rounds, best round per runtime; the machine may be shared, so figures are noisy",
            "latency: batch 1, median (p50) and p90 over inputs of each input's median call time",
            f"throughput: examples/s over the timing inputs at batch {main_size}, best pass",
            "FLOP/s: matmul-convention forward FLOPs (count_flops) of the shapes run (executed, padding included)"
            " and of the real tokens only (useful), per second of the best throughput pass",
            "energy: PriceTag around one pass over the whole split at the throughput batch size",
            "memory: peak resident memory of the process while the runtime was built and ran the split, and its"
            " rise above the resident memory just before (allocators keep freed memory, so rises can read low)",
        ],
    }


def _ratio(a, b):
    return round(a / b, 3) if a and b else None


@dataclass
class _Inputs:
    """One model's view of the split: all rows (accuracy, energy) and the timing rows."""

    encoded: EncodedSplit  # every row of the split, tokenized for this model
    packed: object  # runtime.Packed of ``encoded``
    timing: EncodedSplit  # the rows timed (a seeded sample, or all)
    pad_token_id: int
    num_labels: int


def _inputs(loaded: LoadedModel, spec: str, task: Task, config: BenchConfig, needs_naive: bool) -> _Inputs:
    model_config = loaded.model.config
    max_length = config.max_length or saved_max_length(model_config)
    if max_length > model_max_length(model_config):
        raise GreenlmError(f"max_length {max_length} is above what model '{spec}' allows"
                           f" ({model_max_length(model_config)})")
    split = align_labels(task.split(config.split), task, list(loaded.labels), spec)
    if split.labels and min(split.labels) == UNLABELED:
        raise GreenlmError(f"split '{config.split}' of task '{task.name}' has no labels; accuracy needs labels")
    encoded = encode_split(split, loaded.tokenizer, max_length)
    if not len(encoded):
        raise GreenlmError(f"split '{config.split}' of task '{task.name}' is empty")
    longest = max(encoded.lengths())
    if needs_naive and longest > config.naive_pad_to:
        raise GreenlmError(f"an input has {longest} tokens, more than the naive peer's padding ({config.naive_pad_to});"
                           " raise --naive-pad-to or lower --max-length")
    pad = loaded.tokenizer.pad_token_id
    timing = speed_inputs(encoded, max_examples=config.max_examples or len(encoded), seed=config.seed)
    return _Inputs(encoded, pack(encoded, pad), timing, pad, len(loaded.labels))


def _prepare_model(spec, index, task, config, runtimes, threads, main_size, work, on_note):
    """Load one model, build each of its runtimes and predict the split with it (accuracy, energy, memory)."""
    on_note(f"[{index}] loading {spec}")
    loaded = load_classifier(spec)
    require_classifier(loaded, spec)
    data = _inputs(loaded, spec, task, config, needs_naive="hf-eager-pad128" in runtimes)
    lengths = data.packed.lengths
    check_batches = [data.packed.batch(r) for r in (np.argsort(lengths)[-1:], np.arange(min(8, len(lengths))))]
    work.mkdir(parents=True, exist_ok=True)
    flops = _Flops(loaded.model.config)
    candidates: list[_Candidate] = []
    for name in runtimes:
        gc.collect()
        with _PeakRss() as memory:
            start = time.perf_counter()
            try:
                candidate = _build(name, loaded, threads, work, check_batches, config)
            except GreenlmError as err:
                candidate = _Candidate(name, None, skipped=str(err))
            candidate.build_s = round(time.perf_counter() - start, 3)
            if candidate.runtime is not None:
                on_note(f"[{index}] {name}: predicting the {config.split} split")
                candidate.accuracy_pass = _predict_split(candidate, data, main_size, config)
        candidate.memory = {"peak_rss_mb": round(memory.peak_mb, 1),
                            "peak_rss_rise_mb": round(memory.peak_mb - memory.baseline_mb, 1)}
        candidate.spec, candidate.index, candidate.data, candidate.flops = spec, index, data, flops
        candidates.append(candidate)
    reference = next((c.accuracy_pass["logits"] for c in candidates
                      if c.runtime is not None and c.name in ("torch-fp32", "hf-eager-pad128")), None)
    for c in candidates:
        c.reference_logits = reference
    return loaded, candidates


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


def _predict_split(c: _Candidate, data: _Inputs, batch_size: int, config: BenchConfig) -> dict:
    """The whole split through the runtime with its own batching, under a PriceTag: accuracy and energy."""
    from greenlm.measure import PriceTag

    labels = np.asarray(data.encoded.labels)
    packed, pad = data.packed, data.pad_token_id

    def predict():
        if c.order == "length" and c.pad_to is None:
            return run_engine(c.runtime, packed, batch_size=batch_size, num_labels=data.num_labels)
        out = np.empty((len(labels), data.num_labels), dtype=np.float32)
        for start in range(0, len(labels), batch_size):
            rows = np.arange(start, min(start + batch_size, len(labels)))
            batch = packed.batch(rows)
            if c.pad_to is not None:
                batch = {k: _pad_right(v, c.pad_to, pad if k == "input_ids" else 0) for k, v in batch.items()}
            out[rows] = c.runtime(batch)
        return out

    energy = {"energy_kwh_per_1000_examples": None, "energy_source": None, "energy_reason": "energy measurement off"}
    if config.energy:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PriceTag(f"bench:{c.name}", ledger=False, pue=config.pue) as tag:
                logits = predict()
        record = tag.record
        energy["energy_source"] = record.energy_source
        if record.energy_kwh is None:
            energy["energy_reason"] = record.reasons.get("energy_kwh", "energy could not be measured")
        else:
            energy["energy_kwh_per_1000_examples"] = record.energy_kwh / len(labels) * 1000.0
            energy["energy_reason"] = None
    else:
        logits = predict()
    return {"logits": logits, "accuracy": float((logits.argmax(1) == labels).mean() * 100.0), "energy": energy}


def _pad_right(array: np.ndarray, width: int, value: int) -> np.ndarray:
    out = np.full((array.shape[0], width), value, dtype=array.dtype)
    out[:, : array.shape[1]] = array
    return out


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
