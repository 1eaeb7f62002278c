"""BERT-family encoders whose self-attention grows linearly with length: RFA, Performer or ABC in place of softmax.

    spec = AttentionSpec.parse("rfa:features=64")
    swap_attention(model, spec)          # every layer's self-attention -> LinearSelfAttention, weights kept
    extend_positions(model, 4096)        # optional: inputs longer than the pre-trained position table

``LinearSelfAttention`` takes the place of transformers' ``BertSelfAttention`` (the same ``forward`` signature in
transformers 5: hidden states [B, N, hidden] and the mask the model built, returning (output [B, N, H·d], None))
and keeps the original ``query`` / ``key`` / ``value`` projections, so a converted model starts from the trained
weights (Kasai et al. 2021, "Finetuning Pretrained Transformers into RNNs": swap, then fine-tune). What it adds:

- rfa: ``projection`` [D, d] (a persistent buffer: saved, so a reloaded model predicts identically) and
  ``inv_sigma`` [H] (learned 1/sigma per head, RFA's learned variance; initialised to 1);
- performer: ``projection`` [m, d] (persistent buffer);
- t2r: ``feature_weight`` [H, m, d] and ``feature_bias`` [H, m] (learned; the weight starts as orthogonal random
  rows of unit length from ``seed``, the bias at 0);
- abc: ``control`` = Linear(hidden, H·S): the control c_i = W_phi x_i of ABC_MLP from the layer's input.

Attention-probability dropout has no counterpart (no probabilities are formed) and is not applied. With
``redraw=per_forward`` the random projection is drawn afresh at every training forward (from torch's generator,
which greenlm's training loop seeds) and kept in the buffer; evaluation uses the buffer as it is.

The mask: transformers 5 hands self-attention a 4-D mask built for ``config._attn_implementation``: boolean
[B, 1, N, N] (True = attend) for "sdpa", additive float [B, 1, N, N] (0 or a large negative) for "eager", or None
when nothing is padded. ``key_padding_mask`` turns either into the [B, N] key mask the kernels take. Flex and
flash attention build other mask objects, so ``swap_attention`` sets the model to "sdpa".

Saved folders: config.json holds ``"greenlm": {"format": "linear_attention", "attention": {...}}``;
``load_linear_attention`` (registered in ``greenlm.models.loading``) rebuilds the architecture and loads the
weights, so ``eval``, ``predict``, ``bench`` and the report open it like any other folder.

Positions beyond the pre-trained table (``extend_positions``): the learned table [P, hidden] is copied
repeatedly into a longer one, as Longformer initialises its 4,096 positions from RoBERTa's 512 (Beltagy et
al. 2020, sec. 5): position p takes row ``offset + (p - offset) mod (P - offset)`` (offset: the rows RoBERTa
reserves below its first position, 0 for BERT). Fine-tuning on long inputs then adapts the copies.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from greenlm.common import GreenlmError, read_json_cache
from greenlm.models import attention_kernels as ak
from greenlm.models.attention_spec import AttentionSpec

FORMAT = "linear_attention"
# model_type -> how far its position ids are offset (RoBERTa-style models reserve padding_idx + 1 rows)
SUPPORTED_TYPES = {"bert": 0, "roberta": 2, "xlm-roberta": 2, "camembert": 2, "electra": 0}
SUPPORTED = "BERT (incl. MiniLM), RoBERTa, XLM-RoBERTa, CamemBERT, ELECTRA"
_MASK_FLOOR = -1e3  # additive masks use a large negative (finfo.min, or -10000 in older code); real keys use 0


def key_padding_mask(attention_mask, batch: int, length: int) -> torch.Tensor | None:
    """The [B, N] key mask (True = real token) from what transformers passes to self-attention; None: no padding."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor):
        raise GreenlmError(f"linear attention got a {type(attention_mask).__name__} mask; run the model with"
                           " attn_implementation 'sdpa' or 'eager'")
    if attention_mask.dim() == 2:  # [B, N] as a tokenizer gives it
        keep = attention_mask.to(torch.bool) if attention_mask.dtype == torch.bool else attention_mask != 0
    elif attention_mask.dim() == 4:  # [B, 1, N_q, N_k]: a key is real when some query may attend to it
        allowed = attention_mask if attention_mask.dtype == torch.bool else attention_mask > _MASK_FLOOR
        keep = allowed.any(dim=-2)[:, 0]
    else:
        raise GreenlmError(f"linear attention: unexpected attention mask of shape {tuple(attention_mask.shape)}")
    keep = keep.expand(batch, length)
    return None if bool(keep.all()) else keep


