"""A data map's measures and regions (Swayamdipta et al. 2020, "Dataset Cartography", EMNLP).

For each training row i and record points k = 1..K, with p_k(i) the softmax probability of the row's gold label:

    confidence(i)  = mean_k p_k(i)
    variability(i) = sqrt( mean_k (p_k(i) - confidence(i))^2 )       population standard deviation (ddof=0),
                                                                      as numpy's np.std in the reference code
    correctness(i) = (1/K) * #{k : argmax_j logits_k(i)_j == gold(i)} a fraction; the reference code stores the
                                                                      count (and divides by its maximum to plot it)

Variability needs at least two record points: from one it is 0 for every row, which is no measure at all,
so a map from a single point is refused.

Regions (``region_labels``) follow the paper's 33% subsets (its selection experiments; the reference filtering
script uses a share of 0.3319): with m = round(0.33 N),
    ambiguous      the m rows of highest variability,
    hard-to-learn  the m rows of lowest confidence (not already ambiguous),
    easy-to-learn  the m rows of highest confidence (not already ambiguous),
    other          the rest.
Ties are broken by row order, so the regions are a pure function of the dynamics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from greenlm.common import GreenlmError
from greenlm.datamap.dynamics_io import Dynamics

REGION_SHARE = 0.33  # each region is this share of the rows (the paper's 33% subsets)
REGION_LABELS = ("ambiguous", "hard-to-learn", "easy-to-learn", "other")


def share_count(fraction: float, n: int) -> int:
    """Rows in a share ``fraction`` of ``n``: fraction * n rounded half up, at most n."""
    return min(n, int(math.floor(fraction * n + 0.5)))


@dataclass
class DataMap:
    guids: list
    gold: np.ndarray  # [N]
    gold_probability: np.ndarray  # [K, N]: p_k(i)
    correct: np.ndarray  # [K, N] bool: argmax == gold at point k
    confidence: np.ndarray  # [N]
    variability: np.ndarray  # [N]
    correctness: np.ndarray  # [N], a fraction of the K points

    @property
    def points(self) -> int:
        return int(self.gold_probability.shape[0])

    def __len__(self) -> int:
        return len(self.guids)

    def ranking(self, region: str) -> np.ndarray:
        """Row positions, most typical of ``region`` first (ties in row order): ambiguous by variability
        descending, hard by confidence ascending, easy by confidence descending (the reference's orders)."""
        if region == "ambiguous":
            return np.argsort(-self.variability, kind="stable")
        if region == "hard":
            return np.argsort(self.confidence, kind="stable")
        if region == "easy":
            return np.argsort(-self.confidence, kind="stable")
        raise ValueError(f"no ranking for region {region!r}")

    def train_accuracy(self) -> list[float]:
        """Accuracy on the training rows at each record point."""
        return [float(v) for v in self.correct.mean(axis=1)]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def compute_map(dynamics: Dynamics) -> DataMap:
    """The data map of ``dynamics`` (at least two record points)."""
    if dynamics.points < 2:
        raise GreenlmError(f"training dynamics in '{dynamics.folder}' have {dynamics.points} record point; a data map"
                           " needs at least 2 (variability, the spread of the gold-label probability over record"
                           " points, is undefined from one): train for longer or record more points")
    return map_from_logits(dynamics.guids, dynamics.gold, dynamics.logits)


def map_from_logits(guids: list, gold: np.ndarray, logits: np.ndarray) -> DataMap:
    """The measures from logits [K, N, L] and gold labels [N] (the formulas of the module doc)."""
    gold = np.asarray(gold, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(logits.shape[1])
    p_gold = softmax(logits)[:, rows, gold]  # [K, N]
    correct = logits.argmax(axis=-1) == gold[None, :]  # first maximum on ties, as np.argmax in the reference
    return DataMap(
        guids=list(guids), gold=gold, gold_probability=p_gold, correct=correct,
        confidence=p_gold.mean(axis=0), variability=p_gold.std(axis=0, ddof=0), correctness=correct.mean(axis=0),
    )


def region_labels(data_map: DataMap, share: float = REGION_SHARE) -> list[str]:
    """One of REGION_LABELS per row (see the module doc)."""
    m = share_count(share, len(data_map))
    out = np.full(len(data_map), "other", dtype=object)
    out[data_map.ranking("easy")[:m]] = "easy-to-learn"
    out[data_map.ranking("hard")[:m]] = "hard-to-learn"
    out[data_map.ranking("ambiguous")[:m]] = "ambiguous"
    return [str(v) for v in out]


def region_thresholds(data_map: DataMap, share: float = REGION_SHARE) -> dict:
    """The measure values at the regions' edges (for the summary and the figure)."""
    m = share_count(share, len(data_map))
    if m == 0:
        return {"share": share, "rows_per_region": 0}
    return {
        "share": share,
        "rows_per_region": m,
        "ambiguous_variability_at_least": float(data_map.variability[data_map.ranking("ambiguous")[m - 1]]),
        "hard_confidence_at_most": float(data_map.confidence[data_map.ranking("hard")[m - 1]]),
        "easy_confidence_at_least": float(data_map.confidence[data_map.ranking("easy")[m - 1]]),
    }
