"""Attention kernels on [batch, heads, seq, head_dim] tensors: softmax, and three whose cost grows linearly with length.

Every function takes queries q [B, H, N, d], keys k [B, H, M, d], values v [B, H, M, d_v] and a key padding
mask ``key_mask`` [B, M] (True / 1 = a real token, False / 0 = padding; None = no padding). Padded keys contribute
nothing: their features (or control weights) are zeroed before anything is summed over keys. Outputs are
[B, H, N, d_v]; rows of padded queries are finite but meaningless (the model ignores them).

Softmax (Vaswani et al. 2017), O(N·M·d) time and O(N·M) memory:

    Attn(q, K, V)_t = sum_i exp(q_t·k_i·s) v_i / sum_j exp(q_t·k_j·s)        s = scaling, 1/sqrt(d) for BERT

A kernelised attention replaces exp(q·k·s) by phi(q)·phi(k) for a feature map phi: R^d -> R^m, and then, by
associativity, never forms the N x M matrix (Katharopoulos et al. 2020, "Transformers are RNNs"):

    Attn_t = phi(q_t)^T (sum_i phi(k_i) v_i^T) / phi(q_t)^T (sum_j phi(k_j))                    (*)
             [m]        [m, d_v], formed once      [m], formed once

O((N + M)·m·d) time and O(N·m + m·d) memory per head. ``linear_attention`` computes (*);
``quadratic_reference`` computes the same kernel the direct way (the N x M matrix phi(Q) phi(K)^T, rows
normalised), which the tests use to check (*) to float tolerance.

Feature maps (w_1..w_D are rows of a [D, d] random matrix drawn by ``random_projection``):

- RFA, Peng et al. 2021, "Random Feature Attention" (ICLR), eq. 2-5, the non-gated bidirectional variant.
  Random Fourier features (Rahimi & Recht 2007): with w ~ N(0, I/sigma^2),

      phi(x) = sqrt(1/D) [sin(w_1·x), ..., sin(w_D·x), cos(w_1·x), ..., cos(w_D·x)]       (m = 2D features)
      E[phi(x)·phi(y)] = exp(-|x - y|^2 / (2 sigma^2))

  Queries and keys are l2-normalised first, so |x| = |y| = 1 and exp(-|x-y|^2/2sigma^2) = exp(x·y/sigma^2) / e^{1/sigma^2}:
  the constant cancels in (*) and RFA estimates softmax(q̂·k̂ / sigma^2) (hats: unit vectors). ``inv_sigma``
  (1/sigma, one per head, learned in the model) scales the projection, i.e. w = w_0 / sigma with w_0 ~ N(0, I).
  phi(q)·phi(k) can be negative for a small D; the denominator of (*) is clamped at ``eps``.

- Performer FAVOR+, Choromanski et al. 2021, "Rethinking Attention with Performers" (ICLR), Lemma 1 and sec. 2.4.
  Positive random features of the softmax kernel exp(x·y), with x = q·sqrt(s), y = k·sqrt(s) and w ~ N(0, I):

      phi(x) = exp(-|x|^2/2) / sqrt(m) [exp(w_1·x), ..., exp(w_m·x)]          E[phi(x)·phi(y)] = exp(x·y)

  The w_i are orthogonal random features (ORF, sec. 2.4): blocks of d orthogonal directions, each row rescaled
  to the length of a N(0, I_d) draw, so each w_i is still marginally N(0, I) and the estimate's variance is
  lower. Numerical stabilisation: every query's features are divided by exp(max_j(w_j·x - |x|^2/2)), every
  key's by exp of the maximum over all real keys of the (batch, head) (a constant per row of (*), so it
  cancels in the ratio); no exp overflows.

- T2R, Kasai et al. 2021, "Finetuning Pretrained Transformers into RNNs" (EMNLP), eq. 4: a learned feature map,
  one small MLP per head, trained with the rest of the model after the swap (no kernel is approximated):

      phi(x) = relu(W x + b)        W [m, d], b [m] per head and layer                   (m = features)

  phi >= 0, so (*) has no negative weights; a query whose features are all zero gets the eps floor.

- ABC, Peng et al. 2022, "ABC: Attention with Bounded-memory Control" (ACL), sec. 3 and ABC_MLP (sec. 4).
  S memory slots written by a learned control phi_i in R^S per token, normalised over the sequence:

      alpha_i = exp(c_i),  phi_{i,s} = alpha_{i,s} / sum_j alpha_{j,s}       (c = W_phi x: ``control`` [B, H, M, S])
      K~ = phi^T K  [S, d],   V~ = phi^T V  [S, d_v]        (each slot is a weighted mean of keys / values)
      Attn_t = softmax_s(q_t·K~_s·s) V~

  O(M·S·d + N·S·d) time, O(N·S) memory; padded keys get alpha = 0. The quadratic reference forms the N x M
  matrix A_{t,i} = sum_s softmax(q_t K~^T s)_s phi_{i,s} that ABC implies and multiplies it by V.
"""

