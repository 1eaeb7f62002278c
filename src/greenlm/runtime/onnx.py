"""ONNX export of a sequence classifier, ONNX Runtime's transformer fusions, and int8 conversion.

    report = export_onnx(model, "model.onnx", check_batches=batches)        # fp32 graph, verified
    quantize_onnx_dynamic("model.onnx", "int8.onnx", per_channel=True)      # weights int8, activations per call
    quantize_onnx_static("model.onnx", "int8s.onnx", calibration_batches)   # activations ranges from data

Export goes through the TorchScript exporter with eager attention, whose graph ONNX Runtime's
offline transformer optimizer recognises: embeddings + LayerNorm become ``EmbedLayerNormalization``,
Q/K/V, the scaled dot product and the mask one ``Attention`` op, residual + LayerNorm
``SkipLayerNormalization`` and bias + erf-GELU ``BiasGelu``. ONNX Runtime also fuses much of this by
itself when a CPU session loads the plain graph, and on some CPUs the plain graph runs faster, so by
default the offline fusions are kept only where a side-by-side timing says they help. Every exported
graph is run on real inputs (with padding) and compared with the PyTorch logits; a fused graph that
disagrees is dropped for the plain one, and a plain one that disagrees is an error.

int8 (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-
Arithmetic-Only Inference"): x ~ scale * (q - zero_point). Weights are int8 (symmetric, per output
channel or per tensor); activations uint8, with a range measured per call (dynamic) or fixed from
calibration data (static, QDQ format: ONNX Runtime fuses QuantizeLinear/DequantizeLinear pairs
around MatMul into integer kernels when the session is created). u8 x s8 is the pair the x86
VNNI / AMX integer instructions multiply.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from greenlm.common import GreenlmError
from greenlm.common.optional import is_available, require

DEFAULT_OPSET = 17  # LayerNormalization is a native op from 17; the TorchScript exporter goes to 20
FP32_ATOL = 1e-4  # |onnx - torch| <= FP32_ATOL + FP32_RTOL * |torch| on every logit, fp32 export
FP32_RTOL = 1e-3
# model_type -> ONNX Runtime optimizer model type; all are BERT-shaped encoders it can fuse.
_FUSABLE = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert", "electra": "bert",
            "distilbert": "bert", "albert": "bert", "minilm": "bert"}
# ONNX ops the int8 converters rewrite (each needs a constant weight input).
DYNAMIC_OPS = ("MatMul", "Attention", "Gemm", "Gather", "EmbedLayerNormalization")
STATIC_OPS = ("MatMul",)  # Gemm (pooler, classifier) would need int32 biases from shared initialisers; stays fp32


def require_onnxruntime() -> None:
    """A clear error when ONNX Runtime (or onnx) is missing, naming the extra to install."""
    require("onnxruntime")
    require("onnx")


@contextlib.contextmanager
def quiet_onnx() -> Iterator[None]:
    """The exporter, optimizer and quantizer warn and log freely; greenlm reports what matters itself.

    Their loggers' levels *and handlers* are put back afterwards: ONNX Runtime's quantizer logs through the
    module-level ``logging.warning``, which calls ``logging.basicConfig()`` and so leaves a stderr handler on the
    root logger whenever it had none; every later greenlm progress line would then print twice (once by greenlm's
    own handler, once by that one)."""
    root = logging.getLogger()
    loggers = [root] + [logging.getLogger(n) for n in ("onnxruntime", "onnxruntime.transformers", "fusion_base",
                                                        "onnx_model", "onnx_model_bert", "fusion_utils")]
    handlers = [list(lg.handlers) for lg in loggers]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    if is_available("onnxruntime"):
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)  # sessions the quantizer makes itself: errors only
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level, before in zip(loggers, levels, handlers):
            lg.setLevel(level)
            for handler in [h for h in lg.handlers if h not in before]:  # added inside (basicConfig): removed
                lg.removeHandler(handler)


# ---- export --------------------------------------------------------------------------------------


@dataclass
class ExportReport:
    path: str
    opset: int
    input_names: list[str]
    fused: bool  # ONNX Runtime transformer fusions applied (and verified)
    fused_ops: dict  # fused op -> count, e.g. {"Attention": 6, "SkipLayerNormalization": 12}
    max_abs_diff: float  # largest |onnx - torch| logit over the check inputs
    atol: float
    rtol: float
    check_examples: int
    notes: list[str] = field(default_factory=list)
    fusion_timing_ms: dict = field(default_factory=dict)  # optimize=None: one pass per graph, plain vs fused

    def to_dict(self) -> dict:
        return asdict(self)


def _logits_module(model, input_names: Sequence[str]):
    """Wraps a HF classifier so the exported graph has one output, ``logits`` [B, num_labels]."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(input_names, inputs))).logits

    return LogitsOnly()


