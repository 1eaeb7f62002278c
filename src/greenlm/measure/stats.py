"""How sure a figure is: per-class results from a confusion matrix, bootstrap intervals for accuracy and for
the paired difference between two models, McNemar's exact test, and the spread of timing rounds.

Bootstrap, done cheaply and exactly. Resampling n examples with replacement and averaging a 0/1 outcome
(correct or not) gives a count of correct examples that is Binomial(n, accuracy): drawing that count is
the same distribution as drawing n indices, at a cost independent of n. For two models scored on the same
examples, each example has one of three paired outcomes (only the first right: +1, both or neither: 0, only
the second right: -1); resampling the same indices for both models draws those outcomes' counts from a
Multinomial(n, shares), and the difference of accuracies is (count(+1) - count(-1)) / n. The interval is the
percentile interval of the resampled statistic; the generator is seeded, so a report is reproducible.

Pure numpy and the standard library: ``greenlm.report`` uses it on the predictions a run stored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

RESAMPLES = 1000  # bootstrap draws (an interval's end moves by well under 0.1 point between seeds at this count)
LEVEL = 0.95
SEED = 0


def per_class(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> list[dict]:
    """Precision, recall, F1 and support of each class, from a confusion matrix whose rows are the true labels
    and columns the predictions. A class never predicted has precision 0 (and F1 0); one with no true row has
    recall 0 and support 0."""
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(labels):
        raise ValueError(f"confusion matrix of shape {counts.shape} does not match {len(labels)} labels")
    out = []
    for k, label in enumerate(labels):
        tp = int(counts[k, k])
        predicted, support = int(counts[:, k].sum()), int(counts[k, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        out.append({"label": str(label), "precision": precision, "recall": recall, "f1": f1, "support": support,
                    "predicted": predicted})
    return out


def confusion_counts(gold: Sequence[int], predicted: Sequence[int], num_labels: int) -> list[list[int]]:
    """[num_labels][num_labels] counts: rows are true labels, columns predictions."""
    y, p = np.asarray(gold, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} predictions")
    return np.bincount(y * num_labels + p, minlength=num_labels * num_labels).reshape(num_labels, num_labels).tolist()


def _percentile_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(low), float(high)


def accuracy_interval(correct: int, examples: int, *, resamples: int = RESAMPLES, level: float = LEVEL,
                      seed: int = SEED) -> dict:
    """Percentile bootstrap interval of an accuracy of ``correct`` out of ``examples`` (see the module's note:
    the resampled count is Binomial(examples, correct / examples))."""
    if examples <= 0 or not 0 <= correct <= examples:
        raise ValueError(f"accuracy needs 0 <= correct <= examples and examples > 0, got {correct}/{examples}")
    draws = np.random.default_rng(seed).binomial(examples, correct / examples, size=resamples) / examples
    low, high = _percentile_interval(draws, level)
    return {"accuracy": correct / examples, "low": low, "high": high, "level": level, "resamples": resamples,
            "seed": seed, "examples": examples}


def paired_counts(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[int, int, int]:
    """(only a right, only b right, examples) of two models scored on the same examples in the same order."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired outcomes need two vectors of one length, got {a.shape} and {b.shape}")
    return int((a & ~b).sum()), int((~a & b).sum()), int(a.size)


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test: under "the two models are equally accurate", each of the ``only_a + only_b``
    discordant examples is equally likely to favour either, so the smaller count is Binomial(n, 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def paired_difference(correct_a: Sequence[bool], correct_b: Sequence[bool], *, resamples: int = RESAMPLES,
                      level: float = LEVEL, seed: int = SEED) -> dict:
    """Accuracy of a minus accuracy of b, with its percentile bootstrap interval over resampled examples (the same
    indices for both models) and McNemar's exact p. ``within_noise``: the interval holds 0."""
    only_a, only_b, n = paired_counts(correct_a, correct_b)
    if n == 0:
        raise ValueError("paired difference needs at least one example")
    shares = [only_a / n, only_b / n, (n - only_a - only_b) / n]
    counts = np.random.default_rng(seed).multinomial(n, shares, size=resamples)
    draws = (counts[:, 0] - counts[:, 1]) / n
    low, high = _percentile_interval(draws, level)
    return {"difference": (only_a - only_b) / n, "low": low, "high": high, "within_noise": low <= 0.0 <= high,
            "only_a_right": only_a, "only_b_right": only_b, "examples": n, "mcnemar_p": mcnemar_exact_p(only_a, only_b),
            "level": level, "resamples": resamples, "seed": seed}


def spread(values: Sequence[float]) -> dict | None:
    """min, median and max of the timing rounds of one figure, and how many there were (None without any)."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return {"min": min(present), "median": float(np.median(present)), "max": max(present), "rounds": len(present)}
