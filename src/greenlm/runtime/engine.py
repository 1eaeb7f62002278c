"""The inference engine and ``greenlm.load``.

    predictor = greenlm.load("runs/sst2-int8")          # fastest runtime measured for it, on this machine
    predictor.predict(["a gorgeous film", "dull"])      # [{"label": ..., "probabilities": {...}}, ...]
    predictor.logits(texts)                             # np.ndarray [N, num_labels], input order

The engine (``Predictor``) tokenizes all inputs in one batched call, sorts them by length, pads each
batch only to its own longest row, runs batches of ``batch_size`` and writes every batch's logits
back to the rows it came from: the hot loop is one runtime call and one scatter per batch, with no
per-example Python. Thread counts are fixed per runtime (torch intra-op threads, ONNX Runtime intra-op
threads) and default to the physical cores this process may use.

Beside this module: ``runtimes`` (the torch and ONNX Runtime back ends behind one interface), ``packing``
(padded matrices and length-sorted batches) and ``folders`` (model folders, the ONNX folder format and
``greenlm export``); their public names are importable from here too.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import greenlm
from greenlm.common import GreenlmError, atomic_write_json, read_json
from greenlm.data import UNLABELED, EncodedSplit, TaskSplit, auto_max_length, encode_split
from greenlm.models.early_exit import FORMAT as EARLY_EXIT_FORMAT
from greenlm.models.loading import LoadedModel, input_max_length, load_classifier, model_max_length
from greenlm.models.quantized import torch_int8_settings
from greenlm.runtime.folders import (ONNX_FILE, ONNX_FORMAT, export_folder,  # noqa: F401 (re-exported)
                                     load_onnx_folder, onnx_settings, require_classifier, saved_max_length,
                                     weight_files, write_onnx_folder)
from greenlm.runtime.onnx import export_onnx, require_onnxruntime
from greenlm.runtime.packing import Packed, pack, run_engine, sorted_batches  # noqa: F401 (re-exported)
from greenlm.runtime.runtimes import (OnnxClassifier, OrtRuntime, Runtime,  # noqa: F401 (re-exported)
                                      TorchRuntime, default_threads)

RUNTIMES = ("torch-fp32", "torch-bf16", "torch-int8", "onnx-fp32", "onnx-int8")
CHUNK_EXAMPLES = 16384  # the engine tokenizes, sorts and pads this many inputs at a time (bounded memory)


@dataclass
class Predictor:
    """A loaded model ready to label text fast: what ``greenlm.load`` returns."""

    runtime: Runtime
    tokenizer: object
    labels: list[str]
    max_length: int
    batch_size: int = 32
    choice: dict = field(default_factory=dict)  # how the runtime was chosen: candidates and their measured speed
    positions: int | None = None  # the longest input the model's position table allows (tokens)

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def logits_encoded(self, encoded: EncodedSplit) -> np.ndarray:
        if len(encoded) == 0:
            return np.empty((0, len(self.labels)), dtype=np.float32)
        return run_engine(self.runtime, pack(encoded, self.pad_token_id), batch_size=self.batch_size,
                          num_labels=len(self.labels))

    def logits(self, texts: list[str], texts_b: list[str] | None = None) -> np.ndarray:
        """Logits [N, num_labels] (fp32) for ``texts`` (and second texts of pairs), in input order."""
        if isinstance(texts, str):
            raise GreenlmError("give a list of texts, e.g. predictor.logits(['a text'])")
        chunks = []
        for start in range(0, len(texts), CHUNK_EXAMPLES):
            stop = start + CHUNK_EXAMPLES
            split = TaskSplit(list(texts[start:stop]), None if texts_b is None else list(texts_b[start:stop]),
                              [UNLABELED] * len(texts[start:stop]))
            chunks.append(self.logits_encoded(encode_split(split, self.tokenizer, self.max_length)))
        return np.concatenate(chunks) if chunks else np.empty((0, len(self.labels)), dtype=np.float32)

    def predict(self, texts: list[str], texts_b: list[str] | None = None) -> list[dict]:
        """One record per input: the predicted label and the probability of every label."""
        logits = self.logits(texts, texts_b)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        return [{"label": self.labels[b],
                 "probabilities": {label: round(float(p), 6) for label, p in zip(self.labels, row)}}
                for b, row in zip(best.tolist(), probabilities)]

    def __call__(self, texts: list[str], texts_b: list[str] | None = None) -> list[str]:
        """Predicted labels only."""
        return [self.labels[i] for i in self.logits(texts, texts_b).argmax(axis=1).tolist()]


# ---- greenlm.load --------------------------------------------------------------------------------


def cache_dir() -> Path:
    if os.environ.get("GREENLM_CACHE_DIR"):
        return Path(os.environ["GREENLM_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "greenlm"


def folder_fingerprint(folder: Path) -> str:
    """Changes when the model's files change: config, and the name, size and mtime of every weight file."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted(folder.iterdir()):
        if path.suffix in (".safetensors", ".onnx", ".bin", ".json") and path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def runtime_candidates(config, torch_dtype) -> list[str]:
    """Runtimes that compute the model as saved (no silent precision change)."""
    saved_format = (getattr(config, "greenlm", None) or {}).get("format")
    if torch_int8_settings(config) is not None:  # PyTorch int8 (with or without exits): quantized at load
        return ["torch-int8"]
    if saved_format == ONNX_FORMAT:
        return ["onnx-int8" if onnx_settings(config).get("precision", "fp32").startswith("int8") else "onnx-fp32"]
    if saved_format == EARLY_EXIT_FORMAT:  # exits are data-dependent control flow: eager torch only
        return ["torch-fp32"]
    if saved_format == "linear_attention":  # greenlm.models.linear_attention: its masks are not exported; torch only
        return ["torch-bf16"] if str(torch_dtype).endswith("bfloat16") else ["torch-fp32"]
    if str(torch_dtype).endswith("bfloat16"):
        return ["torch-bf16"]
    return ["torch-fp32", "onnx-fp32"]


