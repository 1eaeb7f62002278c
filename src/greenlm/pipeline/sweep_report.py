"""A sweep's results: its budget/performance curve (Dodge et al. 2019) and its report (sweep.md, sweep.html,
sweep.json's curve, the figure), written at the end of ``greenlm sweep`` and again by ``greenlm report``."""

from __future__ import annotations

import math
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_json, atomic_write_text, read_json

SWEEP_FILE = "sweep.json"
TRIALS = "trials"


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def budget_curve(record: dict) -> list[dict]:
    """Expected best score vs n (Dodge et al. 2019, with replacement) over the finished trials, with the best
    score so far and the energy the sweep had spent (every trial, pruned and failed ones included) by the time
    its n-th trial finished."""
    from greenlm.report.emp import emp_curve

    scores, energy_at, best_at = [], [], []
    spent, best = 0.0, -math.inf
    for r in record["trials"]:
        if spent is not None:
            spent = None if r.get("energy_kwh") is None else spent + r["energy_kwh"]
        if r["state"] == "complete":
            scores.append(r["value"])
            best = max(best, r["value"])
            energy_at.append(spent)
            best_at.append(best)
    curve = emp_curve(scores)
    for point, energy, best_so_far in zip(curve, energy_at, best_at):
        point["cumulative_energy_kwh"] = energy
        point["best_so_far"] = best_so_far
    return curve


def _write_outputs(sweep_dir: Path, record: dict, out_dir: Path | None, formats, echo):
    from greenlm.report import figures as figs

    out = Path(out_dir) if out_dir is not None else sweep_dir
    files, notes = [], []
    counts = {s: sum(1 for r in record["trials"] if r["state"] == s)
              for s in ("complete", "pruned", "failed", "interrupted")}
    try:
        curve = budget_curve(record)
    except GreenlmError:
        curve = None
        notes.append(f"no budget/performance curve: it needs at least 2 finished trials, the sweep has"
                     f" {counts['complete']} ({counts['pruned']} pruned, {counts['failed']} failed)")
    figure = None
    if curve is not None and {"figures", "md", "html"} & set(formats):
        if figs.available():
            spec = record["spec"]
            figure = figs.budget_figure(curve, metric=spec["metric"],
                                        title=f"Sweep {record['name']}: {objective_split(record)} {spec['metric']} of"
                                              f" '{spec['stage']}'")
        else:
            notes.append(figs.MISSING_MATPLOTLIB)
    for note in notes:
        echo(f"note: {note}")
    try:
        if figure is not None and {"figures", "md"} & set(formats):
            files += list(figure.save(out / "figures").values())
        if "json" in formats:
            target = out / SWEEP_FILE
            atomic_write_json(target, {**record, "curve": curve, "counts": counts})
            files.append(target)
        if "md" in formats:
            atomic_write_text(out / "sweep.md", sweep_markdown(record, curve, counts, figure, notes))
            files.append(out / "sweep.md")
        if "html" in formats:
            from greenlm.report.html import sweep_html

            atomic_write_text(out / "sweep.html", sweep_html(record, curve, counts, figure, notes))
            files.append(out / "sweep.html")
    except OSError as err:
        raise GreenlmError(f"cannot write the sweep report into {err.filename or out}: {err.strerror or err}") from None
    finally:
        if figure is not None:
            figure.figure.clear()
    return files, curve, notes


def write_sweep_report(sweep_dir: str | Path, *, out_dir: str | Path | None = None,
                       formats=("md", "json", "figures", "html"), on_note=print) -> list[Path]:
    """``greenlm report SWEEP_DIR``: rewrite sweep.md, sweep.html, sweep.json's curve and the figure."""
    sweep_dir = Path(sweep_dir)
    try:
        record = read_json(sweep_dir / SWEEP_FILE)
    except (OSError, ValueError):
        raise GreenlmError(f"{sweep_dir / SWEEP_FILE} cannot be read; it is written by `greenlm sweep`") from None
    skipped = [f for f in formats if f in ("tex", "cards")]
    if skipped:
        on_note(f"note: {', '.join(skipped)} are made for runs, not sweeps; each trial is a run:"
                f" greenlm report {sweep_dir / TRIALS}/trial-000")
    files, _, _ = _write_outputs(sweep_dir, record, out_dir, formats, on_note)
    return files


