"""Physically pruned BERT-family encoders: fewer attention heads and FFN neurons per layer, fewer layers.

transformers 5 removed ``prune_heads`` and ``head_mask``, so greenlm rewrites the modules itself.
With d = head size and H heads in a layer:
  - removing head h drops rows [h*d, (h+1)*d) of the query, key and value projections
    (weight [H*d, hidden] -> [H'*d, hidden], bias [H*d] -> [H'*d]) and the same columns of the
    attention output projection (weight [hidden, H*d] -> [hidden, H'*d]);
  - removing FFN neuron n drops row n of the first FFN matrix ([I, hidden] -> [I', hidden]) and
    column n of the second ([hidden, I] -> [hidden, I']);
  - dropping a layer removes it from the encoder's ``ModuleList``.
transformers' attention reshapes with ``view(..., -1, d)``, so a layer with fewer heads runs as is.
A layer left with no head gets ``HeadlessSelfAttention``: its attention block reduces to the
output projection's bias, exactly what a zero gate on every head gives (Michel et al. 2019).

A saved pruned folder records its shapes in config.json and is rebuilt by ``load_pruned``
(``greenlm.models.load_classifier`` dispatches to it)::

    "greenlm_heads_per_layer": [12, 7, ...], "greenlm_intermediate_per_layer": [1536, 911, ...],
    "greenlm": {"format": "pruned", "pruned_from": {"layers": [...], "heads": [[...], ...]}, ...}

``num_attention_heads`` / ``intermediate_size`` keep the unpruned values (the head size is
hidden / num_attention_heads); ``num_hidden_layers`` is the number of layers kept.

``gated`` runs a model with a multiplicative gate on every head output, FFN neuron and layer
update: 0/1 gates give the masked model the pruned one must equal; gates that require grad give
Michel et al.'s importance (see ``greenlm.compress.importance``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from greenlm.common import GreenlmError, read_json

FORMAT = "pruned"
HEADS_FIELD = "greenlm_heads_per_layer"
INTERMEDIATE_FIELD = "greenlm_intermediate_per_layer"


@dataclass(frozen=True)
class Layout:
    """Where a family keeps its encoder parts (dotted paths) and its config's size fields."""

    layers: str  # from the base model to the ModuleList of layers
    self_attention: str  # from a layer to the module holding the q/k/v projections
    query: str  # the rest: from the self-attention module (q/k/v) or from the layer (others)
    key: str
    value: str
    attn_out: str  # from the layer: attention output projection [hidden, H*d]
    ffn_in: str  # from the layer: first FFN matrix [I, hidden]
    ffn_out: str  # from the layer: second FFN matrix [hidden, I]
    heads_field: str  # config field: heads per layer (unpruned)
    hidden_field: str
    layers_field: str


_BERT_LAYOUT = Layout(
    layers="encoder.layer", self_attention="attention.self", query="query", key="key", value="value",
    attn_out="attention.output.dense", ffn_in="intermediate.dense", ffn_out="output.dense",
    heads_field="num_attention_heads", hidden_field="hidden_size", layers_field="num_hidden_layers",
)
_DISTILBERT_LAYOUT = Layout(
    layers="transformer.layer", self_attention="attention", query="q_lin", key="k_lin", value="v_lin",
    attn_out="attention.out_lin", ffn_in="ffn.lin1", ffn_out="ffn.lin2",
    heads_field="n_heads", hidden_field="dim", layers_field="n_layers",
)
# model_type -> layout. MiniLM checkpoints are BERT models (model_type "bert").
LAYOUTS: dict[str, Layout] = {
    "bert": _BERT_LAYOUT,
    "roberta": _BERT_LAYOUT,
    "xlm-roberta": _BERT_LAYOUT,
    "electra": _BERT_LAYOUT,
    "distilbert": _DISTILBERT_LAYOUT,
}
SUPPORTED = "BERT (incl. MiniLM), RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT"


