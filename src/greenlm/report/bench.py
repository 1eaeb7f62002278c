"""``greenlm bench`` results as a terminal table and as Markdown (docs/benchmarks.md).

Takes the JSON-ready dict of ``greenlm.runtime.bench.bench``; imports nothing of the model layers.
"""

from __future__ import annotations


def _num(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _x(value) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _sci(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


# (title, cell) for every row of a bench result
COLUMNS = [
    ("model", lambda r: r["model"]),
    ("runtime", lambda r: r["runtime"]),
    ("precision", lambda r: r["precision"] or "n/a"),
    ("accuracy %", lambda r: _num(r["accuracy"], 2)),
    ("p50 ms b=1", lambda r: _num(r["latency_ms_p50"], 2)),
    ("p90 ms b=1", lambda r: _num(r["latency_ms_p90"], 2)),
    ("ex/s", lambda r: _num(r["throughput_examples_per_s"], 1)),
    ("speedup vs row 1", lambda r: _x(r["speedup_vs_first"])),
    ("vs model 1 same runtime", lambda r: _x(r.get("speedup_vs_first_model_same_runtime"))),
    ("peak RSS MB", lambda r: _num(r["peak_rss_mb"], 0)),
    ("disk MB", lambda r: _num(r["disk_mb"], 1)),
    ("kWh/1k ex", lambda r: _sci(r["energy_kwh_per_1000_examples"])),
    ("GFLOP/s", lambda r: _num(r["gflop_per_s_executed"], 1)),
    ("% fp32 peak", lambda r: _num(None if r["share_of_fp32_matmul_peak"] is None
                                   else 100 * r["share_of_fp32_matmul_peak"], 1)),
]


def _cells(row: dict) -> list[str]:
    if row["status"] != "ok":
        return [row["model"], row["runtime"], f"skipped: {row['reason']}"] + [""] * (len(COLUMNS) - 3)
    return [cell(row) for _, cell in COLUMNS]


def print_bench(result: dict, skipped: bool = False) -> None:
    """The rows as a rich table (skipped runtimes only with ``skipped``), then the summary lines."""
    from rich.console import Console
    from rich.table import Table

    size = result["results"][0]["throughput_batch_size"] if result["results"] else "?"
    table = Table(title=f"greenlm bench: {result['task']} {result['split']}, throughput at batch {size},"
                        f" {result['machine']['threads']} threads")
    for i, (title, _) in enumerate(COLUMNS):
        table.add_column(title, justify="left" if i < 3 else "right", no_wrap=i < 2)
    for row in result["results"]:
        if row["status"] == "ok" or skipped:
            table.add_row(*_cells(row))
    console = Console(stderr=False)
    if not console.is_terminal:
        console = Console(width=220)
    console.print(table)
    for line in summary_lines(result):
        console.print(line, highlight=False)


def summary_lines(result: dict) -> list[str]:
    peak = result["matmul_peak_gflop_per_s"]
    lines = [f"measured matrix-product peak: fp32 {_num(peak.get('fp32'))} GFLOP/s, bf16 {_num(peak.get('bf16'))}"
             f" GFLOP/s ({result['machine']['threads']} thread(s))"]
    for model, s in result["summary"].items():
        ratios = ", ".join(f"{k} {_x(v)}" for k, v in s["throughput_ratio_vs"].items())
        lines.append(f"{model}: fastest greenlm runtime {s['fastest_runtime']}"
                     f" ({_num(s['fastest_throughput_examples_per_s'])} ex/s,"
                     f" accuracy {_num(s['fastest_accuracy'], 2)}%)"
                     + (f"; throughput vs {ratios}" if ratios else ""))
        int8 = s.get("int8_vs_fp32")
        if int8:
            parts = ", ".join(f"{k} {_x(v['throughput_ratio'])} (drop {v['accuracy_drop_points']:+.2f} pts)"
                              for k, v in int8["vs"].items())
            lines.append(f"  int8 ({int8['int8_runtime']}) vs fp32: {parts}")
    return lines


def bench_markdown(result: dict, *, skipped: bool = False) -> str:
    """A Markdown table of the rows and the summary lines."""
    head = "| " + " | ".join(t for t, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" if i < 3 else "---:" for i in range(len(COLUMNS))) + "|"
    body = ["| " + " | ".join(c.replace("|", "/") for c in _cells(r)) + " |"
            for r in result["results"] if r["status"] == "ok" or skipped]
    return "\n".join([head, rule, *body, "", *[f"- {line.strip()}" for line in summary_lines(result)]]) + "\n"
