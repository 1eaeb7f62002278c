"""Unstructured pruning of the encoder's linear weights, and an honest account of what it buys.

Methods (the weights pruned: every layer's query, key, value, attention output and both FFN
matrices; embeddings, pooler and classifier stay dense, as in Sanh et al. 2020):
  - magnitude: zero the weights of smallest |w|, over all matrices at once (``global``) or the same
    share in each matrix (``per_layer``); one shot, or gradually along the cubic schedule while
    training (Zhu & Gupta 2017, "To prune, or not to prune");
  - movement (Sanh et al. 2020, "Movement Pruning", hard/top-v variant): each matrix learns scores
    S; the forward pass uses W * TopK(S) (the highest-scoring share of each matrix), and the
    straight-through gradient dL/dS = dL/dW' * W rewards weights moving away from zero.
    The kept share follows the cubic schedule.

Cubic schedule (Zhu & Gupta 2017, eq. 1; Sanh et al. 2020 with warm-up and cool-down), at step t of T:
    s_t = s_i                                              t < t_w
    s_t = s_f + (s_i - s_f) * (1 - (t - t_w) / (T - t_w - t_c))^3    t_w <= t < T - t_c
    s_t = s_f                                              t >= T - t_c

What zeros buy (``sparsity_report``, ``save_sparse_checkpoint``, ``CsrLinear``): zeros inside dense
matrices make no dense matrix product faster; a smaller checkpoint and, at high sparsity, a sparse
kernel (torch's CSR matrix product on CPU, MKL-backed) are what can help, and greenlm measures both
rather than assuming them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from greenlm.compress.prune_config import SCOPES
from greenlm.models import pruned

CHECKPOINT_FORMAT = "greenlm-csr-v1"


# ---- which weights, and the schedule ---------------------------------------------------------------


def prunable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The encoder's linear layers (q, k, v, attention output, FFN in/out of every layer), by name."""
    layout = pruned.layout_of(model)
    out: dict[str, nn.Linear] = {}
    for i, layer in enumerate(pruned.encoder_layers(model)):
        attention = layer.get_submodule(layout.self_attention)
        for name in (layout.query, layout.key, layout.value):
            out[f"layer.{i}.{layout.self_attention}.{name}"] = getattr(attention, name)
        for path in (layout.attn_out, layout.ffn_in, layout.ffn_out):
            out[f"layer.{i}.{path}"] = layer.get_submodule(path)
    return {name: linear for name, linear in out.items() if linear.weight.numel() > 0}


def cubic_sparsity(step: int, total_steps: int, final: float, *, initial: float = 0.0,
                   warmup_steps: int = 0, cooldown_steps: int = 0) -> float:
    """Sparsity at ``step`` (0-based optimizer step) of the cubic schedule in the module docstring."""
    ramp = total_steps - warmup_steps - cooldown_steps
    if step < warmup_steps:
        return initial
    if ramp <= 0 or step >= total_steps - cooldown_steps:
        return final
    progress = (step - warmup_steps) / ramp
    return final + (initial - final) * (1.0 - progress) ** 3


def _keep_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """1 at the ``keep`` highest entries of ``scores`` (exactly that many), 0 elsewhere; same shape."""
    mask = torch.zeros(scores.numel(), dtype=scores.dtype, device=scores.device)
    if keep > 0:
        mask[scores.detach().flatten().topk(keep, sorted=False).indices] = 1
    return mask.view_as(scores)


