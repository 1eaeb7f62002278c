"""Issue 3 figures: wall time of `greenlm run` (the default quick recipe) from an empty runs folder,
then of the same command a second time (every stage reused, only the report rewritten).

    python benchmarks/quick_run.py [--runs-dir runs/quick-bench] [--recipe quick]

Both runs go through the real CLI (a fresh Python process each, imports included), in a runs folder
that this script empties first, so nothing is reused from earlier runs. Writes the section
"## greenlm run, quick recipe (issue 3)" of docs/benchmarks.md with each stage's own time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402


def timed_run(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"greenlm run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return seconds, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="runs/quick-bench")
    parser.add_argument("--recipe", default="quick")
    args = parser.parse_args()
    runs = Path(args.runs_dir)
    shutil.rmtree(runs, ignore_errors=True)
    command = [sys.executable, "-m", "greenlm", "run", args.recipe, "--runs-dir", str(runs), "--no-progress"]
    first_s, first_log = timed_run(command)
    second_s, second_log = timed_run(command)
    (runs / "first.log").write_text(first_log)
    (runs / "second.log").write_text(second_log)

    run_dir = next(p for p in runs.iterdir() if (p / "report.json").is_file())
    report = json.loads((run_dir / "report.json").read_text())
    rows = report.get("rows", [])
    stage_rows = [f"| {r['model']} | {r['stage_wall_s']:.0f} |" for r in rows if r.get("stage_wall_s") is not None]
    model_rows = [f"| {r['model']} | {100 * r['accuracy']:.2f} | {r['speedup_x']:.2f} |" for r in rows]
    reused = "reused" in second_log
    body = f"""Command: `python benchmarks/quick_run.py --recipe {args.recipe}` (each run: `greenlm run {args.recipe} --no-progress`
in a fresh Python process, runs folder emptied first).
Machine: {machine_line()}. Date: {datetime.date.today().isoformat()}.

| run | wall time (s) | target |
|---|---|---|
| first (every stage trained) | {first_s:.0f} | <= 600 s: {"met" if first_s <= 600 else "MISSED"} |
| second, identical (every stage reused) | {second_s:.1f} ({100 * second_s / first_s:.1f}% of the first) | <= 5%: {"met" if second_s <= 0.05 * first_s else "MISSED"} |

The second run's log says which stages it reused: {"yes" if reused else "NO"}.

Wall time of each stage in the first run (its price tag):

| stage | wall (s) |
|---|---|
{chr(10).join(stage_rows)}

Models of the quick run (subsets, few steps: they show the pipeline working, not the benchmark figures):

| model | dev accuracy (%) | speedup vs teacher (x) |
|---|---|---|
{chr(10).join(model_rows)}
"""
    write_section("greenlm run, quick recipe (issue 3)", body)
    print(body)


if __name__ == "__main__":
    main()
