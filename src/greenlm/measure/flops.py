"""FLOPs per example and for training, in two conventions, with a per-module breakdown.

``matmul`` (default): 2 FLOPs per multiply-add of every matrix product the model really runs,
nothing else. Attention scores (QK^T) and the weighted sum (AV) are counted, so sequence length
matters quadratically; embedding lookups are gathers (0 FLOPs); heads count only the positions they
read (a sequence classifier reads token 0, an MLM head every position). This is what
``torch.utils.flop_counter.FlopCounterMode`` reports for the eager forward pass (the tests check it
on tiny BERT, RoBERTa, DistilBERT and ELECTRA models). Training = 3 x forward: the backward pass of a
matrix product is two products of the same size (gradient of the input and of the weight).

``electra``: the accounting behind ELECTRA's efficiency tables (Clark et al. 2020, Table 1 and 2;
their public ``flops_computation.py``): dense one-hot embedding lookups (2*e*vocab per token),
position/segment one-hots over (seq_len + 2) rows, bias adds 1, residual adds 1, layer norm 5,
softmax 5, GELU 8, dropout 4 FLOPs per element; inference is "a classifier over every position"
(dense h x h + GELU + one logit at each token) whatever head the model has; training = 2 x forward
x batch x steps (backward counted equal to forward); ``pretraining="mlm"`` puts an MLM head on
15.625% of the positions; ``pretraining="electra"`` adds a generator (MLM) to a discriminator.
Where greenlm departs from that script, see docs/pricetag.md: layer norm after attention counted per
element (the script counts 5 per token), and pruned layers use their own head count.

Shapes in comments: s = seq_len, h = hidden, e = embedding width, k = kept heads x head_dim,
f = FFN width, V = vocab, L = labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from greenlm.common import GreenlmError
from greenlm.measure.arch import EncoderSpec, read_spec
from greenlm.measure.params import params_of_spec
from greenlm.measure.units import check_count

CONVENTIONS = ("matmul", "electra")
PRETRAINING = ("mlm", "electra")

# ELECTRA's per-element costs (flops_computation.py)
DROPOUT_FLOPS = 4  # random number, compare, mask multiply, rescale
LAYER_NORM_FLOPS = 5  # mean, variance (square + sum), scale, shift
GELU_FLOPS = 8
SOFTMAX_FLOPS = 5  # max-subtract, exp, sum, divide
MLM_OUTPUT_FRACTION = 0.15625  # ELECTRA's output_frac: share of positions with an MLM softmax


@dataclass(frozen=True)
class FlopReport:
    """FLOPs of one model at one sequence length. ``infer_flops_per_example`` is one forward pass."""

    model: str
    family: str
    head: str
    convention: str
    seq_len: int
    params: dict
    infer_flops_per_example: float
    infer_flops_by_module: dict
    train_flops_per_example: float | None = None
    train_steps: int | None = None
    batch_size: int | None = None
    pretraining: str | None = None
    train_flops: float | None = None
    notes: list = field(default_factory=list)

    @property
    def infer_flops(self) -> float:
        """Forward-pass FLOPs for one example (the name the CLI's JSON uses)."""
        return self.infer_flops_per_example

    def to_dict(self) -> dict:
        out = asdict(self)
        out["infer_flops"] = self.infer_flops_per_example
        return out


def count_flops(
    model_or_config,
    seq_len: int,
    *,
    convention: str = "matmul",
    train_steps: int | None = None,
    batch_size: int | None = None,
    pretraining: str | None = None,
    generator=None,
    head: str = "auto",
    num_labels: int | None = None,
) -> FlopReport:
    """FLOPs of a BERT / RoBERTa / DistilBERT / ELECTRA model or config at ``seq_len`` tokens.

    ``model_or_config``: a transformers config or model, a model folder or a config.json path.
    ``train_steps`` and ``batch_size`` (both or neither) give ``train_flops``; ``pretraining``
    ("mlm" or "electra", the latter with ``generator=``) picks the training head, else training is
    fine-tuning with the inference head. ``head`` overrides the head read from the model class or
    the config's ``architectures``.
    """
    if convention not in CONVENTIONS:
        raise GreenlmError(f"unknown FLOP convention {convention!r}; use one of: {', '.join(CONVENTIONS)}")
    seq_len = check_count(seq_len, "sequence length")
    if (train_steps is None) != (batch_size is None):
        raise GreenlmError("training FLOPs need both train steps and batch size (or neither)")
    if train_steps is not None:
        train_steps = check_count(train_steps, "train steps")
        batch_size = check_count(batch_size, "batch size")
    if pretraining is not None and pretraining not in PRETRAINING:
        raise GreenlmError(f"unknown pretraining objective {pretraining!r}; use one of: {', '.join(PRETRAINING)}")
    if (pretraining == "electra") != (generator is not None):
        raise GreenlmError("pretraining 'electra' needs a generator model or config (and only it takes one)")

    spec = read_spec(model_or_config, head=head, num_labels=num_labels)
    _check_seq_len(spec, seq_len)
    notes = list(spec.notes)
    forward = _forward_matmul if convention == "matmul" else _forward_electra
    infer_head = spec.head if convention == "matmul" else "classifier-every-position"
    infer_by_module = forward(spec, seq_len, infer_head)
    infer = sum(infer_by_module.values())

    train_per_example = None
    if train_steps is not None or pretraining is not None:
        train_per_example = _train_per_example(spec, seq_len, convention, pretraining, generator, notes)
    total_train = train_per_example * batch_size * train_steps if train_steps is not None else None
    if convention == "matmul":
        notes.append("matmul: 2 FLOPs per multiply-add of every matrix product run; training = 3 x forward")
    else:
        notes.append("electra: ELECTRA's accounting (Clark et al. 2020); training = 2 x forward")
    return FlopReport(
        model=spec.described_as,
        family=spec.family,
        head=spec.head,
        convention=convention,
        seq_len=seq_len,
        params=params_of_spec(spec),
        infer_flops_per_example=infer,
        infer_flops_by_module=infer_by_module,
        train_flops_per_example=train_per_example,
        train_steps=train_steps,
        batch_size=batch_size,
        pretraining=pretraining,
        train_flops=total_train,
        notes=notes,
    )


def _check_seq_len(spec: EncoderSpec, seq_len: int) -> None:
    if seq_len > spec.max_seq_len:
        raise GreenlmError(
            f"sequence length {seq_len} is longer than {spec.described_as} allows ({spec.max_seq_len} positions)"
        )


def _train_per_example(spec, seq_len, convention, pretraining, generator, notes) -> float:
    forward = _forward_matmul if convention == "matmul" else _forward_electra
    factor = 3 if convention == "matmul" else 2
    if pretraining is None:
        head = spec.head if convention == "matmul" else "classifier-every-position"
        return factor * sum(forward(spec, seq_len, head).values())
    if pretraining == "mlm":
        head = "masked-lm" if convention == "matmul" else "mlm-fraction"
        return factor * sum(forward(spec, seq_len, head).values())
    # ELECTRA: discriminator (replaced-token head on every position) + generator (MLM head)
    gen = read_spec(generator, head="masked-lm")
    _check_seq_len(gen, seq_len)
    if gen.vocab_size != spec.vocab_size:
        raise GreenlmError(f"generator vocabulary ({gen.vocab_size}) differs from the model's ({spec.vocab_size})")
    if convention == "matmul":
        disc = sum(forward(spec, seq_len, "electra-discriminator").values())
        gen_flops = sum(forward(gen, seq_len, "masked-lm").values())
    else:
        disc = sum(forward(spec, seq_len, "classifier-every-position").values())
        gen_flops = sum(forward(gen, seq_len, "mlm-fraction").values())
    notes.append(f"electra pretraining: generator read from {gen.described_as}")
    return factor * (disc + gen_flops)


# ---- matmul convention -----------------------------------------------------------------------------


def _forward_matmul(spec: EncoderSpec, s: int, head: str) -> dict:
    h, e, labels = spec.hidden_size, spec.embedding_size, spec.num_labels
    embeddings = 2 * s * e * h if e != h else 0  # ELECTRA's projection [s, e] @ [e, h]; lookups are gathers
    attention = ffn = 0
    for heads, f in zip(spec.heads_per_layer, spec.intermediate_per_layer):
        k = heads * spec.head_dim
        attention += 3 * 2 * s * h * k  # q, k, v: [s, h] @ [h, k]
        attention += token_mixing_flops(spec.attention_settings, s, heads, spec.head_dim, h)  # scores, weighted sum
        attention += 2 * s * k * h  # output dense [s, k] @ [k, h]
        ffn += 2 * 2 * s * h * f  # up [s, h] @ [h, f], down [s, f] @ [f, h]
    pooler = 2 * h * h if spec.pooler else 0  # dense on token 0

    if head == "base":
        head_flops = pooler
    elif head == "sequence-classification":
        inner = 0 if spec.family == "bert" else 2 * h * h  # RoBERTa/ELECTRA/DistilBERT dense on token 0
        head_flops = pooler + inner + 2 * h * labels
    elif head in ("token-classification", "question-answering"):
        head_flops = pooler + 2 * s * h * labels
    elif head == "masked-lm":
        head_flops = pooler + _mlm_matmul(spec, s)
    elif head == "pretraining":
        head_flops = pooler + _mlm_matmul(spec, s) + 2 * h * 2  # + next-sentence logits on the pooled token
    elif head == "electra-discriminator":
        head_flops = 2 * s * h * h + 2 * s * h  # dense h -> h and one logit, every position
    else:
        raise AssertionError(head)
    return {"embeddings": embeddings, "attention": attention, "ffn": ffn, "head": head_flops}


# ---- token mixing: softmax attention or a linear one ----------------------------------------------
# Per layer, after q, k, v and before the output dense. d = head_dim; m = feature count (RFA: 2 x features, sin and
# cos; Performer: features); S = ABC's memory slots. Softmax: O(s^2 d) per head; the linear kinds O(s m d) or
# O(s S d) (greenlm.models.attention_kernels; Peng et al. 2021, Choromanski et al. 2021, Peng et al. 2022).


FEATURE_KINDS = ("rfa", "performer", "t2r")  # kernelised attention: phi(q) (sum phi(k) v^T) / phi(q) . sum phi(k)


def _feature_count(settings: dict) -> int:
    return 2 * int(settings["features"]) if settings["kind"] == "rfa" else int(settings["features"])


def token_mixing_flops(settings: dict, s: int, heads: int, head_dim: int, hidden: int) -> int:
    """Matrix-product FLOPs (multiply-add = 2) of one layer's token mixing over a sequence of s tokens, what
    FlopCounterMode counts: ``settings`` is an attention's dict (``{"kind": "softmax"}``, ``{"kind": "rfa",
    "features": 64, ...}``, greenlm.models.attention_spec's to_dict)."""
    d, kind = head_dim, settings["kind"]
    if kind == "softmax":
        return heads * 2 * 2 * s * s * d  # scores [s, d] @ [d, s], weighted sum [s, s] @ [s, d]
    if kind in FEATURE_KINDS:
        m = _feature_count(settings)
        per_head = 2 * 2 * s * d * m  # feature maps of q and k: [s, d] @ [d, m]
        per_head += 2 * s * m * d  # state sum_i phi(k_i) v_i^T: [m, s] @ [s, d]
        per_head += 2 * s * m * d + 2 * s * m  # numerator phi(q) @ state, denominator phi(q) . sum_i phi(k_i)
        return heads * per_head
    if kind != "abc":
        raise GreenlmError(f"no FLOP formula for attention '{kind}'")
    slots = int(settings["k"])
    control = 2 * s * hidden * heads * slots  # control: Linear(hidden, heads x S) on every token
    return control + heads * 4 * 2 * s * slots * d  # K~ = phi^T K, V~ = phi^T V, scores q K~^T, weights @ V~


def _mixing_electra(spec: EncoderSpec, s: int, heads: int) -> float:
    """ELECTRA's convention, per token: products x 2, and the per-element costs around them (an element-wise
    feature function, sin or exp, counted 1 FLOP like a scale; the memory's softmax over S as softmax)."""
    d, settings = spec.head_dim, spec.attention_settings
    kind = settings["kind"]
    if kind == "softmax":
        # scores against s keys, softmax + dropout + 1/sqrt(d) scale, weighted sum (the script writes 2*h*s for the
        # sum: equal unless pruned)
        return 2 * heads * d * s + (SOFTMAX_FLOPS + DROPOUT_FLOPS + 1) * s * heads + 2 * heads * d * s
    if kind in FEATURE_KINDS:
        m = _feature_count(settings)
        per_head = 2 * (2 * d * m + m)  # q and k feature maps, their element-wise function
        per_head += 2 * m * d + m  # this token's share of the state and of the normaliser
        per_head += 2 * m * d + 2 * m + d  # numerator, denominator, the division
        return heads * per_head
    slots = int(settings["k"])
    control = 2 * spec.hidden_size * heads * slots + heads * slots * (SOFTMAX_FLOPS + 1)  # control, normalised
    return control + heads * (4 * 2 * slots * d + SOFTMAX_FLOPS * slots)


def _mlm_matmul(spec: EncoderSpec, s: int) -> int:
    h, e, v = spec.hidden_size, spec.embedding_size, spec.vocab_size
    if spec.family == "electra":
        return 2 * s * h * e + 2 * s * e * v  # generator_predictions h -> e, decoder e -> V
    return 2 * s * h * h + 2 * s * h * v  # transform h -> h, decoder h -> V


# ---- electra convention ----------------------------------------------------------------------------


def _forward_electra(spec: EncoderSpec, s: int, head: str) -> dict:
    h, e, v = spec.hidden_size, spec.embedding_size, spec.vocab_size
    per_token = 2 * e * v  # dense one-hot lookup [1, V] @ [V, e]
    per_token += 2 * e * (s + 2)  # position (s rows) and segment (2 rows) one-hots
    per_token += 2 * e  # adding them
    per_token += (LAYER_NORM_FLOPS + DROPOUT_FLOPS) * e
    if e != h:
        per_token += 2 * h * e + h  # projection e -> h and its bias
    embeddings = per_token * s

    attention = ffn = 0
    for heads, f in zip(spec.heads_per_layer, spec.intermediate_per_layer):
        k = heads * spec.head_dim
        attn = 3 * 2 * h * k + 3 * k  # q, k, v kernels and biases
        attn += _mixing_electra(spec, s, heads)  # scores, softmax, weighted sum (or their linear counterparts)
        attn += 2 * k * h + h  # output kernel and bias
        attn += (DROPOUT_FLOPS + 1 + LAYER_NORM_FLOPS) * h  # dropout, residual, layer norm (per element)
        mlp = 2 * h * f + f + GELU_FLOPS * f  # up kernel, bias, GELU
        mlp += 2 * h * f + h  # down kernel, bias
        mlp += (DROPOUT_FLOPS + 1 + LAYER_NORM_FLOPS) * h
        attention += attn * s
        ffn += mlp * s

    if head == "classifier-every-position":  # ELECTRA's get_binary_classification_flops
        head_flops = (2 * h * h + h + GELU_FLOPS * h + 2 * h) * s
    elif head == "mlm-fraction":  # MLM output on 15.625% of positions
        per_position = 2 * e * v  # output embedding multiply
        per_position += 2 * h * e + e  # dense h -> e and bias
        per_position += (GELU_FLOPS + LAYER_NORM_FLOPS) * e
        per_position += (SOFTMAX_FLOPS + 2) * v  # softmax over the vocabulary, target-word pick
        head_flops = MLM_OUTPUT_FRACTION * per_position * s
    else:
        raise AssertionError(head)
    return {"embeddings": embeddings, "attention": attention, "ffn": ffn, "head": head_flops}