def magnitude_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    """Boolean keep-masks zeroing round(sparsity * n) weights of smallest |w|.

    ``global``: n counts all matrices together (one threshold); ``per_layer``: each matrix its own n.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}")
    if scope == "per_layer":
        return {name: _keep_mask(w.abs(), w.numel() - round(sparsity * w.numel())).bool()
                for name, w in weights.items()}
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    keep = _keep_mask(flat, flat.numel() - round(sparsity * flat.numel())).bool()
    masks, start = {}, 0
    for name, w in weights.items():
        masks[name] = keep[start : start + w.numel()].view_as(w)
        start += w.numel()
    return masks


# ---- masks inside the model (torch parametrizations) -----------------------------------------------


class FixedMask(nn.Module):
    """Parametrization W -> W * mask; the mask is a buffer (saved in checkpoints), set from outside."""

    def __init__(self, shape: torch.Size, device=None):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape, device=device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask.to(weight.dtype)


class _TopKStraightThrough(torch.autograd.Function):
    """Forward: the 0/1 top-k mask of the scores. Backward: the gradient passes unchanged (Sanh et al.)."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, keep: int) -> torch.Tensor:
        return _keep_mask(scores, keep)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class MovementMask(nn.Module):
    """Parametrization W -> W * TopK(S) with learned scores S = raw * scale.

    ``scale`` lets the scores move faster than the weights under the one shared learning rate: Adam's
    step on ``raw`` is about lr whatever the gradient's size, so S moves about lr * scale per step
    (Sanh et al. use a separate score learning rate, 1e-2, against 3e-5 for the weights).
    Scores start at 0 and are kept 1-D so AdamW does not decay them (the loop decays 2-D weights).
    """

    def __init__(self, shape: torch.Size, scale: float, device=None):
        super().__init__()
        self.shape = tuple(shape)
        self.scale = scale
        self.raw = nn.Parameter(torch.zeros(int(torch.Size(shape).numel()), device=device))
        self.keep_share = 1.0  # set by the schedule

    def scores(self) -> torch.Tensor:
        return (self.raw * self.scale).view(self.shape)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        keep = round(self.keep_share * weight.numel())
        return weight * _TopKStraightThrough.apply(self.scores(), keep).to(weight.dtype)


class SparsityController:
    """Masks on a model's prunable linears, moved along a sparsity target by the training loop."""

    def __init__(self, model: nn.Module, method: str, scope: str = "global", score_scale: float = 1.0):
        if method not in ("magnitude", "movement"):
            raise ValueError(f"unknown unstructured method {method!r}")
        self.model, self.method, self.scope = model, method, scope
        self.linears = prunable_linears(model)
        self.masks: dict[str, nn.Module] = {}
        for name, linear in self.linears.items():
            shape, device = linear.weight.shape, linear.weight.device
            mask = FixedMask(shape, device) if method == "magnitude" else MovementMask(shape, score_scale, device)
            parametrize.register_parametrization(linear, "weight", mask)
            self.masks[name] = mask
        self.sparsity = 0.0

    def set_sparsity(self, sparsity: float) -> None:
        """Magnitude: recompute the masks from |W| now. Movement: the top-k share used from now on."""
        self.sparsity = sparsity
        if self.method == "movement":
            for mask in self.masks.values():
                mask.keep_share = 1.0 - sparsity
            return
        with torch.no_grad():
            originals = {name: linear.parametrizations.weight.original for name, linear in self.linears.items()}
            for name, keep in magnitude_masks(originals, sparsity, self.scope).items():
                self.masks[name].mask.copy_(keep)

    def bake(self) -> None:
        """Remove the parametrizations, leaving W * mask as the plain weights (exact zeros)."""
        for linear in self.linears.values():
            parametrize.remove_parametrizations(linear, "weight", leave_parametrized=True)


def schedule_callback(controller: SparsityController, final: float, warmup_ratio: float, cooldown_ratio: float,
                      update_every_steps: int = 1):
    """A training-loop callback that sets the cubic-schedule sparsity before every optimizer step.

    The sparsity is a pure function of the step, so a resumed run continues the same schedule.
    Magnitude masks are recomputed every ``update_every_steps`` steps (and at the end of the ramp).
    """
    from greenlm.train import Callback

    class _Schedule(Callback):
        def _target(self, state) -> float:
            total = state.total_steps
            return cubic_sparsity(state.step, total, final, warmup_steps=round(warmup_ratio * total),
                                  cooldown_steps=round(cooldown_ratio * total))

        def _apply(self, state, force: bool) -> None:
            target = self._target(state)
            due = force or controller.method == "movement" or state.step % update_every_steps == 0
            if target != controller.sparsity and (due or target == final):
                controller.set_sparsity(target)

        def on_train_begin(self, state) -> None:
            self._apply(state, force=True)

        def on_step_end(self, state) -> None:
            self._apply(state, force=False)

        def on_train_end(self, state) -> None:
            if controller.sparsity != final:
                controller.set_sparsity(final)

    return _Schedule()


# ---- accounting ------------------------------------------------------------------------------------


