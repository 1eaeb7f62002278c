"""Student shapes, layer maps, initialisation from the teacher, vocabulary trimming, shape choice by budget."""

from __future__ import annotations

import math
import re

import pytest
import torch
from transformers import BertConfig

from greenlm.common import GreenlmError
from greenlm.data import collate, encode_split
from greenlm.models import TinySpec, build_tiny_classifier, load_classifier
from greenlm.models import students as st

MINILM = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                    intermediate_size=1536, architectures=["BertForSequenceClassification"])


@pytest.fixture
def teacher(toy_task):
    model, tokenizer = build_tiny_classifier(TinySpec(layers=4, hidden=32, heads=4, ffn=40, vocab=99),
                                             list(toy_task.labels), toy_task.split("train").text_a, seed=3)
    return model.eval(), tokenizer


def test_shapes_follow_the_teacher():
    assert st.parse_student_shape("4x312", MINILM) == st.StudentShape(4, 312, 12, 1248)  # 12 heads of 26
    assert st.parse_student_shape("2x256", MINILM) == st.StudentShape(2, 256, 8, 1024)  # teacher head width 32
    assert st.parse_student_shape("4x312x12x1200", MINILM) == st.StudentShape(4, 312, 12, 1200)
    assert st.derive_heads(100, 384, 12) == 10  # neither rule fits: divisor closest to 12 with >= 8 dims
    for bad in ("4", "4x", "x312", "0x64", "4x312x7", "four by 312"):
        with pytest.raises(GreenlmError):
            st.parse_student_shape(bad, MINILM)


def test_layer_maps():
    assert st.resolve_layer_map("uniform", 4, 6) == [2, 3, 5, 6]
    assert st.resolve_layer_map("uniform", 2, 6) == [3, 6]
    assert st.resolve_layer_map("uniform", 4, 12) == [3, 6, 9, 12]  # TinyBERT-4 from BERT-base: g(m) = 3m
    assert st.resolve_layer_map("bottom", 2, 6) == [1, 2]
    assert st.resolve_layer_map("top", 2, 6) == [5, 6]
    assert st.resolve_layer_map("1, 4", 2, 6) == [1, 4]
    for spec, m in [("1,2,3", 2), ("0,3", 2), ("3,7", 2), ("4,2", 2), ("a,b", 2), ("uniform", 8)]:
        with pytest.raises(GreenlmError):
            st.resolve_layer_map(spec, m, 6)


def test_same_width_student_copies_the_mapped_teacher_layers(teacher, toy_task):
    model, tokenizer = teacher
    shape = st.parse_student_shape("2x32", model.config)
    student = st.build_student(model, shape, init="teacher", layer_map=[2, 4])
    t, s = dict(model.named_parameters()), dict(student.named_parameters())
    for name, param in s.items():  # student layer 0 <- teacher layer 1, student layer 1 <- teacher layer 3
        source = re.sub(r"layer\.(\d+)\.", lambda m: f"layer.{[1, 3][int(m[1])]}.", name)
        assert torch.equal(param, t[source]), name
    # a full-depth copy is the teacher
    full = st.build_student(model, st.teacher_shape(model.config), init="teacher", layer_map=[1, 2, 3, 4])
    batch = collate(encode_split(toy_task.split("dev"), tokenizer, 32), list(range(8)), tokenizer.pad_token_id)
    batch.pop("labels")
    assert torch.allclose(full(**batch).logits, model(**batch).logits, atol=1e-6)


def test_narrow_student_takes_the_selected_coordinates(teacher):
    model, _ = teacher
    shape = st.parse_student_shape("1x16", model.config)  # 2 heads of 8 (the teacher's head width)
    scores = torch.arange(32, dtype=torch.float)  # dims 16..31 are the most important
    kept_tokens = [0, 1, 2, 3, 4, 10, 20, 30]
    student = st.build_student(model, shape, init="teacher", layer_map=[3], keep_token_ids=kept_tokens,
                               dim_scores=scores)
    r = torch.arange(16, 32)
    tb, sb = model.bert, student.bert
    assert torch.equal(sb.embeddings.word_embeddings.weight, tb.embeddings.word_embeddings.weight[kept_tokens][:, r])
    assert torch.equal(sb.embeddings.LayerNorm.weight, tb.embeddings.LayerNorm.weight[r])
    t_layer, s_layer = tb.encoder.layer[2], sb.encoder.layer[0]
    # FFN neurons: the 20 with the largest ||W_in,n|| * ||W_out,n|| (on the kept residual dims), in order
    w_in, w_out = t_layer.intermediate.dense.weight[:, r], t_layer.output.dense.weight[r, :]
    neurons = torch.topk(w_in.norm(dim=1) * w_out.norm(dim=0), 20).indices.sort().values
    assert torch.equal(s_layer.intermediate.dense.weight, w_in[neurons])
    assert torch.equal(s_layer.output.dense.weight, w_out[:, neurons])
    # whole teacher heads are kept (same head width), queries unscaled; the heads with the strongest V->O
    wv = t_layer.attention.self.value.weight[:, r].reshape(4, 8, 16)
    wo = t_layer.attention.output.dense.weight[r, :].reshape(16, 4, 8)
    strength = (wv.norm(dim=-1) * wo.norm(dim=0)).pow(2).sum(-1)
    heads = torch.topk(strength, 2).indices.sort().values.tolist()
    rows = torch.cat([torch.arange(h * 8, h * 8 + 8) for h in heads])
    assert torch.equal(s_layer.attention.self.query.weight, t_layer.attention.self.query.weight[rows][:, r])
    assert torch.equal(s_layer.attention.self.value.bias, t_layer.attention.self.value.bias[rows])
    assert torch.equal(student.classifier.weight, model.classifier.weight[:, r])
    assert student.config.vocab_size == len(kept_tokens)


