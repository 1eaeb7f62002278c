"""The batched early-exit engine: rows that exit leave the batch, the rest wait for more rows at each layer.

``predict_batches(model, batches)`` runs an ``EarlyExitClassifier`` layer by layer over a stream of batches
(the method ``EarlyExitClassifier.predict_batches`` documents the behaviour); ``_Rows`` holds the rows still
running and their padding, streak and position in the output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from greenlm.models.exit_heads import exit_confidence


@dataclass
class _Rows:
    """Rows of a batched early exit still running: where each came from and its state after the last layer run."""

    index: torch.Tensor  # [b] positions in the output
    hidden: torch.Tensor  # [b, t, H]
    attention_mask: torch.Tensor  # [b, t]
    streak: torch.Tensor  # [b] patience: agreeing exits in a row
    previous: torch.Tensor  # [b] patience: the last exit's prediction (-1: none yet)

    @property
    def size(self) -> int:
        return int(self.index.shape[0])

    @classmethod
    def start(cls, index, hidden, attention_mask) -> _Rows:
        return cls(index, hidden, attention_mask, torch.zeros_like(index), torch.full_like(index, -1))

    def select(self, keep: torch.Tensor) -> _Rows:
        """The rows where ``keep`` [b] is True, without the padding columns none of them needs."""
        attention_mask = self.attention_mask[keep]
        width = int(attention_mask.any(dim=0).nonzero().max()) + 1 if attention_mask.numel() else 0
        return _Rows(self.index[keep], self.hidden[keep][:, :width], attention_mask[:, :width],
                     self.streak[keep], self.previous[keep])

    @staticmethod
    def merge(parts: list[_Rows]) -> _Rows:
        """One batch of several groups' rows, right-padded to the widest (padding is masked)."""
        if len(parts) == 1:
            return parts[0]
        width = max(p.hidden.shape[1] for p in parts)
        pad = nn.functional.pad
        return _Rows(
            torch.cat([p.index for p in parts]),
            torch.cat([pad(p.hidden, (0, 0, 0, width - p.hidden.shape[1])) for p in parts]),
            torch.cat([pad(p.attention_mask, (0, width - p.attention_mask.shape[1])) for p in parts]),
            torch.cat([p.streak for p in parts]),
            torch.cat([p.previous for p in parts]),
        )


def predict_batches(model, batches: Iterable[dict], *, pool_size: int | None = None,
                    on_batch: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.predict_batches(...)`` (an ``EarlyExitClassifier``): logits [N, K] and exit layers [N], in order."""
    pool = pool_size
    device = next(model.parameters()).device
    finished: list[tuple[torch.Tensor, torch.Tensor, int]] = []  # (output positions, logits [b, K], layer)
    early = model.exits_early()
    waiting: list[list[_Rows]] = [[] for _ in range(model.num_layers)]  # [i]: rows about to run layer i + 1

    def run(i: int) -> None:  # layer i + 1 on every row waiting for it; exits; the rest wait for layer i + 2
        rows = _Rows.merge(waiting[i])
        waiting[i] = []
        hidden = model._layer(model._parts.layers[i], rows.hidden, model._mask(rows.hidden, rows.attention_mask))
        layer = i + 1
        if layer == model.num_layers:
            finished.append((rows.index, model._parts.head(hidden).float(), layer))
            return
        rows.hidden = hidden
        if not early or str(layer) not in model.exits:
            waiting[layer].append(rows)
            return
        logits = model.exits[str(layer)](hidden, rows.attention_mask)  # [b, K]
        if model.policy == "patience":
            prediction = logits.argmax(-1)
            rows.streak = torch.where(prediction == rows.previous, rows.streak + 1, torch.zeros_like(rows.streak))
            rows.previous = prediction
            done = rows.streak >= model.patience
        else:
            j = model.exit_layers.index(layer)
            done = exit_confidence(logits, model.temperatures[j], model.policy) > model.threshold
        if bool(done.any()):
            finished.append((rows.index[done], logits[done].float(), layer))
            rows = rows.select(~done)
        if rows.size:
            waiting[layer].append(rows)

    start = 0
    for batch in batches:
        input_ids = batch["input_ids"].to(device)
        size = int(input_ids.shape[0])
        pool = pool or size
        attention_mask = batch.get("attention_mask")
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device)
        token_type_ids = batch.get("token_type_ids")
        token_type_ids = None if token_type_ids is None else token_type_ids.to(device)
        waiting[0].append(_Rows.start(torch.arange(start, start + size, device=device),
                                      model._embed(input_ids, token_type_ids), attention_mask))
        start += size
        for i in range(model.num_layers):
            if sum(rows.size for rows in waiting[i]) >= pool:
                run(i)
        if on_batch is not None:
            on_batch()
    for i in range(model.num_layers):  # the last rows, however few
        if waiting[i]:
            run(i)
    out_logits = torch.zeros(start, model.config.num_labels, dtype=torch.float32, device=device)
    out_layers = torch.full((start,), model.num_layers, dtype=torch.long, device=device)
    for index, logits, layer in finished:
        out_logits[index] = logits
        out_layers[index] = layer
    return out_logits, out_layers
