"""PyTorch dynamic int8: a classifier's linear layers with int8 weights, activations quantized at run time.

    model = quantize_linears(model, per_channel=True)               # a copy; nn.Linear -> dynamic int8 Linear
    model = quantize_linears(model, per_channel=True, fp32_groups=["exit.1"])   # that exit head stays fp32
    is_torch_int8(model), int8_digest(model)

This is how a model with early exits runs in int8: its exits are data-dependent control flow, which an ONNX
graph cannot hold, so it stays an eager PyTorch module and only its ``nn.Linear`` layers change
(``torch.ao.quantization.quantize_dynamic``): weights int8 (symmetric, per output channel or per tensor),
each activation quantized to uint8 per call from its own range, int32 accumulation, fp32 out. Plain and
pruned classifiers take it the same way.

A folder keeps the fp32 weights and says in ``config.json`` how to quantize them:
``"greenlm": {..., "quantization": {"scheme": "int8-dynamic", "runtime": "torch", "per_channel": ...,
"fp32_groups": [...], "int8_sha256": ...}}``. ``load_classifier`` re-applies it (``apply_saved_quantization``):
min/max weight quantization is a pure function of the weights, so the same folder gives the same int8
weights at every load (``int8_sha256`` records them; a different result is reported in the load notes).

Groups (what the accuracy-aware fallback keeps in fp32): ``layer.<i>`` (the linear layers of encoder layer
i, 1-based), ``exit.<i>`` (the exit head after layer i) and ``head`` (the model's own pooler and classifier,
and any other linear layer outside the encoder layers).
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings

from greenlm.common import GreenlmError

SCHEME = "int8-dynamic"
RUNTIME = "torch"
HEAD_GROUP = "head"
_QUANTIZED_MODULES = "torch.ao.nn.quantized"


@contextlib.contextmanager
def _quiet_quantization():
    """torch.ao.quantization warns that it is deprecated, and again when it makes quantized tensors: greenlm
    checks what it needs itself (``dynamic_quantizer``), so these two warnings are silenced here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per")
        yield


def dynamic_quantizer():
    """``torch.ao.quantization.quantize_dynamic`` and its two qconfigs, or one clear line when this torch lacks them."""
    import torch

    try:
        with _quiet_quantization():
            from torch.ao.quantization import (
                default_dynamic_qconfig,
                per_channel_dynamic_qconfig,
                quantize_dynamic,
            )
    except ImportError:
        raise GreenlmError(f"PyTorch {torch.__version__} has no torch.ao.quantization.quantize_dynamic, which PyTorch"
                           " int8 needs: install a torch build that has it, or quantize a model without early exits"
                           " with runtime onnx") from None
    if not [engine for engine in torch.backends.quantized.supported_engines if engine != "none"]:
        raise GreenlmError(f"PyTorch {torch.__version__} has no quantized CPU engine (x86, fbgemm, onednn, qnnpack):"
                           " PyTorch int8 cannot run on this build")
    return quantize_dynamic, {True: per_channel_dynamic_qconfig, False: default_dynamic_qconfig}


def is_linear(module) -> bool:
    """An ``nn.Linear`` or its dynamic int8 replacement (which is not an ``nn.Linear`` subclass)."""
    import torch

    return isinstance(module, torch.nn.Linear) or is_quantized_linear(module)


def is_quantized_linear(module) -> bool:
    return type(module).__module__.startswith(_QUANTIZED_MODULES) and callable(getattr(module, "weight", None))


def is_torch_int8(model) -> bool:
    """True when some linear layer of ``model`` (a torch module) runs in dynamic int8."""
    modules = getattr(model, "modules", None)
    import torch

    return isinstance(model, torch.nn.Module) and callable(modules) and any(map(is_quantized_linear, model.modules()))


def linear_groups(model) -> dict[str, list[str]]:
    """Group name -> the full names of its linear layers, in module order (see the module docstring)."""
    import torch

    owner: dict[int, str] = {}
    core = getattr(model, "backbone", model)  # an early-exit wrapper keeps its model as .backbone
    layers = getattr(getattr(getattr(core, "base_model", None), "encoder", None), "layer", None)
    for i, layer in enumerate(layers if isinstance(layers, torch.nn.ModuleList) else [], start=1):
        owner.update({id(sub): f"layer.{i}" for sub in layer.modules()})
    exits = getattr(model, "exits", None)
    if isinstance(exits, torch.nn.ModuleDict):
        for key, head in exits.items():
            owner.update({id(sub): f"exit.{key}" for sub in head.modules()})
    groups: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if is_linear(module):
            groups.setdefault(owner.get(id(module), HEAD_GROUP), []).append(name)
    return groups


