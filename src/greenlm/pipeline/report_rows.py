"""Turn a run's stages and its measuring pass into report rows, then write report.json and report.md."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from greenlm.common import atomic_write_json, atomic_write_text
from greenlm.report.provenance import eval_split_of
from greenlm.report.rundata import checks, read_json_dict
from greenlm.report.tables import comparison_markdown
from greenlm.report.uncertainty import row_statistics


def _chain(stage_name: str, upstream_of: dict[str, str | None]) -> list[str]:
    chain = []
    while stage_name is not None:
        chain.append(stage_name)
        stage_name = upstream_of.get(stage_name)
    return chain


def _stage_metrics(stage) -> dict:
    """A stage's metrics: those it carries (a stage just run), else its folder's metrics.json (a report rebuilt)."""
    metrics = getattr(stage, "metrics", None)
    return metrics if isinstance(metrics, dict) else (read_json_dict(Path(stage.folder) / "metrics.json") or {})


def _paused_s(metrics) -> float:
    """Seconds a stage spent in carbon-aware pauses: every ``pauses`` list its metrics hold (train.pauses, phases)."""
    if isinstance(metrics, dict):
        own = sum(float(p.get("paused_s") or 0.0) for p in metrics.get("pauses") or () if isinstance(p, dict))
        return own + sum(_paused_s(v) for k, v in metrics.items() if k != "pauses")
    if isinstance(metrics, list):
        return sum(_paused_s(v) for v in metrics)
    return 0.0


def _sum(values):
    present = [v for v in values if v is not None]
    return sum(present) if len(present) == len(values) else None


def build_rows(recipe, stages, measurements: dict) -> list[dict]:
    upstream_of = {s.name: s.upstream for s in recipe.stages}
    by_name = {s.name: s for s in stages}
    teacher = next(s.name for s in recipe.stages if s.method == "finetune")
    ref = measurements["models"][teacher]
    split = eval_split_of(measurements)
    rows = []
    for stage in stages:
        m = measurements["models"][stage.name]
        tag = stage.pricetag or {}
        chain = [by_name[n] for n in _chain(stage.name, upstream_of)]
        if any(s.method == "finetune" for s in chain) and stage.method != "finetune":
            chain_tags = [(s.pricetag or {}) for s in chain]
        else:
            chain_tags = [tag]
        energy = m["inference_energy"]
        rows.append({
            "model": stage.name,
            "method": stage.method,
            "from": upstream_of.get(stage.name),
            "status": stage.status,
            "accuracy": m[split]["accuracy"],
            "macro_f1": m[split]["macro_f1"],
            "mcc": m[split]["mcc"],
            "performance_retained_pct": 100.0 * m[split]["accuracy"] / ref[split]["accuracy"],
            "params": m["params"]["total"],
            "compression_x": ref["params"]["total"] / m["params"]["total"] if m["params"]["total"] else None,
            "flops_per_example": m["flops_per_example"],
            "latency_ms_p50": m["speed"]["latency_ms_p50"],
            "latency_ms_p90": m["speed"]["latency_ms_p90"],
            "throughput_examples_per_s": m["speed"]["throughput_examples_per_s"],
            "speedup_x": m["speed"]["throughput_examples_per_s"] / ref["speed"]["throughput_examples_per_s"],
            "size_mb": m["size_on_disk_bytes"] / 1e6,
            "size_compression_x": ref["size_on_disk_bytes"] / max(1, m["size_on_disk_bytes"]),
            "stage_energy_kwh": tag.get("energy_kwh"),
            "stage_co2e_kg": tag.get("co2e_kg"),
            "stage_cost_usd": tag.get("cost_usd"),
            "stage_wall_s": tag.get("wall_s"),
            "stage_paused_s": _paused_s(_stage_metrics(stage)),
            "cumulative_energy_kwh": _sum([t.get("energy_kwh") for t in chain_tags]),
            "cumulative_co2e_kg": _sum([t.get("co2e_kg") for t in chain_tags]),
            "cumulative_cost_usd": _sum([t.get("cost_usd") for t in chain_tags]),
            "energy_source": tag.get("energy_source"),
            "inference_energy_kwh_per_1000": energy.get("energy_kwh_per_1000_examples"),
            "inference_co2e_kg_per_1000": energy.get("co2e_kg_per_1000_examples"),
            "folder": str(stage.folder),
            # interval, paired difference from the teacher, per-class results, runtime, timing spread
            **row_statistics(m, None if stage.name == teacher else ref, split, measurements.get("other_splits") or ()),
        })
    return rows


def write_report(recipe, task, stages, measurements: dict, run_dir: Path) -> dict:
    """report.json and a first report.md, then every other format (``greenlm report``'s code, from the folder).

    Rows get ``on_front`` and ``meets_target``, the report ``target`` (the recipe's ``target:``) and
    ``selection`` (which split each stage chose on), computed as ``greenlm report RUN_DIR`` computes them.
    """
    rows = build_rows(recipe, stages, measurements)
    sources = sorted({r["energy_source"] for r in rows if r["energy_source"]})
    target = getattr(recipe, "target", None)
    added = checks({"target": dataclasses.asdict(target) if target is not None else None}, rows,
                   {s.name: read_json_dict(Path(s.folder) / "metrics.json") for s in stages},
                   reported=task.eval_split, measurements=measurements)
    report = {
        "run": recipe.name,
        "task": task.name,
        "teacher": recipe.teacher,
        "eval_split": task.eval_split,  # the split every accuracy, macro-F1 and MCC below comes from
        "written_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": measurements["machine"],
        "protocol": measurements["protocol"],
        "energy_sources": sources,
        **added,
        "rows": rows,
    }
    atomic_write_json(run_dir / "report.json", report)
    atomic_write_text(run_dir / "report.md", comparison_markdown(report))

    # Figures, report.html, report.tex, model cards, and the fuller report.md/json (issue 9; the same as
    # `greenlm report RUN_DIR`). Never fails the run: without matplotlib the figures are skipped with a note.
    from greenlm.pipeline.rundir import RunLog
    from greenlm.report.regenerate import generate_after_run

    generate_after_run(run_dir, RunLog(run_dir / "run.log", lambda message: print(message, file=sys.stderr)))
    return report