def layout_of(model_or_config) -> Layout:
    """The layout of a supported model or config; anything else is refused with the supported list."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    layout = LAYOUTS.get(str(model_type))
    if layout is None:
        raise GreenlmError(
            f"pruning does not know the attention layout of model type '{model_type}'; supported: {SUPPORTED}"
        )
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        raise GreenlmError(f"pruning supports encoders only; this {model_type} model is configured as a decoder")
    return layout


def _get(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path)


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    return _get(model.base_model, layout_of(model).layers)


def head_size(config) -> int:
    layout = layout_of(config)
    return getattr(config, layout.hidden_field) // getattr(config, layout.heads_field)


def heads_per_layer(model: nn.Module) -> list[int]:
    """Attention heads each layer has now (read from the query projections)."""
    layout, d = layout_of(model), head_size(model.config)
    return [_q(layer, layout).out_features // d for layer in encoder_layers(model)]


def intermediate_per_layer(model: nn.Module) -> list[int]:
    layout = layout_of(model)
    return [_get(layer, layout.ffn_in).out_features for layer in encoder_layers(model)]


def _q(layer: nn.Module, layout: Layout) -> nn.Linear:
    return _get(_get(layer, layout.self_attention), layout.query)


class HeadlessSelfAttention(nn.Module):
    """Self-attention of a layer whose heads were all removed.

    It keeps empty q/k/v projections ([0, hidden]) so the layer's shapes still read "0 heads", and
    returns an empty [B, T, 0] tensor: the attention output projection ([hidden, 0]) then yields its
    bias alone. DistilBERT keeps that projection inside its attention module, so it is held here.
    """

    def __init__(self, hidden: int, layout: Layout, out_proj: nn.Linear | None = None):
        super().__init__()
        for name in (layout.query, layout.key, layout.value):
            setattr(self, name, _linear(hidden, 0, True, None, None))
        self._out_name = None
        if out_proj is not None:
            self._out_name = layout.attn_out.rpartition(".")[2]
            setattr(self, self._out_name, out_proj)

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        empty = hidden_states.new_zeros(*hidden_states.shape[:-1], 0)  # [B, T, 0]
        if self._out_name is not None:
            return getattr(self, self._out_name)(empty), None
        return empty, None


def _linear(in_features: int, out_features: int, bias: bool, device, dtype) -> nn.Linear:
    with warnings.catch_warnings():  # an empty matrix (0 heads / 0 neurons left) has nothing to initialise
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        return nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping output features (dim=0) or input features (dim=1) at ``index``."""
    weight = linear.weight.detach().index_select(dim, index).clone()
    out_features, in_features = weight.shape
    new = _linear(in_features, out_features, linear.bias is not None, weight.device, weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach().index_select(0, index))
    new.weight.requires_grad_(linear.weight.requires_grad)
    if new.bias is not None:
        new.bias.requires_grad_(linear.bias.requires_grad)
    return new


def _head_index(keep: list[int], d: int, device) -> torch.Tensor:
    if not keep:
        return torch.empty(0, dtype=torch.long, device=device)
    return torch.cat([torch.arange(h * d, (h + 1) * d, device=device) for h in keep])


def _set_layer_heads(layer: nn.Module, layout: Layout, keep: list[int], d: int, hidden: int) -> None:
    """Keep only heads ``keep`` (current positions, in order) of one layer."""
    attention = _get(layer, layout.self_attention)
    device = _q(layer, layout).weight.device
    index = _head_index(keep, d, device)
    out_proj = _slice_linear(_get(layer, layout.attn_out), index, dim=1)
    if not keep:
        inner = out_proj if layout.attn_out.startswith(layout.self_attention + ".") else None
        _set(layer, layout.self_attention, HeadlessSelfAttention(hidden, layout, inner))
        if inner is None:
            _set(layer, layout.attn_out, out_proj)
        return
    if isinstance(attention, HeadlessSelfAttention):
        raise ValueError("a layer with no heads cannot get heads back")
    for name in (layout.query, layout.key, layout.value):
        setattr(attention, name, _slice_linear(getattr(attention, name), index, dim=0))
    _set(layer, layout.attn_out, out_proj)
    # transformers infers the head count from tensor shapes; keep its attributes truthful anyway.
    for attr in ("num_attention_heads", "n_heads"):
        if hasattr(attention, attr):
            setattr(attention, attr, len(keep))
    if hasattr(attention, "all_head_size"):
        attention.all_head_size = len(keep) * d


def _set_layer_neurons(layer: nn.Module, layout: Layout, keep: list[int]) -> None:
    ffn_in = _get(layer, layout.ffn_in)
    index = torch.tensor(keep, dtype=torch.long, device=ffn_in.weight.device)
    _set(layer, layout.ffn_in, _slice_linear(ffn_in, index, dim=0))
    _set(layer, layout.ffn_out, _slice_linear(_get(layer, layout.ffn_out), index, dim=1))


# ---- provenance and config -----------------------------------------------------------------------


def _greenlm_meta(config) -> dict:
    meta = getattr(config, "greenlm", None)
    return dict(meta) if isinstance(meta, dict) else {}


def pruned_from(model: nn.Module) -> dict:
    """Which layers and heads of the original (unpruned) model are still here: original indices."""
    meta = _greenlm_meta(model.config).get("pruned_from")
    if meta:
        return {"layers": list(meta["layers"]), "heads": [list(h) for h in meta["heads"]]}
    return {"layers": list(range(len(encoder_layers(model)))),
            "heads": [list(range(n)) for n in heads_per_layer(model)]}


