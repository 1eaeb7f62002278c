"""Issue 15 figure: one real training paused and resumed on the grid's schedule, priced hour by hour.

    python benchmarks/paused_training.py [--region CISO] [--month 2022-06] [--out runs/paused-bench]

Two runs of the same `greenlm train` (a 2x128 BERT trained from scratch on --train-subset rows of SST-2, one epoch),
started at the same
simulated moment, one minute before a clean hour ends: one with `--pause-above` (it runs through the clean minute,
checkpoints and sleeps through the dirty hours that follow, and resumes at the next clean hour), one without. The
clock is simulated (`--now`, `--clock-speed`: compute runs at the wall clock's pace, waits pass 3,600x faster),
and each run's price tag is taken on that clock (greenlm prices a pausing stage on the grid series it pauses on,
hour by hour). The threshold is the region's median over the year; the start is the hour of the month where a clean
hour is followed by two dirty ones and then a clean one with the largest gap between the dirty pair and the clean
hour after them (where pausing has the most to gain). Writes the section "Pause & Resume, priced hour by
hour (issue 15)" of docs/benchmarks.md.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERIES = ROOT.parent / "shared" / "data" / "carbon" / "eia930_us_balancing_authorities_2022_hourly.csv"
MODEL = "tiny:layers=2,hidden=128,heads=2,ffn=512"


def pick_start(series_path: Path, region: str, month: str) -> tuple[float, float, list]:
    """(threshold g/kWh, start Unix s, the four hours' g/kWh): hour h clean, h+1 and h+2 dirty, h+3 clean."""
    from greenlm.measure.grid_series import GridSeries

    grid = GridSeries.load(series_path)
    values = grid.values(region)
    threshold = float(np.nanmedian(values))
    first = grid.hour_index(datetime.datetime.fromisoformat(f"{month}-01T00:00:00+00:00").timestamp())
    last = grid.hour_index(datetime.datetime.fromisoformat(f"{month}-28T00:00:00+00:00").timestamp())
    best = None
    for h in range(first, min(last, grid.n_hours - 4)):
        v = values[h:h + 4]
        if v[0] <= threshold < min(v[1], v[2]) and v[3] <= threshold:
            gap = min(v[1], v[2]) - v[3]
            if best is None or gap > best[0]:
                best = (gap, h)
    if best is None:
        raise SystemExit(f"no clean-dirty-dirty-clean pattern for {region} in {month}")
    h = best[1]
    return threshold, float(grid.start_s + 3600 * h + 3540), [float(x) for x in values[h:h + 4]]  # hh:59


def train(out: Path, start_s: float, region: str, threshold: float | None, rows: int) -> dict:
    now = datetime.datetime.fromtimestamp(start_s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = [sys.executable, "-m", "greenlm", "train", "--task", "sst2", "--model", MODEL, "--epochs", "1",
            "--max-length", "64", "--learning-rate", "5e-4", "--train-subset", str(rows), "--out", str(out), "--no-progress",
            "--now", now, "--clock-speed", "3600", "--grid", str(SERIES), "--grid-region", region]
    if threshold is not None:
        args += ["--pause-above", f"{threshold:.3f}"]
    else:
        args += ["--pause-above", "1e9"]  # never pauses: the same pricing path (grid series, simulated clock)
    started = time.perf_counter()
    run = subprocess.run(args, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"greenlm train failed:\n{run.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    tag = json.loads((out / "pricetag.json").read_text())
    return {"real_s": time.perf_counter() - started, "metrics": metrics, "tag": tag}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", default="CISO")
    parser.add_argument("--month", default="2022-06")
    parser.add_argument("--out", default="runs/paused-bench")
    parser.add_argument("--train-subset", type=int, default=20000)
    args = parser.parse_args()
    out = Path(args.out)
    threshold, start_s, hours = pick_start(SERIES, args.region, args.month)
    results = {}
    for name, thr in (("paused", threshold), ("unpaused", None)):
        shutil.rmtree(out / name, ignore_errors=True)
        results[name] = train(out / name, start_s, args.region, thr, args.train_subset)
        print(f"{name}: {results[name]['tag']['co2e_kg']:.3e} kg CO2e", flush=True)

    paused, unpaused = results["paused"], results["unpaused"]
    all_hours = sorted({r["hour_utc"] for res in results.values() for r in res["tag"]["by_hour"]})
    rows = ["| hour (UTC) | g/kWh | paused run kWh | paused run g CO2e | unpaused run kWh | unpaused run g CO2e |",
            "|---|---:|---:|---:|---:|---:|"]
    for hour in all_hours:
        cells = []
        for res in (paused, unpaused):
            row = next((r for r in res["tag"]["by_hour"] if r["hour_utc"] == hour), None)
            cells.append(("-", "-") if row is None else (f"{row['energy_kwh']:.3e}", f"{1000 * row['co2e_kg']:.4f}"))
        g = next(r["intensity_g_per_kwh"] for res in results.values() for r in res["tag"]["by_hour"]
                 if r["hour_utc"] == hour)
        rows.append(f"| {hour} | {g:.1f} | {cells[0][0]} | {cells[0][1]} | {cells[1][0]} | {cells[1][1]} |")
    for res in (paused, unpaused):  # the hours add up to the whole (checked, not assumed)
        tag = res["tag"]
        assert abs(sum(r["co2e_kg"] for r in tag["by_hour"]) - tag["co2e_kg"]) <= 1e-9 + 1e-6 * tag["co2e_kg"]
    pauses = paused["metrics"]["train"]["pauses"]
    acc = {n: r["metrics"]["splits"]["dev"]["accuracy"] for n, r in results.items()}
    change = paused["tag"]["co2e_kg"] / unpaused["tag"]["co2e_kg"] - 1
    paused_ram = sum(r["energy_kwh"] for r in paused["tag"]["by_hour"]
                     if any(p["from_utc"][:13] < r["hour_utc"][:13] < p["to_utc"][:13] for p in pauses))
    when = datetime.datetime.fromtimestamp(start_s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    verdict = (f"Pausing saved {-100 * change:.1f}% of the training's CO2e" if change < 0 else
               f"Pausing cost {100 * change:.1f}% more CO2e than running straight through")
    body = f"""Command: `python benchmarks/paused_training.py --region {args.region} --month {args.month} --train-subset {args.train_subset}`
({datetime.date.today().isoformat()}; machine: {machine_line()}).

The same `greenlm train --task sst2 --model {MODEL} --epochs 1 --train-subset {args.train_subset}` twice, both started at {when} on a simulated clock
(`--now {when} --clock-speed 3600`: compute at the wall clock's pace, waits 3,600x faster), priced on the grid series
they pause on ({SERIES.name}, {args.region}, EIA-930 2022, hour by hour). `--pause-above {threshold:.1f}` (the
region's median g/kWh of 2022) for the paused run; the hours from the start: {', '.join(f'{v:.0f}' for v in hours)} g/kWh.
The paused run checkpointed and slept {len(pauses)} time(s): {'; '.join(f"step {p['at_step']} from {p['from_utc']} to {p['to_utc']}" for p in pauses) or 'none'}.

{chr(10).join(rows)}

| run | kg CO2e | kWh | g/kWh (energy-weighted) | simulated span h | real s | dev accuracy |
|---|---:|---:|---:|---:|---:|---:|
| paused | {paused['tag']['co2e_kg']:.3e} | {paused['tag']['energy_kwh']:.3e} | {paused['tag']['intensity_g_per_kwh']:.1f} | {paused['tag']['wall_s'] / 3600:.2f} | {paused['real_s']:.0f} | {100 * acc['paused']:.2f} |
| unpaused | {unpaused['tag']['co2e_kg']:.3e} | {unpaused['tag']['energy_kwh']:.3e} | {unpaused['tag']['intensity_g_per_kwh']:.1f} | {unpaused['tag']['wall_s'] / 3600:.2f} | {unpaused['real_s']:.0f} | {100 * acc['unpaused']:.2f} |

{verdict} (same weights: the dev accuracies are equal because a pause never changes the arithmetic). Each price
tag's hours add up to its total (checked by the script). The hours spent wholly paused carry only the memory
estimate of the sleeping process (RAM W/GB x resident GB x the hour), {paused_ram:.2e} kWh here: a pause that keeps
the process alive still draws memory power, and on a job this small (a CPU training of a few Wh) that idle draw
weighs against the few percent of intensity a pause avoids; on a GPU job of hundreds of watts it is negligible. CPU
energy is TDP x CPU seconds (an estimate: no RAPL here)."""
    write_section("Pause & Resume, priced hour by hour (issue 15)", body)
    print(body)


if __name__ == "__main__":
    main()
