"""Runtimes behind one interface, the inference engine, and ``greenlm.load``.

    predictor = greenlm.load("runs/sst2-int8")          # fastest runtime measured for it, on this machine
    predictor.predict(["a gorgeous film", "dull"])      # [{"label": ..., "probabilities": {...}}, ...]
    predictor.logits(texts)                             # np.ndarray [N, num_labels], input order

A runtime maps padded int64 arrays (``input_ids``, ``attention_mask``, maybe ``token_type_ids``,
each [B, T]) to fp32 logits [B, num_labels]:

- ``torch-fp32`` / ``torch-bf16``: the PyTorch module (bf16: weights and activations in bfloat16,
  matrix products on AVX512-BF16 / AMX where the CPU has them);
- ``onnx-fp32`` / ``onnx-int8``: an ONNX Runtime session over an exported graph (``greenlm.runtime.onnx``).

The engine (``Predictor``) tokenizes all inputs in one batched call, sorts them by length, pads each
batch only to its own longest row, runs batches of ``batch_size`` and writes every batch's logits
back to the rows it came from: the hot loop is one runtime call and one scatter per batch, with no
per-example Python. Thread counts are fixed per runtime (torch intra-op threads, ONNX Runtime intra-op
threads) and default to the physical cores this process may use.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import greenlm
from greenlm.common import GreenlmError, atomic_write_json
from greenlm.data import UNLABELED, EncodedSplit, TaskSplit, encode_split
from greenlm.models.loading import LoadedModel, load_classifier, load_tokenizer, model_max_length
from greenlm.runtime.onnx import export_onnx, feeds_for, ort_session, require_onnxruntime
from greenlm.models.early_exit import FORMAT as EARLY_EXIT_FORMAT

RUNTIMES = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8")
ONNX_FORMAT = "onnx"  # config.json "greenlm": {"format": "onnx", "onnx": {...}}
ONNX_FILE = "model.onnx"
CHUNK_EXAMPLES = 16384  # the engine tokenizes, sorts and pads this many inputs at a time (bounded memory)


def default_threads() -> int:
    """Physical cores this process may run on (hyper-threads add little to dense matrix products)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or allowed
    except ImportError:
        physical = allowed
    return max(1, min(allowed, physical))


# ---- runtimes ------------------------------------------------------------------------------------


class Runtime:
    """``runtime(batch) -> logits``: ``batch`` maps input names to int64 arrays [B, T] (numpy or torch)."""

    name: str
    precision: str  # fp32 | bf16 | int8-dynamic | int8-static
    threads: int
    files: list[Path]  # what the runtime loads from disk (its on-disk size)

    def __call__(self, batch: dict) -> np.ndarray:
        raise NotImplementedError

    def disk_bytes(self) -> int | None:
        return sum(p.stat().st_size for p in self.files) if self.files else None


class TorchRuntime(Runtime):
    def __init__(self, model, *, precision: str = "fp32", threads: int | None = None, files=()):
        import torch

        if precision not in ("fp32", "bf16"):
            raise GreenlmError(f"torch runtime precision must be fp32 or bf16, got {precision!r}")
        self.dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        self.model = model.to(self.dtype).eval()
        self.name, self.precision = f"torch-{precision}", precision
        self.threads = threads or default_threads()
        self.files = list(files)
        self.input_names = _forward_inputs(model)
        if callable(getattr(model, "predict_batches", None)):  # early exit pools rows across batches
            self.stream = self._stream

    def _inputs(self, batch: dict) -> dict:
        return {n: _as_torch(batch[n]) for n in self.input_names if batch.get(n) is not None}

    def _run(self, fn):
        """``fn()`` with this runtime's thread count, in inference mode, as fp32 numpy."""
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return fn().float().numpy()

    def __call__(self, batch: dict) -> np.ndarray:
        return self._run(lambda: self.model(**self._inputs(batch)).logits)

    def _stream(self, batches: list[dict]) -> np.ndarray:
        """Logits of every batch's rows, in order, from one ``predict_batches`` call."""
        return self._run(lambda: self.model.predict_batches([self._inputs(b) for b in batches])[0])


