"""Issue 14 figures: the frontier of `greenlm run frontier` (teacher, distilled students, int8, exits), from its
own report, with what the whole run cost.

    python benchmarks/frontier_sst2.py [--task sst2] [--runs-dir runs/frontier-bench] [--set KEY=VALUE ...]
    python benchmarks/frontier_sst2.py --recipe benchmarks/recipes/frontier_students.yaml   # another recipe, its section

Runs the bundled ``frontier`` recipe through the Python API (``greenlm.run``: the same code as the command),
so a killed run resumes when the script is started again. Every figure below is read from the run's
report.json (dev accuracy, speed from the run's measuring pass: interleaved rounds, batch 32 and batch 1) and
the stages' price tags. Writes the section "Frontier: greenlm run frontier on <task> (issue 14)" of
docs/benchmarks.md, with the target's verdict (met or missed) and the machine's load while timing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402


def _fmt(value, spec: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def table(report: dict) -> str:
    lines = ["| model | from | dev acc % | % of teacher | speedup x (b=32) | ex/s | p50 ms (b=1) | size MB |"
             " stage kWh | chain kWh | stage wall min | front | meets target |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|:-:|"]
    for r in report["rows"]:
        wall = r.get("stage_wall_s")
        lines.append(
            f"| {r['model']} | {r.get('from') or '-'} | {100 * r['accuracy']:.2f} | {r['performance_retained_pct']:.1f}"
            f" | {r['speedup_x']:.2f} | {r['throughput_examples_per_s']:.0f} | {_fmt(r.get('latency_ms_p50'), '.2f')}"
            f" | {r['size_mb']:.1f} | {_fmt(r.get('stage_energy_kwh'), '.2e')} | {_fmt(r.get('cumulative_energy_kwh'), '.2e')}"
            f" | {_fmt(None if wall is None else wall / 60, '.1f')} | {'yes' if r.get('on_front') else ''}"
            f" | {'yes' if r.get('meets_target') else ('no' if r.get('meets_target') is False else '')} |")
    return "\n".join(lines)


def totals(report: dict) -> str:
    rows = report["rows"]
    energy = sum(r.get("stage_energy_kwh") or 0 for r in rows)
    co2 = sum(r.get("stage_co2e_kg") or 0 for r in rows)
    wall = sum(r.get("stage_wall_s") or 0 for r in rows)
    teacher = next((r for r in rows if r["method"] == "finetune"), None)
    line = (f"The whole run (every stage, as priced by its own price tag): {energy:.3e} kWh, {co2:.3e} kg CO2e,"
            f" {wall / 60:.1f} min of stage wall time")
    if teacher is not None and teacher.get("stage_energy_kwh"):
        line += (f"; the teacher's fine-tuning alone: {teacher['stage_energy_kwh']:.3e} kWh,"
                 f" {teacher.get('stage_co2e_kg') or 0:.3e} kg CO2e, {(teacher.get('stage_wall_s') or 0) / 60:.1f} min"
                 f" (compression cost {energy / teacher['stage_energy_kwh'] - 1:.2f}x the teacher's energy on top)")
    return line + ". Energy is greenlm's estimate (no RAPL here: TDP x CPU utilisation), not a meter."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--runs-dir", default="runs/frontier-bench")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--recipe", default="frontier", help="the bundled frontier recipe, or a recipe file")
    parser.add_argument("--remeasure", action="store_true", help="take the measuring pass again (greenlm run --remeasure)")
    args = parser.parse_args()
    import greenlm
    from greenlm.pipeline.recipes import load_recipe

    overrides = [f"task={args.task}", *args.overrides]
    bundled = args.recipe == "frontier"
    name = f"frontier-{args.task}" if bundled else f"{load_recipe(args.recipe, overrides, None).name}-{args.task}"
    started = time.perf_counter()
    greenlm.run(args.recipe, set=overrides, name=name, runs_dir=args.runs_dir, resume=True, remeasure=args.remeasure)
    wall_s = time.perf_counter() - started
    run_dir = Path(args.runs_dir) / name
    report = json.loads((run_dir / "report.json").read_text())
    load = (report.get("machine") or {}).get("load") or {}
    target = report.get("target") or {}
    shown = " ".join(f"--set {o}" for o in args.overrides)
    recipe_arg = "" if bundled else f" --recipe {args.recipe}"
    what = "the bundled `frontier` recipe" if bundled else f"the recipe `{args.recipe}`"
    body = f"""Command: `python benchmarks/frontier_sst2.py --task {args.task} --runs-dir {args.runs_dir}{recipe_arg}{(' ' + shown) if shown else ''}`
({what} through `greenlm.run`; run folder `{run_dir}`; this invocation took {wall_s / 60:.1f} min,
stages reused from an earlier invocation count 0 here but keep their own price tags below).
Machine: {machine_line()}. Date: {datetime.date.today().isoformat()}.
Selection: every choice (best epoch, int8 fallback, exit threshold) was made on a validation split carved from
train or on held-out train rows; dev is only reported. Speed: the run's measuring pass, interleaved rounds, best
round per model; teacher = the fine-tuned MiniLM in PyTorch fp32, each model on the runtime it is saved for.
Machine load while timing: {json.dumps({k: load.get(k) for k in ('loadavg_1m_before', 'other_processes_cpu_share', 'busy')})}.

{table(report)}

Target ({target.get('describe', 'none')}): {target.get('summary', 'no target set')}

{totals(report)}
"""
    title = "frontier" if bundled else name.removesuffix(f"-{args.task}")
    write_section(f"Frontier: greenlm run {title} on {args.task} (issue 14)", body)
    print(body)


if __name__ == "__main__":
    main()
