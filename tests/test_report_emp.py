"""Expected maximum validation performance (Dodge et al. 2019): closed forms against the issue's vector and
against brute-force enumeration of every draw."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from greenlm.common import GreenlmError
from greenlm.report import emp_curve, expected_max_performance, expected_max_performance_std

SCORES = [0.70, 0.80, 0.75, 0.90, 0.85]


def test_issue_vector_with_replacement():
    expected = [0.80, 0.84, 0.86, 0.87168, 0.8792]
    for n, value in enumerate(expected, 1):
        assert expected_max_performance(SCORES, n) == pytest.approx(value, abs=1e-12)


def test_n_1_is_the_mean_both_ways():
    for replacement in (True, False):
        assert expected_max_performance(SCORES, 1, replacement=replacement) == pytest.approx(statistics.mean(SCORES))
        assert expected_max_performance_std(SCORES, 1, replacement=replacement) == pytest.approx(
            statistics.pstdev(SCORES))


def test_without_replacement_closed_form_and_limits():
    # P(max = v_(i)) = C(i-1, 1) / C(5, 2) = (i - 1) / 10 for n = 2
    assert expected_max_performance(SCORES, 2, replacement=False) == pytest.approx(
        (0 * 0.70 + 1 * 0.75 + 2 * 0.80 + 3 * 0.85 + 4 * 0.90) / 10)
    assert expected_max_performance(SCORES, 5, replacement=False) == pytest.approx(0.90)
    assert expected_max_performance_std(SCORES, 5, replacement=False) == pytest.approx(0.0, abs=1e-12)


def _brute(scores, n, replacement):
    draws = itertools.product(scores, repeat=n) if replacement else itertools.combinations(scores, n)
    maxima = [max(d) for d in draws]
    return statistics.fmean(maxima), statistics.pstdev(maxima)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_enumeration_of_every_draw_with_ties(seed):
    rng = random.Random(seed)
    scores = [round(rng.uniform(0.6, 0.9), 2) for _ in range(6)] + [0.75, 0.75]  # ties on purpose
    for replacement in (True, False):
        for n in range(1, 5):
            mean, std = _brute(scores, n, replacement)
            assert expected_max_performance(scores, n, replacement=replacement) == pytest.approx(mean, abs=1e-12)
            assert expected_max_performance_std(scores, n, replacement=replacement) == pytest.approx(std, abs=1e-9)


def test_expected_max_grows_with_n_and_approaches_the_best():
    curve = emp_curve(SCORES, 40)
    means = [p["expected_max"] for p in curve]
    assert all(b > a for a, b in zip(means, means[1:]))
    assert 0.8999 < means[-1] < 0.90
    assert curve[0]["n"] == 1 and curve[-1]["n"] == 40
    assert [p["n"] for p in emp_curve(SCORES)] == [1, 2, 3, 4, 5]


def test_large_n_does_not_overflow():
    scores = [i / 1000 for i in range(1000)]
    assert expected_max_performance(scores, 500) == pytest.approx(sum(
        v * ((i / 1000) ** 500 - ((i - 1) / 1000) ** 500) for i, v in enumerate(sorted(scores), 1)))
    assert math.isfinite(expected_max_performance(scores, 400, replacement=False))


@pytest.mark.parametrize("scores, n, replacement, needle", [
    ([], 1, True, "at least one score"),
    ([0.5, float("nan")], 1, True, "score 1 is nan"),
    ([0.5, "x"], 1, True, "score 1"),
    (SCORES, 0, True, "n (the number of trials)"),
    (SCORES, 6, False, "at most the number of scores (5)"),
])
def test_bad_input_is_a_clear_error(scores, n, replacement, needle):
    with pytest.raises(GreenlmError) as info:
        expected_max_performance(scores, n, replacement=replacement)
    assert needle in str(info.value)


def test_a_curve_needs_two_scores():
    with pytest.raises(GreenlmError) as info:
        emp_curve([0.8])
    assert "at least 2 finished trials, got 1" in str(info.value)
