"""``report.md``: the comparison table, the Pareto fronts, the figures, the price tag and how it was measured."""

from __future__ import annotations

from greenlm.report.pareto import TRADEOFF_AXES, fronts_by_noise
from greenlm.report.data_budget import data_budget_markdown
from greenlm.report.provenance import eval_split_of, load_sentence, selection_markdown, truncation_sentence
from greenlm.report.tables import COLUMNS, md_text, other_splits_markdown, table_notes
from greenlm.report.target import target_markdown


PROTOCOL_KEYS = ("latency", "throughput", "rounds", "best_or_median", "flops")  # measurements.json's protocol


def cell(row: dict, key: str, fmt) -> str:
    """A table cell: the column's format, or ``n/a`` for a figure that is missing."""
    value = row.get(key)
    if key == "accuracy_vs_teacher" and row.get("method") == "finetune":
        return "(reference)"
    if key not in ("model", "method") and value is None:
        return "n/a"
    return fmt(row)


def model_name(row: dict) -> str:
    status = row.get("report_status", "measured")
    return row["model"] if status == "measured" else f"{row['model']} ({status})"


def table_cells(report: dict) -> tuple[list[str], list[list[str]]]:
    header = [title for _, title, _ in COLUMNS]
    body = []
    for row in report["rows"]:
        cells = [cell(row, key, fmt) for key, _, fmt in COLUMNS]
        cells[0] = model_name(row)
        body.append(cells)
    return header, body


def run_totals(rows: list[dict]) -> dict:
    """Energy, CO2e and cost paid in this run (stages that ran) and over every stage (reused ones included)."""
    def total(key, rows_):
        values = [r.get(key) for r in rows_ if r.get(key) is not None]
        return sum(values) if values else None

    ran = [r for r in rows if r.get("status") == "ran"]
    out = {f"{scope}_{key}": total(f"stage_{key}", chosen)
           for scope, chosen in (("ran", ran), ("all", rows))
           for key in ("energy_kwh", "co2e_kg", "cost_usd", "wall_s")}
    # whether each stage ran here or was reused is known for measured rows only
    out["known"] = any(r.get("status") == "ran" or str(r.get("status", "")).startswith("reused") for r in rows)
    return out


def _sci(value, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.3g} {unit}".rstrip()


