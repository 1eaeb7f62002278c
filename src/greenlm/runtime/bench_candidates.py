"""One model's runtimes in the benchmark: its inputs, each runtime built (the peers as a user would run them,
greenlm's through its engine), and each runtime's pass over the whole split (accuracy, energy, memory)."""

from __future__ import annotations

import copy
import gc
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from greenlm.common.hardware import cpu_has_bf16
from greenlm.common import GreenlmError
from greenlm.data import UNLABELED, EncodedSplit, Task, align_labels, encode_split
from greenlm.models.loading import LoadedModel, load_classifier, model_max_length
from greenlm.models.quantized import torch_int8_settings
from greenlm.runtime import onnx as gx
from greenlm.runtime.bench_config import BenchConfig
from greenlm.runtime.bench_measure import _Flops, _PeakRss
from greenlm.runtime.folders import require_classifier, saved_max_length, weight_files
from greenlm.runtime.packing import pack, run_engine
from greenlm.measure.timing import torch_threads
from greenlm.runtime.runtimes import OnnxClassifier, OrtRuntime, Runtime, TorchRuntime, _as_torch
from greenlm.runtime.speed import speed_inputs


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

        with torch_threads(self.threads), torch.inference_mode():
            return self.model(**{k: _as_torch(v) for k, v in batch.items()}).logits.numpy()


def _build(name: str, loaded: LoadedModel, threads: int, work: Path, check_batches, config: BenchConfig) -> _Candidate:
    """One runtime for one model (exports and conversions written under ``work``)."""
    model = loaded.model
    saved_onnx = isinstance(model, OnnxClassifier)
    quantized_torch = (getattr(model.config, "greenlm", None) or {}).get("quantization") is not None
    torch_int8 = torch_int8_settings(model.config) is not None
    weights = weight_files(loaded)
    if name == "saved":
        if saved_onnx:
            rt = OrtRuntime(model.runtime.files[0], precision=model.runtime.precision, threads=threads)
        elif torch_int8:  # PyTorch int8 (with or without exits), quantized when it was loaded; fp32 on disk
            rt = TorchRuntime(copy.deepcopy(model), precision="int8-dynamic", threads=threads, files=weights)
        elif quantized_torch:  # a bf16 folder from greenlm quantize: PyTorch in the dtype it was saved in
            rt = TorchRuntime(copy.deepcopy(model), precision=_params_dtype(model), threads=threads, files=weights)
        else:
            return _Candidate(name, None, skipped="'saved' is for folders greenlm exported or quantized;"
                                                  " this is a plain PyTorch model")
        return _Candidate(name, rt, disk_bytes=rt.disk_bytes(), precision=rt.precision)
    if saved_onnx:
        return _Candidate(name, None, skipped="the model is a saved ONNX folder: only 'saved' applies")
    if torch_int8:
        return _Candidate(name, None, skipped="the model is saved as PyTorch int8: only 'saved' applies (bench its"
                                              " fp32 input folder for the other runtimes)")
    if ((getattr(model.config, "greenlm", None) or {}).get("format") == "linear_attention"
            and name not in ("hf-eager-pad128", "torch-fp32", "torch-bf16")):
        return _Candidate(name, None, skipped="linear attention runs on torch only (greenlm.models.linear_attention)")
    if name == "hf-eager-pad128":
        rt = _ForwardOnly(copy.deepcopy(model), threads, weights)
        return _Candidate(name, rt, order="given", pad_to=config.naive_pad_to, disk_bytes=rt.disk_bytes(),
                          precision="fp32")
    if name == "torch-bf16" and not cpu_has_bf16():
        return _Candidate(name, None, skipped="this CPU has no AVX512-BF16 / AMX: bf16 matrix products are emulated,"
                                              " about 100x slower than fp32 (AMD Zen 3, older Intel), so it is not timed")
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
