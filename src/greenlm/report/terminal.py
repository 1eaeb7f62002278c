"""The comparison table in the terminal (rich): the main columns of report.md, narrow enough to read."""

from __future__ import annotations

from greenlm.report.provenance import eval_split_of, load_sentence
from greenlm.report.tables import COLUMNS, other_split_cells, table_notes

_TERMINAL_COLUMNS = ("model", "method", "runtime", "accuracy", "accuracy_ci95_low", "macro_f1", "mcc",
                     "performance_retained_pct", "params", "flops_per_example", "latency_ms_p50",
                     "throughput_examples_per_s", "speedup_x", "size_mb", "stage_energy_kwh")
_SHORT = {"accuracy": "acc. %", "accuracy_ci95_low": "acc. 95% CI", "macro_f1": "macro-F1 %",
          "performance_retained_pct": "retained %", "flops_per_example": "FLOPs/ex",
          "latency_ms_p50": "p50 ms b=1", "throughput_examples_per_s": "ex/s b=32", "speedup_x": "speedup x",
          "stage_energy_kwh": "kWh (stage)"}


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = [(key, _SHORT.get(key, title), fmt) for key, title, fmt in COLUMNS if key in _TERMINAL_COLUMNS]
    table = Table(title=f"greenlm run '{report['run']}': {report['task']} {eval_split_of(report)}")
    for i, (_, title, _) in enumerate(columns):
        table.add_column(title, justify="left" if i < 3 else "right", no_wrap=i < 3)
    for row in report["rows"]:
        table.add_row(*[fmt(row) for _, _, fmt in columns])
    console = Console()
    if not console.is_terminal:  # a pipe or a log file: no width to respect, keep rows on one line
        console = Console(width=200)
    console.print(table)
    for note in table_notes(report):
        if not note.startswith("vs teacher"):  # the terminal shows = in the retained column, not the interval
            console.print(note, markup=False, highlight=False)
    by_split: dict[str, list[str]] = {}
    for model, split, examples, accuracy, interval, *_ in other_split_cells(report):
        by_split.setdefault(f"{split} ({examples} rows)", []).append(f"{model} {accuracy}% ({interval})")
    for split, figures in by_split.items():  # test, when the run reports on dev: measured once per model
        console.print(f"Accuracy on {split}, 95% CI: {', '.join(figures)}.", markup=False, highlight=False)
    if any(r.get("within_noise_of_teacher") for r in report["rows"]):
        console.print("retained % marked =: the difference from the teacher is within noise (95% paired bootstrap"
                      " interval holds 0; report.md has the interval).", markup=False, highlight=False)
    load = load_sentence(report.get("machine"))
    if load:
        console.print(f"Speed: {load}.", markup=False, highlight=False)
    target = report.get("target")
    if target:
        console.print(f"Target: {target['summary']}", markup=False, highlight=False)
