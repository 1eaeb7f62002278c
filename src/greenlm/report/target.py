"""A run's target (recipe ``target:``) checked against its rows, and the Pareto front of accuracy vs throughput.

The settings come as the plain dict of recipe.yaml's ``target:`` (the report layer does not import the
pipeline's schema): ``speedup`` (throughput vs the teacher's, at least), ``min_retained_pct`` (dev accuracy as
a % of the teacher's, at least), ``max_latency_ms`` (p50 at batch 1, at most), ``max_flops`` (forward FLOPs per
example, at most). Unset criteria are None; a target with none set is no target.

- ``mark_rows`` gives every row ``on_front`` (on the Pareto front of accuracy vs throughput), ``on_front_by_noise``
  (on it only by an accuracy gain over the teacher that is within noise) and
  ``meets_target``: True when every set criterion holds, False when one fails, None when no target is set or a
  figure it needs is missing (a row that was not measured).
- ``target_record`` is report.json's ``target``: the settings, ``met_by`` (every model that meets it),
  ``best`` (of those, the most accurate, ties to the faster; when none meets it, the *closest*: the smallest
  sum of relative shortfalls over the set criteria, ties to the more accurate), ``best_meets``, the best
  model's ``shortfall`` per criterion, what the run cost (``cost``) and a one-sentence ``summary``.
"""

from __future__ import annotations

from greenlm.report.pareto import TRADEOFF_AXES, front_of_rows, on_front_by_noise

THROUGHPUT_AXIS = TRADEOFF_AXES[0]
# criterion: (row field, at least (True) or at most (False))
CRITERIA = {
    "speedup": ("speedup_x", True),
    "min_retained_pct": ("performance_retained_pct", True),
    "max_latency_ms": ("latency_ms_p50", False),
    "max_flops": ("flops_per_example", False),
}
CLOSEST_RULE = ("no model meets the target: the closest is the one with the smallest sum of relative shortfalls"
                " over the set criteria (e.g. 8x for a 10x speedup is 0.2 short), ties to the more accurate")


def target_settings(recipe: dict | None) -> dict | None:
    """The set criteria of recipe.yaml's ``target:`` (every key, None for unset), or None when none is set."""
    raw = (recipe or {}).get("target") or {}
    if not isinstance(raw, dict):
        return None
    settings = {}
    for key in CRITERIA:
        value = raw.get(key)
        settings[key] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return settings if any(v is not None for v in settings.values()) else None


def describe_target(settings: dict) -> str:
    """In words, as the recipe's ``TargetSettings.describe()`` says it: ``>= 10x the teacher's throughput, >= 97%
    of its accuracy``."""
    parts = []
    if settings.get("speedup") is not None:
        parts.append(f">= {settings['speedup']:g}x the teacher's throughput")
    if settings.get("min_retained_pct") is not None:
        parts.append(f">= {settings['min_retained_pct']:g}% of its accuracy")
    if settings.get("max_latency_ms") is not None:
        parts.append(f"<= {settings['max_latency_ms']:g} ms at batch 1")
    if settings.get("max_flops") is not None:
        parts.append(f"<= {settings['max_flops']:.3g} FLOPs per example")
    return ", ".join(parts) or "none"


def shortfalls(row: dict, settings: dict) -> dict[str, float | None]:
    """Per set criterion, how far ``row`` misses it, relative to the wanted value (0: met; None: figure missing)."""
    out = {}
    for key, (field, at_least) in CRITERIA.items():
        wanted = settings.get(key)
        if wanted is None:
            continue
        got = row.get(field)
        if got is None:
            out[key] = None
        elif at_least:
            out[key] = max(0.0, (wanted - got) / wanted)
        else:
            out[key] = max(0.0, (got - wanted) / wanted)
    return out


def meets(row: dict, settings: dict | None) -> bool | None:
    """True: every set criterion holds; False: one fails; None: no target, or a figure it needs is missing."""
    if not settings:
        return None
    gaps = shortfalls(row, settings)
    if any(gap is not None and gap > 0 for gap in gaps.values()):
        return False
    return None if any(gap is None for gap in gaps.values()) else True


def mark_rows(rows: list[dict], settings: dict | None) -> list[str]:
    """Set ``on_front`` and ``meets_target`` on every row; return the front (accuracy vs throughput)."""
    measured_rows = [r for r in rows if r.get("report_status", "measured") == "measured"]
    front = front_of_rows(measured_rows, THROUGHPUT_AXIS)
    by_noise = on_front_by_noise(measured_rows, THROUGHPUT_AXIS)
    for row in rows:
        row["on_front"] = row["model"] in front
        row["on_front_by_noise"] = row["model"] in by_noise  # there only by an accuracy gain within noise
        # only measured rows: an unmeasured one has no speed, and its accuracy is the stage's own evaluation
        measured = row.get("report_status", "measured") == "measured"
        row["meets_target"] = meets(row, settings) if measured else None
    return front


def _cost(rows: list[dict]) -> dict:
    def total(key):
        values = [r.get(f"stage_{key}") for r in rows if r.get(f"stage_{key}") is not None]
        return sum(values) if values else None

    return {key: total(key) for key in ("energy_kwh", "co2e_kg", "cost_usd", "wall_s")}


def chain_rows(rows: list[dict], model: str) -> list[dict]:
    """The row of ``model`` and the rows of the stages it was built from (its ``from``, theirs...), newest first."""
    by_name = {r["model"]: r for r in rows}
    out, name = [], model
    while name is not None and name in by_name and by_name[name] not in out:
        out.append(by_name[name])
        name = by_name[name].get("from")
    return out