def _fixed(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def report_markdown(report: dict, fronts: dict[str, list[str]], figures: list, *, notes: list[str],
                    figure_dir: str = "figures", files: list[str] | None = None,
                    figure_note: str | None = None) -> str:
    """``figures``: FigureData already written under ``figure_dir`` (relative to the Markdown file)."""
    header, body = table_cells(report)
    lines = [f"# greenlm run `{report['run']}`: {report['task']}, teacher `{report['teacher']}`", ""]
    if notes:
        lines += ["> **Incomplete run.** " + " ".join(f"{n}." if not n.endswith(".") else n for n in notes), ""]
    lines += [
        "## Models",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|",
        *["| " + " | ".join(md_text(c) for c in cells) + " |" for cells in body],
        "",
        f"Accuracy on the {report['task']} {eval_split_of(report)} set. Retained, compression and speedup are relative to the first row"
        " (the fine-tuned teacher). Stage energy, CO2e and cost are what producing that model cost (its stage alone);"
        " report.json also has the cumulative cost along each model's chain of stages.",
        "",
    ]
    load = load_sentence(report.get("machine"))
    if load:
        lines[-1:-1] = ["", f"**Speed and speedup:** {load}."]
    lines += [*(f"- {note}" for note in table_notes(report)), ""] if table_notes(report) else []
    if any(fronts.values()):
        lines += ["**Pareto front** (no other model is both more accurate and better on the axis):", ""]
        by_noise = fronts_by_noise(report["rows"])
        for axis in TRADEOFF_AXES:
            if fronts.get(axis.key):
                names = [f"`{m}`" + (" (=: by noise only)" if m in by_noise[axis.key] else "")
                         for m in fronts[axis.key]]
                lines.append(f"- accuracy vs {axis.title}: {', '.join(names)}")
        if any(by_noise.values()):
            lines.append("")
            lines.append("*by noise only*: on the front only by an accuracy gain over the teacher that is within noise"
                         " (the 95% interval of the paired difference holds 0); with the teacher's accuracy it would"
                         " be dominated. It is no more accurate than the teacher on this evidence.")
        lines.append("")
    lines += other_splits_markdown(report)
    lines += per_class_markdown(report["rows"], eval_split_of(report))
    lines += data_budget_markdown(report.get("data_budget") or [], split=eval_split_of(report))
    lines += target_markdown(report.get("target"))
    lines += selection_markdown(report.get("selection") or [])
    if (report.get("train_filter") or {}).get("summary"):
        lines += [f"**Training data:** {report['train_filter']['summary']} (dev and test untouched).", ""]
    truncation = truncation_sentence(report.get("truncation"))
    if truncation:
        lines += [f"**Truncation:** {truncation}.", ""]
    if figure_note:
        lines += ["## Figures", "", figure_note, ""]
    elif figures:
        lines += ["## Figures", ""]
        for fig in figures:
            lines += [f"![{fig.title}]({figure_dir}/{fig.stem}.png)", "",
                      f"*{fig.caption}* ([SVG]({figure_dir}/{fig.stem}.svg), [data]({figure_dir}/{fig.stem}.csv))", ""]
    totals = run_totals(report["rows"])
    lines += [
        "## Price tag",
        "",
        "| stage | method | status | energy kWh | CO2e kg | cost USD | wall s | energy source |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['model']} | {r['method']} | {r.get('status') or 'n/a'}"
                     f" | {_sci(r.get('stage_energy_kwh'), '')}"
                     f" | {_sci(r.get('stage_co2e_kg'), '')} | {_sci(r.get('stage_cost_usd'), '')}"
                     f" | {_fixed(r.get('stage_wall_s'))}"
                     f" | {r.get('energy_source') or 'n/a'} |")
    every = (f"{_sci(totals['all_energy_kwh'], 'kWh')}, {_sci(totals['all_co2e_kg'], 'kg CO2e')},"
             f" {_sci(totals['all_cost_usd'], 'USD')}")
    if totals["known"]:
        summary = (f"Paid in this run (stages that ran): {_sci(totals['ran_energy_kwh'], 'kWh')},"
                   f" {_sci(totals['ran_co2e_kg'], 'kg CO2e')}, {_sci(totals['ran_cost_usd'], 'USD')}."
                   f" Every model of the table, reused stages at their original cost: {every}.")
    else:
        summary = f"Every stage of the table: {every}."
    lines += ["", summary, ""]
    machine = report.get("machine") or {}
    protocol = report.get("protocol") or {}
    lines += ["## How the figures were measured", ""]
    if machine:
        lines.append(f"- machine: {machine.get('cpu') or 'n/a'}, {machine.get('threads') or '?'} thread(s),"
                     f" torch {machine.get('torch') or 'n/a'}")
    for key in PROTOCOL_KEYS:
        if protocol.get(key):
            lines.append(f"- {key.replace('_', ' ')}: {protocol[key]}")
    lines.append(f"- energy sources: {', '.join(report.get('energy_sources') or []) or 'n/a'}"
                 " (an `estimate:` source is a model of power, not a meter reading)")
    lines.append("- speed figures come from one measuring pass in one process on the same inputs")
    if files:
        lines += ["", "## Files", "", *[f"- {f}" for f in files]]
    lines.append("")
    return "\n".join(lines)


def per_class_markdown(rows: list[dict], split: str = "dev") -> list[str]:
    """Each measured model's precision, recall and F1 per class (on ``split``, the reported one), with its
    confusion matrix."""
    shown = [r for r in rows if r.get("per_class")]
    if not shown:
        return []
    lines = [f"## Per class ({split})", ""]
    for row in shown:
        lines += [f"**{row['model']}**", "", "| class | precision % | recall % | F1 % | support | predicted |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {md_text(c['label'])} | {100 * c['precision']:.1f} | {100 * c['recall']:.1f} | {100 * c['f1']:.1f}"
                  f" | {c['support']} | {c['predicted']} |" for c in row["per_class"]]
        matrix = row.get("confusion_matrix") or {}
        if matrix.get("counts"):
            labels = [md_text(label) for label in matrix["labels"]]
            lines += ["", "confusion matrix (rows: true class, columns: predicted)", "",
                      "| true / predicted | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
            lines += [f"| {label} | " + " | ".join(str(v) for v in counts) + " |"
                      for label, counts in zip(labels, matrix["counts"])]
        lines.append("")
    return lines