from __future__ import annotations

import math

import torch

EPS = 1e-6  # floor of the denominators of (*)
CHUNK = 256  # in evaluation, feature maps of longer inputs are applied this many tokens at a time (less memory)


# ---- masks -----------------------------------------------------------------------------------------


def _keep(key_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """[B, M] key mask -> [B, 1, M, 1] in ``like``'s dtype (1 real, 0 padding), or None."""
    if key_mask is None:
        return None
    return key_mask.to(device=like.device, dtype=like.dtype)[:, None, :, None]


# ---- softmax ------------------------------------------------------------------------------------------


def softmax_attention(q, k, v, key_mask=None, *, scaling: float | None = None) -> torch.Tensor:
    """Exact softmax attention through PyTorch's scaled-dot-product attention (the strongest CPU baseline)."""
    scaling = q.shape[-1] ** -0.5 if scaling is None else scaling
    mask = None if key_mask is None else key_mask.to(torch.bool)[:, None, None, :]  # [B, 1, 1, M], True = attend
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling)


def softmax_reference(q, k, v, key_mask=None, *, scaling: float | None = None) -> torch.Tensor:
    """The same, written out: softmax over keys of q·k·s, padded keys at -inf."""
    scaling = q.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.einsum("bhnd,bhmd->bhnm", q, k) * scaling  # [B, H, N, M]
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask.to(torch.bool)[:, None, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


# ---- random projections ---------------------------------------------------------------------------


def random_projection(features: int, dim: int, *, orthogonal: bool = True,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """[features, dim] rows w_i, each marginally N(0, I_dim).

    ``orthogonal``: in blocks of ``dim`` rows the directions are orthogonal (QR of a Gaussian matrix) and each
    row's length is that of an independent N(0, I_dim) draw (Choromanski et al. 2021, sec. 2.4, "regularized" ORF).
    """
    if not orthogonal:
        return torch.randn(features, dim, generator=generator)
    blocks = math.ceil(features / dim)
    gaussian = torch.randn(blocks, dim, dim, generator=generator)
    q, r = torch.linalg.qr(gaussian)  # q: [blocks, dim, dim], orthonormal columns
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]  # unique QR: a Haar-distributed rotation
    directions = q.transpose(-2, -1).reshape(blocks * dim, dim)[:features]  # unit rows, block after block
    lengths = torch.randn(features, dim, generator=generator).norm(dim=-1, keepdim=True)  # chi(dim)
    return directions * lengths


# ---- feature maps ---------------------------------------------------------------------------------


def rfa_features(x: torch.Tensor, projection: torch.Tensor, inv_sigma: torch.Tensor | None = None) -> torch.Tensor:
    """RFA's phi: x [B, H, N, d], projection [D, d] (rows ~ N(0, I)), inv_sigma [H] or None (sigma = 1) -> [B, H, N, 2D]."""
    x = torch.nn.functional.normalize(x, dim=-1)
    if inv_sigma is not None:
        x = x * inv_sigma.to(x.dtype)[None, :, None, None]  # w·x = (w_0 / sigma)·x = w_0·(x / sigma)
    features = projection.shape[0]
    # sin and cos in one pass, no concatenation: cos(a) = sin(a + pi/2), so phi = sin([W; W] x + [0; pi/2]) / sqrt(D)
    doubled = torch.cat([projection, projection], dim=0).to(x.dtype)  # [2D, d], small
    phase = torch.cat([projection.new_zeros(features), projection.new_full((features,), math.pi / 2)]).to(x.dtype)
    return torch.sin(x @ doubled.T + phase) * features ** -0.5


def _performer_logits(x, projection, key_mask=None, scaling=None) -> torch.Tensor:
    """w·x - |x|^2/2 with x scaled by sqrt(s) [B, H, N, m]; padded keys at -inf (zero features, no part in a shift)."""
    scaling = x.shape[-1] ** -0.5 if scaling is None else scaling
    x = x * math.sqrt(scaling)  # exp(q·k·s) = exp((q·sqrt(s))·(k·sqrt(s)))
    logits = x @ projection.T.to(x.dtype) - (x * x).sum(-1, keepdim=True) / 2
    if key_mask is not None:
        logits = logits.masked_fill(_keep(key_mask, logits) == 0, float("-inf"))
    return logits


def performer_features(x: torch.Tensor, projection: torch.Tensor, *, is_query: bool,
                       key_mask: torch.Tensor | None = None, scaling: float | None = None,
                       shift: torch.Tensor | None = None) -> torch.Tensor:
    """FAVOR+'s positive phi, stabilised: x [B, H, N, d], projection [m, d] -> [B, H, N, m].

    Queries are shifted by their own maximum, keys by the maximum over the real keys of each (batch, head) (or by
    ``shift`` [B, H, 1, 1], found over all keys when they come in chunks)."""
    logits = _performer_logits(x, projection, None if is_query else key_mask, scaling)
    if is_query:
        shift = logits.amax(dim=-1, keepdim=True).detach()
    elif shift is None:
        shift = logits.amax(dim=(-2, -1), keepdim=True).detach()
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))  # a row with no real key
    return torch.exp(logits - shift.detach()) * projection.shape[0] ** -0.5


