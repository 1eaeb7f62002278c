"""Linear attention kernels: each equals a direct quadratic computation of its kernel, random features converge
to softmax as their count grows, padded keys contribute nothing, batched equals one by one; the spec parser."""

from __future__ import annotations

import pytest
import torch

from greenlm.common import GreenlmError
from greenlm.models import attention_kernels as ak
from greenlm.models.attention_spec import AttentionSpec, parse_attention_list

B, H, N, D = 3, 2, 9, 8


def _qkv(seed=0, scale=1.0, dtype=torch.float64, n=N, d=D):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, n, d, generator=g, dtype=dtype) * scale for _ in range(3)]


def _mask():
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 2:] = False
    return mask


def _projection(features, seed=0, d=D, orthogonal=True):
    return ak.random_projection(features, d, orthogonal=orthogonal, generator=torch.Generator().manual_seed(seed))


KERNELS = {
    "rfa": (lambda q, k, v, m: ak.rfa_attention(q, k, v, _projection(16).double(), m,
                                                 inv_sigma=torch.tensor([1.0, 1.7], dtype=torch.float64)),
            lambda q, k, v, m: ak.quadratic_reference_rfa(q, k, v, _projection(16).double(), m,
                                                           inv_sigma=torch.tensor([1.0, 1.7], dtype=torch.float64))),
    "performer": (lambda q, k, v, m: ak.performer_attention(q, k, v, _projection(16).double(), m),
                  lambda q, k, v, m: ak.quadratic_reference_performer(q, k, v, _projection(16).double(), m)),
    "t2r": (lambda q, k, v, m: ak.t2r_attention(q, k, v, *_t2r_map(), m),
            lambda q, k, v, m: ak.quadratic_reference_t2r(q, k, v, *_t2r_map(), m)),
    "abc": (lambda q, k, v, m: ak.abc_attention(q, k, v, _control(), m),
            lambda q, k, v, m: ak.quadratic_reference_abc(q, k, v, _control(), m)),
}


def _t2r_map(features=6):
    g = torch.Generator().manual_seed(5)
    return (torch.randn(H, features, D, generator=g, dtype=torch.float64),
            torch.randn(H, features, generator=g, dtype=torch.float64) * 0.1 + 0.5)