def best_trial(record: dict) -> dict | None:
    done = [r for r in record["trials"] if r["state"] == "complete"]
    return max(done, key=lambda r: r["value"]) if done else None


def _caveat(spec: dict) -> str:
    parts = []
    if spec["sampler"] == "tpe":
        parts.append("TPE does not draw trials independently, so the curve describes the scores this sampler produced"
                     " rather than random search (use --sampler random for Dodge et al.'s setting)")
    if spec["prune"]:
        parts.append("pruned trials are not scores, which makes the curve somewhat optimistic per trial (their"
                     " energy is counted)")
    return ("Caveats: " + "; ".join(parts) + ".") if parts else ""


def objective_split(record: dict) -> str:
    """The split trials were compared on (validation carved from train; dev for a task without one)."""
    return next((t["objective_split"] for t in record.get("trials", []) if t.get("objective_split")), "validation")


def sweep_markdown(record: dict, curve: list[dict] | None, counts: dict, figure, notes: list[str]) -> str:
    spec = record["spec"]
    metric = spec["metric"]
    split = objective_split(record)
    lines = [f"# greenlm sweep `{record['name']}`", "",
             f"Recipe `{spec['recipe']['name']}` ({spec.get('recipe_source') or 'default'}), objective: {split} {metric} of"
             f" stage `{spec['stage']}`, {spec['sampler']} sampling{', median pruning' if spec['prune'] else ''},"
             f" seed {spec['seed']}.", "", "Search space:", "", *[f"- `{s}`" for s in spec["search"]], "",
             f"Trials: {counts['complete']} finished, {counts['pruned']} pruned, {counts['failed']} failed"
             + (f", {counts['interrupted']} interrupted" if counts.get("interrupted") else "") + ".", ""]
    best = best_trial(record)
    if best is not None:
        shown = ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={v}`" for k, v in best["params"].items())
        lines += [f"**Best trial**: {best['name']}, {split} {metric} {best['value']:.4f} with {shown}"
                  f" (run folder `{best['run_dir']}`).", ""]
    for note in notes:
        lines += [f"> {note}", ""]
    if curve is not None:
        lines += ["## Budget/performance curve", "",
                  f"Expected best {split} {metric} among n trials (Dodge et al. 2019, sampling the finished trials with"
                  " replacement), ± one standard deviation, and the energy the sweep had spent when its n-th trial"
                  " finished (pruned and failed trials included; stages reused from earlier trials cost nothing"
                  " again).",
                  "", _caveat(spec), ""]
        if figure is not None:
            lines += [f"![{figure.title}](figures/{figure.stem}.png)", "",
                      f"([SVG](figures/{figure.stem}.svg), [data](figures/{figure.stem}.csv))", ""]
        lines += [f"| n | expected best {metric} | std | best so far | energy spent kWh |",
                  "|---:|---:|---:|---:|---:|"]
        for c in curve:
            energy = "n/a" if c["cumulative_energy_kwh"] is None else f"{c['cumulative_energy_kwh']:.3g}"
            lines.append(f"| {c['n']} | {c['expected_max']:.4f} | {c['std']:.4f} | {c['best_so_far']:.4f} | {energy} |")
        lines.append("")
    searched = " | ".join(f"`{p.split('=')[0]}`" for p in spec["search"])
    lines += ["## Trials", "", f"| trial | state | {split} {metric} | {searched} | energy kWh | stages run | seconds |",
              "|---|---|---:|" + "---:|" * len(spec["search"]) + "---:|---|---:|"]
    paths = [s.split("=")[0].strip() for s in spec["search"]]
    for r in record["trials"]:
        value = "n/a" if r["value"] is None else f"{r['value']:.4f}"
        cells = [f"{r['params'].get(p):.4g}" if isinstance(r["params"].get(p), float) else str(r["params"].get(p))
                 for p in paths]
        energy = "n/a" if r.get("energy_kwh") is None else f"{r['energy_kwh']:.3g}"
        seconds = "n/a" if r.get("seconds") is None else f"{r['seconds']:.0f}"
        lines.append(f"| {r['name']} | {r['state']} | {value} | " + " | ".join(cells)
                     + f" | {energy} | {', '.join(r.get('stages_ran') or []) or '(all reused)'} | {seconds} |")
    lines += ["", "Each trial is a run folder under `trials/`: `greenlm report` on it writes its full report.", ""]
    return "\n".join(lines)
