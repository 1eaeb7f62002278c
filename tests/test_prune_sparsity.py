"""Unstructured pruning: the cubic schedule's formula, exact magnitude masks, movement pruning's
straight-through gradient, the CSR checkpoint and the sparse kernel."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from greenlm.common import GreenlmError
from greenlm.compress import sparsity as sp
from greenlm.models import TinySpec, build_tiny_classifier
from greenlm.train import TrainState


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP barrier waits on a busy machine (10-1000x slower with 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(toy_task, layers=2):
    model, tok = build_tiny_classifier(TinySpec(layers=layers, hidden=32, heads=4, ffn=37, vocab=99),
                                       list(toy_task.labels), toy_task.split("train").text_a)
    return model.eval(), tok


def test_cubic_schedule_formula():
    total, warm, cool, final = 100, 10, 20, 0.9
    values = [sp.cubic_sparsity(t, total, final, warmup_steps=warm, cooldown_steps=cool) for t in range(total + 1)]
    assert values[:11] == [0.0] * 11  # before and at the start of the ramp
    assert values[80:] == [final] * 21  # cool-down
    for t in (11, 37, 50, 79):
        expected = final + (0.0 - final) * (1 - (t - warm) / (total - warm - cool)) ** 3
        assert values[t] == pytest.approx(expected, abs=1e-12)
    assert values[50] == pytest.approx(0.9 - 0.9 * (30 / 70) ** 3)
    assert all(b >= a for a, b in zip(values, values[1:]))  # never decreases
    # the ramp front-loads: half the final sparsity well before half the ramp (cubic, not linear)
    assert values[10 + 70 // 4] > final / 2
    assert sp.cubic_sparsity(5, 10, 0.5, initial=0.1) == pytest.approx(0.5 + (0.1 - 0.5) * 0.5 ** 3)


def test_magnitude_masks_exact_counts():
    torch.manual_seed(0)
    weights = {"a": torch.randn(20, 10), "b": torch.randn(5, 8) * 10}
    masks = sp.magnitude_masks(weights, 0.75, "global")
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == 240 - round(0.75 * 240)
    threshold = min(float(w[m].abs().min()) for w, m in zip(weights.values(), masks.values()))
    assert all(float(w[~m].abs().max()) <= threshold for w, m in zip(weights.values(), masks.values()))
    assert masks["b"].float().mean() > masks["a"].float().mean()  # the large matrix keeps more (global)
    per_layer = sp.magnitude_masks(weights, 0.75, "per_layer")
    assert int(per_layer["a"].sum()) == 50 and int(per_layer["b"].sum()) == 10


def test_movement_straight_through_gradient():
    torch.manual_seed(0)
    linear = nn.Linear(6, 4)
    mask = sp.MovementMask(linear.weight.shape, scale=7.0)
    with torch.no_grad():
        mask.raw.copy_(torch.randn(24))
    mask.keep_share = 0.5
    torch.nn.utils.parametrize.register_parametrization(linear, "weight", mask)
    x, r = torch.randn(3, 6), torch.randn(3, 4)
    (linear(x) * r).sum().backward()
    w = linear.parametrizations.weight.original.detach()
    keep = sp._keep_mask(mask.scores().detach(), 12)
    assert int(keep.sum()) == 12
    # By hand: W' = W * M, dL/dW' = r^T x; straight-through dL/dS = dL/dW' * W; S = raw * scale.
    grad_w_prime = r.t() @ x
    torch.testing.assert_close(mask.raw.grad, (7.0 * grad_w_prime * w).flatten())
    # and W itself only gets gradient where it is kept
    torch.testing.assert_close(linear.parametrizations.weight.original.grad, grad_w_prime * keep)


def test_controller_bakes_exact_zeros(toy_task):
    model, _ = tiny(toy_task)
    controller = sp.SparsityController(model, "magnitude", "per_layer")
    controller.set_sparsity(0.9)
    controller.bake()
    report = sp.sparsity_report(model)
    expected_zeros = sum(round(0.9 * l.weight.numel()) for l in sp.prunable_linears(model).values())
    assert report["prunable_zeros"] == expected_zeros
    assert report["prunable_params"] == 2 * (4 * 32 * 32 + 2 * 32 * 37)
    assert report["overall_sparsity"] < report["sparsity"]  # embeddings and head stay dense
    assert not any("parametrizations" in name for name, _ in model.named_parameters())


def test_schedule_callback_is_a_function_of_the_step(toy_task):
    model, _ = tiny(toy_task)
    controller = sp.SparsityController(model, "movement", score_scale=1.0)
    callback = sp.schedule_callback(controller, 0.8, 0.1, 0.2)
    callback.on_train_begin(TrainState(step=40, total_steps=100))  # as after a resume at step 40
    expected = sp.cubic_sparsity(40, 100, 0.8, warmup_steps=10, cooldown_steps=20)
    assert controller.sparsity == pytest.approx(expected)
    assert all(m.keep_share == pytest.approx(1 - expected) for m in controller.masks.values())
    callback.on_train_end(TrainState(step=100, total_steps=100))
    assert controller.sparsity == 0.8


def test_sparse_checkpoint_round_trip_and_size(toy_task, tmp_path):
    model, _ = tiny(toy_task)
    controller = sp.SparsityController(model, "magnitude", "global")
    controller.set_sparsity(0.9)
    controller.bake()
    size = sp.save_sparse_checkpoint(model, tmp_path / "m.safetensors")
    state = sp.load_sparse_checkpoint(tmp_path / "m.safetensors")
    reference = model.state_dict()
    assert sorted(state) == sorted(reference)
    for name, tensor in reference.items():
        assert torch.equal(state[name], tensor), name
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in reference.items()}, str(tmp_path / "dense.safetensors"))
    dense = (tmp_path / "dense.safetensors").stat().st_size
    linears = sp.prunable_linears(model).values()
    prunable = sum(l.weight.numel() for l in linears)
    nonzeros = sum(int((l.weight != 0).sum()) for l in linears)
    row_starts = sum(l.weight.shape[0] + 1 for l in linears)
    # Each pruned matrix: 4 bytes per weight dense; CSR: 4 (fp32) + 2 (int16 column) per non-zero and
    # 4 per row start. Only the safetensors header (names, shapes: < 200 bytes a tensor) comes on top.
    payload = dense - 4 * prunable + 6 * nonzeros + 4 * row_starts
    assert payload <= size <= payload + 200 * 3 * len(linears)
    assert size < 0.6 * dense
    with pytest.raises(GreenlmError, match="not a greenlm sparse checkpoint"):
        sp.load_sparse_checkpoint(tmp_path / "dense.safetensors")


def test_csr_kernel_matches_dense(toy_task):
    model, tok = tiny(toy_task)
    controller = sp.SparsityController(model, "magnitude", "global")
    controller.set_sparsity(0.9)
    controller.bake()
    fast = sp.to_sparse_kernels(model)
    assert sum(isinstance(m, sp.CsrLinear) for m in fast.modules()) == 12  # 6 linears x 2 layers
    batch = tok(["the film was good", "awful plot and dull scene"], padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    with torch.inference_mode():
        torch.testing.assert_close(fast(**batch).logits, model(**batch).logits, atol=1e-5, rtol=1e-5)
