"""Each distillation loss equals its formula written out by hand (loops, math module) on random tensors."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from greenlm.compress.distill import _ScoreAttention
from greenlm.compress.losses import (TinyBertLayerLoss, attention_score_loss, cosine_loss, hard_label_loss,
                                     hidden_state_loss, kd_loss, soft_target_loss)


def _softmax(row):
    m = max(row)
    e = [math.exp(x - m) for x in row]
    return [x / sum(e) for x in e]


def _mask(lengths, width):
    return torch.tensor([[1] * n + [0] * (width - n) for n in lengths])


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_target_loss_is_t_squared_kl(temperature):
    torch.manual_seed(0)
    s, t = torch.randn(5, 3) * 3, torch.randn(5, 3) * 3
    expected = 0.0
    for b in range(5):
        p_t = _softmax([x / temperature for x in t[b].tolist()])
        p_s = _softmax([x / temperature for x in s[b].tolist()])
        expected += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
    expected = expected / 5 * temperature**2
    assert soft_target_loss(s, t, temperature).item() == pytest.approx(expected, rel=1e-5)
    assert soft_target_loss(t, t, temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_mixes_soft_and_hard_and_skips_unlabelled_rows():
    torch.manual_seed(1)
    s, t = torch.randn(4, 2), torch.randn(4, 2)
    labels = torch.tensor([1, -1, 0, -1])
    ce = -(math.log(_softmax(s[0].tolist())[1]) + math.log(_softmax(s[2].tolist())[0])) / 2
    soft = soft_target_loss(s, t, 2.0).item()
    got = kd_loss(s, t, labels, temperature=2.0, hard_weight=0.3).item()
    assert got == pytest.approx(0.7 * soft + 0.3 * ce, rel=1e-5)
    assert kd_loss(s, t, labels, temperature=2.0, hard_weight=0.0).item() == pytest.approx(soft, rel=1e-6)


def test_hard_label_loss_without_labels_is_zero_with_a_gradient():
    s = torch.randn(3, 2, requires_grad=True)
    loss = hard_label_loss(s, torch.tensor([-1, -1, -1]))
    assert loss.item() == 0.0
    loss.backward()
    assert s.grad is not None


def test_attention_score_loss_counts_real_pairs_only():
    torch.manual_seed(2)
    lengths, width, heads = [4, 2], 4, 3
    a, b = torch.randn(2, heads, width, width), torch.randn(2, heads, width, width)
    total, n = 0.0, 0
    for batch, length in enumerate(lengths):
        for h in range(heads):
            for i in range(length):
                for j in range(length):
                    total += (a[batch, h, i, j].item() - b[batch, h, i, j].item()) ** 2
                    n += 1
    got = attention_score_loss(a, b, _mask(lengths, width)).item()
    assert got == pytest.approx(total / n, rel=1e-5)
    # padding does not change the loss: garbage in padded positions is ignored
    a2 = a.clone()
    a2[1, :, 2:, :] = 100.0
    a2[1, :, :, 2:] = -100.0
    assert attention_score_loss(a2, b, _mask(lengths, width)).item() == pytest.approx(got, rel=1e-6)


def test_attention_score_loss_with_different_head_counts_compares_head_means():
    torch.manual_seed(3)
    a, b = torch.randn(1, 2, 3, 3), torch.randn(1, 4, 3, 3)
    mean_a, mean_b = a.mean(1), b.mean(1)
    expected = sum((mean_a[0, i, j].item() - mean_b[0, i, j].item()) ** 2 for i in range(3) for j in range(3)) / 9
    assert attention_score_loss(a, b, torch.ones(1, 3)).item() == pytest.approx(expected, rel=1e-5)


def test_hidden_state_loss_goes_through_the_projection():
    torch.manual_seed(4)
    hs, ht = torch.randn(2, 3, 4), torch.randn(2, 3, 6)
    proj = torch.nn.Linear(4, 6)
    mask = _mask([3, 1], 3)
    w, bias = proj.weight.detach(), proj.bias.detach()
    total, n = 0.0, 0
    for b_, length in enumerate([3, 1]):
        for t in range(length):
            for k in range(6):
                projected = sum(hs[b_, t, i].item() * w[k, i].item() for i in range(4)) + bias[k].item()
                total += (projected - ht[b_, t, k].item()) ** 2
                n += 1
    assert hidden_state_loss(hs, ht, mask, proj).item() == pytest.approx(total / n, rel=1e-5)


def test_cosine_loss_by_hand():
    torch.manual_seed(5)
    hs, ht = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = _mask([2, 3], 3)
    values = []
    for b_, length in enumerate([2, 3]):
        for t in range(length):
            x, y = hs[b_, t].tolist(), ht[b_, t].tolist()
            dot = sum(p * q for p, q in zip(x, y))
            values.append(1 - dot / (math.sqrt(sum(p * p for p in x)) * math.sqrt(sum(q * q for q in y))))
    assert cosine_loss(hs, ht, mask).item() == pytest.approx(sum(values) / len(values), rel=1e-5)
    assert cosine_loss(ht, ht, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_tinybert_layer_loss_follows_the_layer_map():
    torch.manual_seed(6)
    width, mask = 3, torch.ones(2, 3)
    student = SimpleNamespace(hidden_states=[torch.randn(2, width, 4) for _ in range(3)],
                              attentions=[torch.randn(2, 2, width, width) for _ in range(2)])
    teacher = SimpleNamespace(hidden_states=[torch.randn(2, width, 6) for _ in range(5)],
                              attentions=[torch.randn(2, 2, width, width) for _ in range(4)])
    loss = TinyBertLayerLoss(4, 6, [2, 4], attention_weight=0.5, hidden_weight=2.0, embedding_weight=3.0)
    total, parts = loss(student, teacher, mask)
    w_h, w_e = loss.hidden_projection, loss.embedding_projection
    emb = hidden_state_loss(student.hidden_states[0], teacher.hidden_states[0], mask, w_e)
    hid = sum(hidden_state_loss(student.hidden_states[m], teacher.hidden_states[g], mask, w_h) for m, g in [(1, 2), (2, 4)])
    att = sum(attention_score_loss(student.attentions[m - 1], teacher.attentions[g - 1], mask) for m, g in [(1, 2), (2, 4)])
    assert total.item() == pytest.approx(3.0 * emb.item() + 2.0 * hid.item() + 0.5 * att.item(), rel=1e-5)
    assert parts == pytest.approx({"embedding": emb.item(), "hidden": hid.item(), "attention": att.item()}, rel=1e-5)
    # equal widths need no projection
    assert isinstance(TinyBertLayerLoss(4, 4, [1]).hidden_projection, torch.nn.Identity)


def test_score_attention_returns_pre_softmax_scores_and_the_same_outputs():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(7)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=20, max_position_embeddings=32)
    model = BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 50, (2, 6))
    mask = _mask([6, 4], 6)
    plain = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    with _ScoreAttention(model):
        scored = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert torch.allclose(plain.logits, scored.logits, atol=1e-5)
    layer = model.bert.encoder.layer[1].attention.self
    hidden = plain.hidden_states[1]  # input of layer 2
    q = layer.query(hidden).view(2, 6, 2, 8).transpose(1, 2)
    k = layer.key(hidden).view(2, 6, 2, 8).transpose(1, 2)
    assert torch.allclose(scored.attentions[1], q @ k.transpose(-1, -2) / math.sqrt(8), atol=1e-5)
    assert model.config._attn_implementation != "greenlm_scores"  # restored after the block
