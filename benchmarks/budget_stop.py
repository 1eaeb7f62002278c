"""Issue 20 figure: a real training stopped by its energy budget, then resumed with a larger one.

    python benchmarks/budget_stop.py [--train-subset 4000] [--fractions 0.5,0.9] [--out runs/budget-bench]

1. `greenlm train` of a 2x128 BERT from scratch on --train-subset rows of the bundled SST-2, one epoch, with no
   budget: its price tag's energy is the need.
2. The same command with `--max-kwh` at each fraction of that need (default a half and 0.9): each run that stops
   prints one line (exit code 3): the step it stopped at, what it had spent, and its projected total, set here
   against the measured need (the projection's error is the budget's margin).
3. The run stopped at the first fraction, resumed by the same command with `--max-kwh` at twice the need: it must
   end with the same weights (byte for byte) and the same dev accuracy as the uninterrupted run; its price tag adds
   up both attempts.

Energy on a machine without RAPL or NVML is greenlm's estimate (TDP x CPU seconds + memory), so the budget is too.
Writes the section "A budget stop (issue 20)" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402

MODEL = "tiny:layers=2,hidden=128,heads=2,ffn=512"
STOP = re.compile(r"stopped at step (\d+) of (\d+) .*?spent ([0-9.e+-]+) kWh(?:, projected total ([0-9.e+-]+) kWh)?")


def train(out: Path, rows: int, max_kwh: float | None) -> dict:
    args = [sys.executable, "-m", "greenlm", "train", "--task", "sst2", "--model", MODEL, "--epochs", "1",
            "--max-length", "64", "--learning-rate", "5e-4", "--train-subset", str(rows), "--out", str(out),
            "--no-progress"]
    if max_kwh is not None:
        args += ["--max-kwh", f"{max_kwh:.6g}"]
    env = {**os.environ, "MKL_CBWR": "COMPATIBLE"}  # the same arithmetic in every process: weights compared by bytes
    started = time.perf_counter()
    run = subprocess.run(args, capture_output=True, text=True, env=env)
    result = {"rc": run.returncode, "real_s": time.perf_counter() - started, "max_kwh": max_kwh}
    lines = [line for line in run.stderr.splitlines() if line.startswith("greenlm: budget")]
    result["budget_lines"] = lines
    if run.returncode == 3:
        match = STOP.search(lines[-1])
        if match is None:
            raise SystemExit(f"unexpected stop line: {lines[-1]}")
        step, total, spent, projected = match.groups()
        result.update(step=int(step), total_steps=int(total), spent_kwh=float(spent),
                      projected_kwh=float(projected) if projected else None)
        return result
    if run.returncode != 0:
        raise SystemExit(f"greenlm train failed ({run.returncode}):\n{run.stderr[-3000:]}")
    result["metrics"] = json.loads((out / "metrics.json").read_text())
    result["tag"] = json.loads((out / "pricetag.json").read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-subset", type=int, default=4000)
    parser.add_argument("--fractions", default="0.5,0.9", help="Budgets as fractions of the measured need.")
    parser.add_argument("--out", default="runs/budget-bench")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    fractions = [float(f) for f in args.fractions.split(",") if f.strip()]

    straight = train(out / "straight", args.train_subset, None)
    need = straight["tag"]["energy_kwh"]
    steps = straight["metrics"]["train"]["steps"]
    print(f"uninterrupted: {need:.4g} kWh, {steps} steps, {straight['real_s']:.0f} s", flush=True)

    budgeted = {}
    for fraction in fractions:
        res = train(out / f"budget-{fraction:g}", args.train_subset, fraction * need)
        budgeted[fraction] = res
        print(f"budget {fraction:g} x need: exit {res['rc']}" +
              (f", stopped at step {res['step']} of {res['total_steps']}, projected {res['projected_kwh']}"
               if res["rc"] == 3 else ""), flush=True)

    first = fractions[0]
    stopped = budgeted[first]
    if stopped["rc"] != 3:
        raise SystemExit(f"the run at {first:g} x its need did not stop; nothing to resume")
    resumed = train(out / f"budget-{first:g}", args.train_subset, 2 * need)
    same_bytes = ((out / f"budget-{first:g}" / "model.safetensors").read_bytes()
                  == (out / "straight" / "model.safetensors").read_bytes())
    acc = {name: r["metrics"]["splits"]["dev"]["accuracy"] for name, r in (("straight", straight), ("resumed", resumed))}
    print(f"resumed: exit {resumed['rc']}, same weights: {same_bytes}, dev accuracy {acc}", flush=True)

    rows = ["| budget (x need) | --max-kwh | exit | stopped at step | spent at stop kWh | projected total kWh |"
            " projection vs need | warning line |",
            "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for fraction, res in budgeted.items():
        warned = "yes" if any("% of --max-kwh" in line for line in res["budget_lines"]) else "no"
        if res["rc"] == 3:
            error = (f"{100 * (res['projected_kwh'] / need - 1):+.1f}%" if res["projected_kwh"] else "(stopped at start)")
            rows.append(f"| {fraction:g} | {res['max_kwh']:.4g} | 3 | {res['step']} of {res['total_steps']} |"
                        f" {res['spent_kwh']:.4g} | {res['projected_kwh'] or float('nan'):.4g} | {error} | {warned} |")
        else:
            rows.append(f"| {fraction:g} | {res['max_kwh']:.4g} | {res['rc']} | finished |"
                        f" {res['tag']['energy_kwh']:.4g} (total) | - | - | {warned} |")
    attempts = resumed["tag"]["meta"].get("attempts", 1)
    body = f"""Command: `python benchmarks/budget_stop.py --train-subset {args.train_subset} --fractions {args.fractions}`
({datetime.date.today().isoformat()}; machine: {machine_line()}).

`greenlm train --task sst2 --model {MODEL} --epochs 1 --max-length 64 --train-subset {args.train_subset}` without a
budget needed {need:.4g} kWh ({steps} optimizer steps, {straight['real_s']:.0f} s; energy source
{straight['tag']['energy_source']}). The same command with `--max-kwh` at a fraction of that need:

{chr(10).join(rows)}

"Projection vs need" is the projected total at the stop against the need measured without a budget: the margin of
the projection (it sees the training's remaining steps, not the work after them, and the first steps' rate). The
run stopped at {first:g} x its need, run again with `--max-kwh {2 * need:.4g}` (twice the need), resumed from its
checkpoint: exit code {resumed['rc']}, {'the same' if same_bytes else 'DIFFERENT'} weights as the uninterrupted run
(model.safetensors compared byte for byte), dev accuracy {100 * acc['resumed']:.2f}% against
{100 * acc['straight']:.2f}%; its price tag adds up {attempts} attempts, {resumed['tag']['energy_kwh']:.4g} kWh in
all ({100 * (resumed['tag']['energy_kwh'] / need - 1):+.1f}% against the uninterrupted run: the stopped attempt's
set-up, done twice). Energy here is greenlm's estimate (TDP x CPU seconds + memory), and so is the budget."""
    write_section("A budget stop (issue 20)", body)
    print(body)


if __name__ == "__main__":
    main()
