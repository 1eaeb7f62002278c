"""What the report adds to each measured row so that noise is not read as a result: the accuracy's 95% bootstrap
interval, the paired difference from the teacher (same dev examples resampled for both; McNemar's exact p), the
spread of the timing rounds, the runtime and precision, and the per-class results.

Works on the measuring pass's record (``measurements.json``'s ``models``) with ``greenlm.measure.stats``: no model
is loaded here.
"""

from __future__ import annotations

from greenlm.measure import stats

# every field row_statistics fills (None where the measuring pass kept no such record: older runs)
FIELDS = ("examples", "accuracy_ci95_low", "accuracy_ci95_high", "accuracy_vs_teacher", "within_noise_of_teacher",
          "per_class", "confusion_matrix", "runtime", "precision", "flops_basis", "speed_rounds",
          "latency_ms_p50_min", "latency_ms_p50_max", "throughput_examples_per_s_min", "throughput_examples_per_s_max",
          "other_splits")
OTHER_SPLIT_FIELDS = ("examples", "accuracy", "macro_f1", "mcc")  # of each split measured beside the reported one


def correct_vector(measured: dict) -> list[bool] | None:
    """Whether each example of the reported split was classified right, in its order (None without predictions)."""
    kept = measured.get("predictions") or {}
    gold, predicted = kept.get("gold"), kept.get("predicted")
    if not gold or not predicted or len(gold) != len(predicted):
        return None
    return [g == p for g, p in zip(gold, predicted)]


def row_statistics(measured: dict, teacher: dict | None, split: str = "dev", others=()) -> dict:
    """The fields of ``FIELDS`` for one model's measuring-pass record; ``teacher``: the teacher's record, or None
    for the teacher itself (its row has no difference from itself); ``split``: the reported split; ``others``: the
    splits measured beside it (test, when the run reports on dev), whose figures go to ``other_splits``."""
    out = dict.fromkeys(FIELDS)
    dev = measured.get(split) or {}
    out["examples"] = dev.get("examples")
    out["other_splits"] = {name: other_split_figures(measured[name]) for name in others
                           if isinstance(measured.get(name), dict)} or None
    correct = correct_vector(measured)
    if correct is not None:
        interval = stats.accuracy_interval(sum(correct), len(correct))
        out["accuracy_ci95_low"], out["accuracy_ci95_high"] = interval["low"], interval["high"]
    elif dev.get("accuracy_ci95"):
        out["accuracy_ci95_low"], out["accuracy_ci95_high"] = dev["accuracy_ci95"]["low"], dev["accuracy_ci95"]["high"]
    reference = correct_vector(teacher) if teacher is not None else None
    if correct is not None and reference is not None and len(reference) == len(correct):
        out["accuracy_vs_teacher"] = stats.paired_difference(correct, reference)
        out["within_noise_of_teacher"] = out["accuracy_vs_teacher"]["within_noise"]
    out["per_class"] = dev.get("per_class")
    out["confusion_matrix"] = dev.get("confusion_matrix")
    runtime = measured.get("runtime") or {}
    out["runtime"], out["precision"] = runtime.get("engine"), runtime.get("precision")
    out["flops_basis"] = measured.get("flops_basis")
    rounds = (measured.get("speed") or {}).get("rounds") or {}
    for key in ("latency_ms_p50", "throughput_examples_per_s"):
        spread = stats.spread(rounds.get(key) or [])
        if spread is not None:
            out[f"{key}_min"], out[f"{key}_max"] = spread["min"], spread["max"]
            out["speed_rounds"] = spread["rounds"]
    return out


def other_split_figures(metrics: dict) -> dict:
    """What a report row keeps of a split measured beside the reported one: rows, accuracy (and its 95% interval),
    macro-F1, MCC."""
    out = {key: metrics.get(key) for key in OTHER_SPLIT_FIELDS}
    interval = metrics.get("accuracy_ci95") or {}
    out["accuracy_ci95_low"], out["accuracy_ci95_high"] = interval.get("low"), interval.get("high")
    return out


def noise_sentence(row: dict) -> str | None:
    """``+0.11 pp (95% CI -0.80 to +1.03), within noise`` for a row with a paired difference from the teacher."""
    diff = row.get("accuracy_vs_teacher")
    if not diff:
        return None
    verdict = "within noise" if diff["within_noise"] else "outside noise"
    return (f"{100 * diff['difference']:+.2f} pp (95% CI {100 * diff['low']:+.2f} to {100 * diff['high']:+.2f};"
            f" McNemar p = {diff['mcnemar_p']:.3g}), {verdict}")

