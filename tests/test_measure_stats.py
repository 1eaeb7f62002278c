"""Issue 21: per-class results, bootstrap intervals, McNemar's exact test and the spread of timing rounds, each
against a hand computation or a plain (slow) bootstrap that resamples example indices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greenlm.measure import stats
from greenlm.train.metrics import classification_metrics, detailed_metrics

LABELS3 = [0, 0, 1, 1, 2, 2]
PREDS3 = [0, 1, 1, 1, 2, 0]


def test_per_class_and_confusion_by_hand():
    counts = stats.confusion_counts(LABELS3, PREDS3, 3)
    assert counts == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    rows = stats.per_class(counts, ["a", "b", "c"])
    # a: p = 1/2 (column a: 1 of 2), r = 1/2; b: p = 2/3, r = 1; c: p = 1, r = 1/2
    assert [(r["label"], r["support"], r["predicted"]) for r in rows] == [("a", 2, 2), ("b", 2, 3), ("c", 2, 1)]
    assert [r["precision"] for r in rows] == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert [r["recall"] for r in rows] == pytest.approx([1 / 2, 1.0, 1 / 2])
    assert [r["f1"] for r in rows] == pytest.approx([0.5, 0.8, 2 / 3])
    # the macro-F1 of the report's table is the mean of these (every class occurs)
    assert classification_metrics(LABELS3, PREDS3, 3)["macro_f1"] == pytest.approx(np.mean([r["f1"] for r in rows]))


def test_a_class_never_predicted_has_zero_precision_and_f1():
    rows = stats.per_class(stats.confusion_counts([0, 0, 1], [0, 0, 0], 2), ["common", "rare"])
    assert rows[1] == {"label": "rare", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    with pytest.raises(ValueError, match="does not match"):
        stats.per_class([[1, 0], [0, 1]], ["only one"])


def test_detailed_metrics_carry_the_table_per_class_matrix_and_interval():
    m = detailed_metrics(LABELS3, PREDS3, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6) and m["examples"] == 6
    assert m["confusion_matrix"] == {"labels": ["a", "b", "c"], "counts": [[1, 1, 0], [0, 2, 0], [1, 0, 1]]}
    assert [c["label"] for c in m["per_class"]] == ["a", "b", "c"]
    assert m["accuracy_ci95"]["low"] <= 4 / 6 <= m["accuracy_ci95"]["high"]


def _index_bootstrap(statistic, n: int, resamples: int, seed: int) -> np.ndarray:
    """The textbook bootstrap: resample n example indices with replacement, recompute the statistic."""
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    return statistic(idx)


def test_accuracy_interval_matches_resampling_indices():
    rng = np.random.default_rng(5)
    correct = rng.random(872) < 0.9
    fast = stats.accuracy_interval(int(correct.sum()), correct.size, resamples=20000)
    slow = np.quantile(_index_bootstrap(lambda i: correct[i].mean(1), correct.size, 20000, 1), [0.025, 0.975])
    assert fast["low"] == pytest.approx(slow[0], abs=0.004) and fast["high"] == pytest.approx(slow[1], abs=0.004)
    # and the normal approximation of a binomial proportion, as a third opinion
    p = correct.mean()
    half = 1.96 * math.sqrt(p * (1 - p) / correct.size)
    assert fast["high"] - fast["low"] == pytest.approx(2 * half, rel=0.12)


def test_accuracy_interval_holds_the_estimate_and_narrows_with_more_examples():
    small = stats.accuracy_interval(90, 100)
    large = stats.accuracy_interval(9000, 10000)
    for interval in (small, large):
        assert interval["low"] <= interval["accuracy"] == 0.9 <= interval["high"]
    assert (large["high"] - large["low"]) < 0.2 * (small["high"] - small["low"])  # 10x the rows: ~1/sqrt(100) wide
    assert stats.accuracy_interval(90, 100) == small  # seeded: the same interval every time
    with pytest.raises(ValueError):
        stats.accuracy_interval(5, 0)


def test_paired_difference_matches_resampling_the_same_indices_for_both():
    rng = np.random.default_rng(7)
    a = rng.random(500) < 0.85
    b = np.where(rng.random(500) < 0.9, a, ~a)  # agrees with a on ~90% of the examples
    fast = stats.paired_difference(a, b, resamples=20000)
    slow = np.quantile(_index_bootstrap(lambda i: a[i].mean(1) - b[i].mean(1), a.size, 20000, 3), [0.025, 0.975])
    assert fast["difference"] == pytest.approx(a.mean() - b.mean())
    assert fast["low"] == pytest.approx(slow[0], abs=0.005) and fast["high"] == pytest.approx(slow[1], abs=0.005)
    # resampling each model on its own indices (unpaired) would be wider: pairing is what makes it sharp
    unpaired = stats.accuracy_interval(int(a.sum()), a.size, resamples=20000)
    assert fast["high"] - fast["low"] < unpaired["high"] - unpaired["low"]


def test_one_example_in_500_is_noise_and_a_clear_gap_is_not():
    teacher = np.array([True] * 450 + [False] * 50)
    lucky = teacher.copy()
    lucky[460] = True  # one more example right: 451/500
    noise = stats.paired_difference(lucky, teacher)
    assert noise["difference"] == pytest.approx(1 / 500) and noise["within_noise"]
    assert noise["low"] <= 0 <= noise["high"] and noise["mcnemar_p"] == 1.0
    worse = teacher.copy()
    worse[:40] = False  # 40 fewer right: 410/500, 8 points down
    gap = stats.paired_difference(worse, teacher)
    assert not gap["within_noise"] and gap["high"] < 0 and gap["mcnemar_p"] < 1e-6
    same = stats.paired_difference(teacher, teacher)
    assert same["within_noise"] and same["low"] == same["high"] == 0.0


def test_mcnemar_exact_by_hand():
    # 1 vs 5 discordant: P(X <= 1 | n=6, 1/2) = (1 + 6) / 64, doubled
    assert stats.mcnemar_exact_p(1, 5) == pytest.approx(14 / 64)
    assert stats.mcnemar_exact_p(5, 1) == stats.mcnemar_exact_p(1, 5)
    assert stats.mcnemar_exact_p(0, 0) == 1.0 and stats.mcnemar_exact_p(3, 3) == 1.0
    assert stats.mcnemar_exact_p(0, 10) == pytest.approx(2 / 1024)


def test_spread_of_timing_rounds():
    assert stats.spread([3.0, 1.0, 2.0, None]) == {"min": 1.0, "median": 2.0, "max": 3.0, "rounds": 3}
    assert stats.spread([]) is None
