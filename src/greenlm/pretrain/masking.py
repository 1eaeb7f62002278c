"""Which tokens a masked-LM step hides, and what it puts in their place. Pure functions of their tensors and a
``torch.Generator``: the same generator state gives the same masks (resume is exact).

Inputs, for a batch of B blocks of T tokens:
  input_ids [B, T]  token ids
  word_ids  [B, T]  word index of each token (tokens of one word share it, words in order); -1 for special tokens
  content   [B, T]  True for tokens of content words (greenlm.pretrain.content_words)

The budget, the same for every strategy so that compute and difficulty compare fairly:
  k = max(1, round(rate * n)) tokens per block, n = its non-special tokens (word_ids >= 0).
- ``random`` (BERT, Devlin et al. 2019): exactly k tokens, uniformly among the n.
- ``whole-word`` (Google's BERT release of 2019-05-31; Cui et al. 2019): words in a random order, each taken whole
  while it fits in what is left of k (a word that would overshoot is skipped, as in BERT's
  ``create_pretraining_data.py``); so a block gets k tokens, or a few fewer when only long words are left.
- ``content-words``: whole-word masking whose candidates are content words only. A block whose content words hold
  fewer than k tokens has all of them masked and the rest of its budget goes unused (no stop word is ever masked);
  the shortfall shows in metrics.json as the actual masked share.

Replacement of the chosen tokens (``replace``): ``"bert"`` 80% [MASK], 10% a random token, 10% unchanged (BERT,
section 3.1); ``"electra"`` 85% [MASK], 15% unchanged (ELECTRA's released ``pretrain_helpers.mask``).
"""

from __future__ import annotations

import torch

STRATEGIES = ("random", "whole-word", "content-words")
IGNORE = -100  # label of positions that are not predicted (torch's cross-entropy ignore_index)


def budget(word_ids: torch.Tensor, rate: float) -> torch.Tensor:
    """k per block [B]: max(1, round(rate * non-special tokens)), 0 for a block without any."""
    n = (word_ids >= 0).sum(dim=1)
    k = torch.round(n.double() * rate).long().clamp(min=1)
    return torch.where(n > 0, k, torch.zeros_like(k))


def select_random(word_ids: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """[B, T] bool: exactly k non-special tokens per block, uniformly at random."""
    k = budget(word_ids, rate)
    scores = torch.rand(word_ids.shape, generator=generator)
    scores = scores.masked_fill(word_ids < 0, 2.0)  # specials sort last and are never among the first k
    rank = scores.argsort(dim=1).argsort(dim=1)  # rank of each position within its block
    return (rank < k[:, None]) & (word_ids >= 0)


def select_whole_words(word_ids: torch.Tensor, rate: float, generator: torch.Generator,
                       candidates: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T] bool: whole words in random order until k tokens; ``candidates`` [B, T] limits the words (a word is a
    candidate when its first token is)."""
    k = budget(word_ids, rate).tolist()
    selected = torch.zeros(word_ids.shape, dtype=torch.bool)
    ids = word_ids.tolist()
    allowed = candidates.tolist() if candidates is not None else None
    for row, (row_ids, row_k) in enumerate(zip(ids, k)):
        words: dict[int, list[int]] = {}  # word id -> its token positions, in order of appearance
        for position, word in enumerate(row_ids):
            if word >= 0:
                words.setdefault(word, []).append(position)
        spans = [p for w, p in words.items() if allowed is None or allowed[row][p[0]]]
        order = torch.randperm(len(spans), generator=generator).tolist() if spans else []
        taken = 0
        for index in order:
            positions = spans[index]
            if taken + len(positions) > row_k:
                continue  # would overshoot: try a shorter word
            for position in positions:
                selected[row, position] = True
            taken += len(positions)
            if taken == row_k:
                break
    return selected


def select(strategy: str, word_ids: torch.Tensor, content: torch.Tensor, rate: float,
           generator: torch.Generator) -> torch.Tensor:
    """The positions to predict [B, T] bool, by ``strategy`` (one of STRATEGIES)."""
    if strategy == "random":
        return select_random(word_ids, rate, generator)
    if strategy == "whole-word":
        return select_whole_words(word_ids, rate, generator)
    if strategy == "content-words":
        return select_whole_words(word_ids, rate, generator, candidates=content)
    raise ValueError(f"unknown masking strategy {strategy!r}")


def replace(input_ids: torch.Tensor, selected: torch.Tensor, generator: torch.Generator, *, mask_token_id: int,
            vocab_size: int, scheme: str = "bert") -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input_ids [B, T], labels [B, T]): labels hold the original token where selected, else IGNORE."""
    labels = input_ids.masked_fill(~selected, IGNORE)
    draw = torch.rand(input_ids.shape, generator=generator)
    masked = input_ids.clone()
    if scheme == "bert":
        to_mask = selected & (draw < 0.8)
        to_random = selected & (draw >= 0.8) & (draw < 0.9)
        random_tokens = torch.randint(vocab_size, input_ids.shape, generator=generator)
        masked[to_random] = random_tokens[to_random]
    elif scheme == "electra":
        to_mask = selected & (draw < 0.85)
    else:
        raise ValueError(f"unknown replacement scheme {scheme!r}")
    masked[to_mask] = mask_token_id
    return masked, labels


def batch_generator(seed: int, epoch: int, batch_index: int) -> torch.Generator:
    """The generator for one micro-batch: a pure function of (seed, epoch, batch position)."""
    import hashlib

    digest = hashlib.sha256(f"greenlm-masking:{seed}:{epoch}:{batch_index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
