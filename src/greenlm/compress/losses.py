"""Distillation losses, each a small function (or module, when it owns parameters) with its formula.

Shapes: B = batch, T = tokens, C = classes, A = heads, d_s / d_t = student / teacher hidden width.
``mask`` [B, T] is the attention mask (1 = real token, 0 = padding); every token-level loss averages
over real tokens only, so dynamic padding does not change a loss (TinyBERT's code averaged over
padding too; that weights short sentences less and is not reproduced here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_LABEL = -1  # rows without a gold label (augmented text) carry this label


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".

        L_soft = T^2 * mean_b KL( softmax(z_t / T) || softmax(z_s / T) )
               = T^2 * mean_b sum_c p_t,c (log p_t,c - log p_s,c)

    logits [B, C]. The T^2 factor keeps the gradient scale independent of T (the soft gradients
    shrink as 1/T^2). Equal, up to the constant teacher entropy, to TinyBERT's soft cross-entropy.
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # [B]
    return kl.mean() * t * t


def hard_label_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the gold labels, over the rows that have one (label != -1); 0 when none do."""
    known = labels != IGNORE_LABEL
    if not bool(known.any()):
        return student_logits.sum() * 0.0  # keeps the graph (and DDP) happy
    return F.cross_entropy(student_logits[known].float(), labels[known])


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
            temperature: float = 1.0, hard_weight: float = 0.0) -> torch.Tensor:
    """Hinton et al. 2015, soft targets mixed with hard labels by a weight w (``hard_weight``):

        L_pred = (1 - w) * L_soft(T) + w * CE(y, softmax(z_s))
    """
    loss = (1.0 - hard_weight) * soft_target_loss(student_logits, teacher_logits, temperature)
    if hard_weight > 0:
        loss = loss + hard_weight * hard_label_loss(student_logits, labels)
    return loss


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean over real tokens t and features k of (a_tk - b_tk)^2; a, b [B, T, k], mask [B, T]."""
    keep = mask.bool()
    diff = (a.float() - b.float())[keep]  # [N, k]
    return diff.pow(2).mean()


def attention_score_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT (Jiao et al. 2020, eq. 7) attention loss of one layer pair:

        L_attn = 1/A sum_a MSE(A_s,a, A_t,a),   A = Q K^T / sqrt(d_head)  (scores before softmax)

    scores [B, A, T, T]; the mean runs over real (query, key) pairs only. When student and teacher
    have different head counts, the head-averaged score maps are compared (1/A sum_a A_a), the
    closest thing that fits; TinyBERT's students keep the teacher's 12 heads and never need it.
    """
    if student_scores.shape[1] != teacher_scores.shape[1]:
        student_scores = student_scores.mean(1, keepdim=True)
        teacher_scores = teacher_scores.mean(1, keepdim=True)
    pairs = mask[:, None, :, None].bool() & mask[:, None, None, :].bool()  # [B, 1, T, T]
    pairs = pairs.expand_as(student_scores)
    diff = (student_scores.float() - teacher_scores.float())[pairs]
    return diff.pow(2).mean()


def hidden_state_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor,
                      projection: nn.Module) -> torch.Tensor:
    """TinyBERT eq. 8 (and eq. 9 for the embedding layer with W_e):

        L_hidn = MSE(H_s W_h, H_t),   H_s [B, T, d_s], W_h [d_s, d_t] learned, H_t [B, T, d_t]
    """
    return masked_mse(projection(student_hidden), teacher_hidden, mask)


def cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor,
                projection: nn.Module | None = None) -> torch.Tensor:
    """DistilBERT (Sanh et al. 2019) cosine embedding loss on hidden states:

        L_cos = mean over real tokens of (1 - cos(h_s W, h_t))

    DistilBERT's student has the teacher's width (W = I); a narrower student goes through W [d_s, d_t].
    """
    if projection is not None:
        student_hidden = projection(student_hidden)
    keep = mask.bool()
    cos = F.cosine_similarity(student_hidden.float()[keep], teacher_hidden.float()[keep], dim=-1)  # [N]
    return (1.0 - cos).mean()


def _projection(d_s: int, d_t: int) -> nn.Module:
    return nn.Identity() if d_s == d_t else nn.Linear(d_s, d_t)


class TinyBertLayerLoss(nn.Module):
    """TinyBERT's intermediate-layer distillation (Jiao et al. 2020, eq. 10, the m > 0 and m = 0 terms):

        L = w_emb * MSE(E_s W_e, E_t)
          + sum_{m=1..M} [ w_attn * L_attn(S_m, T_g(m)) + w_hidn * MSE(H_s,m W_h, H_t,g(m)) ]

    ``layer_map[m-1]`` = g(m), the teacher layer (1-based) student layer m learns from. W_h is one
    matrix shared by all layers and W_e another (the paper's learnable W_h and W_e; identities when
    widths agree). Both are trained with the student and dropped afterwards. ``forward`` takes the
    Hugging Face outputs of both models run with ``output_hidden_states`` and ``output_attentions``
    (attentions holding pre-softmax scores, see ``greenlm.compress.distill.score_attention``).
    """

    def __init__(self, student_hidden: int, teacher_hidden: int, layer_map: Sequence[int], *,
                 attention_weight: float = 1.0, hidden_weight: float = 1.0, embedding_weight: float = 1.0):
        super().__init__()
        self.layer_map = list(layer_map)
        self.weights = {"attention": attention_weight, "hidden": hidden_weight, "embedding": embedding_weight}
        self.hidden_projection = _projection(student_hidden, teacher_hidden)  # W_h
        self.embedding_projection = _projection(student_hidden, teacher_hidden)  # W_e

    def forward(self, student_out, teacher_out, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        parts = {"embedding": hidden_state_loss(student_out.hidden_states[0], teacher_out.hidden_states[0], mask,
                                                self.embedding_projection)}
        attention = hidden = 0.0
        for m, g in enumerate(self.layer_map, start=1):
            hidden = hidden + hidden_state_loss(student_out.hidden_states[m], teacher_out.hidden_states[g], mask,
                                                self.hidden_projection)
            attention = attention + attention_score_loss(student_out.attentions[m - 1], teacher_out.attentions[g - 1],
                                                         mask)
        parts["hidden"], parts["attention"] = hidden, attention
        total = sum(self.weights[k] * v for k, v in parts.items() if self.weights[k] != 0)
        return total, {k: float(v.detach()) for k, v in parts.items()}