def sync_config(model: nn.Module, provenance: dict | None = None) -> None:
    """Write the model's real per-layer shapes (and where they came from) into its config."""
    layout, config = layout_of(model), model.config
    setattr(config, HEADS_FIELD, heads_per_layer(model))
    setattr(config, INTERMEDIATE_FIELD, intermediate_per_layer(model))
    setattr(config, layout.layers_field, len(encoder_layers(model)))
    meta = _greenlm_meta(config)
    meta["format"] = FORMAT
    meta["pruned_from"] = provenance if provenance is not None else pruned_from(model)
    config.greenlm = meta


# ---- pruning ---------------------------------------------------------------------------------------


def _check_layer(model, layer: int) -> None:
    if not 0 <= layer < len(encoder_layers(model)):
        raise GreenlmError(f"layer {layer} does not exist: the model has {len(encoder_layers(model))} layers")


def prune_heads(model: nn.Module, remove: Mapping[int, Iterable[int]]) -> None:
    """Remove heads in place: ``remove[layer]`` lists current head positions of that layer."""
    layout, config = layout_of(model), model.config
    d, hidden = head_size(config), getattr(config, layout.hidden_field)
    provenance = pruned_from(model)
    layers = encoder_layers(model)
    for layer_index, heads in remove.items():
        _check_layer(model, layer_index)
        heads = set(int(h) for h in heads)
        count = _q(layers[layer_index], layout).out_features // d
        if any(not 0 <= h < count for h in heads):
            raise GreenlmError(f"layer {layer_index} has {count} heads; cannot remove {sorted(heads)}")
        if not heads:
            continue
        keep = [h for h in range(count) if h not in heads]
        _set_layer_heads(layers[layer_index], layout, keep, d, hidden)
        provenance["heads"][layer_index] = [provenance["heads"][layer_index][h] for h in keep]
    sync_config(model, provenance)


def prune_neurons(model: nn.Module, remove: Mapping[int, Iterable[int]]) -> None:
    """Remove FFN neurons in place: ``remove[layer]`` lists current neuron positions of that layer."""
    layout = layout_of(model)
    layers = encoder_layers(model)
    for layer_index, neurons in remove.items():
        _check_layer(model, layer_index)
        neurons = set(int(n) for n in neurons)
        count = _get(layers[layer_index], layout.ffn_in).out_features
        if any(not 0 <= n < count for n in neurons):
            raise GreenlmError(f"layer {layer_index} has {count} FFN neurons; cannot remove those asked")
        if neurons:
            _set_layer_neurons(layers[layer_index], layout, [n for n in range(count) if n not in neurons])
    sync_config(model)


def drop_layers(model: nn.Module, layers_to_drop: Iterable[int]) -> None:
    """Remove whole layers in place (current indices); at least one layer must stay."""
    layout = layout_of(model)
    drop = set(int(i) for i in layers_to_drop)
    for i in drop:
        _check_layer(model, i)
    layers = encoder_layers(model)
    if len(drop) >= len(layers):
        raise GreenlmError(
            f"dropping {len(drop)} of {len(layers)} layers would remove the whole encoder; keep at least one"
        )
    provenance = pruned_from(model)
    kept = [i for i in range(len(layers)) if i not in drop]
    new_layers = nn.ModuleList([layers[i] for i in kept])
    for position, layer in enumerate(new_layers):
        attention = _get(layer, layout.self_attention)
        if hasattr(attention, "layer_idx"):
            attention.layer_idx = position
    _set(model.base_model, layout.layers, new_layers)
    provenance = {"layers": [provenance["layers"][i] for i in kept], "heads": [provenance["heads"][i] for i in kept]}
    sync_config(model, provenance)


def first_layers_config(config, layers: int):
    """A copy of ``config`` describing only its first ``layers`` layers (BERT-style ``num_hidden_layers``), a
    pruned model's per-layer heads and FFN widths cut to match: what a model that stops after ``layers`` runs."""
    import copy

    shallow = copy.deepcopy(config)
    shallow.num_hidden_layers = layers
    for name in (HEADS_FIELD, INTERMEDIATE_FIELD):
        if getattr(shallow, name, None) is not None:
            setattr(shallow, name, list(getattr(shallow, name))[:layers])
    return shallow


def reshape_to_config(model: nn.Module) -> None:
    """Give a model freshly built from a pruned config the per-layer shapes its config records.

    Weights of the reshaped modules are placeholders: the caller loads the saved weights next.
    """
    layout, config = layout_of(model), model.config
    d, hidden = head_size(config), getattr(config, layout.hidden_field)
    layers = encoder_layers(model)
    heads = _config_list(config, HEADS_FIELD, len(layers), getattr(config, layout.heads_field))
    neurons = _config_list(config, INTERMEDIATE_FIELD, len(layers), None)
    for layer, n_heads, n_neurons in zip(layers, heads, neurons):
        if n_heads != _q(layer, layout).out_features // d:
            _set_layer_heads(layer, layout, list(range(n_heads)), d, hidden)
        if n_neurons != _get(layer, layout.ffn_in).out_features:
            _set_layer_neurons(layer, layout, list(range(n_neurons)))


