"""Runtimes behind one interface: ``runtime(batch) -> logits`` on padded int64 arrays.

A runtime maps padded int64 arrays (``input_ids``, ``attention_mask``, maybe ``token_type_ids``,
each [B, T]) to fp32 logits [B, num_labels]:

- ``torch-fp32`` / ``torch-bf16`` / ``torch-int8`` (``TorchRuntime``): the PyTorch module (bf16: weights and
  activations in bfloat16, matrix products on AVX512-BF16 / AMX where the CPU has them; int8: a module whose
  linear layers ``greenlm.models.quantized`` made dynamic int8, the only way a model with early exits runs in int8);
- ``onnx-fp32`` / ``onnx-int8`` (``OrtRuntime``): an ONNX Runtime session over an exported graph
  (``greenlm.runtime.onnx``).

``OnnxClassifier`` dresses an ``OrtRuntime`` as a Hugging Face classifier, so that evaluation and
prediction code runs an ONNX model folder unchanged. Thread counts are fixed per runtime and default to
the physical cores this process may use (``default_threads``); PyTorch's is set for each call and the
process's own put back after it (``torch_threads``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from greenlm.common import GreenlmError
from greenlm.measure.timing import torch_threads
from greenlm.runtime.onnx import feeds_for, ort_session


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


TORCH_PRECISIONS = {"fp32": "torch-fp32", "bf16": "torch-bf16", "int8-dynamic": "torch-int8"}


class TorchRuntime(Runtime):
    """A PyTorch module. ``int8-dynamic`` takes a module already quantized (``greenlm.models.quantized``), and
    fp32 / bf16 refuse one: a runtime's name always says what it computes."""

    def __init__(self, model, *, precision: str = "fp32", threads: int | None = None, files=()):
        import torch

        from greenlm.models.quantized import is_torch_int8

        if precision not in TORCH_PRECISIONS:
            raise GreenlmError(f"torch runtime precision must be one of {', '.join(TORCH_PRECISIONS)}, got {precision!r}")
        if (precision == "int8-dynamic") != is_torch_int8(model):
            raise GreenlmError("int8 needs quantizing first: run `greenlm quantize` and load its output folder"
                               if precision == "int8-dynamic" else
                               f"this model is PyTorch int8: run it as torch-int8, not torch-{precision}")
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.model = model.to(self.dtype).eval()
        self.name, self.precision = TORCH_PRECISIONS[precision], precision
        self.threads = threads or default_threads()
        self.files = list(files)
        self.input_names = _forward_inputs(model)
        if callable(getattr(model, "predict_batches", None)):  # early exit pools rows across batches
            self.stream = self._stream

    def _inputs(self, batch: dict) -> dict:
        return {n: _as_torch(batch[n]) for n in self.input_names if batch.get(n) is not None}

    def _run(self, fn):
        """``fn()`` with this runtime's thread count (``torch_threads``), in inference mode, as fp32 numpy."""
        import torch

        with torch_threads(self.threads), torch.inference_mode():
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
