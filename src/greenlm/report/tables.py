"""Comparison tables in the form of the field's compression tables (Rogers et al. 2020, Table 1)."""

from __future__ import annotations

from greenlm.report.provenance import eval_split_of, load_sentence


def md_text(value) -> str:
    """A name or label as Markdown table text: ``|`` would split the cell, and ``<``/``>`` would let a label such as
    ``<script>`` reach a renderer that passes HTML through (Markdown viewers, the Hub's model cards)."""
    return str(value).replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")


def _num(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def _si(value, unit: str = "") -> str:
    """1.23 G, 456 M: large counts readable at a glance."""
    if value is None:
        return "n/a"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}".strip()


def _sci(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _within(row: dict) -> str:
    """`` =`` after a figure whose difference from the teacher is within noise."""
    return " =" if row.get("within_noise_of_teacher") else ""


def _ci(row: dict) -> str:
    """The accuracy's 95% interval in %: ``89.11-92.89``."""
    if row.get("accuracy_ci95_low") is None or row.get("accuracy_ci95_high") is None:
        return "n/a"
    return f"{100 * row['accuracy_ci95_low']:.2f}-{100 * row['accuracy_ci95_high']:.2f}"


def _difference(row: dict) -> str:
    """The paired difference from the teacher in points, its 95% interval, ``=`` when within noise."""
    diff = row.get("accuracy_vs_teacher")
    if not diff:
        return "n/a"
    return (f"{100 * diff['difference']:+.2f} ({100 * diff['low']:+.2f}, {100 * diff['high']:+.2f})"
            f"{' =' if diff['within_noise'] else ''}")


def _runtime(row: dict) -> str:
    return " ".join(str(row[k]) for k in ("runtime", "precision") if row.get(k)) or "n/a"


def _flops(row: dict) -> str:
    return _si(row["flops_per_example"]) + (" exp." if row.get("flops_basis") == "expected" else "")


def _ranged(key: str, digits: int):
    """The figure (the best round), then the range over the timing rounds when there were several."""
    def fmt(row: dict) -> str:
        text = _num(row[key], digits)
        low, high = row.get(f"{key}_min"), row.get(f"{key}_max")
        if low is not None and high is not None and (row.get("speed_rounds") or 0) > 1:
            text += f" ({low:,.{digits}f}-{high:,.{digits}f})"
        return text
    return fmt


COLUMNS = [
    ("model", "model", lambda r: r["model"]),
    ("method", "method", lambda r: r["method"]),
    ("runtime", "runtime", _runtime),
    ("accuracy", "accuracy %", lambda r: _num(100 * r["accuracy"], 2)),
    ("accuracy_ci95_low", "accuracy 95% CI", _ci),
    ("macro_f1", "macro-F1 %", lambda r: _num(100 * r["macro_f1"], 2)),
    ("mcc", "MCC", lambda r: _num(r["mcc"], 3)),
    ("performance_retained_pct", "retained %", lambda r: _num(r["performance_retained_pct"], 1) + _within(r)),
    ("accuracy_vs_teacher", "vs teacher pp (95% CI)", _difference),
    ("params", "params", lambda r: _si(r["params"])),
    ("compression_x", "compression x", lambda r: _num(r["compression_x"], 2)),
    ("flops_per_example", "FLOPs/example", _flops),
    ("latency_ms_p50", "latency p50 ms (b=1)", _ranged("latency_ms_p50", 2)),
    ("throughput_examples_per_s", "throughput ex/s (b=32)", _ranged("throughput_examples_per_s", 1)),
    ("speedup_x", "speedup x", lambda r: _num(r["speedup_x"], 2)),
    ("size_mb", "size MB", lambda r: _num(r["size_mb"], 1)),
    ("stage_energy_kwh", "energy kWh (stage)", lambda r: _sci(r["stage_energy_kwh"])),
    ("stage_co2e_kg", "CO2e kg (stage)", lambda r: _sci(r["stage_co2e_kg"])),
    ("stage_cost_usd", "cost USD (stage)", lambda r: _sci(r["stage_cost_usd"])),
    ("inference_energy_kwh_per_1000", "inference kWh/1k ex", lambda r: _sci(r["inference_energy_kwh_per_1000"])),
]


def table_notes(report: dict) -> list[str]:
    """What the marks of the table mean, one sentence each, only for the marks the rows use."""
    rows = report.get("rows") or []
    split = eval_split_of(report)
    notes = []
    if any(r.get("accuracy_ci95_low") is not None for r in rows):
        notes.append(f"Accuracy 95% CI: percentile bootstrap over the {split} examples (1,000 resamples, seed 0).")
    if any(r.get("accuracy_vs_teacher") for r in rows):
        notes.append("vs teacher: accuracy minus the teacher's in points, with the 95% interval of the paired"
                     f" difference (the same {split} examples resampled for both models); `=` marks a difference"
                     " within noise (the interval holds 0): neither a loss nor a win.")
    if any(r.get("flops_basis") == "expected" for r in rows):
        notes.append(f"FLOPs marked exp.: expected per example from the exits the model took on {split} (a model with"
                     " exits), not its full depth.")
    rounds = max((r.get("speed_rounds") or 0 for r in rows), default=0)
    if rounds > 1:
        notes.append(f"Latency and throughput: the best of {rounds} interleaved timing rounds, with the range over"
                     " the rounds in brackets.")
    if any(r.get("runtime") for r in rows):
        notes.append("Runtime: the engine and precision the model ran in while measured (an int8 row in"
                     " onnxruntime changed runtime as well as precision).")
    return notes


OTHER_SPLIT_HEADER = ("model", "split", "examples", "accuracy %", "accuracy 95% CI", "macro-F1 %", "MCC")


def other_split_cells(report: dict) -> list[list[str]]:
    """One row per model and split measured beside the reported one (test, when the run reports on dev)."""
    out = []
    for row in report.get("rows") or []:
        for split, m in (row.get("other_splits") or {}).items():
            def pct(key):
                return _num(None if m.get(key) is None else 100 * m[key], 2)
            out.append([str(row["model"]), str(split), "n/a" if m.get("examples") is None else f"{m['examples']:,}",
                        pct("accuracy"), _ci(m), pct("macro_f1"), _num(m.get("mcc"), 3)])
    return out


def other_splits_note(report: dict) -> str | None:
    """What the other-splits table is (None when the run measured no split beside the reported one)."""
    splits = list(dict.fromkeys(cells[1] for cells in other_split_cells(report)))
    if not splits:
        return None
    return (f"The same models on {', '.join(splits)}: evaluated once per model in the measuring pass (the stages"
            f" never saw it), and nothing was chosen on it. The tables above report {eval_split_of(report)}.")


def other_splits_markdown(report: dict) -> list[str]:
    """report.md's section with each model's figures on the splits measured beside the reported one."""
    body = other_split_cells(report)
    if not body:
        return []
    splits = ", ".join(dict.fromkeys(cells[1] for cells in body))
    return [f"## Also measured: {splits}", "", other_splits_note(report), "",
            "| " + " | ".join(OTHER_SPLIT_HEADER) + " |", "|---|---|" + "---:|" * (len(OTHER_SPLIT_HEADER) - 2),
            *["| " + " | ".join(md_text(c) for c in cells) + " |" for cells in body], ""]


def comparison_rows_text(report: dict) -> tuple[list[str], list[list[str]]]:
    header = [title for _, title, _ in COLUMNS]
    body = [[fmt(row) for _, _, fmt in COLUMNS] for row in report["rows"]]
    return header, body


def comparison_markdown(report: dict) -> str:
    header, body = comparison_rows_text(report)
    lines = [
        f"# greenlm run `{report['run']}`: {report['task']}, teacher `{report['teacher']}`",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    machine = report["machine"]
    lines.append("")
    load = load_sentence(machine)
    if load:
        lines += [f"Speed: {load}.", ""]
    if report.get("target"):
        lines += [f"Target: {report['target']['summary']}", ""]
    lines += [*(f"- {note}" for note in table_notes(report)), ""] if table_notes(report) else []
    lines += [
        f"Accuracy on the {report['task']} {eval_split_of(report)} set. Retained, compression and speedup are relative to the first row"
        " (the fine-tuned teacher). Speed figures come from one measuring pass in one process on the same inputs:",
        f"- machine: {machine['cpu']}, {machine['threads']} thread(s), torch {machine['torch']}",
        f"- latency: {report['protocol']['latency']}",
        f"- throughput: {report['protocol']['throughput']}",
        f"- FLOPs: {report['protocol']['flops']}",
        f"- energy sources: {', '.join(report['energy_sources']) or 'n/a'}"
        " (an `estimate:` source is a model of power, not a meter reading)",
        "- stage energy, CO2e and cost are what producing that model cost (its stage alone); report.json also has"
        " the cumulative cost along its chain of stages",
        "",
        *other_splits_markdown(report),
    ]
    return "\n".join(lines)
