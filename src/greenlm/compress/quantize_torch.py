"""PyTorch dynamic int8 for the ``quantize`` method: the path of models with early exits (and of any model
with ``runtime: torch``).

A model with exits cannot become an ONNX graph (which layers run depends on each input), so it stays an eager
PyTorch module and only its linear layers turn int8 (``greenlm.models.quantized``): the encoder's, the exit
heads' and the classifier's. The exits, their temperatures and the threshold are untouched.

Accuracy-aware fallback, by group instead of by ONNX node: when the int8 model loses more than the tolerance
on the tune rows, each group of linear layers (``layer.<i>``, ``exit.<i>``, ``head``) is measured alone in fp32
(KL divergence of the predictions to fp32's on ``sensitivity_examples`` rows); groups then go back to fp32 in
that order, one at a time, until the drop is within tolerance (at most ``max_fallback_nodes`` groups, and at
least one group stays int8). Quantizing takes a second, so nothing is cached in the work folder.

The folder written is the input folder, file for file (fp32 weights: its size on disk does not change), with
``config.json`` saying how to quantize it (``"quantization": {"scheme": "int8-dynamic", "runtime": "torch",
...}``); every loader re-applies it, deterministically (``int8_sha256`` records the int8 weights checked here).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_json, read_json
from greenlm.common.optional import is_available
from greenlm.compress.quantize_config import QuantizeConfig
from greenlm.models.early_exit import EarlyExitClassifier
from greenlm.models.quantized import (
    int8_digest,
    is_quantized_linear,
    linear_groups,
    quantize_linears,
    saved_settings,
    weights_in_memory_bytes,
)
from greenlm.runtime import predict_outputs
from greenlm.runtime.engine import TorchRuntime
from greenlm.measure.timing import torch_threads
from greenlm.train.metrics import classification_metrics

# written by the stage itself, never copied from the input folder
STAGE_FILES = ("metrics.json", "pricetag.json", "stage.json", "README.md", "greenlm_run.json")
FP32_ONLY_FILES = ("curve.json", "curve.csv")  # early exit's threshold curves, measured on the fp32 model
ON_DISK = "fp32: the int8 weights are made from them when the folder is loaded (the size on disk does not change)"


def int8_runtime(config: QuantizeConfig, model, on_note=None) -> str | None:
    """Where the scheme runs for ``model``: "torch" (PyTorch int8), "onnx" (ONNX Runtime), None (bf16, PyTorch).
    Unset, int8-dynamic runs in ONNX Runtime where it is installed, else in PyTorch (said through ``on_note``), so a
    plain ``pip install greenlm`` runs the default recipe's quantize stage."""
    if config.scheme == "bf16":
        return None
    if isinstance(model, EarlyExitClassifier):
        if config.scheme == "int8-static" or config.runtime == "onnx":
            raise GreenlmError(f"quantize: {config.scheme} with runtime onnx cannot take a model with early exits"
                               " (which layers run depends on each input, which an ONNX graph cannot hold); use"
                               " scheme int8-dynamic with runtime torch (or unset), or quantize before adding exits")
        return "torch"
    if config.runtime is None and config.scheme == "int8-dynamic" and not (is_available("onnxruntime")
                                                                          and is_available("onnx")):
        if on_note is not None:
            on_note("quantize: ONNX Runtime is not installed, so int8-dynamic runs in PyTorch (runtime torch); install"
                    " it with: pip install 'greenlm[onnx]' for ONNX Runtime's int8")
        return "torch"
    return "torch" if config.runtime == "torch" else "onnx"


@dataclass
class TorchInt8:
    model: object  # the int8 module (fp32 groups left as they were)
    result: object  # its evaluation on the tune rows (quantize._Eval: logits, accuracy, kl_to)
    settings: dict  # config.json's "quantization" entry
    details: dict


