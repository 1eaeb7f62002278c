"""The engine's batching: all inputs in one padded matrix, cut into length-sorted batches, each padded
only to its own longest row, with every batch's logits written back to the rows it came from."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from greenlm.data import EncodedSplit
from greenlm.runtime.runtimes import Runtime


@dataclass
class Packed:
    """A padded matrix of all inputs; each batch takes its rows and the columns its longest row needs."""

    input_ids: np.ndarray  # [N, W] int64, padded with the pad id
    attention_mask: np.ndarray  # [N, W] int64
    token_type_ids: np.ndarray | None  # [N, W] int64
    lengths: np.ndarray  # [N] tokens per row

    def select(self, rows: np.ndarray) -> "Packed":
        """The rows ``rows``, in that order."""
        types = None if self.token_type_ids is None else self.token_type_ids[rows]
        return Packed(self.input_ids[rows], self.attention_mask[rows], types, self.lengths[rows])

    def batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        width = int(self.lengths[rows].max())
        out = {"input_ids": self.input_ids[rows, :width], "attention_mask": self.attention_mask[rows, :width]}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids[rows, :width]
        return out


def pack(encoded: EncodedSplit, pad_token_id: int) -> Packed:
    """Pad every row of ``encoded`` into one matrix with array operations (no per-row Python lists)."""
    lengths = np.fromiter((len(r) for r in encoded.input_ids), dtype=np.int64, count=len(encoded))
    width = int(lengths.max()) if len(lengths) else 0
    mask = np.arange(width)[None, :] < lengths[:, None]  # [N, W] True on real tokens

    def matrix(rows, fill):
        out = np.full((len(rows), width), fill, dtype=np.int64)
        out[mask] = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        return out

    types = None if encoded.token_type_ids is None else matrix(encoded.token_type_ids, 0)
    return Packed(matrix(encoded.input_ids, pad_token_id), mask.astype(np.int64), types, lengths)


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Row indices, longest first (stable), cut into batches of ``batch_size``."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def run_engine(runtime: Runtime, packed: Packed, *, batch_size: int, num_labels: int) -> np.ndarray:
    """Logits [N, num_labels] in input order: sorted batches, dynamic padding, one scatter per batch."""
    from greenlm.runtime.speed import run_batches

    out = np.empty((len(packed.lengths), num_labels), dtype=np.float32)
    groups = sorted_batches(packed.lengths, batch_size)
    for rows, logits in zip(groups, run_batches(runtime, [packed.batch(rows) for rows in groups])):
        out[rows] = logits
    return out