class LinearSelfAttention(nn.Module):
    """Self-attention of one layer through an RFA, Performer, T2R or ABC kernel ([B, N, hidden] -> [B, N, H·d])."""

    def __init__(self, original: nn.Module, spec: AttentionSpec, layer_index: int, hidden_size: int):
        super().__init__()
        if not spec.linear:
            raise GreenlmError("LinearSelfAttention needs a linear attention kind (rfa, performer, t2r, abc)")
        self.spec, self.layer_index = spec, layer_index
        self.query, self.key, self.value = original.query, original.key, original.value  # trained weights, kept
        self.attention_head_size = original.attention_head_size
        self.num_attention_heads = self.query.out_features // self.attention_head_size
        self.scaling = getattr(original, "scaling", self.attention_head_size ** -0.5)
        self.is_causal = False
        weight = self.query.weight
        d, heads = self.attention_head_size, self.num_attention_heads
        if spec.kind in ("rfa", "performer"):
            generator = torch.Generator().manual_seed(spec.seed + layer_index)
            projection = ak.random_projection(spec.features, d, orthogonal=spec.orthogonal, generator=generator)
            self.register_buffer("projection", projection.to(weight.device, weight.dtype), persistent=True)
        if spec.kind == "rfa":
            self.inv_sigma = nn.Parameter(torch.ones(heads, device=weight.device, dtype=weight.dtype))
        if spec.kind == "t2r":
            generator = torch.Generator().manual_seed(spec.seed + layer_index)
            rows = torch.stack([ak.random_projection(spec.features, d, generator=generator) for _ in range(heads)])
            rows = torch.nn.functional.normalize(rows, dim=-1)  # [H, m, d] unit rows: phi's scale cancels in (*)
            self.feature_weight = nn.Parameter(rows.to(weight.device, weight.dtype))
            self.feature_bias = nn.Parameter(torch.zeros(heads, spec.features, device=weight.device, dtype=weight.dtype))
        if spec.kind == "abc":
            self.control = nn.Linear(hidden_size, heads * spec.k, device=weight.device, dtype=weight.dtype)
            with torch.random.fork_rng():
                torch.manual_seed(spec.seed + layer_index)
                nn.init.normal_(self.control.weight, std=0.02)  # BERT's initializer_range
                nn.init.zeros_(self.control.bias)

    def redraw(self) -> None:
        """A fresh random projection (torch's global generator) in place of the current one."""
        fresh = ak.random_projection(self.spec.features, self.attention_head_size, orthogonal=self.spec.orthogonal)
        self.projection.copy_(fresh.to(self.projection.dtype))

    def forward(self, hidden_states: torch.Tensor, attention_mask=None, cache=None, **kwargs):
        if cache is not None or kwargs.get("encoder_hidden_states") is not None:
            raise GreenlmError("linear attention supports encoder self-attention only (no cache, no cross-attention)")
        batch, length, _ = hidden_states.shape
        heads, d = self.num_attention_heads, self.attention_head_size

        def split(x):  # [B, N, H·d] -> [B, H, N, d]
            return x.view(batch, length, heads, d).transpose(1, 2)

        q, k, v = split(self.query(hidden_states)), split(self.key(hidden_states)), split(self.value(hidden_states))
        key_mask = key_padding_mask(attention_mask, batch, length)
        kind = self.spec.kind
        if kind in ("rfa", "performer") and self.training and self.spec.redraw == "per_forward":
            with torch.no_grad():
                self.redraw()
        if kind == "rfa":
            out = ak.rfa_attention(q, k, v, self.projection, key_mask, inv_sigma=self.inv_sigma)
        elif kind == "performer":
            out = ak.performer_attention(q, k, v, self.projection, key_mask, scaling=self.scaling)
        elif kind == "t2r":
            out = ak.t2r_attention(q, k, v, self.feature_weight, self.feature_bias, key_mask)
        else:
            control = self.control(hidden_states).view(batch, length, heads, self.spec.k).transpose(1, 2)
            out = ak.abc_attention(q, k, v, control, key_mask, scaling=self.scaling)  # control: [B, H, N, S]
        return out.transpose(1, 2).reshape(batch, length, heads * d), None