def _config_list(config, name: str, layers: int, upper: int | None) -> list[int]:
    values = getattr(config, name, None)
    if (not isinstance(values, list) or len(values) != layers
            or not all(isinstance(v, int) and v >= 0 and (upper is None or v <= upper) for v in values)):
        raise GreenlmError(
            f"pruned model config: {name} must list one whole number per layer ({layers} layers), got {values!r};"
            " was config.json edited by hand?"
        )
    return values


# ---- gates: the masked model, and gradients for importance ---------------------------------------


@contextlib.contextmanager
def gated(model: nn.Module, *, heads: list[torch.Tensor] | None = None, neurons: list[torch.Tensor] | None = None,
          layers: torch.Tensor | None = None) -> Iterator[None]:
    """Run ``model`` with multiplicative gates (Michel et al. 2019's xi), removed on exit.

    heads[l]: [H_l] or [B, H_l], multiplies each head's output before the attention output projection;
    neurons[l]: [I_l] or [B, I_l], multiplies each FFN neuron's activation before the second FFN matrix;
    layers: [L] or [B, L], scales each layer's update: out = x + g * (layer(x) - x).
    Gates of 0/1 give the masked model; gates that require grad give importance gradients.
    """
    layout = layout_of(model)
    d = head_size(model.config)
    handles = []
    try:
        for i, layer in enumerate(encoder_layers(model)):
            if heads is not None and heads[i].shape[-1] > 0:
                handles.append(_get(layer, layout.attn_out).register_forward_pre_hook(_head_hook(heads[i], d)))
            if neurons is not None and neurons[i].shape[-1] > 0:
                handles.append(_get(layer, layout.ffn_out).register_forward_pre_hook(_neuron_hook(neurons[i])))
            if layers is not None:
                gate = layers[..., i]  # [] or [B]
                handles.append(layer.register_forward_hook(_layer_hook(gate), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _per_example(gate: torch.Tensor, trailing: int) -> torch.Tensor:
    """[G] -> [1, (1,)*trailing..., G] or [B, G] -> [B, 1, ..., G] (broadcast over positions)."""
    batch = gate.shape[0] if gate.dim() == 2 else 1
    return gate.reshape(batch, *([1] * trailing), gate.shape[-1])


def _head_hook(gate: torch.Tensor, d: int):
    def hook(module, args):
        x = args[0]  # [B, T, H*d]
        g = _per_example(gate, 1).unsqueeze(-1).to(x.dtype)  # [B|1, 1, H, 1]
        gated_x = (x.view(*x.shape[:-1], -1, d) * g).reshape(x.shape)
        return (gated_x, *args[1:])

    return hook


def _neuron_hook(gate: torch.Tensor):
    def hook(module, args):
        x = args[0]  # [B, T, I]
        return (x * _per_example(gate, 1).to(x.dtype), *args[1:])

    return hook


def _layer_hook(gate: torch.Tensor):
    def hook(module, args, kwargs, output):
        x = args[0] if args else kwargs["hidden_states"]  # [B, T, hidden]
        out = output[0] if isinstance(output, tuple) else output
        g = gate.reshape(-1, 1, 1).to(out.dtype)  # [B|1, 1, 1]
        mixed = x + g * (out - x)
        return (mixed, *output[1:]) if isinstance(output, tuple) else mixed

    return hook


# ---- loading a saved pruned folder -----------------------------------------------------------------


def load_pruned(source, *, labels=None):
    """Rebuild a pruned classifier from its folder (registered in ``models.loading._FORMAT_LOADERS``)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from greenlm.models.loading import _quiet_transformers, load_rebuilt_weights, model_config, relabel_config

    folder = Path(source.location)
    config = model_config(folder)
    layout_of(config)
    notes = relabel_config(config, labels)
    with _quiet_transformers():
        model = AutoModelForSequenceClassification.from_config(config)
    reshape_to_config(model)
    return load_rebuilt_weights(model, _read_weights(folder, load_file), folder=folder, what="pruned model",
                                notes=notes, source=source)


def _read_weights(folder: Path, load_file) -> dict[str, torch.Tensor]:
    single = folder / "model.safetensors"
    if single.is_file():
        return load_file(str(single))
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        raise GreenlmError(f"pruned model folder '{folder}' has no model.safetensors")
    shards = sorted(set(read_json(index)["weight_map"].values()))
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(load_file(str(folder / shard)))
    return state
