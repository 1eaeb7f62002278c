"""Comparison tables in the form of the field's compression tables (Rogers et al. 2020, Table 1)."""

from __future__ import annotations

from greenlm.report.provenance import eval_split_of, load_sentence


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


COLUMNS = [
    ("model", "model", lambda r: r["model"]),
    ("method", "method", lambda r: r["method"]),
    ("accuracy", "accuracy %", lambda r: _num(100 * r["accuracy"], 2)),
    ("performance_retained_pct", "retained %", lambda r: _num(r["performance_retained_pct"], 1)),
    ("params", "params", lambda r: _si(r["params"])),
    ("compression_x", "compression x", lambda r: _num(r["compression_x"], 2)),
    ("flops_per_example", "FLOPs/example", lambda r: _si(r["flops_per_example"])),
    ("latency_ms_p50", "latency p50 ms (b=1)", lambda r: _num(r["latency_ms_p50"], 2)),
    ("throughput_examples_per_s", "throughput ex/s (b=32)", lambda r: _num(r["throughput_examples_per_s"], 1)),
    ("speedup_x", "speedup x", lambda r: _num(r["speedup_x"], 2)),
    ("size_mb", "size MB", lambda r: _num(r["size_mb"], 1)),
    ("stage_energy_kwh", "energy kWh (stage)", lambda r: _sci(r["stage_energy_kwh"])),
    ("stage_co2e_kg", "CO2e kg (stage)", lambda r: _sci(r["stage_co2e_kg"])),
    ("stage_cost_usd", "cost USD (stage)", lambda r: _sci(r["stage_cost_usd"])),
    ("inference_energy_kwh_per_1000", "inference kWh/1k ex", lambda r: _sci(r["inference_energy_kwh_per_1000"])),
]


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
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    machine = report["machine"]
    lines.append("")
    load = load_sentence(machine)
    if load:
        lines += [f"Speed: {load}.", ""]
    if report.get("target"):
        lines += [f"Target: {report['target']['summary']}", ""]
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
    ]
    return "\n".join(lines)