def t2r_features(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """T2R's phi: x [B, H, N, d], weight [H, m, d], bias [H, m] -> relu(W x + b) [B, H, N, m]."""
    logits = torch.einsum("bhnd,hmd->bhnm", x, weight.to(x.dtype))
    return torch.relu(logits + bias.to(x.dtype)[None, :, None, :])


# ---- kernelised attention: linear and the quadratic reference --------------------------------------


def linear_attention(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor,
                     key_mask: torch.Tensor | None = None, *, eps: float = EPS) -> torch.Tensor:
    """(*) without the N x M matrix: phi_q [B, H, N, m], phi_k [B, H, M, m], v [B, H, M, d_v] -> [B, H, N, d_v]."""
    keep = _keep(key_mask, phi_k)
    if keep is not None:
        phi_k = phi_k * keep  # padded keys: zero features, so they add nothing to either sum
    kv = torch.einsum("bhmf,bhmd->bhfd", phi_k, v)  # [B, H, m, d_v]: sum_i phi(k_i) v_i^T
    z = phi_k.sum(dim=-2)  # [B, H, m]: sum_j phi(k_j)
    numerator = torch.einsum("bhnf,bhfd->bhnd", phi_q, kv)  # [B, H, N, d_v]
    denominator = torch.einsum("bhnf,bhf->bhn", phi_q, z)  # [B, H, N]
    return numerator / denominator.clamp_min(eps)[..., None]


def quadratic_reference(phi_q, phi_k, v, key_mask=None, *, eps: float = EPS) -> torch.Tensor:
    """The same kernel the direct way: A = phi(Q) phi(K)^T [B, H, N, M], padded columns zero, rows normalised."""
    kernel = torch.einsum("bhnf,bhmf->bhnm", phi_q, phi_k)
    if key_mask is not None:
        kernel = kernel * key_mask.to(kernel.dtype)[:, None, None, :]
    return (kernel / kernel.sum(-1, keepdim=True).clamp_min(eps)) @ v


def _use_chunks(n: int, chunk: int | None) -> int | None:
    """Chunk length for the feature maps: given, or CHUNK for long inputs when no gradient is recorded."""
    if chunk is None:
        chunk = CHUNK if not torch.is_grad_enabled() else None
    return chunk if chunk is not None and n > chunk else None


def chunked_linear_attention(q_features, k_features, q, k, v, key_mask=None, *, chunk: int,
                             eps: float = EPS) -> torch.Tensor:
    """(*) with the feature maps applied ``chunk`` tokens at a time: besides q, k, v and the output, memory is
    O(chunk·m + m·d_v) per head instead of O(N·m). ``k_features(k_part, mask_part)`` / ``q_features(q_part)`` give
    phi of a slice. Evaluation only (the output is written in place)."""
    batch, heads, n, _ = q.shape
    kv = z = None
    for start in range(0, k.shape[-2], chunk):
        end = start + chunk
        mask = None if key_mask is None else key_mask[:, start:end]
        phi = k_features(k[:, :, start:end], mask)  # [B, H, c, m]
        keep = _keep(mask, phi)
        if keep is not None:
            phi = phi * keep
        part = phi.transpose(-2, -1) @ v[:, :, start:end]  # [B, H, m, d_v]
        kv, z = (part, phi.sum(-2)) if kv is None else (kv + part, z + phi.sum(-2))
    out = v.new_empty(batch, heads, n, v.shape[-1])
    for start in range(0, n, chunk):
        phi = q_features(q[:, :, start:start + chunk])
        out[:, :, start:start + chunk] = (phi @ kv) / (phi @ z[..., None]).clamp_min(eps)
    return out


def rfa_attention(q, k, v, projection, key_mask=None, *, inv_sigma=None, chunk: int | None = None) -> torch.Tensor:
    """RFA through (*); ``chunk``: feature maps in slices of this many tokens (default: CHUNK for long inputs when
    no gradient is recorded; the result is the same)."""
    chunk = _use_chunks(max(q.shape[-2], k.shape[-2]), chunk)
    if chunk is not None:
        return chunked_linear_attention(lambda x: rfa_features(x, projection, inv_sigma),
                                        lambda x, _mask: rfa_features(x, projection, inv_sigma), q, k, v, key_mask,
                                        chunk=chunk)
    return linear_attention(rfa_features(q, projection, inv_sigma), rfa_features(k, projection, inv_sigma), v, key_mask)


def quadratic_reference_rfa(q, k, v, projection, key_mask=None, *, inv_sigma=None) -> torch.Tensor:
    return quadratic_reference(rfa_features(q, projection, inv_sigma), rfa_features(k, projection, inv_sigma), v,
                               key_mask)


def rfa_target(q, k, v, key_mask=None, *, inv_sigma=None) -> torch.Tensor:
    """What RFA estimates: softmax attention of unit queries and keys at temperature sigma^2."""
    q, k = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(k, dim=-1)
    if inv_sigma is not None:
        q = q * (inv_sigma ** 2).to(q.dtype)[None, :, None, None]
    return softmax_reference(q, k, v, key_mask, scaling=1.0)


def t2r_attention(q, k, v, weight, bias, key_mask=None, *, chunk: int | None = None) -> torch.Tensor:
    """T2R through (*); ``chunk`` as in ``rfa_attention``."""
    chunk = _use_chunks(max(q.shape[-2], k.shape[-2]), chunk)
    if chunk is not None:
        return chunked_linear_attention(lambda x: t2r_features(x, weight, bias),
                                        lambda x, _mask: t2r_features(x, weight, bias), q, k, v, key_mask, chunk=chunk)
    return linear_attention(t2r_features(q, weight, bias), t2r_features(k, weight, bias), v, key_mask)


def quadratic_reference_t2r(q, k, v, weight, bias, key_mask=None) -> torch.Tensor:
    return quadratic_reference(t2r_features(q, weight, bias), t2r_features(k, weight, bias), v, key_mask)


def performer_attention(q, k, v, projection, key_mask=None, *, scaling=None, chunk: int | None = None) -> torch.Tensor:
    """FAVOR+ through (*); ``chunk`` as in ``rfa_attention`` (the keys' shift is then found in a first pass)."""
    chunk = _use_chunks(max(q.shape[-2], k.shape[-2]), chunk)
    if chunk is not None:
        shift = None
        for start in range(0, k.shape[-2], chunk):  # pass 1: the maximum exponent over all real keys
            mask = None if key_mask is None else key_mask[:, start:start + chunk]
            part = _performer_logits(k[:, :, start:start + chunk], projection, mask, scaling).amax(dim=(-2, -1),
                                                                                                  keepdim=True)
            shift = part if shift is None else torch.maximum(shift, part)
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        return chunked_linear_attention(
            lambda x: performer_features(x, projection, is_query=True, scaling=scaling),
            lambda x, mask: performer_features(x, projection, is_query=False, key_mask=mask, scaling=scaling,
                                               shift=shift),
            q, k, v, key_mask, chunk=chunk)
    phi_q = performer_features(q, projection, is_query=True, scaling=scaling)
    phi_k = performer_features(k, projection, is_query=False, key_mask=key_mask, scaling=scaling)
    return linear_attention(phi_q, phi_k, v, key_mask)


def quadratic_reference_performer(q, k, v, projection, key_mask=None, *, scaling=None) -> torch.Tensor:
    phi_q = performer_features(q, projection, is_query=True, scaling=scaling)
    phi_k = performer_features(k, projection, is_query=False, key_mask=key_mask, scaling=scaling)
    return quadratic_reference(phi_q, phi_k, v, key_mask)


# ---- ABC: bounded memory ----------------------------------------------------------------------------


def abc_control(control: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """phi [B, H, M, S]: each slot's weights over the real tokens, exp(c) normalised over the sequence."""
    if key_mask is not None:
        control = control.masked_fill(_keep(key_mask, control) == 0, float("-inf"))
    phi = torch.softmax(control, dim=-2)
    return torch.nan_to_num(phi, nan=0.0)  # an input with no real token: empty memory


def abc_attention(q, k, v, control, key_mask=None, *, scaling: float | None = None) -> torch.Tensor:
    """q [B, H, N, d], k/v [B, H, M, d], control [B, H, M, S] -> [B, H, N, d_v] through S memory slots."""
    scaling = q.shape[-1] ** -0.5 if scaling is None else scaling
    phi = abc_control(control, key_mask)
    k_mem = torch.einsum("bhms,bhmd->bhsd", phi, k)  # [B, H, S, d]: K~ = phi^T K
    v_mem = torch.einsum("bhms,bhmd->bhsd", phi, v)  # [B, H, S, d_v]: V~ = phi^T V
    weights = torch.softmax(torch.einsum("bhnd,bhsd->bhns", q, k_mem) * scaling, dim=-1)  # [B, H, N, S]
    return weights @ v_mem


def quadratic_reference_abc(q, k, v, control, key_mask=None, *, scaling: float | None = None) -> torch.Tensor:
    """ABC as an N x M attention matrix: A = softmax(Q K~^T s) phi^T, then A V."""
    scaling = q.shape[-1] ** -0.5 if scaling is None else scaling
    phi = abc_control(control, key_mask)
    k_mem = torch.einsum("bhms,bhmd->bhsd", phi, k)
    weights = torch.softmax(torch.einsum("bhnd,bhsd->bhns", q, k_mem) * scaling, dim=-1)
    matrix = torch.einsum("bhns,bhms->bhnm", weights, phi)  # [B, H, N, M]; rows sum to 1
    return matrix @ v