def sparsity_report(model: nn.Module) -> dict:
    """Zeros among the prunable weights and among all parameters, and per layer."""
    linears = prunable_linears(model)
    prunable = sum(l.weight.numel() for l in linears.values())
    zeros = sum(int((l.weight == 0).sum()) for l in linears.values())
    total = sum(p.numel() for p in model.parameters())
    total_zeros = sum(int((p == 0).sum()) for p in model.parameters())
    per_layer: dict[int, list[int]] = {}
    for name, linear in linears.items():
        layer = int(name.split(".")[1])
        counts = per_layer.setdefault(layer, [0, 0])
        counts[0] += int((linear.weight == 0).sum())
        counts[1] += linear.weight.numel()
    return {
        "prunable_params": prunable,
        "prunable_zeros": zeros,
        "sparsity": zeros / prunable if prunable else 0.0,
        "total_params": total,
        "total_zeros": total_zeros,
        "overall_sparsity": total_zeros / total if total else 0.0,
        "sparsity_by_layer": [round(per_layer[i][0] / per_layer[i][1], 4) for i in sorted(per_layer)],
    }


def save_sparse_checkpoint(model: nn.Module, path: str | Path, *, min_sparsity: float = 0.3) -> int:
    """Write every parameter to one safetensors file, matrices with >= ``min_sparsity`` zeros as CSR.

    CSR of a [rows, cols] matrix: ``crow`` [rows + 1] int32 row starts, ``col`` [nnz] column ids
    (int16 when cols <= 32767, else int32), ``values`` [nnz] in the weight's dtype; below about 30%
    zeros CSR is larger than dense, so those stay dense. Returns the file's size in bytes.
    """
    from safetensors.torch import save_file

    from greenlm.common import atomic_write_bytes

    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, list[int]] = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if tensor.dim() == 2 and tensor.numel() > 0 and float((tensor == 0).float().mean()) >= min_sparsity:
            with _quiet_sparse():
                csr = tensor.to_sparse_csr()
            col_dtype = torch.int16 if tensor.shape[1] <= 32767 else torch.int32
            tensors[f"{name}::crow"] = csr.crow_indices().to(torch.int32)
            tensors[f"{name}::col"] = csr.col_indices().to(col_dtype)
            tensors[f"{name}::values"] = csr.values().contiguous()
            layout[name] = list(tensor.shape)
        else:
            tensors[name] = tensor.contiguous()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"format": CHECKPOINT_FORMAT, "csr": json.dumps(layout)})
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()
    return path.stat().st_size


def load_sparse_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The dense state dict written by ``save_sparse_checkpoint`` (exactly the same values)."""
    from safetensors import safe_open

    from greenlm.common import GreenlmError

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise GreenlmError(f"'{path}' is not a greenlm sparse checkpoint ({CHECKPOINT_FORMAT})")
        raw = {key: f.get_tensor(key) for key in f.keys()}
    layout = json.loads(meta["csr"])
    state = {k: v for k, v in raw.items() if "::" not in k}
    for name, shape in layout.items():
        crow, col, values = raw[f"{name}::crow"], raw[f"{name}::col"], raw[f"{name}::values"]
        with _quiet_sparse():  # invariants checked: a damaged file is an error, not a crash
            csr = torch.sparse_csr_tensor(crow.long(), col.long(), values, size=shape, check_invariants=True)
        state[name] = csr.to_dense()
    return state


# ---- a real sparse kernel --------------------------------------------------------------------------


class CsrLinear(nn.Module):
    """y = x W^T + b with W held in CSR; the product is torch's sparse x dense kernel (inference only)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_csr = linear.weight.detach().to_sparse_csr()  # [out, in], nnz entries
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)  # [N, in]
        y = torch.sparse.mm(self.weight_csr, flat.t()).t()  # ([out, in] @ [in, N])^T = [N, out]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


@contextlib.contextmanager
def _quiet_sparse():
    """torch warns that its CSR support is "beta" on first use; greenlm tests what it uses."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


def to_sparse_kernels(model: nn.Module, *, min_sparsity: float = 0.5) -> nn.Module:
    """A copy of ``model`` whose prunable linears with >= ``min_sparsity`` zeros run as ``CsrLinear``."""
    fast = copy.deepcopy(model).eval()
    with _quiet_sparse():
        for name, linear in prunable_linears(fast).items():
            if float((linear.weight == 0).float().mean()) >= min_sparsity:
                _replace(fast, name, CsrLinear(linear))
    return fast


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    layers = pruned.encoder_layers(model)
    _, index, rest = name.split(".", 2)
    parent_path, _, attr = rest.rpartition(".")
    parent = layers[int(index)].get_submodule(parent_path) if parent_path else layers[int(index)]
    setattr(parent, attr, module)