class OrtRuntime(Runtime):
    def __init__(self, path: str | Path, *, precision: str, threads: int | None = None):
        self.threads = threads or default_threads()
        self.session = ort_session(path, threads=self.threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.name = f"onnx-{'int8' if precision.startswith('int8') else precision}"
        self.precision = precision
        self.files = [Path(path)]

    def __call__(self, batch: dict) -> np.ndarray:
        return self.session.run(None, feeds_for(self.input_names, batch))[0]


def _as_torch(value):
    import torch

    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def _forward_inputs(model) -> list[str]:
    import inspect

    params = inspect.signature(model.forward).parameters
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in params]


# ---- the engine ----------------------------------------------------------------------------------


@dataclass
class Packed:
    """A padded matrix of all inputs; each batch takes its rows and the columns its longest row needs."""

    input_ids: np.ndarray  # [N, W] int64, padded with the pad id
    attention_mask: np.ndarray  # [N, W] int64
    token_type_ids: np.ndarray | None  # [N, W] int64
    lengths: np.ndarray  # [N] tokens per row

    def select(self, rows: np.ndarray) -> "Packed":
        """The rows ``rows``, in that order."""
        types = None if self.token_type_ids is None else self.token_type_ids[rows]
        return Packed(self.input_ids[rows], self.attention_mask[rows], types, self.lengths[rows])

    def batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        width = int(self.lengths[rows].max())
        out = {"input_ids": self.input_ids[rows, :width], "attention_mask": self.attention_mask[rows, :width]}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids[rows, :width]
        return out


def pack(encoded: EncodedSplit, pad_token_id: int) -> Packed:
    """Pad every row of ``encoded`` into one matrix with array operations (no per-row Python lists)."""
    lengths = np.fromiter((len(r) for r in encoded.input_ids), dtype=np.int64, count=len(encoded))
    width = int(lengths.max()) if len(lengths) else 0
    mask = np.arange(width)[None, :] < lengths[:, None]  # [N, W] True on real tokens

    def matrix(rows, fill):
        out = np.full((len(rows), width), fill, dtype=np.int64)
        out[mask] = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        return out

    types = None if encoded.token_type_ids is None else matrix(encoded.token_type_ids, 0)
    return Packed(matrix(encoded.input_ids, pad_token_id), mask.astype(np.int64), types, lengths)


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Row indices, longest first (stable), cut into batches of ``batch_size``."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def run_engine(runtime: Runtime, packed: Packed, *, batch_size: int, num_labels: int) -> np.ndarray:
    """Logits [N, num_labels] in input order: sorted batches, dynamic padding, one scatter per batch."""
    from greenlm.runtime.speed import run_batches

    out = np.empty((len(packed.lengths), num_labels), dtype=np.float32)
    groups = sorted_batches(packed.lengths, batch_size)
    for rows, logits in zip(groups, run_batches(runtime, [packed.batch(rows) for rows in groups])):
        out[rows] = logits
    return out


@dataclass
class Predictor:
    """A loaded model ready to label text fast: what ``greenlm.load`` returns."""

    runtime: Runtime
    tokenizer: object
    labels: list[str]
    max_length: int
    batch_size: int = 32
    choice: dict = field(default_factory=dict)  # how the runtime was chosen: candidates and their measured speed

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


# ---- ONNX model folders --------------------------------------------------------------------------


class _OnnxOutput:
    def __init__(self, logits):
        self.logits = logits


class OnnxClassifier:
    """An ONNX Runtime session shaped like a HF classifier, so greenlm's evaluation and prediction code
    runs it unchanged: ``model(**batch).logits``, ``model.config``, ``model.eval()``,
    ``next(model.parameters()).device``. Not a ``torch.nn.Module``: it has no trainable parameters, and
    counting code reads the architecture's parameters from ``config``."""

    training = False

    def __init__(self, runtime: OrtRuntime, config):
        self.runtime = runtime
        self.config = config

    def eval(self):
        return self

    def train(self, mode: bool = True):
        if mode:
            raise GreenlmError("an ONNX Runtime model cannot be trained; train the PyTorch model it was made from")
        return self

    def parameters(self):
        import torch

        yield torch.empty(0)  # answers "cpu" to callers that ask where the model lives

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **_):
        import torch

        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if attention_mask is None:
            batch["attention_mask"] = torch.ones_like(input_ids)
        return _OnnxOutput(torch.from_numpy(self.runtime({k: v for k, v in batch.items() if v is not None})))


def onnx_settings(config) -> dict:
    return ((getattr(config, "greenlm", None) or {}).get("onnx") or {})


