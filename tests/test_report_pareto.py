"""The Pareto front on hand-made sets: dominance, ties, missing figures, directions."""

from __future__ import annotations

from greenlm.report.pareto import TRADEOFF_AXES, dominates, front_of_rows, fronts, pareto_front


def test_front_of_a_hand_made_set_speed_up():
    # (throughput, accuracy): c is dominated by b (faster and more accurate), e by a and b
    points = [(100, 0.92), (300, 0.93), (200, 0.90), (500, 0.85), (150, 0.80)]
    assert pareto_front(points, (True, True)) == [1, 3]
    points.append((90, 0.95))  # slower than all, but the most accurate: on the front
    assert pareto_front(points, (True, True)) == [5, 1, 3]


def test_cost_axis_lower_is_better_and_ties():
    # (FLOPs, accuracy): equal FLOPs, lower accuracy is dominated; an exact duplicate is kept with its twin
    points = [(2e9, 0.92), (6e8, 0.90), (6e8, 0.895), (1.2e9, 0.915), (6e8, 0.90)]
    assert pareto_front(points, (False, True)) == [1, 4, 3, 0]
    assert dominates((6e8, 0.90), (6e8, 0.895), (False, True))
    assert not dominates((6e8, 0.90), (6e8, 0.90), (False, True))


def test_missing_figures_take_no_part():
    points = [(None, 0.99), (1.0, 0.5), (2.0, None), (0.5, 0.4)]
    assert pareto_front(points, (False, True)) == [3, 1]
    assert pareto_front([], (True, True)) == []


def test_fronts_of_report_rows_by_axis():
    from _report_runs import FRONTS, MODELS

    rows = [{"model": m, "accuracy": v[2], "throughput_examples_per_s": v[3], "flops_per_example": v[4],
             "inference_energy_kwh_per_1000": v[5], "size_mb": v[6]} for m, v in MODELS.items()]
    assert fronts(rows) == FRONTS
    throughput = next(a for a in TRADEOFF_AXES if a.key == "throughput_examples_per_s")
    rows[1]["accuracy"] = 0.80  # distill (300 ex/s, 80%) is now dominated by quantize (450 ex/s, 89.5%)
    assert front_of_rows(rows, throughput) == ["finetune", "quantize"]
