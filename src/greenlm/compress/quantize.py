"""Post-training quantization: int8 (dynamic or static, ONNX Runtime) and bf16 (PyTorch), accuracy-aware.

    config = QuantizeConfig(scheme="int8-dynamic", tolerance_points=1.0)
    result = greenlm.stage.run_stage("quantize", model_dir, task, config, out_dir)

Schemes:
  - ``int8-dynamic``: the fp32 graph is exported to ONNX (with ONNX Runtime's transformer fusions) and
    its weights stored as int8 (per output channel or per tensor); each activation is quantized at run
    time from its own min/max (Jacob et al. 2018; the BERT recipe of Zafrir et al. 2019, "Q8BERT").
  - ``int8-static``: activation scales are fixed in advance from ``calibration_examples`` training rows
    (min/max, entropy or percentile), so no range is computed at run time (QDQ format).
  - ``bf16``: weights and activations in bfloat16 (8-bit exponent, 7-bit mantissa: fp32's range), run
    by PyTorch; matrix products use AVX512-BF16 / AMX where the CPU has them. Half the size of fp32.

Where int8-dynamic runs (``runtime``): ONNX Runtime (``onnx``, the default for plain and pruned models), or
PyTorch (``torch``: ``torch.ao.quantization.quantize_dynamic`` of every ``nn.Linear``, see
``quantize_torch``). A model with early exits always takes the PyTorch path: which of its layers run
depends on each input, which an ONNX graph cannot hold, and PyTorch int8 keeps the exits, their
temperatures and threshold as they were. Its folder keeps the fp32 weights (the size on disk does not
change) and every loader makes the same int8 weights from them.

The accuracy is checked on the selection split (``tune_split`` unset): ``validation``, rows carved from
train, when the task has it, else ``dev`` with a note; ``metrics.json`` → ``quantize.selection`` says which.

Accuracy-aware fallback (as in Intel Neural Compressor's tuning loop): the quantized model is checked
on the tune split; if it loses more than ``tolerance_points`` accuracy points, every quantized node's
sensitivity is measured (the KL divergence to the fp32 predictions when only that node stays fp32,
on ``sensitivity_examples`` rows), and the most sensitive nodes go back to fp32 one by one until the
drop is within tolerance (at most ``max_fallback_nodes``; PyTorch int8 measures groups of layers instead of
nodes). A model still over tolerance is reported,
and the stage output is the input model unchanged unless ``keep_over_tolerance``.

The saved folder loads with ``greenlm.models.load_classifier`` / ``greenlm.load`` and its metrics
give its true size on disk next to the input's, and both speeds measured side by side.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from greenlm.compress import quantize_torch as qt
from greenlm.compress.quantize_config import QuantizeConfig, SCHEMES  # noqa: F401 (re-exported)
from greenlm.common import GreenlmError, atomic_write_json, read_json, read_json_cache
from greenlm.common.hardware import cpu_has_bf16
from greenlm.data import UNLABELED, VALIDATION, EncodedSplit, encode_split
from greenlm.models.early_exit import EarlyExitClassifier
from greenlm.models.quantized import is_torch_int8
from greenlm.runtime import side_by_side, speed_inputs
from greenlm.runtime import onnx as gx
from greenlm.runtime.engine import (OnnxClassifier, OrtRuntime, Packed, Runtime, TorchRuntime, default_threads,
                                    pack, require_classifier, run_engine, write_onnx_folder)
from greenlm.stage import StageContext, StageOutput
from greenlm.train.metrics import classification_metrics

METHOD = "quantize"
SPEED_ROUNDS = 2
CHOSE = "quantized model (scales per channel or per tensor, what stays fp32, whether it is kept)"


@dataclass
class _Eval:
    """A runtime's predictions on the tune rows, against the fp32 reference."""

    logits: np.ndarray  # [N, L]
    accuracy: float  # percent

    def kl_to(self, reference: np.ndarray) -> float:
        """Mean KL(p_ref || p) over rows: how far this model's probabilities moved from fp32's."""
        log_ref = _log_softmax(reference)
        return float(np.mean(np.sum(np.exp(log_ref) * (log_ref - _log_softmax(self.logits)), axis=1)))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class _Evaluator:
    """Runs runtimes over pre-packed tune rows with the engine (sorted batches, dynamic padding)."""

    def __init__(self, packed: Packed, labels: np.ndarray, num_labels: int, batch_size: int):
        self.packed, self.labels = packed, labels
        self.num_labels, self.batch_size = num_labels, batch_size

    @classmethod
    def of(cls, encoded: EncodedSplit, pad_token_id: int, num_labels: int, batch_size: int) -> "_Evaluator":
        return cls(pack(encoded, pad_token_id), np.asarray(encoded.labels), num_labels, batch_size)

    def first(self, n: int) -> "_Evaluator":
        """The same evaluator on the first ``n`` rows."""
        return _Evaluator(self.packed.select(np.arange(min(n, len(self.labels)))), self.labels[:n], self.num_labels,
                          self.batch_size)

    def __call__(self, runtime: Runtime) -> _Eval:
        logits = run_engine(runtime, self.packed, batch_size=self.batch_size, num_labels=self.num_labels)
        return _Eval(logits, float((logits.argmax(axis=1) == self.labels).mean() * 100.0))


