"""``greenlm quantize``: int8 (dynamic / static) or bf16, with an accuracy-aware fallback."""

from __future__ import annotations

import typer

from greenlm.cli._common import err
from greenlm.cli._method_command import method_command, model_argument

_HELP = """Quantize a fine-tuned classifier (MODEL: its folder) and save it in --out.

Schemes: int8-dynamic (int8 weights, activations quantized per call), int8-static (activation ranges fixed from --calibration-examples training rows) and bf16 (PyTorch; AVX512-BF16 / AMX where the CPU has them). int8 runs in ONNX Runtime, or in PyTorch with --runtime torch; a model with early exits always takes PyTorch int8-dynamic, which keeps its exits (its folder keeps the fp32 weights; int8 is made from them at load). The result is checked on the selection split (validation carved from train, else dev; --tune-split to name one): if it loses more than --tolerance accuracy points, the most sensitive layers go back to fp32 one by one (--no-fallback to skip); a model still over the tolerance is reported and --out receives the input model unchanged (--keep-over-tolerance keeps the quantized one). metrics.json gives accuracy, size on disk and the speed of input and output measured side by side.

Example:  greenlm quantize runs/teacher --task sst2 --out runs/teacher-int8
Load it back:  python -c "import greenlm; print(greenlm.load('runs/teacher-int8').predict(['great film']))"
Re-running the same command resumes an interrupted run. """


def show(result, config, task) -> None:
    _table(result.metrics)
    output_is = result.metrics["quantize"]["output_is"]
    err(f"saved to {result.folder}" if output_is == "quantized" else f"{result.folder} holds the input model, unchanged")


def _table(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    q = metrics["quantize"]
    speed = q.get("speed") or {}
    runtime = {"torch": ", PyTorch", "onnx": ", ONNX Runtime"}.get(q.get("runtime"), "")
    table = Table(title=f"{metrics['task']}: {q['scheme']}{runtime} of {metrics['model']} ({q['status']})")
    for column in ("model", f"accuracy % ({q['tune_split']})", "size MB", "ex/s", "p50 ms b=1"):
        table.add_column(column, justify="left" if column == "model" else "right")

    def mb(value):
        return "n/a" if value is None else f"{value / 1e6:.1f}"

    def rate(report, key, fmt):
        return "n/a" if not report or report.get(key) is None else fmt.format(report[key])

    base, new = speed.get("input_fp32"), speed.get("quantized")
    table.add_row("input (fp32)", f"{q['reference_accuracy']:.2f}", mb(q["input_disk_bytes"]),
                  rate(base, "throughput_examples_per_s", "{:.1f}"), rate(base, "latency_ms_p50", "{:.2f}"))
    table.add_row(f"quantized ({q['scheme']})", f"{q['quantized_accuracy']:.2f}",
                  mb(q["output_disk_bytes"]) if q["output_is"] == "quantized" else "not kept",
                  rate(new, "throughput_examples_per_s", "{:.1f}"), rate(new, "latency_ms_p50", "{:.2f}"))
    console = Console()
    console.print(table)
    line = f"accuracy drop {q['accuracy_drop_points']:+.2f} points (tolerance {q['tolerance_points']})"
    if speed:
        line += f"; throughput x{speed['throughput_speedup']}, latency x{speed['latency_p50_speedup']} (side by side)"
    if q.get("fp32_nodes"):
        line += f"; {len(q['fp32_nodes'])} node(s) kept in fp32"
    if q.get("fp32_groups"):
        line += f"; kept in fp32: {', '.join(q['fp32_groups'])}"
    if q.get("exits"):
        dev = (q["exits"]["splits"] or {}).get(q["tune_split"]) or {}
        if dev:
            line += f"; mean exit layer {dev['mean_exit_layer']} (input {dev['input']['mean_exit_layer']})"
    if q.get("weights_on_disk"):
        line += "; size on disk unchanged (fp32 weights, int8 made at load)"
    console.print(line, highlight=False)


quantize_command = method_command(
    "quantize",
    source=model_argument("Folder of a classifier fine-tuned on the task (e.g. from greenlm train)."),
    out_help="Output folder (loads with greenlm.load / greenlm predict).",
    aliases={"tolerance_points": ("--tolerance",)},
    show=show,
)


def register(app: typer.Typer) -> None:
    app.command("quantize", help=_HELP)(quantize_command)
