"""How wide is the noise? The 95% bootstrap interval of dev accuracy on SST-2 (872 rows) and RTE (277 rows), and of
the paired difference between two models, so that a user knows which differences in a report are noise.

Two sources, said in the output:

- ``--run RUN_DIR`` (repeatable): a finished ``greenlm run`` folder whose measuring pass kept its dev predictions
  (greenlm with issue 21). Every model's interval and its paired difference from the teacher come from its real
  predictions, exactly as the report computes them (``greenlm.report.uncertainty.row_statistics``).
- without a run, or for a task no run covers: the interval at a stated accuracy (``--accuracy TASK=ACC``; defaults
  are the teacher accuracies docs/benchmarks.md reports: SST-2 89.45%, RTE 60.29%). The bootstrap of a mean of 0/1
  outcomes draws Binomial(n, accuracy) correct rows, so this interval depends on n and the accuracy only: it is the
  same as from real predictions at that accuracy. The paired difference also depends on how often the two models
  disagree; it is given for a few disagreement rates (``--disagree``), with the two models equally accurate.

It also times the computation (what adding the intervals costs a report): ``--repeats`` intervals of
``RESAMPLES`` draws each, per-call median.

    python benchmarks/ci_width.py                         # stated accuracies; prints Markdown
    python benchmarks/ci_width.py --run runs/quick --doc  # real predictions too; updates docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from _doc import machine_line, write_section  # noqa: E402

from greenlm.measure import stats  # noqa: E402

DEV_ROWS = {"sst2": 872, "rte": 277}
DEFAULT_ACCURACY = {"sst2": 0.8945, "rte": 0.6029}  # docs/benchmarks.md: the fine-tuned MiniLM teacher on dev


def _pp(value: float) -> str:
    return f"{100 * value:.2f}"


def stated_rows(accuracy: dict[str, float], disagree: list[float]) -> list[str]:
    lines = ["| task | dev rows | accuracy % (stated) | 95% CI % | width pp"
             " | paired difference width pp, by disagreement |", "|---|---:|---:|---:|---:|---|"]
    for task, n in DEV_ROWS.items():
        acc = accuracy[task]
        interval = stats.accuracy_interval(round(acc * n), n)
        widths = []
        for rate in disagree:
            split = round(rate * n / 2)  # equally accurate models: half the disagreements favour each
            a = [True] * split + [False] * split + [True] * (n - 2 * split)
            b = [False] * split + [True] * split + [True] * (n - 2 * split)
            diff = stats.paired_difference(a, b)
            widths.append(f"{100 * rate:.0f}%: {_pp(diff['high'] - diff['low'])}")
        lines.append(f"| {task} | {n} | {_pp(interval['accuracy'])} | {_pp(interval['low'])}-{_pp(interval['high'])}"
                     f" | {_pp(interval['high'] - interval['low'])} | {', '.join(widths)} |")
    return lines


def run_rows(run_dir: Path) -> list[str]:
    from greenlm.report.rundata import load_run
    from greenlm.report.uncertainty import row_statistics

    measured = json.loads((run_dir / "measurements.json").read_text())["models"]
    recipe_teacher = load_run(run_dir).teacher_stage  # the recipe's finetune stage
    lines = [f"Run `{run_dir}` (real dev predictions; teacher `{recipe_teacher}`):", "",
             "| model | dev rows | accuracy % | 95% CI % | width pp | vs teacher pp (95% CI) | within noise"
             " | McNemar p |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for name, record in measured.items():
        row = row_statistics(record, None if name == recipe_teacher else measured[recipe_teacher])
        kept = record.get("predictions") or {}
        if row["accuracy_ci95_low"] is None or not kept.get("gold"):
            lines.append(f"| {name} | n/a | n/a | no stored predictions (measured by an older greenlm) | | | | |")
            continue
        n = len(kept["gold"])
        acc = record["dev"]["accuracy"]
        diff = row["accuracy_vs_teacher"]
        versus = (f"{100 * diff['difference']:+.2f} ({100 * diff['low']:+.2f}, {100 * diff['high']:+.2f})"
                  if diff else "(reference)")
        lines.append(f"| {name} | {n} | {_pp(acc)} | {_pp(row['accuracy_ci95_low'])}-{_pp(row['accuracy_ci95_high'])}"
                     f" | {_pp(row['accuracy_ci95_high'] - row['accuracy_ci95_low'])} | {versus}"
                     f" | {'yes' if diff and diff['within_noise'] else ('no' if diff else '')}"
                     f" | {'' if not diff else format(diff['mcnemar_p'], '.3g')} |")
    return lines


def timing_line(repeats: int) -> str:
    n = DEV_ROWS["sst2"]
    a = [i % 10 != 0 for i in range(n)]
    b = [i % 9 != 0 for i in range(n)]
    accuracy_s, paired_s = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        stats.accuracy_interval(sum(a), n)
        accuracy_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        stats.paired_difference(a, b)
        paired_s.append(time.perf_counter() - started)
    return (f"Cost: one accuracy interval ({stats.RESAMPLES:,} resamples) takes"
            f" {1e3 * statistics.median(accuracy_s):.3f} ms, one paired difference on {n} rows"
            f" {1e3 * statistics.median(paired_s):.3f} ms (median of {repeats}); a report of k models adds k of each.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, action="append", default=[], help="a greenlm run folder (repeatable)")
    p.add_argument("--accuracy", action="append", default=[], metavar="TASK=ACC",
                   help="stated dev accuracy for a task, e.g. sst2=0.91 (default: the teachers of docs/benchmarks.md)")
    p.add_argument("--disagree", default="0.02,0.05,0.10",
                   help="share of dev rows on which two equally accurate models disagree (comma-separated)")
    p.add_argument("--repeats", type=int, default=200, help="timing repeats")
    p.add_argument("--doc", action="store_true", help="write the section of docs/benchmarks.md")
    args = p.parse_args()
    accuracy = dict(DEFAULT_ACCURACY)
    for item in args.accuracy:
        task, _, value = item.partition("=")
        if task not in DEV_ROWS:
            p.error(f"--accuracy: unknown task '{task}'; use one of {', '.join(DEV_ROWS)}")
        accuracy[task] = float(value)
    disagree = [float(x) for x in args.disagree.split(",") if x.strip()]
    lines = [f"Percentile bootstrap, {stats.RESAMPLES:,} resamples, seed {stats.SEED} (greenlm.measure.stats).", "",
             "Stated accuracies (no predictions needed: the interval of an accuracy depends on the rows and the"
             " accuracy only):", "", *stated_rows(accuracy, disagree), ""]
    for run_dir in args.run:
        lines += [*run_rows(run_dir), ""]
    lines += [timing_line(args.repeats), "", f"Machine: {machine_line()}."]
    body = "\n".join(lines)
    print(body)
    if args.doc:
        write_section("Width of the 95% interval (issue 21)", body)


if __name__ == "__main__":
    main()