# ---- the method ----------------------------------------------------------------------------------


@dataclass
class QuantizeOutcome:
    accepted: bool  # within tolerance (or kept anyway)
    model: object | None  # bf16 / PyTorch int8: the torch model; ONNX int8: None (see onnx_path)
    onnx_path: Path | None  # ONNX int8: the quantized graph
    onnx_settings: dict | None  # ONNX int8: what goes into config.json "greenlm.onnx"
    reference_accuracy: float
    accuracy: float
    details: dict
    torch_settings: dict | None = None  # PyTorch int8: config.json "greenlm.quantization" (fp32 weights on disk)


def quantize(loaded, tune: EncodedSplit, calibration: EncodedSplit | None, config: QuantizeConfig, *,
             work_dir: Path, on_note=print, tune_name: str | None = None) -> QuantizeOutcome:
    """Quantize ``loaded`` (a ``LoadedModel``, fp32 or bf16 torch, with or without exits) and check it on the
    ``tune`` rows (``tune_name``: the split they come from, for messages)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    if not len(tune):
        raise GreenlmError(f"quantize: the tune split '{tune_name or config.tune_split}' is empty: the accuracy drop"
                           " cannot be checked")
    runtime = qt.int8_runtime(config, model, on_note)  # refuses what cannot hold exits before any work
    threads = config.threads or default_threads()
    evaluator = _Evaluator.of(tune, tokenizer.pad_token_id, len(loaded.labels), config.batch_size)
    reference = evaluator(TorchRuntime(copy.deepcopy(model), precision="fp32", threads=threads))
    if config.scheme == "bf16":
        return _quantize_bf16(model, evaluator, reference, config, threads, on_note)
    if runtime == "torch":
        done = qt.quantize_torch_int8(model, evaluator, reference, config, threads, on_note)
        details = {**done.details, "kl_to_fp32": round(done.result.kl_to(reference.logits), 6),
                   "agreement_with_fp32": _agreement(done.result, reference)}
        accepted = reference.accuracy - done.result.accuracy <= config.tolerance_points
        return QuantizeOutcome(accepted, done.model, None, None, reference.accuracy, done.result.accuracy, details,
                               torch_settings=done.settings)
    return _quantize_int8(model, tokenizer, evaluator, reference, calibration, config, threads, work_dir, on_note)


def _quantize_bf16(model, evaluator, reference: _Eval, config, threads, on_note) -> QuantizeOutcome:
    if not cpu_has_bf16():
        on_note("this CPU has no AVX512-BF16 / AMX: bf16 halves the size but runs emulated, slower than fp32")
    runtime = TorchRuntime(copy.deepcopy(model), precision="bf16", threads=threads)
    result = evaluator(runtime)
    drop = reference.accuracy - result.accuracy
    accepted = drop <= config.tolerance_points
    details = {"kl_to_fp32": round(result.kl_to(reference.logits), 6),
               "agreement_with_fp32": _agreement(result, reference)}
    return QuantizeOutcome(accepted, runtime.model, None, None, reference.accuracy, result.accuracy, details)


class _Int8:
    """int8 conversions of one exported fp32 graph, cached as files in ``work_dir`` (a file that exists is
    complete: conversions are written to a temporary name and renamed)."""

    def __init__(self, fp32_path: Path, config: QuantizeConfig, work_dir: Path, calibration_batches, threads: int):
        self.fp32_path, self.config, self.work_dir, self.threads = fp32_path, config, work_dir, threads
        self.static = config.scheme == "int8-static"
        self.calibration_batches = calibration_batches
        self.ops = gx.STATIC_OPS if self.static else gx.DYNAMIC_OPS

    def convert(self, name: str, per_channel: bool, exclude: list[str]) -> Path:
        path = self.work_dir / f"{name}.onnx"
        if path.is_file():
            return path
        tmp = path.with_suffix(".tmp.onnx")
        if self.static:
            # activation ranges do not depend on the excluded nodes: calibrate once, reuse the ranges
            cache = self.work_dir / f"calibration-{self.config.calibration_method}.json"
            gx.quantize_onnx_static(self.fp32_path, tmp, self.calibration_batches, per_channel=per_channel,
                                    method=self.config.calibration_method, exclude=exclude, cache_path=cache)
        else:
            gx.quantize_onnx_dynamic(self.fp32_path, tmp, per_channel=per_channel, exclude=exclude)
        tmp.replace(path)
        return path

    def runtime(self, path: Path) -> OrtRuntime:
        return OrtRuntime(path, precision=self.config.scheme, threads=self.threads)


def _quantize_int8(model, tokenizer, evaluator, reference: _Eval, calibration, config, threads, work_dir: Path,
                   on_note) -> QuantizeOutcome:
    gx.require_onnxruntime()
    static = config.scheme == "int8-static"
    export, fp32_path = _export_fp32(model, evaluator, config, work_dir)
    for note in export["notes"]:
        on_note(note)
    calibration_batches = None
    if static:
        if calibration is None or not len(calibration):
            raise GreenlmError("quantize: the calibration set is empty: int8-static needs training rows"
                               " (calibration_examples) to measure activation ranges")
        packed = pack(calibration, tokenizer.pad_token_id)
        calibration_batches = [packed.batch(np.array([i])) for i in range(len(packed.lengths))]  # no padding
    int8 = _Int8(fp32_path, config, work_dir, calibration_batches, threads)

    def record(excluded: list[str], ev: _Eval) -> dict:
        return {"fp32_nodes": list(excluded), "accuracy": round(ev.accuracy, 4),
                "kl_to_fp32": round(ev.kl_to(reference.logits), 6)}

    # Per-channel where it helps: with per_channel=None both are made and the closer to fp32 (KL) is kept.
    choices = [config.per_channel] if config.per_channel is not None else [True, False]
    tried = {}
    for per_channel in choices:
        path = int8.convert(f"q-{_kind(per_channel)}", per_channel, [])
        tried[per_channel] = (path, evaluator(int8.runtime(path)))
    per_channel = min(tried, key=lambda pc: (tried[pc][1].kl_to(reference.logits), not pc))
    path, result = tried[per_channel]
    trajectory = [record([], result)]
    drop = reference.accuracy - result.accuracy
    sensitivity: dict[str, float] = {}
    excluded: list[str] = []
    if drop > config.tolerance_points and config.fallback and config.max_fallback_nodes > 0:
        on_note(f"int8 ({_kind(per_channel)}) loses {drop:.2f} accuracy points (> {config.tolerance_points});"
                " measuring which nodes are sensitive")
        sensitivity = _sensitivity(int8, per_channel, evaluator.first(config.sensitivity_examples), reference)
        for node in sorted(sensitivity, key=sensitivity.get)[: config.max_fallback_nodes]:
            excluded.append(node)  # lowest KL first: the node whose fp32 copy helps most
            path = int8.convert(f"q-{_kind(per_channel)}-fallback{len(excluded)}", per_channel, excluded)
            result = evaluator(int8.runtime(path))
            trajectory.append(record(excluded, result))
            drop = reference.accuracy - result.accuracy
            if drop <= config.tolerance_points:
                break
        on_note(f"kept {len(excluded)} node(s) in fp32: {', '.join(excluded)}")
    calibration_info = {"examples": len(calibration_batches), "method": config.calibration_method} if static else None
    settings = {"precision": config.scheme, "per_channel": per_channel, "fp32_nodes": excluded,
                "fused_ops": export["fused_ops"], "opset": export["opset"], "calibration": calibration_info}
    details = {
        "runtime": "onnx",
        "per_channel": per_channel,
        "per_channel_choice": {_kind(pc): record([], ev) for pc, (_, ev) in tried.items()} if len(tried) > 1 else None,
        "quantized_nodes": len(gx.quantizable_nodes(fp32_path, int8.ops)) - len(excluded),
        "fp32_nodes": excluded,
        "sensitivity_kl_when_fp32": {k: round(v, 6) for k, v in sorted(sensitivity.items(), key=lambda kv: kv[1])},
        "fallback_trajectory": trajectory,
        "kl_to_fp32": round(result.kl_to(reference.logits), 6),
        "agreement_with_fp32": _agreement(result, reference),
        "export": {k: export.get(k) for k in ("fused", "fused_ops", "fusion_timing_ms", "max_abs_diff", "atol",
                                               "rtol", "check_examples")},
        "calibration": calibration_info,
    }
    accepted = drop <= config.tolerance_points
    return QuantizeOutcome(accepted, None, path, settings, reference.accuracy, result.accuracy, details)


def _kind(per_channel: bool) -> str:
    return "per-channel" if per_channel else "per-tensor"


def _export_fp32(model, evaluator: _Evaluator, config: QuantizeConfig, work_dir: Path) -> tuple[dict, Path]:
    """The fp32 ONNX graph int8 starts from (the expensive, deterministic part: reused when resuming).

    Dynamic int8 rewrites the graph the export keeps (offline fusions only where they help); static int8
    the plain graph, which ONNX Runtime fuses with its QDQ pairs when it loads it.
    """
    optimize = False if config.scheme == "int8-static" else config.optimize_graph
    fp32_path = work_dir / f"fp32-{ {None: 'auto', True: 'fused', False: 'plain'}[optimize] }.onnx"
    report_file = fp32_path.with_suffix(".json")
    if fp32_path.is_file() and report_file.is_file():
        return read_json(report_file), fp32_path
    checks = [evaluator.packed.batch(rows) for rows in _check_rows(evaluator.packed.lengths)]
    export = gx.export_onnx(model, fp32_path, check_batches=checks, optimize=optimize).to_dict()
    atomic_write_json(report_file, export)
    return export, fp32_path


def _check_rows(lengths: np.ndarray) -> list[np.ndarray]:
    """Export checks on real rows: a single row, and padded batches of short and long rows."""
    order = np.argsort(lengths, kind="stable")
    n = len(order)
    picks = [order[-1:], order[: min(4, n)], order[np.linspace(0, n - 1, num=min(8, n)).astype(int)]]
    return [p for p in picks if len(p)]


def _sensitivity(int8: _Int8, per_channel: bool, small: _Evaluator, reference: _Eval) -> dict[str, float]:
    """Per quantizable node: KL to fp32 on ``small``'s rows with every other node int8 and it fp32.

    Each figure is written to ``sensitivity.json`` as soon as it is measured: an interrupted search resumes
    node by node.
    """
    cache_file = int8.work_dir / "sensitivity.json"
    cache = read_json_cache(cache_file) or {}
    key = f"{_kind(per_channel)}|{len(small.labels)}"
    done: dict = cache.setdefault(key, {})
    ref_logits = reference.logits[: len(small.labels)]
    nodes = gx.quantizable_nodes(int8.fp32_path, int8.ops)
    probe = int8.work_dir / "probe.onnx"
    for node in nodes:
        if node in done:
            continue
        probe.unlink(missing_ok=True)
        int8.convert("probe", per_channel, [node])
        done[node] = small(int8.runtime(probe)).kl_to(ref_logits)
        atomic_write_json(cache_file, cache)
    probe.unlink(missing_ok=True)
    return {n: done[n] for n in nodes}


def _agreement(result: _Eval, reference: _Eval) -> float:
    """Share of rows (percent) where the quantized model predicts what the fp32 model predicts."""
    return round(float((result.logits.argmax(1) == reference.logits.argmax(1)).mean() * 100.0), 4)


# ---- the stage ------------------------------------------------------------------------------------


def run(ctx: StageContext, config: QuantizeConfig) -> StageOutput:
    """The ``quantize`` method: quantize the model in ``ctx.input_dir``.

    The output folder loads with ``greenlm.models.load_classifier`` / ``greenlm.load``: an ONNX folder
    (int8), a PyTorch folder with bf16 weights, or (PyTorch int8, e.g. a model with early exits) the input's
    fp32 files with ``config.json`` saying how every loader quantizes them. If the drop exceeds the tolerance and
    ``keep_over_tolerance`` is off, it holds the input model unchanged, and metrics.json says so.
    ``ctx.work_dir`` keeps the export and the sensitivity measurements: running again resumes.
    """
    input_dir = ctx.input_dir
    loaded = ctx.load_input()
    model, tokenizer = loaded.model, loaded.tokenizer
    if isinstance(model, OnnxClassifier):
        raise GreenlmError(f"model '{input_dir}' is already an exported ONNX model; quantize the PyTorch model it"
                           " came from")
    if is_torch_int8(model):
        raise GreenlmError(f"model '{input_dir}' is already PyTorch int8; quantize the fp32 model it came from")
    require_classifier(loaded, str(input_dir))
    saved = dict(getattr(model.config, "greenlm", None) or {})
    max_length = ctx.max_length(model, config.max_length, tokenizer)
    labels = list(loaded.labels)
    qt.int8_runtime(config, model)  # a scheme that cannot hold the model's exits stops here, before any work
    tune_name, tune_split, selection = _tune_split(ctx, config, labels)
    tune = encode_split(tune_split, tokenizer, max_length)
    calibration = None
    if config.scheme == "int8-static":
        train_split = ctx.task.splits.get("train")
        if train_split is None or not len(train_split):
            raise GreenlmError("quantize: the calibration set is empty: int8-static needs a non-empty train split")
        calibration = encode_split(train_split.subset(config.calibration_examples, seed=config.seed), tokenizer,
                                   max_length)

    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    outcome = quantize(loaded, tune, calibration, config, work_dir=ctx.work_dir, on_note=ctx.note, tune_name=tune_name)
    drop = outcome.reference_accuracy - outcome.accuracy
    keep_quantized = outcome.accepted or config.keep_over_tolerance
    if not outcome.accepted:
        ctx.note(f"{config.scheme} loses {drop:.2f} accuracy points on {tune_name}, more than the tolerance"
                 f" ({config.tolerance_points}); " + ("kept anyway (keep_over_tolerance)" if keep_quantized
                                                      else "the stage output is the input model, unchanged"))

    threads = config.threads or default_threads()
    input_bytes = qt.weights_bytes(input_dir)
    speed = None
    if config.measure_speed:
        speed = _speed_side_by_side(model, outcome, tune, tokenizer.pad_token_id, config, threads)

    exits = isinstance(model, EarlyExitClassifier)
    dev_metrics, exit_splits = {}, {}
    for name, split in ctx.labelled_splits(labels, str(input_dir)).items():
        encoded = tune if name == tune_name else encode_split(split, tokenizer, max_length)
        if exits:  # the exit each row took, for the output model and for the input
            output_model = outcome.model if keep_quantized else model
            args = (encoded, tokenizer.pad_token_id, config.batch_size, len(labels), threads)
            dev_metrics[name], exit_splits[name] = qt.split_with_exits(output_model, *args)
            exit_splits[name]["input"] = qt.split_with_exits(model, *args)[1]
        else:
            dev_metrics[name] = _split_metrics(outcome if keep_quantized else None, model, encoded,
                                               tokenizer.pad_token_id, len(labels), config, threads)

    details = {
        "scheme": config.scheme,
        "status": ("quantized" if outcome.accepted
                   else "over_tolerance_kept" if keep_quantized else "over_tolerance_input_kept"),
        "output_is": "quantized" if keep_quantized else "input",
        "tune_split": tune_name,
        "selection": selection,
        "reference_accuracy": round(outcome.reference_accuracy, 4),
        "quantized_accuracy": round(outcome.accuracy, 4),
        "accuracy_drop_points": round(drop, 4),
        "tolerance_points": config.tolerance_points,
        "input_disk_bytes": input_bytes,
        **outcome.details,
        "exits": {**qt.exit_settings(model), "splits": exit_splits} if exits else None,
        "speed": speed,
        "threads": threads,
        "config": config.to_dict(),
    }

    def write(folder: Path) -> None:
        if not keep_quantized:
            qt.copy_model_folder(input_dir, folder)
        elif outcome.onnx_path is not None:
            write_onnx_folder(folder, outcome.onnx_path, model.config, tokenizer, outcome.onnx_settings)
        elif outcome.torch_settings is not None:
            qt.write_torch_int8_folder(input_dir, folder, outcome.torch_settings)
        else:
            qmodel = outcome.model
            qmodel.config.greenlm = {**saved, "quantization": {"scheme": "bf16"}}
            _save_torch(qmodel, tokenizer, folder)
        details["output_disk_bytes"] = qt.weights_bytes(folder)
        details["size_ratio"] = round(details["output_disk_bytes"] / input_bytes, 4) if input_bytes else None

    return StageOutput(metrics={"splits": dev_metrics, METHOD: details}, write=write, model_name=str(input_dir))


def _tune_split(ctx: StageContext, config: QuantizeConfig, labels: list[str]):
    """The split the drop is checked on (the selection split unless ``tune_split`` names one), its rows in the
    model's labels, and the record of that choice for metrics.json."""
    task, who = ctx.task, str(ctx.input_dir)
    if config.tune_split is None:
        name, split, record = ctx.selection(labels, who, chose=CHOSE)
        if name is None:
            raise GreenlmError(f"quantize: task '{task.name}' has no validation or dev split to check accuracy on;"
                               f" set tune_split to one of: {', '.join(sorted(task.splits))}")
    else:
        name = config.tune_split
        if name not in task.splits:
            raise GreenlmError(f"quantize: task '{task.name}' has no '{name}' split to check accuracy on;"
                               f" set tune_split to one of: {', '.join(sorted(task.splits))}")
        split = ctx.align(task.split(name), labels, who)
        record = {"split": name, "examples": len(split), "chose": CHOSE, "set_by": "tune_split"}
        if name == VALIDATION:
            record["from"] = "train"
        elif name != "train":
            record["warning"] = (f"chosen on '{name}', a split that is also reported: its figures are optimistic"
                                 " (leave tune_split unset to choose on validation)")
    if split.labels and min(split.labels) == UNLABELED:
        raise GreenlmError(f"quantize: split '{name}' has no labels; accuracy cannot be checked on it")
    return name, split, record


