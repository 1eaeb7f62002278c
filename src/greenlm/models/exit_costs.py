"""FLOP costs of an early-exit model: each piece's FLOPs counted once, then any exit pattern priced from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from greenlm.models.early_exit import EarlyExitClassifier


@dataclass(frozen=True)
class ExitCosts:
    """Forward FLOPs per example of each piece, in greenlm's ``matmul`` convention (2 per multiply-add of
    every matrix product run, as ``greenlm.measure.count_flops``). A piece costs ``a*s + b*s^2`` at s tokens
    (linear maps: a; attention scores and weighted sums: b); heads read token 0 only: a constant."""

    embeddings: tuple[float, float]  # (a, b)
    layers: tuple[tuple[float, float], ...]  # (a, b) per layer, in order (pruned layers differ)
    exit_heads: dict  # layer (int) -> FLOPs of its exit head
    final_head: float  # the backbone's classifier (pooler included)

    def _encoder(self, seq_len: torch.Tensor, upto: torch.Tensor) -> torch.Tensor:
        s = seq_len.double()
        total = self.embeddings[0] * s + self.embeddings[1] * s * s
        for i, (a, b) in enumerate(self.layers, start=1):
            total = total + torch.where(upto >= i, a * s + b * s * s, torch.zeros_like(s))
        return total

    def full_flops(self, seq_len: torch.Tensor) -> torch.Tensor:
        """The backbone alone, every layer: [N] lengths -> [N] FLOPs."""
        seq_len = torch.as_tensor(seq_len)
        return self._encoder(seq_len, torch.full_like(seq_len, len(self.layers))) + self.final_head

    def exit_flops(self, seq_len: torch.Tensor, exit_layer: torch.Tensor, heads_run: bool = True) -> torch.Tensor:
        """FLOPs of examples that exit after ``exit_layer`` (1-based) [N]; ``heads_run``: the exit heads on the
        way were evaluated (False when the policy never exits early, so no head runs)."""
        seq_len, exit_layer = torch.as_tensor(seq_len), torch.as_tensor(exit_layer)
        total = self._encoder(seq_len, exit_layer)
        if heads_run:
            for layer, flops in self.exit_heads.items():
                total = total + (exit_layer >= layer).double() * flops
        return total + (exit_layer == len(self.layers)).double() * self.final_head


@torch.no_grad()
def measure_exit_costs(model: EarlyExitClassifier) -> ExitCosts:
    """Count each piece's FLOPs with ``torch.utils.flop_counter`` on a probe at two lengths, so layers of any
    shape (pruned heads or FFN) are counted as they are. Attention runs on SDPA's math kernel while counting:
    the fused CPU kernel is invisible to the counter."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    def count(fn) -> float:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    token = min(5, int(getattr(model.config, "vocab_size", 6)) - 1)
    measured: dict[int, dict] = {}
    for s in (4, 8):  # f(s) = a*s + b*s^2 is fixed by two lengths
        ids = torch.full((1, s), token, dtype=torch.long, device=device)
        hidden = model._embed(ids, None)
        found = {"embeddings": count(lambda: model._embed(ids, None)), "layers": []}
        mask = model._mask(hidden, torch.ones_like(ids))
        for layer in model._parts.layers:
            found["layers"].append(count(lambda: model._layer(layer, hidden, mask)))
            hidden = model._layer(layer, hidden, mask)
        found["heads"] = {int(k): count(lambda: head(hidden, torch.ones_like(ids))) for k, head in model.exits.items()}
        found["final"] = count(lambda: model._parts.head(hidden))
        measured[s] = found
    model.train(was_training)

    def fit(f4: float, f8: float) -> tuple[float, float]:
        b = (f8 - 2 * f4) / 32  # f8 - 2*f4 = 64b - 32b
        return ((f4 - 16 * b) / 4, b)

    return ExitCosts(
        embeddings=fit(measured[4]["embeddings"], measured[8]["embeddings"]),
        layers=tuple(fit(x, y) for x, y in zip(measured[4]["layers"], measured[8]["layers"])),
        exit_heads=measured[4]["heads"],
        final_head=measured[4]["final"],
    )