def model_input_names(model) -> list[str]:
    """The inputs the classifier takes: ids, mask, and segment ids when it has a segment table."""
    names = ["input_ids", "attention_mask"]
    params = inspect.signature(model.forward).parameters
    if "token_type_ids" in params and getattr(model.config, "type_vocab_size", 0):
        names.append("token_type_ids")
    return names


def synthetic_batches(vocab_size: int, *, max_tokens: int = 48, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Padded batches of random ids (lengths 3..max_tokens): export checks when no task data is given."""
    rng = np.random.default_rng(seed)
    batches = []
    for batch_size in (1, 3, 8):
        lengths = rng.integers(3, max_tokens + 1, size=batch_size)
        width = int(lengths.max())
        ids = rng.integers(5, vocab_size, size=(batch_size, width), dtype=np.int64)
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        batches.append({"input_ids": ids * mask, "attention_mask": mask,
                        "token_type_ids": np.zeros_like(ids)})
    return batches


def export_onnx(model, path: str | Path, *, check_batches: Sequence[dict[str, np.ndarray]] | None = None,
                opset: int = DEFAULT_OPSET, optimize: bool | None = None, atol: float = FP32_ATOL,
                rtol: float = FP32_RTOL) -> ExportReport:
    """Export ``model`` (a HF sequence classifier, any dtype) as an fp32 ONNX graph at ``path``.

    ``optimize``: True applies ONNX Runtime's offline transformer fusions, False keeps the plain graph,
    None (default) keeps the fusions only where they help: both graphs are timed on the check batches.

    ``check_batches``: padded int64 batches (``input_ids``, ``attention_mask``, maybe ``token_type_ids``)
    on which the graph must match PyTorch fp32 within ``atol + rtol * |logit|``.
    """
    if callable(getattr(model, "predict_batches", None)):  # greenlm.models.early_exit (duck-typed: no import)
        raise GreenlmError("a model with early exits does not export to ONNX: which layers run depends on each input;"
                           " run it with PyTorch (runtime torch-fp32 or torch-bf16), or export its backbone/ folder")
    require_onnxruntime()
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # fp32 copy with eager attention: the pattern ONNX Runtime fuses (and what the exporter traces best).
    reference = copy.deepcopy(model).float().eval()
    notes: list[str] = []
    try:
        reference.set_attn_implementation("eager")
    except Exception:  # custom attention modules (pruned models) keep their own implementation
        notes.append("model kept its own attention implementation for export")
    names = model_input_names(reference)
    if check_batches is None:
        positions = getattr(reference.config, "max_position_embeddings", 64)
        check_batches = synthetic_batches(reference.config.vocab_size, max_tokens=min(48, positions - 2))
    wrapper = _logits_module(reference, names).eval()
    check_batches = [feeds_for(names, b) for b in check_batches]  # segment ids: zeros when the tokenizer has none
    example = tuple(torch.from_numpy(check_batches[-1][n]) for n in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"logits": {0: "batch"}}
    plain = path.with_name(path.stem + ".plain.onnx")
    try:
        with quiet_onnx(), torch.inference_mode():
            torch.onnx.export(wrapper, example, str(plain), input_names=names, output_names=["logits"],
                              dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GreenlmError(
            f"could not export model type '{getattr(model.config, 'model_type', '?')}' to ONNX: {first}."
            f" Supported: BERT-family encoders ({', '.join(sorted(_FUSABLE))})"
        ) from None
    expected = _torch_logits(reference, check_batches, names)
    examples = sum(len(b["input_ids"]) for b in check_batches)

    fused_ops: dict = {}
    chosen = plain
    timing_ms: dict = {}
    if optimize is not False:
        fused_path = path.with_name(path.stem + ".fused.onnx")
        fused_ops = _fuse(plain, fused_path, model.config, notes)
        if fused_ops:
            diff = _max_violation(fused_path, check_batches, expected, atol, rtol)
            if diff[1]:
                notes.append(f"fused graph differed from PyTorch by {diff[0]:.2e}; kept the unfused graph")
                fused_ops = {}
            elif optimize is None:  # "where they help": keep the fused graph only if it runs faster here
                timing_ms = _time_graphs({"plain": plain, "fused": fused_path}, check_batches)
                if timing_ms["fused"] < timing_ms["plain"]:
                    chosen = fused_path
                else:
                    notes.append(f"offline fusions did not help on this machine (fused {timing_ms['fused']:.1f} ms"
                                 f" vs plain {timing_ms['plain']:.1f} ms; ONNX Runtime still fuses at session"
                                 " creation): kept the plain graph")
                    fused_ops = {}
            else:
                chosen = fused_path
    max_diff, violated = _max_violation(chosen, check_batches, expected, atol, rtol)
    if violated:
        raise GreenlmError(
            f"the exported ONNX graph differs from the PyTorch model by {max_diff:.2e} on a logit (tolerance"
            f" {atol} + {rtol} x |logit|); this architecture does not export faithfully"
        )
    graph = onnx.load(str(chosen))
    _name_all_nodes(graph)
    onnx.save(graph, str(path))
    for tmp in {plain, path.with_name(path.stem + ".fused.onnx")} - {path}:
        tmp.unlink(missing_ok=True)
    return ExportReport(path=str(path), opset=opset, input_names=names, fused=bool(fused_ops), fused_ops=fused_ops,
                        max_abs_diff=max_diff, atol=atol, rtol=rtol, check_examples=examples, notes=notes,
                        fusion_timing_ms=timing_ms)


def _time_graphs(paths: dict[str, Path], batches, rounds: int = 5) -> dict[str, float]:
    """Best time (ms) of one pass over ``batches`` per graph, graphs interleaved round by round."""
    import time

    sessions = {name: ort_session(p, threads=None) for name, p in paths.items()}
    wanted = {name: [i.name for i in s.get_inputs()] for name, s in sessions.items()}
    best = {name: float("inf") for name in paths}
    for _ in range(rounds + 1):  # the first round warms up
        for name, session in sessions.items():
            start = time.perf_counter()
            for batch in batches:
                session.run(None, feeds_for(wanted[name], batch))
            best[name] = min(best[name], (time.perf_counter() - start) * 1000.0)
    return {name: round(ms, 3) for name, ms in best.items()}


def _fuse(src: Path, dst: Path, config, notes: list[str]) -> dict:
    """ONNX Runtime's transformer optimizer (python fusions only, opt_level 0: a portable graph)."""
    model_type = _FUSABLE.get(getattr(config, "model_type", ""))
    if model_type is None:
        notes.append(f"no transformer fusions for model type '{getattr(config, 'model_type', '?')}'")
        return {}
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        with quiet_onnx():
            # Heads and width from the config; a model whose layers differ (pruned heads) may not fuse, or
            # fuse wrongly, which the check against PyTorch catches.
            optimized = optimize_model(str(src), model_type=model_type, opt_level=0,
                                       num_heads=getattr(config, "num_attention_heads", 0) or 0,
                                       hidden_size=getattr(config, "hidden_size", 0) or 0)
            stats = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
            optimized.save_model_to_file(str(dst))
    except Exception as err:  # the optimizer is best effort: the plain graph is still right
        notes.append(f"ONNX Runtime fusions failed ({type(err).__name__}); kept the unfused graph")
        return {}
    if not stats.get("Attention"):
        notes.append("ONNX Runtime did not fuse attention for this graph")
    return stats


def _name_all_nodes(graph) -> None:
    """Every node gets a unique name, so quantization can include or exclude nodes by name."""
    seen: set[str] = set()
    for i, node in enumerate(graph.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def _torch_logits(model, batches, names) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        return [model(**{n: torch.from_numpy(b[n]) for n in names}).logits.float().numpy() for b in batches]


def _max_violation(onnx_path: Path, batches, expected, atol, rtol) -> tuple[float, bool]:
    session = ort_session(onnx_path, threads=None)
    wanted = [i.name for i in session.get_inputs()]
    max_diff, violated = 0.0, False
    for batch, ref in zip(batches, expected):
        got = session.run(None, feeds_for(wanted, batch))[0]
        diff = np.abs(got - ref)
        max_diff = max(max_diff, float(diff.max()))
        violated |= bool((diff > atol + rtol * np.abs(ref)).any())
    return max_diff, violated


# ---- sessions ------------------------------------------------------------------------------------


def ort_session(path: str | Path, *, threads: int | None, optimization: str = "all"):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (None: ONNX Runtime's default)."""
    require_onnxruntime()
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    }[optimization]
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds_for(wanted: Sequence[str], batch: dict) -> dict[str, np.ndarray]:
    """The arrays a session asks for; segment ids default to zeros when the batch has none."""
    feeds = {}
    for name in wanted:
        value = batch.get(name)
        if value is None and name == "token_type_ids":
            value = np.zeros_like(batch["input_ids"])
        if value is None:
            raise GreenlmError(f"the ONNX model needs input '{name}', which the tokenizer does not produce")
        feeds[name] = value.numpy() if hasattr(value, "numpy") else value
    return feeds


# ---- int8 ----------------------------------------------------------------------------------------


def quantizable_nodes(path: str | Path, op_types: Sequence[str] = DYNAMIC_OPS) -> list[str]:
    """Names of the nodes an int8 converter would rewrite: ops of ``op_types`` with a constant weight."""
    import onnx

    graph = onnx.load(str(path)).graph
    constants = {init.name for init in graph.initializer}
    names = []
    for node in graph.node:
        if node.op_type in op_types and any(name in constants for name in node.input):
            names.append(node.name)
    return names


def quantize_onnx_dynamic(src: str | Path, dst: str | Path, *, per_channel: bool = True,
                          exclude: Sequence[str] = (), op_types: Sequence[str] = DYNAMIC_OPS) -> None:
    """int8 weights (symmetric, s8), activations quantized to u8 at run time from each tensor's range."""
    require_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic
    import onnx

    with quiet_onnx():
        quantize_dynamic(
            str(src), str(dst), op_types_to_quantize=list(op_types), per_channel=per_channel, reduce_range=False,
            weight_type=QuantType.QInt8, nodes_to_exclude=_with_gemm_aliases(exclude),
            # fused contrib ops (Attention, SkipLayerNormalization) have no ONNX shape inference: fp32 outputs
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
        )


def _with_gemm_aliases(names: Sequence[str]) -> list[str]:
    """The quantizer rewrites Gemm X into MatMul "X_MatMul" + Add before it reads the exclusions."""
    return [alias for name in names for alias in (name, f"{name}_MatMul")]


CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def quantize_onnx_static(src: str | Path, dst: str | Path, calibration_batches: Sequence[dict[str, np.ndarray]], *,
                         per_channel: bool = True, method: str = "minmax", exclude: Sequence[str] = (),
                         op_types: Sequence[str] = STATIC_OPS, cache_path: str | Path | None = None) -> None:
    """int8 weights and u8 activations whose ranges come from running ``calibration_batches`` (QDQ format).

    Quantize the plain (unfused) graph: ONNX Runtime fuses QDQ pairs and the transformer patterns when the
    session is created, whereas its pre-fused contrib ops (Attention...) would keep fp32 activations.
    ``cache_path``: a JSON file of the measured activation ranges; when it exists calibration is skipped
    (the ranges do not depend on which nodes are excluded, so the fallback search calibrates once).
    """
    require_onnxruntime()
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if not calibration_batches and not (cache_path is not None and Path(cache_path).is_file()):
        raise GreenlmError("the calibration set is empty: static int8 needs task examples to measure activation ranges")
    if method not in CALIBRATION_METHODS:
        raise GreenlmError(f"unknown calibration method {method!r}; use one of: {', '.join(CALIBRATION_METHODS)}")
    wanted = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(calibration_batches)

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else feeds_for(wanted, batch)

    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    with quiet_onnx():
        quantize_static(
            str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
            per_channel=per_channel, reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=_with_gemm_aliases(exclude), calibrate_method=calibrate,
            calibration_cache_path=None if cache_path is None else str(cache_path),
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "WeightSymmetric": True,
                           "ActivationSymmetric": False, "MatMulConstBOnly": True,
                           "CalibPercentile": 99.999},
        )