def build_runtime(name: str, loaded: LoadedModel, *, threads: int | None, work_dir: Path | None = None) -> Runtime:
    """A runtime for a loaded model. ``onnx-fp32`` of a PyTorch model exports it (verified) into ``work_dir``."""
    if name not in RUNTIMES:
        raise GreenlmError(f"unknown runtime {name!r}; use one of: {', '.join(RUNTIMES)}")
    model = loaded.model
    if isinstance(model, OnnxClassifier):  # an ONNX folder
        own = runtime_candidates(model.config, None)[0]
        if name != own:
            raise GreenlmError(f"model '{loaded.source.display_name}' is an ONNX model saved for runtime '{own}' only")
        return OrtRuntime(model.runtime.files[0], precision=model.runtime.precision, threads=threads)
    files = weight_files(loaded)
    if torch_int8_settings(model.config) is not None and name != "torch-int8":
        raise GreenlmError(f"model '{loaded.source.display_name}' is saved as PyTorch int8: it runs on torch-int8 only")
    if name.startswith("torch-"):
        import copy

        precision = {"int8": "int8-dynamic"}.get(name.split("-")[1], name.split("-")[1])
        return TorchRuntime(copy.deepcopy(model), precision=precision, threads=threads, files=files)
    if name == "onnx-int8":
        raise GreenlmError("int8 needs quantizing first: run `greenlm quantize` and load its output folder")
    require_onnxruntime()
    if work_dir is None:
        raise GreenlmError("an ONNX export needs a folder to write to")
    path = Path(work_dir) / ONNX_FILE
    if not path.is_file():
        export_onnx(model, path)
    return OrtRuntime(path, precision="fp32", threads=threads)


