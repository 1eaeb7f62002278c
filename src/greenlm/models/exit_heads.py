"""Exit heads and the exit rule: what an exit computes, how confident it is, and which exit each example takes.

Policies (``exit_policies.POLICIES``): ``max_prob`` and ``entropy`` compare a calibrated confidence with a
threshold; ``patience`` waits for several exits in a row to agree (see ``greenlm.models.early_exit``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from greenlm.common import GreenlmError
from greenlm.models.exit_policies import POOLINGS, check_policy


class ExitHead(nn.Module):
    """An exit after one layer (DeeBERT's "off-ramp"): pool, dense + tanh, dropout, linear.

    hidden states [B, T, H] (+ attention mask [B, T]) -> logits [B, K]. Pooling is "mean" (masked mean of
    the tokens' states: s*H additions, no matrix product) or "cls" (the first token's state, as BERT's
    pooler). Mean is the default: in early layers the first token has gathered little of the sentence, and
    in models trained with mean pooling (sentence-transformers' MiniLM) its state is dominated by a few
    large, input-independent dimensions that a dense + tanh head does not learn through. Matrix products:
    2*H*H + 2*H*K FLOPs per example, whatever T.
    """

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise GreenlmError(f"unknown exit pooling '{pooling}'; use one of: {', '.join(POOLINGS)}")
        self.pooling = pooling
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def pool(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """[B, T, H] -> [B, H]."""
        if self.pooling == "cls":
            return hidden_states[:, 0]
        if attention_mask is None:
            return hidden_states.mean(dim=1)
        mask = attention_mask[:, :, None].to(hidden_states.dtype)  # [B, T, 1]
        return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        pooled = torch.tanh(self.dense(self.pool(hidden_states, attention_mask)))  # [B, H]
        return self.classifier(self.dropout(pooled))  # [B, K]


def exit_confidence(logits: torch.Tensor, temperature: float, policy: str) -> torch.Tensor:
    """Confidence in [0, 1] of each row of ``logits`` [..., K] after temperature scaling."""
    log_p = torch.log_softmax(logits.float() / temperature, dim=-1)
    if policy == "max_prob":
        return log_p.max(dim=-1).values.exp()
    if policy == "entropy":
        entropy = -(log_p.exp() * log_p).sum(dim=-1)  # nats, in [0, ln K]
        return 1.0 - entropy / math.log(logits.shape[-1])
    raise ValueError(f"policy {policy!r} has no confidence")


def simulate_exits(exit_logits: torch.Tensor, temperatures: Sequence[float], policy: str,
                   threshold: float | None = None, patience: int | None = None) -> torch.Tensor:
    """Which exit each example takes, from the logits of every exit: [E, N, K] -> exit positions [N] in 0..E-1.

    The same rule as the batched forward pass, applied offline: one full pass gives the whole
    speed/accuracy curve over thresholds.
    """
    check_policy(policy, threshold, patience)
    num_exits, n = exit_logits.shape[0], exit_logits.shape[1]
    position = torch.full((n,), num_exits - 1, dtype=torch.long)
    decided = torch.zeros(n, dtype=torch.bool)
    streak = torch.zeros(n, dtype=torch.long)
    previous = torch.full((n,), -1, dtype=torch.long)
    for j in range(num_exits - 1):
        if policy == "patience":
            prediction = exit_logits[j].argmax(-1)
            streak = torch.where(prediction == previous, streak + 1, torch.zeros_like(streak))
            previous = prediction
            now = streak >= patience
        else:
            now = exit_confidence(exit_logits[j], temperatures[j], policy) > threshold
        now &= ~decided
        position[now] = j
        decided |= now
    return position
