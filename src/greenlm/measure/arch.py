"""Read a transformer encoder's shape from a config object, a model, a folder or a config.json.

Parameters and FLOPs are both computed from one flat description, ``EncoderSpec``: sizes per layer
(so pruned heads / FFN units and dropped layers are exact), the embedding width (ELECTRA's
``embedding_size``) and which head sits on top. Families: BERT, RoBERTa (and XLM-R, CamemBERT),
DistilBERT, ELECTRA.

Pruned models: a config may carry ``greenlm_heads_per_layer: list[int]`` and
``greenlm_intermediate_per_layer: list[int]`` (written by greenlm's pruning); an older Hugging Face
``pruned_heads`` mapping is honoured too. A model instance is read from its real module shapes, so a
pruned model needs neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from greenlm.common import GreenlmError, read_json

# model_type -> family whose layout (module names, heads) it shares
FAMILIES = {
    "bert": "bert",
    "roberta": "roberta",
    "xlm-roberta": "roberta",
    "camembert": "roberta",
    "distilbert": "distilbert",
    "electra": "electra",
}

HEADS = (
    "base",  # the bare encoder (BertModel...): BERT/RoBERTa add their pooler
    "sequence-classification",  # a classifier on the first token
    "token-classification",  # a classifier on every position
    "question-answering",  # start/end logits on every position
    "masked-lm",  # vocabulary logits on every position (ELECTRA's generator)
    "pretraining",  # BERT: MLM on every position + next-sentence head on the pooled token
    "electra-discriminator",  # ELECTRA: replaced-token score on every position
)

_CLASS_SUFFIX_TO_HEAD = (
    ("ForSequenceClassification", "sequence-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "masked-lm"),
    ("ForPreTraining", "pretraining"),
    ("Model", "base"),
)


@dataclass(frozen=True)
class EncoderSpec:
    """The shapes that decide parameters and FLOPs of one encoder plus its head."""

    family: str
    model_type: str
    vocab_size: int
    hidden_size: int
    embedding_size: int  # = hidden_size except ELECTRA with embedding_size set
    max_positions: int
    type_vocab_size: int  # 0 for DistilBERT (no segment embeddings)
    head_dim: int
    heads_per_layer: tuple[int, ...]
    intermediate_per_layer: tuple[int, ...]
    head: str
    num_labels: int
    pooler: bool
    tied_embeddings: bool
    described_as: str  # what was read, for reports: "config.json at ...", "BertModel instance"
    notes: tuple[str, ...] = field(default=())
    attention: tuple = ()  # linear self-attention (greenlm.models.linear_attention): sorted (key, value) pairs
    # of config.greenlm["attention"], e.g. (("features", 64), ("kind", "rfa"), ...); () = softmax

    @property
    def attention_settings(self) -> dict:
        return dict(self.attention) or {"kind": "softmax"}

    @property
    def num_layers(self) -> int:
        return len(self.heads_per_layer)

    @property
    def max_seq_len(self) -> int:
        # RoBERTa-style position ids start after the padding index (pad_token_id=1): 2 slots unused
        return self.max_positions - 2 if self.family == "roberta" else self.max_positions


# ---- entry point ---------------------------------------------------------------------------------


def read_spec(model_or_config, *, head: str = "auto", num_labels: int | None = None) -> EncoderSpec:
    """Describe ``model_or_config``: a transformers config, a model, a folder or a config.json path."""
    if head != "auto" and head not in HEADS:
        raise GreenlmError(f"unknown head {head!r}; use one of: auto, {', '.join(HEADS)}")
    if isinstance(model_or_config, (str, Path)):
        config, described_as = _load_config(Path(model_or_config))
        return _spec_from_config(config, head, num_labels, described_as, model=None)
    if _is_module(model_or_config):
        config = getattr(model_or_config, "config", None)
        if config is None:
            raise GreenlmError(
                f"{type(model_or_config).__name__} has no .config: pass a Hugging Face model, config or config.json"
            )
        return _spec_from_config(
            config, head, num_labels, f"{type(model_or_config).__name__} instance", model=model_or_config
        )
    if hasattr(model_or_config, "model_type"):
        return _spec_from_config(model_or_config, head, num_labels, f"{type(model_or_config).__name__}", model=None)
    raise GreenlmError(
        f"cannot read a model shape from {type(model_or_config).__name__}: pass a Hugging Face config, "
        "a model, a model folder or a config.json path"
    )


def _is_module(obj) -> bool:
    return hasattr(obj, "named_modules") and hasattr(obj, "named_parameters")


# ---- loading config.json -------------------------------------------------------------------------


def _load_config(path: Path):
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise GreenlmError(f"{path.parent} has no config.json: pass a Hugging Face model folder or a config.json")
    elif not path.exists():
        raise GreenlmError(f"{path} does not exist: pass a Hugging Face model folder or a config.json")
    try:
        raw = read_json(path, hint="pass a Hugging Face model folder or its config.json")
    except (OSError, UnicodeDecodeError) as err:
        raise GreenlmError(f"cannot read {path}: {err}") from None
    # greenlm's own formats (pruned, early exit, linear attention) keep their architecture's type here
    model_type = (raw.get("greenlm") or {}).get("base_model_type") or raw.get("model_type")
    if not model_type:
        raise GreenlmError(f"{path} has no model_type: is it a Hugging Face config.json?")
    _family_of(model_type, str(path))
    try:
        from transformers import AutoConfig
    except ImportError:
        raise GreenlmError("reading a config.json needs the transformers package: pip install transformers") from None
    fields = {k: v for k, v in raw.items() if k not in ("model_type", "transformers_version")}
    try:
        config = AutoConfig.for_model(model_type, **fields)  # fills in the defaults of that model type
    except (ValueError, TypeError) as err:
        raise GreenlmError(f"{path}: transformers cannot build a {model_type} config from it ({err})") from None
    return config, f"config.json at {path}"


def _family_of(model_type: str, where: str) -> str:
    family = FAMILIES.get(str(model_type).lower())
    if family is None:
        raise GreenlmError(
            f"{where}: model_type {model_type!r} is not supported; supported: {', '.join(sorted(FAMILIES))}"
        )
    return family


# ---- config (+ optional model) -> spec -----------------------------------------------------------


def _spec_from_config(config, head: str, num_labels, described_as: str, model) -> EncoderSpec:
    model_type = getattr(config, "model_type", None)
    family = _family_of(model_type, described_as)
    notes: list[str] = []
    if family == "distilbert":
        hidden = int(config.dim)
        layers = int(config.n_layers)
        heads = int(config.n_heads)
        intermediate = int(config.hidden_dim)
        type_vocab = 0
    else:
        hidden = int(config.hidden_size)
        layers = int(config.num_hidden_layers)
        heads = int(config.num_attention_heads)
        intermediate = int(config.intermediate_size)
        type_vocab = int(getattr(config, "type_vocab_size", 2))
    embedding = int(getattr(config, "embedding_size", None) or hidden) if family == "electra" else hidden
    if heads <= 0 or hidden % heads:
        raise GreenlmError(f"{described_as}: hidden size {hidden} is not a multiple of {heads} attention heads")
    head_dim = hidden // heads
    heads_per_layer = [heads] * layers
    intermediate_per_layer = [intermediate] * layers

    pruned = getattr(config, "pruned_heads", None) or {}
    for layer, gone in dict(pruned).items():
        index = int(layer)
        if 0 <= index < layers:
            heads_per_layer[index] = heads - len(set(gone))
    heads_per_layer = _per_layer(config, "greenlm_heads_per_layer", heads_per_layer, layers, described_as)
    intermediate_per_layer = _per_layer(
        config, "greenlm_intermediate_per_layer", intermediate_per_layer, layers, described_as
    )
    vocab = int(config.vocab_size)

    if model is not None:  # the modules are the truth: pruning and layer dropping show in their shapes
        heads_per_layer, intermediate_per_layer = _shapes_from_model(model, head_dim, described_as)
        vocab, embedding = _embedding_shape(model, vocab, embedding)

    if head == "auto":
        head = _head_from_class_names(model, config, family, notes)
    if head == "pretraining" and family == "electra":
        head = "electra-discriminator"
    if head == "electra-discriminator" and family != "electra":
        raise GreenlmError(f"head 'electra-discriminator' needs an ELECTRA model, got {model_type}")
    if head == "pretraining" and family != "bert":
        raise GreenlmError(f"head 'pretraining' is BERT's (MLM + next sentence); {model_type} has none: use masked-lm")
    if head == "question-answering":
        labels = 2
    elif num_labels is not None:
        labels = int(num_labels)
    else:
        labels = int(getattr(config, "num_labels", 2))
    pooler = _has_pooler(model, family, head)
    tied = bool(getattr(config, "tie_word_embeddings", True))
    return EncoderSpec(
        family=family,
        model_type=str(model_type),
        vocab_size=vocab,
        hidden_size=hidden,
        embedding_size=embedding,
        max_positions=int(config.max_position_embeddings),
        type_vocab_size=type_vocab,
        head_dim=head_dim,
        heads_per_layer=tuple(heads_per_layer),
        intermediate_per_layer=tuple(intermediate_per_layer),
        head=head,
        num_labels=labels,
        pooler=pooler,
        tied_embeddings=tied,
        described_as=described_as,
        notes=tuple(notes),
        attention=_linear_attention(config),
    )


def _linear_attention(config) -> tuple:
    """The settings of a greenlm linear-attention model (its config's greenlm metadata), as sorted pairs."""
    meta = getattr(config, "greenlm", None)
    if not isinstance(meta, dict) or meta.get("format") != "linear_attention":
        return ()
    settings = meta.get("attention") or {}
    return tuple(sorted(settings.items())) if settings.get("kind", "softmax") != "softmax" else ()


def _per_layer(config, name: str, default: list[int], layers: int, where: str) -> list[int]:
    values = getattr(config, name, None)
    if values is None:
        return default
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise GreenlmError(f"{where}: {name} must be a list of whole numbers >= 0, got {values!r}")
    if len(values) != layers:
        raise GreenlmError(f"{where}: {name} has {len(values)} entries but the model has {layers} layers")
    return list(values)


_QUERY = re.compile(r"(?:^|\.)layer\.(\d+)\.attention\.(?:self\.query|q_lin)$")
_FFN_IN = re.compile(r"(?:^|\.)layer\.(\d+)\.(?:intermediate\.dense|ffn\.lin1)$")


def _shapes_from_model(model, head_dim: int, where: str) -> tuple[list[int], list[int]]:
    heads: dict[int, int] = {}
    ffn: dict[int, int] = {}
    for name, module in model.named_modules():
        if (m := _QUERY.search(name)) and hasattr(module, "out_features"):
            heads[int(m.group(1))] = module.out_features // head_dim
        elif (m := _FFN_IN.search(name)) and hasattr(module, "out_features"):
            ffn[int(m.group(1))] = module.out_features
    if not heads or sorted(heads) != list(range(len(heads))) or sorted(ffn) != sorted(heads):
        raise GreenlmError(f"{where}: cannot find the encoder layers (attention query / FFN linears) in the model")
    return [heads[i] for i in range(len(heads))], [ffn[i] for i in range(len(ffn))]


def _embedding_shape(model, vocab: int, embedding: int) -> tuple[int, int]:
    for name, param in model.named_parameters():
        if name.endswith("embeddings.word_embeddings.weight"):
            return int(param.shape[0]), int(param.shape[1])
    return vocab, embedding


def _head_from_class_names(model, config, family: str, notes: list[str]) -> str:
    if model is not None:
        names = [type(model).__name__]
    else:
        names = list(getattr(config, "architectures", None) or [])
    for name in names:
        for suffix, head in _CLASS_SUFFIX_TO_HEAD:
            if name.endswith(suffix):
                return head
    if model is not None:
        raise GreenlmError(
            f"head of {names[0]} is not supported; pass head= one of {', '.join(HEADS)} to count it as one of those"
        )
    notes.append("the config names no architecture: counted with a sequence-classification head (pass head= to change)")
    return "sequence-classification"


def _has_pooler(model, family: str, head: str) -> bool:
    if model is not None:
        return any(".pooler." in f".{name}" for name, _ in model.named_parameters())
    # transformers' defaults: BERT keeps its pooler for these heads, RoBERTa only in the bare model
    if family == "bert":
        return head in ("base", "sequence-classification", "pretraining")
    if family == "roberta":
        return head == "base"
    return False
