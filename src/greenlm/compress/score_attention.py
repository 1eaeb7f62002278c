"""Attention scores for TinyBERT's attention loss: an attention implementation that hands out the pre-softmax
scores Q K^T / sqrt(d) as its weights, and a context that switches models to it (``losses.TinyBertLayerLoss``
compares scores, not probabilities)."""

from __future__ import annotations

import torch

SCORE_ATTENTION = "greenlm_scores"


def _register_score_attention() -> None:
    """An attention implementation that returns the pre-softmax scores Q K^T / sqrt(d) as its weights.

    TinyBERT's attention loss compares scores, not probabilities; Hugging Face models return
    probabilities (and only with eager attention). This is eager attention with the raw scores handed
    out instead; outputs are identical to eager's.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    if SCORE_ATTENTION in AttentionInterface._global_mapping:
        return

    def score_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        # query/key/value [B, A, T, d]; attention_mask additive [B, 1, T, T] or None
        scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # [B, A, T, T]
        weights = scores if attention_mask is None else scores + attention_mask
        weights = torch.nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
        weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
        out = torch.matmul(weights, value).transpose(1, 2).contiguous()  # [B, T, A, d]
        return out, scores

    AttentionInterface.register(SCORE_ATTENTION, score_attention)
    AttentionMaskInterface.register(SCORE_ATTENTION, eager_mask)


class _ScoreAttention:
    """Within the block, the given models use ``score_attention``; their own implementation after."""

    def __init__(self, *models):
        self.models = models

    def __enter__(self):
        _register_score_attention()
        self.before = [m.config._attn_implementation for m in self.models]
        for m in self.models:
            m.set_attn_implementation(SCORE_ATTENTION)

    def __exit__(self, *exc):
        for m, impl in zip(self.models, self.before):
            m.set_attn_implementation(impl or "sdpa")
        return False