def test_narrower_heads_scale_queries_so_scores_are_partial_sums(teacher):
    model, _ = teacher
    shape = st.StudentShape(1, 24, 4, 40)  # 4 heads of 6 dims (teacher: 4 of 8)
    student = st.build_student(model, shape, init="teacher", layer_map=[1], dim_scores=torch.arange(32.0))
    s_att, t_att = student.bert.encoder.layer[0].attention.self, model.bert.encoder.layer[0].attention.self
    x = torch.randn(3, 24)
    r = torch.arange(8, 32)
    # student scores of head 0 == teacher's partial dot product over the kept dims / sqrt(8)
    q_s, k_s = s_att.query(x)[:, :6], s_att.key(x)[:, :6]
    scores_s = q_s @ k_s.T / math.sqrt(6)
    x_t = torch.zeros(3, 32)
    x_t[:, r] = x
    q_t, k_t = t_att.query(x_t)[:, :8], t_att.key(x_t)[:, :8]
    wq, wk = t_att.query.weight[:8][:, r], t_att.key.weight[:8][:, r]
    dims = torch.topk(wq.norm(dim=1) * wk.norm(dim=1), 6).indices.sort().values
    scores_t = q_t[:, dims] @ k_t[:, dims].T / math.sqrt(8)
    assert torch.allclose(scores_s, scores_t, atol=1e-5)


def test_random_init_is_seeded_and_not_the_teacher(teacher):
    model, _ = teacher
    shape = st.parse_student_shape("2x32", model.config)
    a = st.build_student(model, shape, init="random", layer_map=[2, 4], seed=1)
    b = st.build_student(model, shape, init="random", layer_map=[2, 4], seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.bert.encoder.layer[0].attention.self.query.weight,
                           model.bert.encoder.layer[1].attention.self.query.weight)


def test_vocabulary_trimming_keeps_the_tokenization(teacher, toy_task, tmp_path):
    model, tokenizer = teacher
    texts = ["the good film", "a bad plot", "it was very dull"]
    trimmed, kept = st.trim_vocabulary(tokenizer, texts)
    assert len(trimmed) == len(kept) < len(tokenizer)
    for old, new in zip(tokenizer(texts)["input_ids"], trimmed(texts)["input_ids"]):
        assert [kept[i] for i in new] == old
    # an unseen word made of seen characters still tokenizes without [UNK]
    assert trimmed.unk_token_id not in trimmed("the flim")["input_ids"]
    # saved and reloaded like any model folder, the student keeps the trimmed tokenizer
    student = st.build_student(model, st.parse_student_shape("2x32", model.config), init="teacher",
                               layer_map=[2, 4], keep_token_ids=kept)
    from greenlm.models import save_classifier

    save_classifier(student, trimmed, tmp_path / "s")
    loaded = load_classifier(str(tmp_path / "s"))
    assert loaded.tokenizer(texts[:5])["input_ids"] == trimmed(texts[:5])["input_ids"]
    assert loaded.model.config.vocab_size == len(kept)
    batch = collate(encode_split(toy_task.split("dev"), loaded.tokenizer, 32), list(range(4)), trimmed.pad_token_id)
    batch.pop("labels")
    assert loaded.model(**batch).logits.shape == (4, 2)


def test_shapes_by_budget_fit_it():
    from greenlm.measure import count_flops

    teacher_flops = count_flops(MINILM, 32).infer_flops_per_example
    ranked = st.rank_shapes_by_budget(MINILM, 32, target_speedup=6)
    assert ranked
    for shape, flops in ranked:
        assert flops <= teacher_flops / 6
        assert flops == count_flops(st.student_config(MINILM, shape), 32).infer_flops_per_example
    best_flops = max(f for _, f in ranked)
    assert ranked[0][1] >= 0.95 * best_flops
    capped = st.rank_shapes_by_budget(MINILM, 32, max_flops=1e8)
    assert all(f <= 1e8 for _, f in capped)
    with pytest.raises(GreenlmError):
        st.rank_shapes_by_budget(MINILM, 32, target_speedup=10_000)
