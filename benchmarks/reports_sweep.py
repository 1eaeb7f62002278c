"""A real budget/performance curve on bundled SST-2, and what writing the report costs.

    python benchmarks/reports_sweep.py [--trials 5] [--train-subset 2000] [--teacher runs/teacher-sst2]

A sweep of the distillation learning rate: a 2-layer student distilled in every trial from a MiniLM teacher
already fine-tuned on SST-2 (``--teacher``, a folder made by ``greenlm train``; the recipe's finetune stage
takes one optimizer step at a negligible learning rate, so the stage is the teacher, evaluated and priced,
and is shared by every trial); random search, Dodge et al.'s setting. Each trial is a normal run without
the measuring pass; then the best trial is measured and ``greenlm report`` on it is timed. Writes its
section of docs/benchmarks.md and copies the curve and the best trial's figures to docs/figures/reports/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures" / "reports"
SEARCH = "stages.distill.learning_rate=loguniform(1e-4,3e-3)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--train-subset", type=int, default=2000)
    parser.add_argument("--teacher", type=Path, default=ROOT / "runs" / "teacher-sst2")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "bench-reports")
    parser.add_argument("--sampler", default="random", choices=("random", "tpe"))
    args = parser.parse_args()

    from greenlm.pipeline.recipes import load_recipe
    from greenlm.pipeline.runner import run_recipe
    from greenlm.pipeline.sweep import best_trial, run_sweep
    from greenlm.report.regenerate import FORMATS, generate_report

    if not (args.teacher / "metrics.json").is_file():
        raise SystemExit(f"{args.teacher} is not a finished `greenlm train` folder (no metrics.json)")
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    recipe = args.runs_dir / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "rsweep", "task": "sst2", "teacher": str(args.teacher),
        "measure": {"region": "USA", "pue": 1.0},
        "evaluation": {"speed_examples": 128, "latency_examples": 16, "repeats": 1},
        "stages": {
            "finetune": {"max_steps": 1, "learning_rate": 1e-9, "warmup_ratio": 0.0, "max_length": 64},
            "distill": {"student": "2x256", "epochs": 1, "train_subset": args.train_subset},
        },
    }, sort_keys=False))
    teacher = args.teacher.relative_to(ROOT) if args.teacher.is_relative_to(ROOT) else args.teacher
    command = (f"python benchmarks/reports_sweep.py --trials {args.trials} --train-subset {args.train_subset}"
               f" --sampler {args.sampler} --teacher {teacher}")
    started = time.perf_counter()
    stamp = time.perf_counter

    def echo(message: str) -> None:
        print(f"[{stamp() - started:7.1f} s] {message}", flush=True)

    outcome = run_sweep(str(recipe), [SEARCH], args.trials, runs_root=args.runs_dir, sampler=args.sampler,
                        prune=False, measure=False, progress=False, echo=echo)
    sweep_seconds = time.perf_counter() - started
    record, curve = outcome.record, outcome.curve
    best = best_trial(record)

    # the best trial, measured like any run (its stages are reused), then its report written again and timed
    best_run = args.runs_dir / "rsweep-sweep" / "trials" / best["name"]
    run_recipe(load_recipe(str(best_run / "recipe.yaml")), best_run.parent, resume=True, progress=False, echo=echo)
    report_started = time.perf_counter()
    report = generate_report(best_run, FORMATS, on_note=lambda _: None)
    report_seconds = time.perf_counter() - report_started
    html_bytes = (best_run / "report.html").stat().st_size
    figures = sorted(p.name for p in report.files if p.suffix == ".png")

    FIGURES.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg", "csv"):
        shutil.copy2(outcome.sweep_dir / "figures" / f"budget_curve.{ext}", FIGURES / f"budget_curve.{ext}")
    for name in ("accuracy_vs_throughput", "breakdown", "pricetag"):
        shutil.copy2(best_run / "figures" / f"{name}.png", FIGURES / f"{name}.png")
    rows = json.loads((best_run / "report.json").read_text())["rows"]

    lines = [
        f"Command: `{command}`. Machine: {machine_line()}. Date: {time.strftime('%Y-%m-%d')}.",
        "The machine was shared with other jobs while this ran: wall times and throughput are noisy.",
        "",
        f"Sweep: `--search '{SEARCH}'`, {args.sampler} sampling, {args.trials} trials; recipe: teacher"
        f" `{args.teacher.name}` (MiniLM fine-tuned on SST-2 by `greenlm train`; the finetune stage takes one step at"
        " learning rate 1e-9, so it is that teacher, evaluated and priced, shared by every trial), a 2x256 student"
        f" distilled from it on {args.train_subset} training sentences (1 epoch, 64 tokens) in every trial;"
        " objective: student dev accuracy"
        " (872 sentences). Trials are not measured (speed, energy per example): the best one is, afterwards."
        " The teacher's price tag in these tables is that one-step stage only; its original fine-tuning"
        " (`greenlm train`) was priced in its own folder, not here.",
        "",
        f"Wall time of the sweep: {sweep_seconds / 60:.1f} min. The teacher was trained once: trials after the"
        f" first ran {', '.join(sorted({s for t in record['trials'][1:] for s in t['stages_ran']})) or 'nothing'}.",
        "",
        "| trial | learning rate | dev accuracy | energy kWh (stages run) | seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for t in record["trials"]:
        lr = t["params"]["stages.distill.learning_rate"]
        value = "n/a" if t["value"] is None else f"{100 * t['value']:.2f}%"
        energy = "n/a" if t["energy_kwh"] is None else f"{t['energy_kwh']:.3g}"
        lines.append(f"| {t['name']} ({t['state']}) | {lr:.3g} | {value} | {energy} | {t['seconds']:.0f} |")
    lines += ["", "Budget/performance curve (expected best dev accuracy of n trials, Dodge et al. 2019, with"
              " replacement over the finished trials):", "",
              "| n | expected best | std | best so far | energy spent kWh |", "|---:|---:|---:|---:|---:|"]
    for c in curve or []:
        energy = "n/a" if c["cumulative_energy_kwh"] is None else f"{c['cumulative_energy_kwh']:.3g}"
        lines.append(f"| {c['n']} | {100 * c['expected_max']:.2f}% | {100 * c['std']:.2f} |"
                     f" {100 * c['best_so_far']:.2f}% | {energy} |")
    lines += ["", "![budget/performance curve](figures/reports/budget_curve.png)", "",
              f"`greenlm report` on the best trial ({best['name']}, {len(rows)} models): {report_seconds:.1f} s for"
              f" every format ({len(figures)} figures as PNG + SVG + CSV, report.md, report.html, report.json,"
              f" report.tex, {sum(1 for p in report.files if p.name == 'README.md')} model cards);"
              f" report.html is {html_bytes / 1e3:.0f} kB, self-contained.", "",
              "| model | accuracy | params | speedup x | size MB | stage energy kWh |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {100 * r['accuracy']:.2f}% | {r['params']:,} | {r['speedup_x']:.2f} |"
                     f" {r['size_mb']:.1f} | {r['stage_energy_kwh']:.3g} |")
    lines += ["", "![accuracy vs throughput](figures/reports/accuracy_vs_throughput.png)",
              "![parameters and FLOPs by module](figures/reports/breakdown.png)",
              "![price tag by stage](figures/reports/pricetag.png)"]
    write_section("Reports and budget/performance curves (issue 9)", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