def probe_inputs(vocab_size: int, pad_token_id: int, examples: int = 64, seed: int = 0) -> EncodedSplit:
    """Inputs with sentence-like lengths (8 to 64 tokens) for timing runtimes when no task data is at hand."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 65, size=examples)
    ids = [rng.integers(5, vocab_size, size=int(n)).tolist() for n in lengths]
    return EncodedSplit(input_ids=ids, token_type_ids=[[0] * len(r) for r in ids], labels=[0] * examples)


def load(path: str | os.PathLike, *, runtime: str = "auto", threads: int | None = None,
         batch_size: int | None = None, max_length: int | None = None, measure: bool = True,
         allow_pickle: bool = False) -> Predictor:
    """Load a saved classifier for fast prediction: ``greenlm.load(folder).predict(texts)``.

    ``runtime="auto"`` times every runtime that computes the model as saved (fp32 folder: PyTorch and an
    exported ONNX graph; bf16 folder: PyTorch bf16; PyTorch int8 folder: torch-int8; ONNX folder: ONNX
    Runtime), with the physical cores and with 1 thread (on a busy machine fewer threads can win) unless
    ``threads`` is given, then batch sizes 8/32/128 for the fastest, on sentence-length inputs. The choice is cached per model folder,
    machine and setting (``$GREENLM_CACHE_DIR``, default ``~/.cache/greenlm``): seconds, once.
    ``measure=False`` skips the timing: the first candidate, ``threads`` or the physical cores, batch 32.
    """
    loaded = load_classifier(str(path), allow_pickle=allow_pickle)
    config = loaded.model.config
    dtype = next((p.dtype for p in loaded.model.parameters() if p.numel()), None)
    candidates = runtime_candidates(config, dtype)
    if runtime != "auto":
        if runtime not in RUNTIMES:
            raise GreenlmError(f"unknown runtime {runtime!r}; use 'auto' or one of: {', '.join(RUNTIMES)}")
        candidates = [runtime]
    thread_options = [threads] if threads else sorted({default_threads(), 1}, reverse=True)
    local = loaded.source.kind == "local"
    key_base = folder_fingerprint(Path(loaded.source.location)) if local else loaded.source.location
    key = hashlib.sha256(json.dumps([key_base, _machine_key(), threads, candidates, batch_size,
                                     greenlm.__version__]).encode()).hexdigest()[:20]
    work = cache_dir() / "runtimes" / key  # an fp32 model's exported ONNX graph lives here
    choice = _read_choice(key) if measure else None
    if choice is None:
        if measure:
            choice = _measure_choice(loaded, candidates, thread_options, batch_size, work)
            _write_choice(key, choice)
        else:
            choice = {"runtime": candidates[0], "threads": thread_options[0], "batch_size": batch_size or 32,
                      "measured": False}
    chosen = build_runtime(choice["runtime"], loaded, threads=choice["threads"], work_dir=work)
    return Predictor(chosen, loaded.tokenizer, loaded.labels, max_length if max_length is not None else saved_max_length(config),
                     batch_size or choice["batch_size"], choice, model_max_length(config))


def _measure_choice(loaded: LoadedModel, candidates: list[str], thread_options: list[int], batch_size: int | None,
                    work: Path) -> dict:
    """Throughput of every (runtime, threads) at batch 32, then of batch sizes for the fastest."""
    from greenlm.runtime.speed import measure_speed

    pad = loaded.tokenizer.pad_token_id
    inputs = probe_inputs(loaded.model.config.vocab_size, pad, examples=128)

    def speed(rt: Runtime, size: int) -> float:
        return round(measure_speed(rt, inputs, pad_token_id=pad, batch_size=size, latency_examples=0,
                                   repeats=2).throughput_examples_per_s, 2)

    measured: dict[str, float] = {}
    for name in candidates:
        for n in thread_options:
            measured[f"{name}@{n}"] = speed(build_runtime(name, loaded, threads=n, work_dir=work), 32)
    best = max(measured, key=measured.get)
    name, _, n = best.partition("@")
    by_batch = {32: measured[best]}
    if batch_size is None:
        fastest = build_runtime(name, loaded, threads=int(n), work_dir=work)
        by_batch |= {size: speed(fastest, size) for size in (8, 128)}
    return {"runtime": name, "threads": int(n), "batch_size": batch_size or max(by_batch, key=by_batch.get),
            "measured": True, "throughput_examples_per_s_at_32": measured,
            "throughput_examples_per_s_by_batch": {str(k): v for k, v in sorted(by_batch.items())},
            "probe": "128 random-id inputs of 8-64 tokens", "measured_at_unix": round(time.time())}


def _machine_key() -> str:
    from greenlm.common.hardware import cpu_model

    return f"{cpu_model()}|{os.cpu_count()}"


def _choices_file() -> Path:
    return cache_dir() / "runtime_choice.json"


def _read_choice(key: str) -> dict | None:
    try:
        return read_json(_choices_file()).get(key)
    except (OSError, ValueError):
        return None


def _write_choice(key: str, choice: dict) -> None:
    try:
        existing = read_json(_choices_file())
    except (OSError, ValueError):
        existing = {}
    existing[key] = choice
    try:
        atomic_write_json(_choices_file(), existing)
    except OSError:  # a read-only home: the choice is simply measured again next time
        pass


def predict_split(model: str, split: TaskSplit, *, runtime: str = "torch", batch_size: int = 64,
                  max_length: int | str | None = None, allow_pickle: bool = False, progress: bool = False,
                  on_note=print) -> Iterator[dict]:
    """Label every row of ``split`` (``TaskSplit`` with or without labels) with the model folder ``model``.

    ``runtime``: ``torch`` (the model as loaded; early-exit models report each row's exit layer), ``auto``
    (the fastest runtime measured on this machine, ``load``) or a named runtime. Early-exit models always
    run on torch: their exits are data-dependent control flow. ``max_length``: tokens per row; "auto": the length
    that covers most of the rows (said to ``on_note``); None: the model's own. Yields one JSON-ready dict per row.
    """
    from greenlm.runtime.inference import predict_records

    if runtime != "torch" and _is_early_exit_folder(model):
        on_note("early-exit models run on the torch runtime (exits need it); --runtime ignored")
        runtime = "torch"
    if runtime != "torch":  # sorted batches, the runtime and batch size measured fastest here
        auto = max_length == "auto"
        predictor = load(model, runtime=runtime, max_length=None if auto else max_length, allow_pickle=allow_pickle)
        if auto:
            predictor.max_length = auto_max_length(split, predictor.tokenizer, predictor.positions, on_note,
                                                   "input rows")
        for i, record in enumerate(predictor.predict(split.text_a, split.text_b)):
            pair = {"text_b": split.text_b[i]} if split.text_b is not None else {}
            yield {"text": split.text_a[i], **pair, **record}
        return
    loaded = load_classifier(model, allow_pickle=allow_pickle)
    max_length = input_max_length(loaded.model.config, loaded.tokenizer, max_length, split, on_note,
                                  rows_name="input rows")
    yield from predict_records(loaded.model, loaded.tokenizer, split, loaded.labels, max_length=max_length,
                               batch_size=batch_size, progress="predict" if progress else None, on_note=on_note)


def _is_early_exit_folder(model: str) -> bool:
    config = Path(model) / "config.json"
    try:
        return ((read_json(config).get("greenlm") or {}).get("format")) == EARLY_EXIT_FORMAT
    except (OSError, ValueError):
        return False
