"""Classification metrics: accuracy, macro-F1 and Matthews correlation (multi-class form)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_labels: int) -> torch.Tensor:
    """[num_labels, num_labels] counts; rows are true labels, columns predictions."""
    y = torch.as_tensor(list(labels), dtype=torch.long)
    p = torch.as_tensor(list(predictions), dtype=torch.long)
    return torch.bincount(y * num_labels + p, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def classification_metrics(labels: Sequence[int], predictions: Sequence[int], num_labels: int) -> dict[str, float]:
    if len(labels) != len(predictions) or not labels:
        raise ValueError("metrics need as many predictions as labels, and at least one")
    cm = confusion_matrix(labels, predictions, num_labels).double()
    total = cm.sum()
    correct = cm.diag().sum()
    tp = cm.diag()
    precision = torch.where(cm.sum(0) > 0, tp / cm.sum(0).clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(cm.sum(1) > 0, tp / cm.sum(1).clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0)
    # Macro-F1 over the labels that occur in the gold labels or the predictions.
    present = (cm.sum(0) + cm.sum(1)) > 0
    macro_f1 = f1[present].mean()
    # Matthews correlation, multi-class (Gorodkin 2004): (c*s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2))
    t_k, p_k = cm.sum(1), cm.sum(0)
    numerator = correct * total - (p_k * t_k).sum()
    denominator = torch.sqrt((total**2 - (p_k**2).sum()) * (total**2 - (t_k**2).sum()))
    mcc = numerator / denominator if denominator > 0 else torch.tensor(0.0)
    return {
        "accuracy": float(correct / total),
        "macro_f1": float(macro_f1),
        "mcc": float(mcc),
        "examples": int(total),
    }


def detailed_metrics(labels: Sequence[int], predictions: Sequence[int], label_names: Sequence[str]) -> dict:
    """``classification_metrics`` plus what a report shows beside them: each class's precision, recall, F1 and
    support (``per_class``), the confusion matrix (rows true labels, columns predictions, in ``label_names``
    order) and the 95% bootstrap interval of the accuracy (``accuracy_ci95``: low, high, resamples, seed)."""
    from greenlm.measure import stats

    num_labels = len(label_names)
    out = classification_metrics(labels, predictions, num_labels)
    counts = stats.confusion_counts(labels, predictions, num_labels)
    out["per_class"] = stats.per_class(counts, label_names)
    out["confusion_matrix"] = {"labels": [str(n) for n in label_names], "counts": counts}
    correct = sum(int(y == p) for y, p in zip(labels, predictions))
    interval = stats.accuracy_interval(correct, len(labels))
    out["accuracy_ci95"] = {k: interval[k] for k in ("low", "high", "resamples", "seed")}
    return out