# ---- swapping -------------------------------------------------------------------------------------


def _meta(config) -> dict:
    meta = getattr(config, "greenlm", None)
    return dict(meta) if isinstance(meta, dict) else {}


def kept_metadata(config) -> dict:
    """The greenlm metadata a model's own attention and positions need when a method rewrites the rest of it."""
    meta = _meta(config)
    keys = ("format", "attention", "positions") if meta.get("format") == FORMAT else ("positions",)
    return {k: meta[k] for k in keys if k in meta}


def check_convertible(model_or_config) -> None:
    """Refuse, in one line, a model whose self-attention greenlm cannot replace."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_TYPES:
        raise GreenlmError(f"cannot convert the attention of model type '{model_type}'; supported: {SUPPORTED}")
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        raise GreenlmError(f"attention conversion supports encoders only; this {model_type} model is a decoder")
    fmt = _meta(config).get("format")
    if fmt not in (None, FORMAT):
        raise GreenlmError(f"cannot convert the attention of a greenlm '{fmt}' model; convert the model it came from")


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, "base_model", model)
    return base.encoder.layer


def attention_of(model: nn.Module) -> AttentionSpec:
    """The attention the model runs now."""
    for layer in encoder_layers(model):
        if isinstance(layer.attention.self, LinearSelfAttention):
            return layer.attention.self.spec
    return AttentionSpec()


def swap_attention(model: nn.Module, spec: AttentionSpec | str) -> nn.Module:
    """Replace every layer's self-attention by ``spec``'s kind in place (softmax: nothing changes); returns ``model``.

    Works on any BERT-family model with an encoder (classifiers, masked LMs, the bare encoder)."""
    spec = AttentionSpec.parse(spec)
    check_convertible(model)
    current = attention_of(model)
    if not spec.linear:
        if current.linear:
            raise GreenlmError(f"this model already runs {current.describe()} attention; it cannot go back to softmax")
        return model
    if current.linear:
        raise GreenlmError(f"this model already runs {current.describe()} attention; convert the softmax model instead")
    config = model.config
    if getattr(config, "_attn_implementation", None) not in ("eager", "sdpa"):
        model.set_attn_implementation("sdpa")  # the masks key_padding_mask understands
    for index, layer in enumerate(encoder_layers(model)):
        layer.attention.self = LinearSelfAttention(layer.attention.self, spec, index, config.hidden_size)
    meta = _meta(config)
    meta.update(format=FORMAT, attention=spec.to_dict())
    config.greenlm = meta
    return model


def calibrate_rfa(model: nn.Module, batch: dict, *, limits: tuple[float, float] = (0.5, 4.0)) -> list[list[float]]:
    """Start RFA's temperature where softmax was: 1/sigma^2 = mean |q| x mean |k| x scaling per head, on ``batch``.

    Softmax scores are |q||k| cos(q, k) s; RFA's are cos(q, k) / sigma^2 on unit vectors, so this choice keeps the
    typical score size (clamped to ``limits`` for 1/sigma: larger values need many more random features). Returns
    the chosen 1/sigma per layer and head. Fine-tuning goes on learning sigma."""
    layers = [layer.attention.self for layer in encoder_layers(model)]
    if not all(isinstance(a, LinearSelfAttention) and a.spec.kind == "rfa" for a in layers):
        raise GreenlmError("calibrate_rfa needs a model whose every layer runs rfa attention")
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(index):
        def capture(module, args, kwargs, output):
            hidden = args[0] if args else kwargs["hidden_states"]
            b, n, _ = hidden.shape
            heads, d = module.num_attention_heads, module.attention_head_size
            q = module.query(hidden).view(b, n, heads, d).norm(dim=-1)  # [B, N, H]
            k = module.key(hidden).view(b, n, heads, d).norm(dim=-1)
            keep = batch.get("attention_mask")
            weight = keep.to(q.dtype)[..., None] if keep is not None else torch.ones_like(q[..., :1])
            seen[index] = ((q * weight).sum((0, 1)) / weight.sum((0, 1)), (k * weight).sum((0, 1)) / weight.sum((0, 1)))
        return capture

    handles = [a.register_forward_hook(hook(i), with_kwargs=True) for i, a in enumerate(layers)]
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    chosen = []
    with torch.no_grad():
        for index, attention in enumerate(layers):
            q_norm, k_norm = seen[index]
            inv_sigma = (q_norm * k_norm * attention.scaling).sqrt().clamp(*limits)
            attention.inv_sigma.copy_(inv_sigma.to(attention.inv_sigma.dtype))
            chosen.append([round(float(v), 4) for v in inv_sigma])
    return chosen


# ---- positions ------------------------------------------------------------------------------------


def position_limit(config) -> int:
    """Tokens per input the position table allows."""
    return config.max_position_embeddings - SUPPORTED_TYPES.get(getattr(config, "model_type", ""), 0)


def extend_positions(model: nn.Module, tokens: int) -> bool:
    """Make room for inputs of ``tokens`` tokens by copying the learned position table (Longformer's initialisation).

    Returns False when the table is long enough already. Updates ``max_position_embeddings`` and records
    ``"positions": {"extended_from": P, "init": "copied"}`` in the config's greenlm metadata."""
    config = model.config
    check_convertible(config)
    if tokens < 1:
        raise GreenlmError(f"positions to extend to must be >= 1, got {tokens}")
    if tokens <= position_limit(config):
        return False
    offset = SUPPORTED_TYPES[config.model_type]
    embeddings = getattr(model, "base_model", model).embeddings
    old = embeddings.position_embeddings  # [P, hidden]
    rows, new_rows = old.num_embeddings, tokens + offset
    period = rows - offset
    index = torch.arange(new_rows, device=old.weight.device)
    index = torch.where(index < offset, index, offset + (index - offset) % period)  # [P'] rows of the old table
    new = nn.Embedding(new_rows, old.embedding_dim, padding_idx=old.padding_idx, device=old.weight.device,
                       dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight[index])
    embeddings.position_embeddings = new
    ids = torch.arange(new_rows, device=old.weight.device).expand((1, -1))
    embeddings.register_buffer("position_ids", ids, persistent=False)
    if hasattr(embeddings, "token_type_ids"):
        embeddings.register_buffer("token_type_ids", torch.zeros(ids.size(), dtype=torch.long, device=ids.device),
                                   persistent=False)
    meta = _meta(config)
    first = meta.get("positions", {}).get("extended_from", rows)
    meta["positions"] = {"extended_from": first, "to": new_rows, "init": "copied"}
    config.greenlm = meta
    config.max_position_embeddings = new_rows
    return True


def check_length(config, tokens: int, what: str = "input") -> None:
    """Refuse ``tokens`` above the position table: one line naming the fix."""
    limit = position_limit(config)
    if tokens > limit:
        raise GreenlmError(f"{what} length {tokens} is above what the model's positions allow ({limit}); extend the"
                           " positions first (greenlm convert-attention --max-positions N)")


# ---- loading a saved folder ------------------------------------------------------------------------


def load_linear_attention(source, *, labels=None):
    """Rebuild a classifier with linear attention from its folder (registered in ``models.loading._FORMAT_LOADERS``)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from greenlm.models.loading import _quiet_transformers, load_rebuilt_weights, model_config, relabel_config
    from greenlm.models.pruned import _read_weights

    folder = Path(source.location)
    config = model_config(folder)
    check_convertible(config)
    try:
        spec = AttentionSpec.from_dict(_meta(config)["attention"])
    except (KeyError, TypeError):
        raise GreenlmError(f"model folder '{folder}': config.json names no attention settings") from None
    notes = relabel_config(config, labels)
    meta = _meta(config)
    meta.pop("format", None)
    config.greenlm = meta  # swap_attention writes the format back
    with _quiet_transformers():
        model = AutoModelForSequenceClassification.from_config(config)
    swap_attention(model, spec)
    return load_rebuilt_weights(model, _read_weights(folder, load_file), folder=folder, what="linear-attention model",
                                notes=notes, source=source)


def describe_folder(folder: str | Path) -> dict | None:
    """The attention settings a saved folder records (None: softmax / not a greenlm linear-attention folder)."""
    meta = (read_json_cache(Path(folder) / "config.json") or {}).get("greenlm") or {}
    return meta.get("attention") if meta.get("format") == FORMAT else None
