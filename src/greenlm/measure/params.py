"""Parameter counts: total, embedding / non-embedding, and by module (embeddings, attention, ffn, head).

``embedding`` means the lookup tables (token, position, segment), as in Kaplan et al. (2020), whose
"non-embedding parameters" exclude them. The ``embeddings`` *module* also holds the embedding
LayerNorm and ELECTRA's embedding projection. Tied weights (an MLM decoder sharing the token table)
are counted once, under embeddings.

A model is counted from its real parameters; a config is counted by formula from the same shapes
(``arch.EncoderSpec``), and the tests check that both agree for every supported family and head.
"""

from __future__ import annotations

import re

from greenlm.measure.arch import EncoderSpec, read_spec

MODULES = ("embeddings", "attention", "ffn", "head")

_IN_LAYER = re.compile(r"(?:^|\.)layer\.\d+\.")


def count_params(model_or_config, *, head: str = "auto", num_labels: int | None = None) -> dict:
    """Parameter counts of a model (its real tensors) or of a config/folder/config.json (by formula).

    Returns ``{"total", "embedding", "non_embedding", "by_module": {embeddings, attention, ffn, head},
    "counted_from"}``.
    """
    if hasattr(model_or_config, "named_parameters") and hasattr(model_or_config, "named_modules"):
        return _count_model(model_or_config)
    return params_of_spec(read_spec(model_or_config, head=head, num_labels=num_labels))


def _count_model(model) -> dict:
    lookup_ids = {
        id(module.weight)
        for module in model.modules()
        if type(module).__name__ == "Embedding" and getattr(module, "weight", None) is not None
    }
    by_module = dict.fromkeys(MODULES, 0)
    embedding = 0
    for name, param in model.named_parameters():  # shared (tied) tensors are listed once
        count = param.numel()
        by_module[_module_of(name)] += count
        if id(param) in lookup_ids:
            embedding += count
    total = sum(by_module.values())
    return {
        "total": total,
        "embedding": embedding,
        "non_embedding": total - embedding,
        "by_module": by_module,
        "counted_from": f"the parameters of a {type(model).__name__}",
    }


def _module_of(name: str) -> str:
    dotted = f".{name}"
    if ".embeddings." in dotted or ".embeddings_project." in dotted:
        return "embeddings"
    if _IN_LAYER.search(name):
        return "attention" if (".attention." in dotted or "sa_layer_norm" in name) else "ffn"
    return "head"


def params_of_spec(spec: EncoderSpec) -> dict:
    """Parameter counts by formula; mirrors the layouts of transformers' BERT-family classes."""
    h, e, v = spec.hidden_size, spec.embedding_size, spec.vocab_size
    lookup = v * e + spec.max_positions * e + spec.type_vocab_size * e
    embeddings = lookup + 2 * e  # + LayerNorm(e)
    if e != h:
        embeddings += e * h + h  # ELECTRA's embeddings_project: e -> h
    attention = ffn = 0
    for heads, inter in zip(spec.heads_per_layer, spec.intermediate_per_layer):
        k = heads * spec.head_dim  # width of the kept heads
        attention += 3 * (h * k + k) + (k * h + h) + 2 * h  # q, k, v, output dense, LayerNorm
        ffn += (h * inter + inter) + (inter * h + h) + 2 * h  # up, down, LayerNorm
    head = _head_params(spec)
    total = embeddings + attention + ffn + head
    return {
        "total": total,
        "embedding": lookup,
        "non_embedding": total - lookup,
        "by_module": {"embeddings": embeddings, "attention": attention, "ffn": ffn, "head": head},
        "counted_from": f"the shapes in {spec.described_as}",
    }


def _head_params(spec: EncoderSpec) -> int:
    h, e, v, labels = spec.hidden_size, spec.embedding_size, spec.vocab_size, spec.num_labels
    pooler = h * h + h if spec.pooler else 0

    def mlm() -> int:
        if spec.family == "electra":  # generator: dense h -> e, LayerNorm(e), decoder e -> vocab
            width, dense = e, h * e + e
        else:  # BERT / RoBERTa / DistilBERT: dense h -> h, LayerNorm(h), decoder h -> vocab
            width, dense = h, h * h + h
        decoder = 0 if spec.tied_embeddings else v * width
        return dense + 2 * width + decoder + v

    if spec.head == "base":
        return pooler
    if spec.head == "sequence-classification":
        # BERT: pooler + linear; RoBERTa / ELECTRA / DistilBERT: their own dense + linear on token 0
        inner = 0 if spec.family == "bert" else h * h + h
        return pooler + inner + h * labels + labels
    if spec.head in ("token-classification", "question-answering"):
        return pooler + h * labels + labels
    if spec.head == "masked-lm":
        return pooler + mlm()
    if spec.head == "pretraining":  # BERT: pooler + MLM + next-sentence (2 classes)
        return pooler + mlm() + h * 2 + 2
    if spec.head == "electra-discriminator":
        return (h * h + h) + (h + 1)
    raise AssertionError(spec.head)
