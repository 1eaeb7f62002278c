"""Issue 21 figure: what a test split adds to `greenlm run quick` (aim: under 5% of the run).

    python benchmarks/test_split_cost.py [--recipe quick] [--task rt_polarity] [--baseline] [--doc]

Runs `greenlm run RECIPE --set task=TASK` (a bundled task with train, dev and test) from an empty runs folder, in a
fresh Python process, and reads what the test split cost from the run itself: the measuring pass times each
model's test evaluation (tokenizing, predicting, scoring: `measurements.json`, `models.<m>.test.seconds`), and
the stages never see test (greenlm.data.stage_task), so that is all a test split adds. Timed inside the same run,
the share holds on a shared machine, where two runs' totals differ by more than the effect.

``--baseline`` also runs the same recipe on a folder holding only the task's train and dev files (in another runs
folder, so nothing is reused), for the difference of the two runs' wall times beside the timed share; it is
noisy on a shared machine (the load average before and after each run is printed). ``--doc`` writes the section
"Time added by a test split (issue 21)" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402

BUNDLED = Path(__file__).resolve().parent.parent / "src" / "greenlm" / "data" / "bundled"


def timed_run(recipe: str, task: str, runs: Path) -> dict:
    """One `greenlm run` in a fresh process: its wall time, the load average around it, its run folder."""
    shutil.rmtree(runs, ignore_errors=True)
    command = [sys.executable, "-m", "greenlm", "run", recipe, "--set", f"task={task}", "--runs-dir", str(runs),
               "--no-progress"]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"greenlm run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    run_dir = next(p for p in runs.iterdir() if (p / "report.json").is_file())
    return {"wall_s": seconds, "load_before": load_before, "load_after": os.getloadavg()[0], "dir": run_dir}


def stage_seconds(run_dir: Path) -> dict[str, float]:
    report = json.loads((run_dir / "report.json").read_text())
    return {row["model"]: row["stage_wall_s"] for row in report["rows"]}


def train_dev_only(task: str, folder: Path) -> Path:
    """The bundled task's train and dev files, without its test file (labels inferred from train)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        shutil.copy(BUNDLED / task / f"{split}.tsv.gz", folder / f"{split}.tsv.gz")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="quick")
    parser.add_argument("--task", default="rt_polarity", help="a bundled task with a labelled test split")
    parser.add_argument("--runs-dir", default="runs/test-split-bench")
    parser.add_argument("--baseline", action="store_true", help="also run the task without its test file")
    parser.add_argument("--doc", action="store_true", help="write the section of docs/benchmarks.md")
    args = parser.parse_args()
    root = Path(args.runs_dir)
    shutil.rmtree(root, ignore_errors=True)

    with_test = timed_run(args.recipe, args.task, root / "with_test")
    measured = json.loads((with_test["dir"] / "measurements.json").read_text())
    if "test" not in measured.get("other_splits", []) and measured.get("eval_split") != "test":
        sys.exit(f"task {args.task} has no labelled test split measured in the run")
    models = measured["models"]
    test_s = {name: m["test"]["seconds"] for name, m in models.items()}
    dev_s = {name: m[measured["eval_split"]]["seconds"] for name, m in models.items()}
    rows = models[next(iter(models))]["test"]["examples"]
    total_test = sum(test_s.values())
    share = total_test / with_test["wall_s"]
    stages = stage_seconds(with_test["dir"])
    lines = [f"| {name} | {stages.get(name, float('nan')):.1f} | {dev_s[name]:.2f} | {test_s[name]:.2f} |"
             for name in models]
    verdict = "met" if share < 0.05 else "MISSED"
    load = measured["machine"].get("load") or {}

    baseline_text = ""
    if args.baseline:
        folder = train_dev_only(args.task, root / f"{args.task}_train_dev")
        without = timed_run(args.recipe, str(folder), root / "without_test")
        other = stage_seconds(without["dir"])
        added = with_test["wall_s"] - without["wall_s"]
        baseline_text = f"""
Side by side (`--baseline`): the same recipe on a folder holding only the task's train and dev files, in another
runs folder (nothing reused), run after it. The stages see the same task either way (without test), so their
work is the same; what differs is the noise of a shared machine.

| | whole run s | {' s | '.join(other)} s | load average before / after |
|---|---:|{'---:|' * len(other)}---|
| with the test split | {with_test['wall_s']:.1f} | {' | '.join(f"{stages[n]:.1f}" for n in other)} | {with_test['load_before']:.2f} / {with_test['load_after']:.2f} |
| without it | {without['wall_s']:.1f} | {' | '.join(f"{other[n]:.1f}" for n in other)} | {without['load_before']:.2f} / {without['load_after']:.2f} |

Difference of the two wall times: {added:+.1f} s ({100 * added / without['wall_s']:+.1f}% of the run without test).
"""

    body = f"""Command: `python benchmarks/test_split_cost.py{' --baseline' if args.baseline else ''} --doc` (`greenlm run {args.recipe}
--set task={args.task}`, bundled: train, dev and a labelled test split of {rows:,} rows; a fresh Python process,
runs folder emptied first). Machine: {machine_line()}. Date: {datetime.date.today().isoformat()}.
Load average before / after the run: {with_test['load_before']:.2f} / {with_test['load_after']:.2f}; while the
measuring pass timed the models: {load.get('loadavg_1m_before')} / {load.get('loadavg_1m_after')}, other processes
{100 * (load.get('other_processes_cpu_share') or 0):.0f}% of the CPU.

The stages of a run never see the test split; the measuring pass evaluates it once per model and times that
(tokenizing, predicting, scoring: `measurements.json`, `models.<m>.test.seconds`), so that is what the test split
adds. Timed within the run, beside the run's own total, the share is far less sensitive to a busy machine than
the difference of two runs: both parts slow down together, as long as the load stays alike through the run.

| model | its stage s | reported split ({measured['eval_split']}) evaluation s | test evaluation s |
|---|---:|---:|---:|
{chr(10).join(lines)}

Test evaluation, all {len(models)} models: **{total_test:.1f} s of a {with_test['wall_s']:.1f} s run, {100 * share:.1f}%**
(aim: under 5%: {verdict}). Before this change every stage evaluated the test rows itself (distillation both the
student and the teacher, early exit the upstream model and the exits) and the measuring pass did not: a run on the
same task took 67 s (14.7%) longer with the test file than without it (2026-12-07, same machine, measured as two
runs' difference, an upper bound).
{baseline_text}"""
    print(body)
    if args.doc:
        write_section("Time added by a test split (issue 21)", body)


if __name__ == "__main__":
    main()
