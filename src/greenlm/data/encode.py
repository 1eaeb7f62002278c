"""Tokenize a split once, unpadded: padding happens per batch in ``collate``; count the rows truncation cut.

``EncodedSplit.truncated`` is how many rows were longer than ``max_length`` (only rows that reach the limit
are tokenized a second time, without truncation, to find out); ``truncation_line`` says it in one line.
``token_lengths`` gives every row's full length and ``covering_length`` the length that covers a share of rows;
``auto_max_length`` is ``--max-length auto`` (that length for AUTO_LENGTH_SHARE of the rows, said in a note), and
``truncation_records`` the per-split record and line every command that reads rows gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from greenlm.common import GreenlmError
from greenlm.data.tasks import TaskSplit

AUTO_LENGTH_SHARE = 0.99  # max_length "auto": the length that covers this share of the training rows
ENCODE_CHUNK_ROWS = 4096  # rows per tokenizer call: big enough for the Rust batch path, small enough for memory
_NO_LIMIT = 10**9  # tokenizers report a huge model_max_length when they have none


@dataclass
class EncodedSplit:
    """Token ids of a split, one unpadded list per row (special tokens included, truncated)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None  # None when the tokenizer has no segment ids
    labels: list[int]
    truncated: int = 0  # rows longer than max_length, cut to it
    max_length: int | None = None  # the limit they were cut to

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
    at_limit = [i for i, ids in enumerate(input_ids) if len(ids) >= max_length]
    truncated = sum(1 for n in token_lengths(split.select(at_limit), tokenizer) if n > max_length) if at_limit else 0
    return EncodedSplit(input_ids=input_ids, token_type_ids=token_type_ids, labels=list(split.labels),
                        truncated=truncated, max_length=max_length)


def token_lengths(split: TaskSplit, tokenizer) -> list[int]:
    """Every row's length in tokens, special tokens included, untruncated."""
    lengths: list[int] = []
    for start in range(0, len(split), ENCODE_CHUNK_ROWS):
        stop = start + ENCODE_CHUNK_ROWS
        batch = tokenizer(split.text_a[start:stop], split.text_b[start:stop] if split.text_b is not None else None,
                          truncation=False, padding=False, return_attention_mask=False, return_token_type_ids=False,
                          verbose=False)
        lengths.extend(len(ids) for ids in batch["input_ids"])
    return lengths


def truncation_records(encoded: dict[str, EncodedSplit], on_note=None) -> dict[str, dict]:
    """``truncation_record`` of every split (name -> its encoding), each told to ``on_note`` in one line."""
    records = {name: truncation_record(split) for name, split in encoded.items()}
    if on_note is not None:
        for name, record in records.items():
            on_note(truncation_line(name, record))
    return records


def auto_max_length(split: TaskSplit, tokenizer, limit: int, on_note=None, rows: str = "training rows") -> int:
    """``max_length auto``: the token length that covers AUTO_LENGTH_SHARE of ``split``'s rows (``rows`` says what
    they are), at most ``limit`` (the model's positions) and at least 8, said to ``on_note`` in one line."""
    lengths = token_lengths(split, tokenizer)
    chosen = covering_length(lengths, AUTO_LENGTH_SHARE)
    capped = min(chosen, limit)
    covered = sum(1 for n in lengths if n <= capped) / len(lengths)
    cap = f" (capped at the model's {limit} positions)" if capped < chosen else ""
    if on_note is not None:
        on_note(f"max_length auto: {capped} tokens{cap} covers {100 * covered:.1f}% of the {len(lengths):,} {rows}"
                f" (aim: {100 * AUTO_LENGTH_SHARE:g}%)")
    return max(capped, 8)


def covering_length(lengths: list[int], share: float) -> int:
    """The smallest length at least ``share`` of the rows fit in (``share`` in (0, 1])."""
    if not 0 < share <= 1:
        raise GreenlmError(f"the share of rows to cover must be in (0, 1], got {share}")
    if not lengths:
        raise GreenlmError("no rows to measure lengths on")
    ordered = sorted(lengths)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def truncation_line(name: str, record: dict) -> str:
    """One line from a ``truncation_record``: how many of a split's rows were cut at max_length."""
    return (f"truncation: {name}: {record['truncated']:,} of {record['rows']:,} rows ({100 * record['share']:.1f}%)"
            f" longer than {record['max_length']} tokens, cut to it")


def truncation_record(encoded: EncodedSplit) -> dict:
    """What metrics.json keeps about one split's truncation."""
    n = len(encoded)
    return {"rows": n, "truncated": encoded.truncated, "share": round(encoded.truncated / n, 6) if n else 0.0,
            "max_length": encoded.max_length}