def load_onnx_folder(source, labels=None, threads: int | None = None) -> LoadedModel:
    """The loader of ``"format": "onnx"`` folders (``_FORMAT_LOADERS``): model.onnx + config + tokenizer."""
    from transformers import AutoConfig

    folder = Path(source.location)
    onnx_file = folder / ONNX_FILE
    if not onnx_file.is_file():
        raise GreenlmError(f"model folder '{folder}' is an ONNX model but has no {ONNX_FILE}; was it saved completely?")
    config = AutoConfig.from_pretrained(str(folder))
    own = [config.id2label[i] for i in sorted(config.id2label)]
    if labels is not None and list(labels) != own:
        raise GreenlmError(
            f"model folder '{folder}' is an exported ONNX model for labels {own}; it cannot be given new labels"
            " or trained: start from the PyTorch model it was made from"
        )
    runtime = OrtRuntime(onnx_file, precision=onnx_settings(config).get("precision", "fp32"), threads=threads)
    model = OnnxClassifier(runtime, config)
    return LoadedModel(model, load_tokenizer(str(folder)), source, own,
                       [f"ONNX Runtime model ({runtime.precision}); runs, cannot be trained"])


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


def require_classifier(loaded: LoadedModel, spec: str) -> None:
    """Runtimes, export and quantization take fine-tuned sequence classifiers; say so for anything else."""
    archs = getattr(loaded.model.config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise GreenlmError(f"model '{spec}' is not a supported architecture: greenlm exports, quantizes and serves"
                           f" fine-tuned sequence classifiers (...ForSequenceClassification), this is"
                           f" {archs or 'unknown'}; fine-tune it first (greenlm train)")


def saved_max_length(config) -> int:
    saved = (getattr(config, "greenlm", None) or {}).get("max_length")
    return int(saved) if saved else min(128, model_max_length(config))


def runtime_candidates(config, torch_dtype) -> list[str]:
    """Runtimes that compute the model as saved (no silent precision change)."""
    saved_format = (getattr(config, "greenlm", None) or {}).get("format")
    if saved_format == ONNX_FORMAT:
        return ["onnx-int8" if onnx_settings(config).get("precision", "fp32").startswith("int8") else "onnx-fp32"]
    if saved_format == EARLY_EXIT_FORMAT:  # exits are data-dependent control flow: eager torch only
        return ["torch-fp32"]
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
    if name.startswith("torch-"):
        import copy

        return TorchRuntime(copy.deepcopy(model), precision=name.split("-")[1], threads=threads, files=files)
    if name == "onnx-int8":
        raise GreenlmError("int8 needs quantizing first: run `greenlm quantize` and load its output folder")
    require_onnxruntime()
    if work_dir is None:
        raise GreenlmError("an ONNX export needs a folder to write to")
    path = Path(work_dir) / ONNX_FILE
    if not path.is_file():
        export_onnx(model, path)
    return OrtRuntime(path, precision="fp32", threads=threads)


def weight_files(loaded: LoadedModel) -> list[Path]:
    """The weight files of a local model folder, sub-folders included (an early-exit folder keeps its
    backbone in ``backbone/``), hidden folders (work files, checkpoints) excluded."""
    if loaded.source.kind != "local":
        return []
    folder = Path(loaded.source.location)
    return sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


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
    exported ONNX graph; bf16 folder: PyTorch bf16; ONNX folder: ONNX Runtime), with the physical cores
    and with 1 thread (on a busy machine fewer threads can win) unless ``threads`` is given, then batch
    sizes 8/32/128 for the fastest, on sentence-length inputs. The choice is cached per model folder,
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
    return Predictor(chosen, loaded.tokenizer, loaded.labels, max_length or saved_max_length(config),
                     batch_size or choice["batch_size"], choice)


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
        return json.loads(_choices_file().read_text()).get(key)
    except (OSError, json.JSONDecodeError):
        return None


def _write_choice(key: str, choice: dict) -> None:
    try:
        existing = json.loads(_choices_file().read_text())
    except (OSError, json.JSONDecodeError):
        existing = {}
    existing[key] = choice
    try:
        atomic_write_json(_choices_file(), existing)
    except OSError:  # a read-only home: the choice is simply measured again next time
        pass


