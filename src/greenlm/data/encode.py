"""Tokenize a split once, unpadded: padding happens per batch in ``collate``."""

from __future__ import annotations

from dataclasses import dataclass

from greenlm.common import GreenlmError
from greenlm.data.tasks import TaskSplit

ENCODE_CHUNK_ROWS = 4096  # rows per tokenizer call: big enough for the Rust batch path, small enough for memory
_NO_LIMIT = 10**9  # tokenizers report a huge model_max_length when they have none


@dataclass
class EncodedSplit:
    """Token ids of a split, one unpadded list per row (special tokens included, truncated)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None  # None when the tokenizer has no segment ids
    labels: list[int]

    def __post_init__(self):
        n = len(self.input_ids)
        if len(self.labels) != n or (self.token_type_ids is not None and len(self.token_type_ids) != n):
            raise ValueError("EncodedSplit columns differ in length")

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> list[int]:
        """Tokens per row (with special tokens)."""
        return [len(ids) for ids in self.input_ids]


def encode_split(split: TaskSplit, tokenizer, max_length: int) -> EncodedSplit:
    """Tokenize every row (pairs as pairs), truncating to ``max_length`` tokens ("longest_first"), no padding.

    ``tokenizer`` is a Hugging Face tokenizer (a fast one: each chunk of rows is one batched call).
    """
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise GreenlmError(f"max_length must be a positive whole number of tokens, got {max_length!r}")
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and model_max < _NO_LIMIT and max_length > model_max:
        raise GreenlmError(
            f"max_length {max_length} is longer than the model accepts ({model_max} tokens); use at most {model_max}"
        )
    special = tokenizer.num_special_tokens_to_add(pair=split.is_pair)
    if max_length <= special:
        raise GreenlmError(
            f"max_length {max_length} leaves no room for text: the tokenizer adds {special} special tokens "
            f"per {'pair' if split.is_pair else 'text'}; use more than {special}"
        )
    want_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
    input_ids: list[list[int]] = []
    token_type_ids: list[list[int]] | None = [] if want_types else None
    for start in range(0, len(split), ENCODE_CHUNK_ROWS):
        stop = start + ENCODE_CHUNK_ROWS
        batch = tokenizer(
            split.text_a[start:stop],
            split.text_b[start:stop] if split.text_b is not None else None,
            truncation="longest_first",
            max_length=max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=want_types,
        )
        input_ids.extend(batch["input_ids"])
        if token_type_ids is not None:
            token_type_ids.extend(batch["token_type_ids"])
    return EncodedSplit(input_ids=input_ids, token_type_ids=token_type_ids, labels=list(split.labels))
