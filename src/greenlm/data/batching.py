"""Batches of similar-length rows, and dynamic padding.

Grouping rows of similar length before padding cuts wasted (padded) tokens, which is compute and
energy saved; the shuffled variant keeps training batches random at the level of batch order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from greenlm.common import GreenlmError

if TYPE_CHECKING:
    import torch

    from greenlm.data.encode import EncodedSplit


def _chunks(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def length_grouped_batches(
    lengths: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    group_factor: int = 50,
) -> list[list[int]]:
    """Row indices grouped into batches of similar length; every index appears exactly once.

    ``shuffle=False`` (evaluation, inference): all rows sorted longest first, then cut into batches.
    ``shuffle=True`` (training): a seeded permutation is cut into mega-batches of
    ``group_factor * batch_size`` rows; each mega-batch is sorted by length and cut into batches, and the
    order of all batches is shuffled. Same ``seed``, same batches.
    """
    if batch_size < 1:
        raise GreenlmError(f"batch_size must be at least 1, got {batch_size}")
    if group_factor < 1:
        raise GreenlmError(f"group_factor must be at least 1, got {group_factor}")
    n = len(lengths)
    if not shuffle:
        return _chunks(sorted(range(n), key=lambda i: -lengths[i]), batch_size)

    import torch  # lazy: keeps `import greenlm.data` light

    generator = torch.Generator().manual_seed(seed)
    permutation = torch.randperm(n, generator=generator).tolist()
    mega = group_factor * batch_size
    batches: list[list[int]] = []
    for group in _chunks(permutation, mega):
        group.sort(key=lambda i: -lengths[i])
        batches.extend(_chunks(group, batch_size))
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def collate(encoded: EncodedSplit, indices: Sequence[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad the rows ``indices`` to the longest of them.

    Returns int64 tensors: ``input_ids`` [B, T], ``attention_mask`` [B, T] (1 = token, 0 = padding),
    ``token_type_ids`` [B, T] (if the encoding has them; padded with 0), ``labels`` [B].
    """
    import torch

    if pad_token_id is None:
        raise GreenlmError("the tokenizer has no padding token; set tokenizer.pad_token (e.g. to its eos token)")
    if len(indices) == 0:
        raise ValueError("collate needs at least one row")
    rows = [encoded.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    batch = {
        "input_ids": torch.tensor([r + [pad_token_id] * (width - len(r)) for r in rows], dtype=torch.long),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long),
    }
    if encoded.token_type_ids is not None:
        types = [encoded.token_type_ids[i] for i in indices]
        batch["token_type_ids"] = torch.tensor([t + [0] * (width - len(t)) for t in types], dtype=torch.long)
    batch["labels"] = torch.tensor([encoded.labels[i] for i in indices], dtype=torch.long)
    return batch


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of padded positions if each batch is padded to its longest row (0 = no waste)."""
    total = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    real = sum(lengths[i] for b in batches for i in b)
    return 0.0 if total == 0 else 1.0 - real / total