def write_onnx_folder(folder: str | os.PathLike, onnx_file: str | os.PathLike, config, tokenizer, settings: dict,
                      extra_json: dict[str, dict] | None = None) -> Path:
    """Fill ``folder`` (usually the temporary folder of ``atomic_dir``) with a loadable ONNX model folder:
    ``model.onnx``, ``config.json`` (``"greenlm": {"format": "onnx", "onnx": settings}``), the tokenizer."""
    import copy
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, folder / ONNX_FILE)
    config = copy.deepcopy(config)
    config.greenlm = {**(getattr(config, "greenlm", None) or {}), "format": ONNX_FORMAT, "onnx": settings}
    config.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    for name, payload in (extra_json or {}).items():
        atomic_write_json(folder / name, payload)
    return folder


def export_folder(spec: str, out_dir: str | os.PathLike, *, task=None, optimize: bool | None = None,
                  opset: int = 17, max_length: int | None = None, allow_pickle: bool = False) -> dict:
    """``greenlm export``: write the classifier ``spec`` as an fp32 ONNX model folder at ``out_dir``
    (atomically), checked against PyTorch on rows of ``task``'s dev split (else random ids)."""
    from greenlm.common import atomic_dir

    loaded = load_classifier(spec, allow_pickle=allow_pickle)
    model, tokenizer = loaded.model, loaded.tokenizer
    if isinstance(model, OnnxClassifier):
        raise GreenlmError(f"model '{spec}' is already an ONNX model folder")
    require_classifier(loaded, spec)
    check_batches = None
    if task is not None:
        split = task.splits.get("dev") or next(iter(task.splits.values()))
        encoded = encode_split(split, tokenizer, max_length or saved_max_length(model.config))
        packed = pack(encoded, tokenizer.pad_token_id)
        order = np.argsort(packed.lengths, kind="stable")
        picks = [order[-1:], order[:4], order[np.linspace(0, len(order) - 1, num=min(16, len(order))).astype(int)]]
        check_batches = [packed.batch(p) for p in picks if len(p)]
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        report = export_onnx(model, tmp / "build" / ONNX_FILE, check_batches=check_batches, optimize=optimize,
                             opset=opset).to_dict()
        report["checked_on"] = f"{task.name} dev rows" if task is not None else "random token ids"
        settings = {"precision": "fp32", "opset": opset, "fused_ops": report["fused_ops"], "fp32_nodes": []}
        write_onnx_folder(tmp, tmp / "build" / ONNX_FILE, model.config, tokenizer, settings)
        import shutil

        shutil.rmtree(tmp / "build")
        report["path"] = str(out_dir / ONNX_FILE)
        report["disk_bytes"] = (tmp / ONNX_FILE).stat().st_size
        atomic_write_json(tmp / "export.json", report)
    return report


def predict_split(model: str, split: TaskSplit, *, runtime: str = "torch", batch_size: int = 64,
                  max_length: int | None = None, allow_pickle: bool = False, progress: bool = False,
                  on_note=print) -> Iterator[dict]:
    """Label every row of ``split`` (``TaskSplit`` with or without labels) with the model folder ``model``.

    ``runtime``: ``torch`` (the model as loaded; early-exit models report each row's exit layer), ``auto``
    (the fastest runtime measured on this machine, ``load``) or a named runtime. Early-exit models always
    run on torch: their exits are data-dependent control flow. Yields one JSON-ready dict per row.
    """
    from greenlm.runtime.inference import predict_records

    if runtime != "torch" and _is_early_exit_folder(model):
        on_note("early-exit models run on the torch runtime (exits need it); --runtime ignored")
        runtime = "torch"
    if runtime != "torch":  # sorted batches, the runtime and batch size measured fastest here
        predictor = load(model, runtime=runtime, max_length=max_length, allow_pickle=allow_pickle)
        for i, record in enumerate(predictor.predict(split.text_a, split.text_b)):
            pair = {"text_b": split.text_b[i]} if split.text_b is not None else {}
            yield {"text": split.text_a[i], **pair, **record}
        return
    loaded = load_classifier(model, allow_pickle=allow_pickle)
    saved = getattr(loaded.model.config, "greenlm", None) or {}
    yield from predict_records(loaded.model, loaded.tokenizer, split, loaded.labels,
                               max_length=max_length or saved.get("max_length") or 128, batch_size=batch_size,
                               progress="predict" if progress else None)


def _is_early_exit_folder(model: str) -> bool:
    config = Path(model) / "config.json"
    try:
        return ((json.loads(config.read_text()).get("greenlm") or {}).get("format")) == EARLY_EXIT_FORMAT
    except (OSError, ValueError):
        return False