def _quantized_runtime(outcome: QuantizeOutcome, config: QuantizeConfig, threads: int) -> Runtime:
    if outcome.onnx_path is not None:
        return OrtRuntime(outcome.onnx_path, precision=config.scheme, threads=threads)
    precision = "int8-dynamic" if outcome.torch_settings is not None else "bf16"
    return TorchRuntime(outcome.model, precision=precision, threads=threads)


def _split_metrics(outcome, model, encoded, pad_token_id, num_labels, config, threads) -> dict:
    if outcome is None:
        runtime = TorchRuntime(copy.deepcopy(model), precision="fp32", threads=threads)
    else:
        runtime = _quantized_runtime(outcome, config, threads)
    logits = run_engine(runtime, pack(encoded, pad_token_id), batch_size=config.batch_size, num_labels=num_labels)
    return classification_metrics(encoded.labels, logits.argmax(axis=1).tolist(), num_labels)


def _speed_side_by_side(model, outcome, tune, pad_token_id, config, threads) -> dict:
    """Input (PyTorch fp32) and quantized model on the same rows, same engine, same threads, one process."""
    fp32 = TorchRuntime(copy.deepcopy(model), precision="fp32", threads=threads)
    quantized = _quantized_runtime(outcome, config, threads)
    timed = side_by_side({"input_fp32": fp32, "quantized": quantized},
                         speed_inputs(tune, max_examples=config.speed_examples, seed=config.seed),
                         pad_token_id=pad_token_id, batch_size=config.batch_size, latency_examples=32, repeats=2,
                         threads=threads, rounds=SPEED_ROUNDS, reference="input_fp32")
    timed["input_fp32"]["runtime"], timed["quantized"]["runtime"] = fp32.name, quantized.name
    return {**timed, "throughput_speedup": timed["quantized"]["throughput_speedup"],
            "latency_p50_speedup": timed["quantized"]["latency_p50_speedup"]}


def _save_torch(model, tokenizer, folder: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
