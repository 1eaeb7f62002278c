"""Masking strategies: one budget for all, whole words kept whole, no stop word masked, BERT's 80/10/10."""

from __future__ import annotations

import random

import pytest
import torch

from greenlm.pretrain.content_words import content_flags, is_content_word, stop_words
from greenlm.pretrain.corpus import encode_blocks
from greenlm.pretrain.masking import IGNORE, batch_generator, budget, replace, select, select_random, select_whole_words
from greenlm.pretrain.vocab import train_wordpiece

SENTENCES = [
    "The old castle stood above the river , and its towers were visible for 12 miles .",
    "In 1990 the village council decided that the bridge would be rebuilt with stone .",
    "Farmers carried wheat to the market every Tuesday , although the roads were muddy .",
    "She wrote several novels about sailors , merchants and their long journeys @-@ mostly at sea .",
]


def random_words(rng: random.Random, batch: int, length: int, max_word: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """word_ids [B, T] with [CLS]/[SEP] (-1) and words of 1..max_word tokens; content flags per word at random."""
    word_ids = torch.full((batch, length), -1, dtype=torch.long)
    content = torch.zeros((batch, length), dtype=torch.bool)
    for row in range(batch):
        used = rng.randint(3, length)  # rows of different lengths; the rest is -1 like padding
        position, word = 1, 0
        while position < used - 1:
            size = min(rng.choice([1, 1, 1, 2, 3, max_word]), used - 1 - position)
            flag = rng.random() < 0.5
            for _ in range(size):
                word_ids[row, position], content[row, position] = word, flag
                position += 1
            word += 1
    return word_ids, content


def test_budget_counts_non_special_tokens():
    word_ids = torch.tensor([[-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1], [-1, 0, 0, 1, -1, -1, -1, -1, -1, -1, -1, -1]])
    assert budget(word_ids, 0.15).tolist() == [2, 1]  # round(1.5) = 2 (half to even), max(1, round(0.45))
    assert budget(torch.full((1, 4), -1), 0.15).tolist() == [0]


@pytest.mark.parametrize("rate", [0.05, 0.15, 0.4])
def test_random_masks_exactly_the_budget_over_many_seeds(rate):
    rng = random.Random(0)
    for seed in range(40):
        word_ids, _ = random_words(rng, 6, 40)
        chosen = select_random(word_ids, rate, torch.Generator().manual_seed(seed))
        assert not chosen[word_ids < 0].any()  # never a special token
        assert chosen.sum(dim=1).tolist() == budget(word_ids, rate).tolist()


@pytest.mark.parametrize("strategy", ["whole-word", "content-words"])
def test_whole_words_are_never_split_and_the_budget_holds(strategy):
    rng = random.Random(1)
    for seed in range(40):
        word_ids, content = random_words(rng, 6, 48)
        chosen = select(strategy, word_ids, content, 0.15, torch.Generator().manual_seed(seed))
        k = budget(word_ids, 0.15)
        for row in range(word_ids.shape[0]):
            ids = word_ids[row]
            for word in ids[ids >= 0].unique().tolist():
                marks = chosen[row][ids == word]
                assert marks.all() or not marks.any(), (seed, row, word)  # a word is masked whole or not at all
            assert not chosen[row][ids < 0].any()
            taken = int(chosen[row].sum())
            assert taken <= k[row]
            if strategy == "content-words":
                assert not chosen[row][~content[row]].any()  # only content words
                available = int(content[row].sum())
                # short of the budget only when the content words run out (or only longer words are left)
                assert taken == k[row] or k[row] - taken < 4 or taken >= available - 3
            else:
                singles = sum(int((ids == w).sum()) == 1 for w in ids[ids >= 0].unique().tolist())
                if singles >= k[row]:  # enough one-token words: the budget is met exactly
                    assert taken == k[row], (seed, row)


def test_strategies_differ_and_same_generator_same_masks():
    word_ids, content = random_words(random.Random(2), 4, 64)
    a = select("whole-word", word_ids, content, 0.15, batch_generator(7, 0, 3))
    b = select("whole-word", word_ids, content, 0.15, batch_generator(7, 0, 3))
    c = select("whole-word", word_ids, content, 0.15, batch_generator(7, 0, 4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_bert_replacement_is_80_10_10_and_electra_85_15():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(10, 5000, (200, 128), generator=generator)
    selected = torch.rand((200, 128), generator=generator) < 0.15
    masked, labels = replace(input_ids, selected, generator, mask_token_id=4, vocab_size=5000, scheme="bert")
    assert torch.equal(labels[selected], input_ids[selected])
    assert (labels[~selected] == IGNORE).all()
    assert torch.equal(masked[~selected], input_ids[~selected])
    n = int(selected.sum())
    mask_share = float((masked[selected] == 4).sum()) / n
    kept_share = float((masked[selected] == input_ids[selected]).sum()) / n
    assert abs(mask_share - 0.8) < 0.015
    assert abs(kept_share - 0.1) < 0.01  # (a random token equal to the original is 1 in 5000)
    assert abs((1 - mask_share - kept_share) - 0.1) < 0.01
    masked, _ = replace(input_ids, selected, generator, mask_token_id=4, vocab_size=5000, scheme="electra")
    assert abs(float((masked[selected] == 4).sum()) / n - 0.85) < 0.015
    assert ((masked[selected] == 4) | (masked[selected] == input_ids[selected])).all()  # no random tokens


def test_content_word_rule():
    assert len(stop_words()) > 300
    for word in ["the", "The", "which", "would", ",", "1990", "@-@", "."]:
        assert not is_content_word(word), word
    for word in ["castle", "River", "rebuilt", "novels"]:
        assert is_content_word(word), word
    text = "the <unk> ran"
    assert content_flags(text, [(0, 3), (5, 8), (10, 13)]) == [False, False, True]  # <unk> is a placeholder


def test_content_word_masking_on_real_text_never_masks_a_stop_word():
    lines = SENTENCES * 30
    tokenizer = train_wordpiece(lines, 120, 32)  # small: many words split into several pieces
    blocks, stats = encode_blocks(lines, tokenizer, 32)
    assert stats["blocks"] == len(blocks) > 10 and 0.3 < stats["content_token_share"] < 0.8
    chosen = select("content-words", blocks.word_ids, blocks.content, 0.15, torch.Generator().manual_seed(0))
    assert chosen.sum() > 0
    for row in range(len(blocks)):
        ids = blocks.word_ids[row]
        edge = {int(ids[1]), int(ids[-2])}  # a word cut by the block's edge shows only a piece of itself here
        for word in ids[chosen[row]].unique().tolist():
            text = tokenizer.decode(blocks.input_ids[row][ids == word]).replace(" ", "")
            assert word in edge or is_content_word(text), text
    # and the flags are what the rule says, word by word
    for row in range(3):
        ids = blocks.word_ids[row]
        edge = {int(ids[1]), int(ids[-2])}
        for word in ids[ids >= 0].unique().tolist():
            text = tokenizer.decode(blocks.input_ids[row][ids == word]).replace(" ", "")
            if word not in edge:
                assert bool(blocks.content[row][ids == word][0]) == is_content_word(text), text


def test_a_block_without_content_words_masks_nothing():
    word_ids = torch.tensor([[-1, 0, 1, 2, 3, -1]])
    chosen = select_whole_words(word_ids, 0.5, torch.Generator().manual_seed(0), candidates=torch.zeros(1, 6, dtype=torch.bool))
    assert not chosen.any()