def quantize_torch_int8(model, evaluate, reference, config: QuantizeConfig, threads: int, on_note) -> TorchInt8:
    """Quantize ``model``'s linear layers; check it with ``evaluate`` (quantize._Evaluator) against ``reference``."""
    groups = linear_groups(model)

    def run(qmodel, evaluator=evaluate):
        return evaluator(TorchRuntime(qmodel, precision="int8-dynamic", threads=threads))

    def record(fp32_groups: list[str], ev) -> dict:
        return {"fp32_groups": list(fp32_groups), "accuracy": round(ev.accuracy, 4),
                "kl_to_fp32": round(ev.kl_to(reference.logits), 6)}

    choices = [config.per_channel] if config.per_channel is not None else [True, False]
    tried = {}
    for per_channel in choices:
        try:
            qmodel = quantize_linears(model, per_channel=per_channel)
            tried[per_channel] = (qmodel, run(qmodel))
        except RuntimeError as err:  # a quantized engine without this kind of int8 linear layer
            message = f"PyTorch int8 {_kind(per_channel)} failed here ({str(err).strip().splitlines()[0]})"
            if len(choices) == 1:
                raise GreenlmError(f"quantize: {message}; try per_channel {'false' if per_channel else 'true'}") from None
            on_note(f"{message}; kept the other")
    if not tried:
        raise GreenlmError("quantize: PyTorch int8 failed per channel and per tensor on this machine")
    per_channel = min(tried, key=lambda pc: (tried[pc][1].kl_to(reference.logits), not pc))
    qmodel, result = tried[per_channel]
    choice = {_kind(pc): record([], ev) for pc, (_, ev) in tried.items()} if len(tried) > 1 else None
    tried.clear()
    trajectory = [record([], result)]
    drop = reference.accuracy - result.accuracy
    sensitivity: dict[str, float] = {}
    kept: list[str] = []
    limit = min(config.max_fallback_nodes, len(groups) - 1)  # at least one group stays int8
    if drop > config.tolerance_points and config.fallback and limit > 0:
        on_note(f"PyTorch int8 ({_kind(per_channel)}) loses {drop:.2f} accuracy points (> {config.tolerance_points});"
                " measuring which groups of layers are sensitive")
        small = evaluate.first(config.sensitivity_examples)
        small_reference = reference.logits[: len(small.labels)]
        for group in groups:
            probe = quantize_linears(model, per_channel=per_channel, fp32_groups=[group])
            sensitivity[group] = run(probe, small).kl_to(small_reference)
        for group in sorted(sensitivity, key=sensitivity.get)[:limit]:
            kept.append(group)  # lowest KL first: the group whose fp32 copy helps most
            qmodel = quantize_linears(model, per_channel=per_channel, fp32_groups=kept)
            result = run(qmodel)
            trajectory.append(record(kept, result))
            drop = reference.accuracy - result.accuracy
            if drop <= config.tolerance_points:
                break
        on_note(f"kept {len(kept)} group(s) of linear layers in fp32: {', '.join(kept)}")
    digest = int8_digest(qmodel)
    linears = [m for m in qmodel.modules() if is_quantized_linear(m)]
    details = {
        "runtime": "torch",
        "per_channel": per_channel,
        "per_channel_choice": choice,
        "quantized_linear_layers": len(linears),
        "linear_layers": sum(len(members) for members in groups.values()),
        "groups": list(groups),
        "fp32_groups": kept,
        "sensitivity_kl_when_fp32": {k: round(v, 6) for k, v in sorted(sensitivity.items(), key=lambda kv: kv[1])},
        "fallback_trajectory": trajectory,
        "int8_sha256": digest,
        "weights_on_disk": ON_DISK,
        "weights_in_memory_bytes": {"input": weights_in_memory_bytes(model),
                                    "quantized": weights_in_memory_bytes(qmodel)},
    }
    return TorchInt8(qmodel, result, saved_settings(per_channel=per_channel, fp32_groups=kept, digest=digest), details)


def _kind(per_channel: bool) -> str:
    return "per-channel" if per_channel else "per-tensor"


# ---- early exits after quantization -----------------------------------------------------------------


def split_with_exits(model, encoded, pad_token_id: int, batch_size: int, num_labels: int, threads: int):
    """Classification metrics of ``model`` (with exits) on ``encoded``, and what its exits did there."""
    with torch_threads(threads):  # the process's own thread count again after it
        logits, layers = predict_outputs(model, encoded, pad_token_id=pad_token_id, batch_size=batch_size)
    metrics = classification_metrics(encoded.labels, logits.argmax(-1).tolist(), num_labels)
    exits = {"accuracy": metrics["accuracy"], "mean_exit_layer": round(float(layers.double().mean()), 4),
             "exit_share": {str(layer): round(float((layers == layer).double().mean()), 4)
                            for layer in model.exit_layers}}
    return metrics, exits


def exit_settings(model) -> dict:
    """The exits a model keeps through quantization (layers, policy, threshold or patience, temperatures)."""
    return {"exit_layers": list(model.exit_layers), "policy": model.policy, "threshold": model.threshold,
            "patience": model.patience, "temperatures": [round(t, 6) for t in model.temperatures]}


# ---- the folder -----------------------------------------------------------------------------------


def write_torch_int8_folder(input_dir: Path, folder: Path, settings: dict) -> None:
    """The input folder, file for file, with ``config.json`` asking every loader to quantize it (``settings``)."""
    copy_model_folder(input_dir, folder, skip=FP32_ONLY_FILES)
    config_file = Path(folder) / "config.json"
    config = read_json(config_file)
    config["greenlm"] = {**(config.get("greenlm") or {}), "quantization": settings}
    atomic_write_json(config_file, config)


def copy_model_folder(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    """The model in ``src``, file for file (metrics.json, price tag, stage.json and card are the stage's to write)."""
    for item in Path(src).iterdir():
        if item.name.startswith(".") or item.name in STAGE_FILES or item.name in skip:
            continue
        if item.is_dir():
            shutil.copytree(item, Path(dst) / item.name)
        else:
            shutil.copy2(item, Path(dst) / item.name)


def weights_bytes(folder: Path) -> int | None:
    """Bytes of the weight files (safetensors, ONNX, pickle) in the folder and its sub-folders (an early-exit
    folder keeps its backbone in ``backbone/``); tokenizer, config and hidden work folders excluded."""
    folder = Path(folder)
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".onnx", ".bin")
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sum(p.stat().st_size for p in files) if files else None
