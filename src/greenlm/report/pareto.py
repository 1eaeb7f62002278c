"""The Pareto front of accuracy against one cost or speed axis, and the axes greenlm reports.

A model is on the front when no other model is at least as good on both axes and strictly better
on one. Ties on both axes keep both models (neither dominates the other). Points with a missing
figure (``None``) take no part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    """One trade-off axis of the report: a report.json column and which way is better."""

    key: str  # report.json row field
    stem: str  # figure file name: accuracy_vs_<stem>
    label: str  # axis label, with its unit
    higher_is_better: bool
    title: str  # short phrase for figure titles and tables


TRADEOFF_AXES = (
    Axis("throughput_examples_per_s", "throughput", "throughput (examples/s, batch 32)", True, "throughput"),
    Axis("flops_per_example", "flops", "FLOPs per example (forward pass)", False, "FLOPs per example"),
    Axis("inference_energy_kwh_per_1000", "inference_energy", "inference energy per 1,000 examples (kWh)", False,
         "inference energy"),
    Axis("size_mb", "size", "model size on disk (MB)", False, "size on disk"),
)


def dominates(a: tuple[float, float], b: tuple[float, float], maximize: tuple[bool, bool]) -> bool:
    """``a`` is at least as good as ``b`` on both coordinates and strictly better on one."""
    better_or_equal = all((x >= y) if up else (x <= y) for x, y, up in zip(a, b, maximize))
    strictly = any((x > y) if up else (x < y) for x, y, up in zip(a, b, maximize))
    return better_or_equal and strictly


def pareto_front(points: Sequence[tuple[float | None, float | None]],
                 maximize: tuple[bool, bool] = (True, True)) -> list[int]:
    """Indices of the non-dominated points, ordered by their first coordinate (ascending).

    ``maximize[k]`` says whether a larger k-th coordinate is better. O(N^2): reports hold a handful
    of models.
    """
    valid = [i for i, p in enumerate(points) if p[0] is not None and p[1] is not None]
    front = [i for i in valid if not any(dominates(points[j], points[i], maximize) for j in valid if j != i)]
    return sorted(front, key=lambda i: (points[i][0], points[i][1]))


def front_of_rows(rows: Sequence[dict], axis: Axis, accuracy_key: str = "accuracy") -> list[str]:
    """Names of the models on the front of accuracy (higher is better) against ``axis``."""
    points = [(row.get(axis.key), row.get(accuracy_key)) for row in rows]
    return [rows[i]["model"] for i in pareto_front(points, (axis.higher_is_better, True))]


def fronts(rows: Sequence[dict]) -> dict[str, list[str]]:
    """``{axis key: [model, ...]}`` for every trade-off axis."""
    return {axis.key: front_of_rows(rows, axis) for axis in TRADEOFF_AXES}


def on_front_by_noise(rows: Sequence[dict], axis: Axis) -> list[str]:
    """Models on the front of ``axis`` only by an accuracy gain over the teacher that is within noise (the row's
    ``within_noise_of_teacher``, from the paired bootstrap interval): with their accuracy set to the teacher's, they
    would drop off the front (a model 1 example in 500 above the teacher and slower than it, for one)."""
    teacher = next((r for r in rows if r.get("method") == "finetune" and r.get("accuracy") is not None), None)
    if teacher is None:
        return []
    front = front_of_rows(rows, axis)
    out = []
    for row in rows:
        if (row["model"] not in front or row is teacher or not row.get("within_noise_of_teacher")
                or row["accuracy"] <= teacher["accuracy"]):
            continue
        levelled = [dict(r, accuracy=teacher["accuracy"]) if r is row else r for r in rows]
        if row["model"] not in front_of_rows(levelled, axis):
            out.append(row["model"])
    return out


def fronts_by_noise(rows: Sequence[dict]) -> dict[str, list[str]]:
    """``{axis key: [model, ...]}``: the models ``on_front_by_noise`` for every trade-off axis."""
    measured = [r for r in rows if r.get("report_status", "measured") == "measured"]
    return {axis.key: on_front_by_noise(measured, axis) for axis in TRADEOFF_AXES}