def quantize_linears(model, *, per_channel: bool, fp32_groups=(), inplace: bool = False):
    """``model`` with every ``nn.Linear`` outside ``fp32_groups`` in dynamic int8 (a copy unless ``inplace``).

    Weights: symmetric int8, one scale per output channel (``per_channel``) or per tensor; activations:
    uint8 per call. An early-exit wrapper's layer-by-layer path is pointed at the new modules.
    """
    import torch

    if is_torch_int8(model):
        raise GreenlmError("this model is already PyTorch int8; quantize the fp32 model it was made from")
    groups = linear_groups(model)
    unknown = sorted(set(fp32_groups) - set(groups))
    if unknown:
        raise GreenlmError(f"no linear layers in group(s) {', '.join(unknown)}; the model has {', '.join(groups)}")
    names = [name for group, members in groups.items() if group not in set(fp32_groups) for name in members]
    quantize_dynamic, qconfigs = dynamic_quantizer()
    with _quiet_quantization():
        quantized = quantize_dynamic(model, {name: qconfigs[bool(per_channel)] for name in names}, dtype=torch.qint8,
                                     inplace=inplace)
    refresh = getattr(quantized, "refresh_parts", None)
    if callable(refresh):
        refresh()
    return quantized.eval()


def _int8_weights(model):
    for name, module in model.named_modules():
        if is_quantized_linear(module):
            yield name, module


def _scales(weight):
    import torch

    if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return weight.q_per_channel_scales().double(), weight.q_per_channel_zero_points().long()
    return torch.tensor([weight.q_scale()], dtype=torch.float64), torch.tensor([weight.q_zero_point()])


def int8_digest(model) -> str:
    """sha256 of every int8 weight, its scales and zero points, by module name: equal digests, equal int8 model."""
    digest = hashlib.sha256()
    with _quiet_quantization():
        for name, module in _int8_weights(model):
            weight = module.weight()
            scales, zero_points = _scales(weight)
            digest.update(name.encode())
            digest.update(weight.int_repr().contiguous().numpy().tobytes())
            digest.update(scales.numpy().tobytes())
            digest.update(zero_points.numpy().tobytes())
    return digest.hexdigest()


def weights_in_memory_bytes(model) -> int:
    """Bytes of the weights as the model holds them: its parameters (fp32 or bf16) plus, for each int8 linear
    layer, its int8 weights, one fp32 scale per output channel (or per tensor) and its fp32 biases."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    with _quiet_quantization():
        for _, module in _int8_weights(model):
            weight, bias = module.weight(), module.bias()
            total += weight.numel() + 4 * len(_scales(weight)[0]) + (0 if bias is None else 4 * bias.numel())
    return int(total)


def torch_int8_settings(config) -> dict | None:
    """The ``quantization`` entry of a model config when it asks for PyTorch dynamic int8, else None."""
    saved = (getattr(config, "greenlm", None) or {}).get("quantization") or {}
    if saved.get("scheme") == SCHEME and saved.get("runtime") == RUNTIME:
        return dict(saved)
    return None


def saved_settings(*, per_channel: bool, fp32_groups, digest: str) -> dict:
    """What ``config.json`` holds for a PyTorch int8 model (``"greenlm": {"quantization": ...}``)."""
    import torch

    return {"scheme": SCHEME, "runtime": RUNTIME, "modules": "torch.nn.Linear", "per_channel": bool(per_channel),
            "fp32_groups": list(fp32_groups), "weights_on_disk": "fp32 (int8 is made from them at load)",
            "int8_sha256": digest, "torch_version": torch.__version__.split("+")[0]}


def apply_saved_quantization(loaded):
    """``load_classifier``'s last step: a folder saved as PyTorch int8 (see ``saved_settings``) is quantized now,
    from the fp32 weights just loaded; any other model is returned as it is."""
    settings = torch_int8_settings(getattr(loaded.model, "config", None))
    if settings is None:
        return loaded
    name = loaded.source.display_name
    per_channel = settings.get("per_channel")
    fp32_groups = settings.get("fp32_groups") or []
    if not isinstance(per_channel, bool) or not isinstance(fp32_groups, list):
        raise GreenlmError(f"model '{name}' has a damaged quantization entry in config.json (per_channel"
                           f" {per_channel!r}, fp32_groups {fp32_groups!r}); quantize it again")
    loaded.model = quantize_linears(loaded.model, per_channel=per_channel, fp32_groups=fp32_groups, inplace=True)
    kind = "per channel" if per_channel else "per tensor"
    kept = f", {', '.join(fp32_groups)} in fp32" if fp32_groups else ""
    loaded.notes.append(f"PyTorch dynamic int8 ({kind}{kept}), made at load from the fp32 weights on disk")
    expected = settings.get("int8_sha256")
    if expected and int8_digest(loaded.model) != expected:
        loaded.notes.append(f"the int8 weights made here differ from those checked when the model was quantized"
                            f" (torch {settings.get('torch_version')} then): its saved accuracy may not hold exactly")
    return loaded
