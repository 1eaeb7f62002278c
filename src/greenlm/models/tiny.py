"""Tiny BERT classifiers built in code, with a WordPiece vocabulary learned from the task's text.

Used by tests and smoke runs (``--model tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99``): real
architecture, real tokenizer, seconds to train on a CPU. ``attention=rfa`` (or ``performer``, ``t2r``, ``abc``, with their
options after it: ``attention=rfa,features=16``, ``attention=abc:k=8``) builds it with linear attention
(``greenlm.models.attention_spec``, ``greenlm.models.linear_attention``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

from greenlm.common import GreenlmError
from greenlm.models.limits import ENCODER_MAX, MAX_PARAMETERS, encoder_parameters

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# A tiny model is built in memory for tests and demos: greenlm.models.limits refuses a typo (hidden=65536) before
# it allocates tens of gigabytes
# ... and these below which the model cannot read a sentence: 5 special tokens leave a vocabulary of 16 a few letters,
# and 8 positions hold [CLS], six tokens and [SEP]
_TINY_MIN = {"vocab": 16, "positions": 8}


@dataclass(frozen=True)
class TinySpec:
    layers: int = 2
    hidden: int = 32
    heads: int = 4
    ffn: int = 37
    vocab: int = 99
    positions: int = 128
    attention: str = "softmax"  # an attention spec (greenlm.models.attention_spec), e.g. "rfa:features=16"

    @classmethod
    def parse(cls, spec: str) -> "TinySpec":
        """``tiny`` or ``tiny:layers=2,hidden=32,...,attention=rfa,features=16``: the attention's options follow it."""
        from greenlm.models.attention_spec import OPTION_NAMES, AttentionSpec

        _, _, body = spec.partition(":")
        known = {f.name for f in fields(cls)}
        values: dict = {}
        for item in filter(None, (part.strip() for part in body.split(","))):
            key, eq, value = item.partition("=")
            if key == "attention" and eq:
                values["attention"] = value.strip()
                continue
            if "attention" in values and eq and key in OPTION_NAMES:  # an option of the attention named before it
                values["attention"] += ("," if ":" in values["attention"] else ":") + item
                continue
            if not eq or key not in known:
                raise GreenlmError(f"tiny model setting '{item}' is not one of {sorted(known)} as key=value")
            try:
                values[key] = int(value)
            except ValueError:
                raise GreenlmError(f"tiny model setting '{key}' must be a whole number, got '{value}'") from None
            if values[key] <= 0:
                raise GreenlmError(f"tiny model setting '{key}' must be positive, got {values[key]}")
        if "attention" in values:
            values["attention"] = AttentionSpec.parse(values["attention"]).describe()  # checked, in its full form
        tiny = cls(**values)
        if tiny.hidden % tiny.heads:
            raise GreenlmError(f"tiny model: hidden ({tiny.hidden}) must be divisible by heads ({tiny.heads})")
        for key, most in ENCODER_MAX.items():
            if getattr(tiny, key) > most:
                raise GreenlmError(f"tiny model setting '{key}' is {getattr(tiny, key)}; a tiny model has at most {most}")
        for key, least in _TINY_MIN.items():
            if getattr(tiny, key) < least:
                raise GreenlmError(f"tiny model setting '{key}' is {getattr(tiny, key)}; a tiny model needs at least"
                                   f" {least}")
        if tiny.parameter_estimate() > MAX_PARAMETERS:
            raise GreenlmError(f"tiny model '{spec}' would have about {tiny.parameter_estimate() / 1e6:,.0f}M"
                               f" parameters; tiny models are for tests and demos (at most"
                               f" {MAX_PARAMETERS / 1e6:,.0f}M): use a real model folder for larger ones")
        return tiny

    def parameter_estimate(self) -> int:
        """Weights of the encoder (attention 4 h^2, FFN 2 h f, per layer) and embeddings: enough to refuse a huge one."""
        return encoder_parameters(self.layers, self.hidden, self.ffn, self.vocab, self.positions)

    def to_dict(self) -> dict:
        return asdict(self)


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int):
    """A lower-casing BERT WordPiece tokenizer whose vocabulary comes from ``texts`` (fast tokenizer, HF interface).

    The vocabulary is a pure function of the texts (no multi-threaded trainer, whose tie-breaking
    varies between runs): specials, the most frequent characters (alone and as ``##`` continuations),
    then the most frequent whole words, ties broken alphabetically. Every process of a distributed
    run, and a resumed run, builds the same ids.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars: Counter[str] = Counter()
    for word, count in words.items():
        for ch in word:
            chars[ch] += count
    by_frequency = lambda counter: sorted(counter, key=lambda item: (-counter[item], item))  # noqa: E731
    alphabet = by_frequency(chars)[: max(1, (vocab_size - len(_SPECIALS)) // 2)]
    tokens = list(_SPECIALS) + alphabet + [f"##{ch}" for ch in alphabet]
    for word in by_frequency(words):
        if len(tokens) >= vocab_size:
            break
        if len(word) > 1 and all(ch in alphabet for ch in word):
            tokens.append(word)
    backend = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokens.index("[CLS]")), ("[SEP]", tokens.index("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def build_tiny_classifier(spec: TinySpec, labels: list[str], texts: Iterable[str], seed: int = 0):
    """(model, tokenizer): a randomly initialised BertForSequenceClassification of the given shape."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = build_tiny_tokenizer(texts, spec.vocab, spec.positions)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.ffn,
        max_position_embeddings=spec.positions,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    if spec.attention != "softmax":
        from greenlm.models.linear_attention import swap_attention

        swap_attention(model, spec.attention)
    return model, tokenizer
