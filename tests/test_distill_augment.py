"""TinyBERT-style augmentation: embedding neighbours, masked-LM candidates, the augmented split."""

from __future__ import annotations

import pytest
import torch

from greenlm.common import GreenlmError
from greenlm.compress import augment as aug
from greenlm.data import UNLABELED, TaskSplit
from greenlm.models import TinySpec, build_tiny_classifier, save_classifier


@pytest.fixture
def tiny(toy_task):
    model, tokenizer = build_tiny_classifier(TinySpec(layers=1, hidden=16, heads=2, ffn=20, vocab=99),
                                             list(toy_task.labels), toy_task.split("train").text_a, seed=0)
    return model, tokenizer


def test_embedding_neighbours_are_the_nearest_by_cosine():
    torch.manual_seed(0)
    table = torch.randn(30, 8)
    allowed = list(range(5, 30))
    got = aug.embedding_neighbours(table, [5, 7, 12], allowed, 4)
    for token, neighbours in got.items():
        sims = []
        for other in allowed:
            if other != token:
                a, b = table[token], table[other]
                sims.append((float(a @ b / (a.norm() * b.norm())), other))
        expected = [o for _, o in sorted(sims, reverse=True)[:4]]
        assert neighbours == expected
        assert token not in neighbours


def test_augmented_split_keeps_the_originals_and_replaces_only_single_token_words(tiny, toy_task):
    _, tokenizer = tiny
    split = toy_task.split("train").select(range(20))
    candidates = aug.EmbeddingCandidates(tokenizer, torch.randn(len(tokenizer), 8), k=3)
    candidates.prepare(split.text_a)
    out, stats = aug.augment_split(split, tokenizer, candidates, copies=3, prob=1.0, seed=0)
    assert out.text_a[:20] == split.text_a and out.labels[:20] == split.labels
    assert out.labels[20:] == [UNLABELED] * (len(out) - 20)
    assert stats["augmented_rows"] == len(out) - 20 > 20
    assert len(set(out.text_a)) == len(out.text_a)  # no duplicates
    # with prob 1, every replaceable word is replaced by one of its candidates; the others stay
    original = split.text_a[0].split()
    new = [t for t in out.text_a[20:] if len(t.split()) == len(original)][0].split()
    for old_word, new_word in zip(original, new):
        old_ids = tokenizer(old_word, add_special_tokens=False)["input_ids"]
        if len(old_ids) == 1 and old_ids[0] in candidates.table:
            assert tokenizer.convert_tokens_to_ids(new_word) in candidates.table[old_ids[0]]
        else:
            assert new_word == old_word
    # seeded: same input, same output
    again, _ = aug.augment_split(split, tokenizer, candidates, copies=3, prob=1.0, seed=0)
    assert again == out


def test_pairs_are_augmented_field_by_field(tiny):
    _, tokenizer = tiny
    split = TaskSplit(text_a=["the good film"], text_b=["a bad plot"], labels=[1])
    candidates = aug.EmbeddingCandidates(tokenizer, torch.randn(len(tokenizer), 8), k=2)
    candidates.prepare(["the good film", "a bad plot"])
    out, _ = aug.augment_split(split, tokenizer, candidates, copies=2, prob=1.0, seed=1)
    assert out.text_b is not None and len(out.text_b) == len(out.text_a) == len(out.labels)


def _save_masked_lm(folder, tokenizer, seed=0):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=20, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    model = BertForMaskedLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def test_masked_lm_candidates_are_its_top_predictions(tiny, tmp_path):
    _, tokenizer = tiny
    reference = _save_masked_lm(tmp_path / "mlm", tokenizer)
    mlm = aug.load_masked_lm(str(tmp_path / "mlm"), tokenizer)
    candidates = aug.MaskedLMCandidates(tokenizer, mlm, k=3)
    text = "the film was good"
    words = aug._words(tokenizer, text)
    got = candidates(text, words)
    ids = tokenizer(text)["input_ids"]
    allowed = set(aug.replaceable_token_ids(tokenizer))
    for w, (_, _, token) in enumerate(words):
        if token is None or token not in allowed:
            assert got[w] is None
            continue
        position = ids.index(token)
        masked = torch.tensor([ids])
        masked[0, position] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = reference(input_ids=masked).logits[0, position]
        ranked = [i for i in logits.argsort(descending=True).tolist() if i in allowed and i != token]
        assert got[w] == ranked[:3]


def test_masked_lm_must_have_its_head_and_the_teachers_vocabulary(tiny, tmp_path, toy_task):
    model, tokenizer = tiny
    save_classifier(model, tokenizer, tmp_path / "classifier")
    with pytest.raises(GreenlmError, match="no masked-LM head"):
        aug.load_masked_lm(str(tmp_path / "classifier"), tokenizer)
    _, other_tokenizer = build_tiny_classifier(TinySpec(layers=1, hidden=16, heads=2, ffn=20, vocab=60),
                                               list(toy_task.labels), ["completely other words here"] * 10)
    _save_masked_lm(tmp_path / "other", other_tokenizer)
    with pytest.raises(GreenlmError, match="different vocabulary"):
        aug.load_masked_lm(str(tmp_path / "other"), tokenizer)