def _control(slots=4):
    return torch.randn(B, H, N, slots, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


@pytest.mark.parametrize("kind", list(KERNELS))
@pytest.mark.parametrize("masked", [False, True])
def test_linear_kernel_equals_its_quadratic_reference(kind, masked):
    linear, reference = KERNELS[kind]
    q, k, v = _qkv()
    mask = _mask() if masked else None
    got, want = linear(q, k, v, mask), reference(q, k, v, mask)
    assert got.shape == (B, H, N, D)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_softmax_through_sdpa_equals_the_written_out_softmax():
    q, k, v = _qkv()
    torch.testing.assert_close(ak.softmax_attention(q, k, v, _mask()), ak.softmax_reference(q, k, v, _mask()))


def test_abc_memory_is_a_weighted_mean_and_rows_sum_to_one():
    q, k, v = _qkv()
    phi = ak.abc_control(_control(), _mask())
    torch.testing.assert_close(phi.sum(dim=-2), torch.ones(B, H, 4, dtype=torch.float64))  # each slot: weights sum to 1
    assert float(phi[1, :, 5:].abs().max()) == 0.0 and float(phi[2, :, 2:].abs().max()) == 0.0
    ones = torch.ones_like(v)
    torch.testing.assert_close(ak.abc_attention(q, k, ones, _control(), _mask()), ones)  # a convex combination


@pytest.mark.parametrize("kind", list(KERNELS))
def test_padded_keys_contribute_nothing(kind):
    linear, _ = KERNELS[kind]
    q, k, v = _qkv()
    mask = _mask()
    before = linear(q, k, v, mask)
    k2, v2 = k.clone(), v.clone()
    k2[1, :, 5:] = 50.0  # rubbish (and large) where padding is
    v2[1, :, 5:] = -1e3
    after = linear(q, k2, v2, mask)
    torch.testing.assert_close(after[1, :, :5], before[1, :, :5])
    assert torch.isfinite(after).all()
    # the same change on real keys does change the output (the check can fail)
    k3 = k.clone()
    k3[0, :, 5:] = 5.0
    assert not torch.allclose(linear(q, k3, v, mask)[0], before[0])


@pytest.mark.parametrize("kind", list(KERNELS))
def test_batched_equals_one_by_one(kind):
    linear, _ = KERNELS[kind]
    q, k, v = _qkv()
    mask = _mask()
    together = linear(q, k, v, mask)
    for b, length in enumerate(mask.sum(-1).tolist()):
        part = [t[b:b + 1, :, :length] for t in (q, k, v)]
        if kind == "abc":  # the control belongs to the row too
            alone = ak.abc_attention(*part, _control()[b:b + 1, :, :length])
        elif kind == "t2r":
            alone = ak.t2r_attention(*part, *_t2r_map())
        else:
            proj = _projection(16).double()
            alone = (ak.rfa_attention(*part, proj, inv_sigma=torch.tensor([1.0, 1.7], dtype=torch.float64))
                     if kind == "rfa" else ak.performer_attention(*part, proj))
        torch.testing.assert_close(together[b:b + 1, :, :length], alone)


def _mean_error(kind, features, seeds=4):
    q, k, v = _qkv(seed=1, scale=0.6, dtype=torch.float32, n=16, d=16)
    errors = []
    for seed in range(seeds):
        proj = _projection(features, seed=100 + seed, d=16)
        if kind == "performer":
            got, want = ak.performer_attention(q, k, v, proj), ak.softmax_reference(q, k, v)
        else:
            got, want = ak.rfa_attention(q, k, v, proj), ak.rfa_target(q, k, v)
        errors.append(float((got - want).abs().mean()))
    return sum(errors) / len(errors)


@pytest.mark.parametrize("kind", ["rfa", "performer"])
def test_random_features_converge_to_softmax(kind):
    errors = [_mean_error(kind, m) for m in (16, 256, 4096)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < errors[0] / 3, errors  # measured: falls by about sqrt of the feature ratio


def test_orthogonal_rows_are_orthogonal_within_a_block_and_gaussian_sized():
    w = _projection(16, d=8)
    block = w[:8] / w[:8].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(block @ block.T, torch.eye(8), atol=1e-5, rtol=0)
    big = _projection(2048, d=8)
    assert abs(float((big ** 2).sum(-1).mean()) - 8.0) < 0.5  # E|w|^2 = d, as for N(0, I)


def test_performer_features_are_positive_and_finite_for_large_inputs():
    q, k, v = _qkv(scale=30.0, dtype=torch.float32)
    out = ak.performer_attention(q, k, v, _projection(32), _mask())
    assert torch.isfinite(out).all()
    phi = ak.performer_features(q, _projection(32), is_query=True)
    assert float(phi.min()) >= 0.0


def test_linear_attention_never_forms_the_n_by_n_matrix():
    # memory of the linear path grows with N·m, not N^2: a long input runs where N^2 floats would not fit 1 GB
    n = 20_000
    q = torch.randn(1, 1, n, 8)
    out = ak.performer_attention(q, q, q, _projection(16))
    assert out.shape == (1, 1, n, 8)  # n^2 float32 = 1.6 GB per head for the quadratic path


# ---- the spec ------------------------------------------------------------------------------------------------


def test_spec_parse_defaults_and_round_trip():
    spec = AttentionSpec.parse("rfa:features=32,redraw=per_forward,seed=3")
    assert (spec.kind, spec.features, spec.redraw, spec.seed) == ("rfa", 32, "per_forward", 3)
    assert AttentionSpec.parse(spec.describe()) == spec
    assert AttentionSpec.from_dict(spec.to_dict()) == spec
    assert AttentionSpec.parse("performer").features == 128 and AttentionSpec.parse("rfa").features == 64
    assert AttentionSpec.parse("abc:k=8").to_dict() == {"kind": "abc", "k": 8}
    assert AttentionSpec.parse("softmax").to_dict() == {"kind": "softmax"} and not AttentionSpec.parse("softmax").linear
    kinds = [s.describe() for s in parse_attention_list("softmax,rfa:features=8,seed=1,abc:k=4,performer")]
    assert kinds == ["softmax", "rfa:features=8,redraw=fixed,seed=1,orthogonal=1", "abc:k=4",
                     "performer:features=128,redraw=fixed,seed=0,orthogonal=1"]


@pytest.mark.parametrize("text,message", [
    ("linformer", "known: softmax, rfa, performer, t2r, abc"),
    ("perfomer", "did you mean 'performer'"),
    ("rfa:features=0", "features must be a whole number from 1 to"),
    ("abc:k=0", "memory size k must be a whole number from 1 to"),
    ("abc:features=3", "not key=value with a key it takes (k)"),
    ("rfa:redraw=sometimes", "redraw must be one of fixed, per_forward"),
    ("rfa:features=many", "features must be a whole number"),
])
def test_spec_refuses_bad_input(text, message):
    with pytest.raises(GreenlmError, match=None) as caught:
        AttentionSpec.parse(text)
    assert message in str(caught.value)


@pytest.mark.parametrize("kind", ["rfa", "performer"])
def test_chunked_evaluation_equals_the_single_pass(kind):
    q, k, v = _qkv(scale=2.0)
    mask = _mask()
    proj = _projection(16).double()
    with torch.no_grad():
        if kind == "rfa":
            whole = ak.rfa_attention(q, k, v, proj, mask, chunk=10_000)
            parts = ak.rfa_attention(q, k, v, proj, mask, chunk=2)
        else:
            whole = ak.performer_attention(q, k, v, proj, mask, chunk=10_000)
            parts = ak.performer_attention(q, k, v, proj, mask, chunk=2)
    torch.testing.assert_close(parts, whole, rtol=1e-10, atol=1e-12)


def test_t2r_features_are_non_negative_and_learnable():
    """T2R's map is relu(W x + b): never negative, and its weights get gradients through the attention."""
    q, k, v = _qkv()
    weight, bias = (t.clone().requires_grad_() for t in _t2r_map())
    assert float(ak.t2r_features(q, weight, bias).detach().min()) >= 0.0
    ak.t2r_attention(q, k, v, weight, bias, _mask()).sum().backward()
    assert weight.grad is not None and float(weight.grad.abs().sum()) > 0 and float(bias.grad.abs().sum()) > 0
    with torch.no_grad():
        whole = ak.t2r_attention(q, k, v, weight, bias, _mask(), chunk=10_000)
        parts = ak.t2r_attention(q, k, v, weight, bias, _mask(), chunk=2)
    torch.testing.assert_close(parts, whole, rtol=1e-10, atol=1e-12)