def run_cost(rows: list[dict], best: dict | None) -> dict:
    """What it cost (energy, CO2e, money, wall time, from the stages' price tags): every stage of the run (reused
    ones at their original cost), the teacher's fine-tuning alone, and the chain of stages that produced ``best``."""
    teacher = next((r for r in rows if r.get("method") == "finetune"), None)
    return {"run": _cost(rows), "teacher_finetune": _cost([teacher]) if teacher else None,
            "chain": _cost(chain_rows(rows, best["model"])) if best else None,
            "chain_stages": [r["model"] for r in chain_rows(rows, best["model"])] if best else None}


def _pick(rows: list[dict], settings: dict) -> tuple[dict | None, bool]:
    met = [r for r in rows if r.get("meets_target") is True]
    if met:
        return max(met, key=lambda r: (r["accuracy"], r.get("throughput_examples_per_s") or 0.0)), True
    scored = []
    for row in rows:
        gaps = shortfalls(row, settings)
        if row.get("accuracy") is None or any(g is None for g in gaps.values()):
            continue
        scored.append((sum(gaps.values()), -row["accuracy"], len(scored), row))
    return (min(scored)[3], False) if scored else (None, False)


def _figures(row: dict) -> str:
    parts = []
    if row.get("speedup_x") is not None:
        parts.append(f"{row['speedup_x']:.2f}x the teacher's throughput")
    if row.get("performance_retained_pct") is not None:
        parts.append(f"{row['performance_retained_pct']:.1f}% of its accuracy")
    if row.get("latency_ms_p50") is not None:
        parts.append(f"{row['latency_ms_p50']:.2f} ms at batch 1")
    return ", ".join(parts)


def target_record(rows: list[dict], settings: dict | None) -> dict | None:
    """report.json's ``target`` (None when the recipe sets none). Call ``mark_rows`` first."""
    if not settings:
        return None
    wanted = describe_target(settings)
    best, best_meets = _pick(rows, settings)
    met_by = [r["model"] for r in rows if r.get("meets_target") is True]
    record = {**settings, "describe": wanted, "met_by": met_by, "best": best["model"] if best else None,
              "best_meets": best_meets, "shortfall": None, "closest_rule": None, "cost": run_cost(rows, best)}
    if best is None:
        record["summary"] = f"No measured model can be checked against the target ({wanted})."
    elif best_meets:
        others = f"; {len(met_by)} models meet it" if len(met_by) > 1 else ""
        record["summary"] = f"{best['model']} meets the target ({wanted}): {_figures(best)}{others}."
    else:
        record["shortfall"] = {k: round(v, 4) for k, v in shortfalls(best, settings).items()}
        record["closest_rule"] = CLOSEST_RULE
        missed = ", ".join(f"{key} by {100 * gap:.0f}%" for key, gap in record["shortfall"].items() if gap > 0)
        record["summary"] = (f"No model meets the target ({wanted}); the closest is {best['model']}: {_figures(best)}"
                             f" (short on {missed}).")
    return record


def target_region(rows: list[dict], settings: dict | None) -> dict | None:
    """Where the target lies on the accuracy-vs-throughput figure: ``{"throughput": x or None, "accuracy": y or
    None}`` (the least throughput and accuracy that meet the speedup and retained criteria), from the teacher row;
    None when neither criterion is set or the teacher's figures are missing."""
    if not settings or (settings.get("speedup") is None and settings.get("min_retained_pct") is None):
        return None
    teacher = next((r for r in rows if r.get("method") == "finetune"), None)
    if teacher is None or teacher.get("throughput_examples_per_s") is None or teacher.get("accuracy") is None:
        return None
    speedup, retained = settings.get("speedup"), settings.get("min_retained_pct")
    return {"throughput": None if speedup is None else speedup * teacher["throughput_examples_per_s"],
            "accuracy": None if retained is None else retained / 100 * teacher["accuracy"]}


def _sci(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def cost_rows(record: dict) -> list[tuple[str, dict]]:
    """(label, {energy_kwh, co2e_kg, cost_usd, wall_s}) for the target's cost table: the whole run, the chain
    that produced the best model, the teacher's fine-tuning."""
    cost = record.get("cost") or {}
    out = []
    if cost.get("run"):
        out.append(("the whole run (every stage's price tag; reused stages at their original cost)", cost["run"]))
    if cost.get("chain") and record.get("best"):
        out.append((f"the chain that produced {record['best']}: {' <- '.join(cost.get('chain_stages') or [])}",
                    cost["chain"]))
    if cost.get("teacher_finetune"):
        out.append(("of which the teacher's fine-tuning", cost["teacher_finetune"]))
    return out


def cost_cells(values: dict) -> list[str]:
    wall = values.get("wall_s")
    return [_sci(values.get("energy_kwh")), _sci(values.get("co2e_kg")), _sci(values.get("cost_usd")),
            "n/a" if wall is None else f"{wall:.0f}"]


COST_HEADER = ("energy kWh", "CO2e kg", "cost USD", "wall s")


def target_markdown(record: dict | None) -> list[str]:
    """report.md's "Target" section (no lines when the recipe sets no target)."""
    if not record:
        return []
    met = ", ".join(f"`{m}`" for m in record["met_by"]) or "no model"
    lines = ["## Target", "", f"The recipe's target: {record['describe']}.", "", f"**{record['summary']}**", "",
             f"Met by: {met}."]
    if record.get("closest_rule"):
        lines[-1] += f" The closest is chosen thus: {record['closest_rule']}."
    rows = cost_rows(record)
    if rows:
        lines += ["", "What producing it cost:", "", "| | " + " | ".join(COST_HEADER) + " |",
                  "|---|" + "---:|" * len(COST_HEADER)]
        lines += [f"| {label} | " + " | ".join(cost_cells(values)) + " |" for label, values in rows]
    lines.append("")
    return lines
