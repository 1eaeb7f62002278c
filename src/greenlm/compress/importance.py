"""How much the loss depends on each attention head, FFN neuron and layer: gate-gradient importance.

Michel et al. 2019 ("Are Sixteen Heads Really Better than One?", eq. 2): put a gate xi_h = 1 on the
output of head h; its importance is the expected absolute gradient of the loss with respect to the gate,

    I_h = E_x | dL(x) / d xi_h |,

a first-order Taylor estimate of how much the loss changes when the head is removed (xi_h = 0).
The same gate on an FFN neuron's activation gives I_n = E_x |sum_t a_tn * dL/da_tn| (the Taylor
criterion of Molchanov et al. 2017 on that neuron), and a gate on a layer's update
(out = x + xi * (layer(x) - x)) gives the layer's importance. The expectation is over examples, one
gradient per example (each example gets its own gates in a batch, so batching changes nothing).
L is the cross-entropy of the gold label, computed with dropout off.

Michel et al. normalise head importance within each layer by its l2 norm before comparing heads
across layers; ``normalize_per_layer`` does that for heads and neurons (exponent 2). Layer scores are
divided by their l2 norm across layers (only their order matters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from greenlm.data import EncodedSplit, collate, length_grouped_batches
from greenlm.models import pruned


@dataclass
class Importance:
    heads: list[torch.Tensor]  # per layer [H_l], l2-normalised within the layer
    neurons: list[torch.Tensor]  # per layer [I_l], l2-normalised within the layer
    layers: torch.Tensor  # [L], l2-normalised across layers
    raw_heads: list[torch.Tensor]  # E_x |dL/dxi| before normalisation
    raw_neurons: list[torch.Tensor]
    raw_layers: torch.Tensor
    examples: int

    def summary(self) -> dict:
        """Small JSON-able view: raw layer scores and per-layer head scores (neurons are too many)."""
        return {
            "examples": self.examples,
            "layers": [round(v, 6) for v in self.raw_layers.tolist()],
            "heads": [[round(v, 6) for v in h.tolist()] for h in self.raw_heads],
        }


def normalize_per_layer(scores: list[torch.Tensor], exponent: float = 2.0) -> list[torch.Tensor]:
    """Divide each layer's scores by their l_p norm (Michel et al. 2019, following Molchanov et al. 2017)."""
    out = []
    for layer_scores in scores:
        norm = layer_scores.norm(p=exponent) if layer_scores.numel() else torch.tensor(0.0)
        out.append(layer_scores / norm if norm > 0 else layer_scores.clone())
    return out


def gate_importance(model, encoded: EncodedSplit, *, pad_token_id: int, batch_size: int = 32) -> Importance:
    """Head, neuron and layer importance of ``model`` on ``encoded`` (labelled examples).

    The model's weights are not changed and get no gradients; dropout is off while scoring.
    """
    heads_now = pruned.heads_per_layer(model)
    neurons_now = pruned.intermediate_per_layer(model)
    n_layers = len(heads_now)
    sum_heads = [torch.zeros(h, dtype=torch.float64) for h in heads_now]
    sum_neurons = [torch.zeros(n, dtype=torch.float64) for n in neurons_now]
    sum_layers = torch.zeros(n_layers, dtype=torch.float64)
    device = next(model.parameters()).device
    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for indices in length_grouped_batches(encoded.lengths(), batch_size, shuffle=False):
            batch = {k: v.to(device) for k, v in collate(encoded, indices, pad_token_id).items()}
            labels = batch.pop("labels")
            b = labels.shape[0]
            # One gate per example: d(sum_i L_i)/d xi_ih = dL_i/d xi_ih, per-example gradients in one pass.
            head_gates = [torch.ones(b, h, device=device, requires_grad=True) for h in heads_now]
            neuron_gates = [torch.ones(b, n, device=device, requires_grad=True) for n in neurons_now]
            layer_gates = torch.ones(b, n_layers, device=device, requires_grad=True)
            with pruned.gated(model, heads=head_gates, neurons=neuron_gates, layers=layer_gates):
                logits = model(**batch).logits.float()
            loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
            wanted = [g for g in head_gates + neuron_gates if g.shape[-1] > 0] + [layer_gates]
            grads = dict(zip(map(id, wanted), torch.autograd.grad(loss, wanted)))
            for total, gate in zip(sum_heads + sum_neurons, head_gates + neuron_gates):
                if gate.shape[-1] > 0:
                    total += grads[id(gate)].abs().sum(0).double().cpu()
            sum_layers += grads[id(layer_gates)].abs().sum(0).double().cpu()
    finally:
        for p, flag in zip(model.parameters(), grad_flags):
            p.requires_grad_(flag)
        model.train(was_training)
    n = len(encoded)
    raw_heads = [(s / n).float() for s in sum_heads]
    raw_neurons = [(s / n).float() for s in sum_neurons]
    raw_layers = (sum_layers / n).float()
    layer_norm = raw_layers.norm()
    return Importance(
        heads=normalize_per_layer(raw_heads),
        neurons=normalize_per_layer(raw_neurons),
        layers=raw_layers / layer_norm if layer_norm > 0 else raw_layers.clone(),
        raw_heads=raw_heads,
        raw_neurons=raw_neurons,
        raw_layers=raw_layers,
        examples=n,
    )
