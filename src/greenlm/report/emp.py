"""Expected maximum validation performance (Dodge et al. 2019, "Show Your Work", EMNLP, Section 3).

Given the validation scores ``v_1 <= ... <= v_N`` of N hyperparameter trials, how good is the best of
``n`` trials on average? Model the n trials as draws from the empirical distribution of the N
scores; the expected maximum is a closed form in the order statistics.

With replacement (Dodge et al.'s estimator, Eq. 3): the CDF of one draw at ``v_(i)`` is ``i/N``, so
the max of n draws is ``<= v_(i)`` with probability ``(i/N)^n`` and

    E[max_n] = sum_i v_(i) * ((i/N)^n - ((i-1)/N)^n)

Without replacement (n distinct trials out of the N run, n <= N): the max is the i-th smallest
when it is drawn and the other n-1 come from the i-1 below it:

    P(max_n = v_(i)) = C(i-1, n-1) / C(N, n)

The standard deviation is sqrt(E[max_n^2] - E[max_n]^2) under the same distribution. Ties need no
care: sorting puts equal scores next to each other and the probabilities of their ranks add up.
n = 1 gives the mean of the scores in both cases; n = N without replacement gives max(v).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from greenlm.common import GreenlmError

MIN_TRIALS_FOR_CURVE = 2


def _sorted_scores(scores: Sequence[float]) -> list[float]:
    values = list(scores)
    if not values:
        raise GreenlmError("expected max performance needs at least one score; got none")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise GreenlmError(f"score {i} is {v!r}; every score must be a finite number")
        out.append(float(v))
    return sorted(out)


def _check_n(n: int, count: int, replacement: bool) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise GreenlmError(f"n (the number of trials) must be a whole number >= 1, got {n!r}")
    if not replacement and n > count:
        raise GreenlmError(f"without replacement n can be at most the number of scores ({count}), got {n}")
    return n


def max_distribution(scores: Sequence[float], n: int, replacement: bool = True) -> list[tuple[float, float]]:
    """``[(v_(i), P(max of n draws = v_(i)))]`` over the sorted scores (probabilities sum to 1)."""
    v = _sorted_scores(scores)
    big_n = len(v)
    n = _check_n(n, big_n, replacement)
    if replacement:
        # (i/N)^n - ((i-1)/N)^n, computed as a difference of exact integer powers over N^n
        denominator = big_n**n
        probs = [(i**n - (i - 1) ** n) / denominator for i in range(1, big_n + 1)]
    else:
        total = math.comb(big_n, n)
        probs = [math.comb(i - 1, n - 1) / total for i in range(1, big_n + 1)]
    return list(zip(v, probs))


def expected_max_performance(scores: Sequence[float], n: int, replacement: bool = True) -> float:
    """Expected best validation score among ``n`` trials drawn from ``scores`` (Dodge et al. 2019).

    >>> round(expected_max_performance([.70, .80, .75, .90, .85], 2), 6)
    0.84
    """
    return sum(value * p for value, p in max_distribution(scores, n, replacement=replacement))


def expected_max_performance_std(scores: Sequence[float], n: int, replacement: bool = True) -> float:
    """Standard deviation of the best score among ``n`` trials: sqrt(E[max^2] - E[max]^2)."""
    dist = max_distribution(scores, n, replacement=replacement)
    mean = sum(value * p for value, p in dist)
    # centred second moment: no catastrophic cancellation when the scores are close together
    variance = sum(p * (value - mean) ** 2 for value, p in dist)
    return math.sqrt(max(variance, 0.0))


def emp_curve(scores: Sequence[float], max_n: int | None = None, *, replacement: bool = True) -> list[dict]:
    """``[{"n", "expected_max", "std"}]`` for n = 1 .. max_n (default: the number of scores).

    A curve needs at least two scores: with one there is nothing to expect but that one.
    """
    values = _sorted_scores(scores)
    if len(values) < MIN_TRIALS_FOR_CURVE:
        raise GreenlmError(f"a budget/performance curve needs at least {MIN_TRIALS_FOR_CURVE} finished trials,"
                           f" got {len(values)}; run more trials (--trials N)")
    max_n = len(values) if max_n is None else _check_n(max_n, len(values), replacement)
    return [{"n": n,
             "expected_max": expected_max_performance(values, n, replacement=replacement),
             "std": expected_max_performance_std(values, n, replacement=replacement)}
            for n in range(1, max_n + 1)]
