"""``greenlm quantize``: int8 (dynamic / static) or bf16, with an accuracy-aware fallback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from greenlm.cli._common import (LabelFieldOpt, LabelsOpt, OnEmptyOpt, PricedOutput, PueOpt, RegionOpt, TaskOpt,
                                 TextFieldsOpt, err,
                                 load_task_from_options, print_json)

_HELP = """Quantize a fine-tuned classifier (MODEL: its folder) and save it in --out.

Schemes: int8-dynamic (ONNX Runtime; int8 weights, activations quantized per call), int8-static (activation ranges fixed from --calibration-examples training rows) and bf16 (PyTorch; AVX512-BF16 / AMX where the CPU has them). The result is checked on the dev split: if it loses more than --tolerance accuracy points, the most sensitive layers go back to fp32 one by one (--no-fallback to skip); a model still over the tolerance is reported and --out receives the input model unchanged (--keep-over-tolerance keeps the quantized one). metrics.json gives accuracy, size on disk and the speed of input and output measured side by side.

Example:  greenlm quantize runs/teacher --task sst2 --out runs/teacher-int8
Load it back:  python -c "import greenlm; print(greenlm.load('runs/teacher-int8').predict(['great film']))"
Re-running the same command resumes an interrupted run. """

_TRI = {"auto": None, "on": True, "off": False}


def quantize_command(
    model: Annotated[str, typer.Argument(help="Folder of a classifier fine-tuned on the task (e.g. from greenlm train).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (loads with greenlm.load / greenlm predict).")],
    task: TaskOpt = "sst2",
    scheme: Annotated[str, typer.Option(help="int8-dynamic, int8-static or bf16.")] = "int8-dynamic",
    per_channel: Annotated[str, typer.Option(help="int8 weight scales: on (per output channel), off (per tensor), auto (try both, keep the closer to fp32).")] = "auto",
    calibration_examples: Annotated[int, typer.Option(help="int8-static: training rows that fix activation ranges.")] = 256,
    calibration_method: Annotated[str, typer.Option(help="int8-static: minmax, entropy or percentile.")] = "minmax",
    tolerance: Annotated[float, typer.Option(help="Largest accuracy drop accepted, in percentage points of the tune split.")] = 1.0,
    fallback: Annotated[bool, typer.Option(help="int8: put the most sensitive nodes back in fp32 until within tolerance.")] = True,
    max_fallback_nodes: Annotated[int, typer.Option(help="int8: at most this many nodes go back to fp32.")] = 8,
    sensitivity_examples: Annotated[int, typer.Option(help="int8: tune rows used to rank node sensitivity.")] = 256,
    keep_over_tolerance: Annotated[bool, typer.Option(help="Keep the quantized model even if it loses more than --tolerance.")] = False,
    optimize_graph: Annotated[str, typer.Option(help="int8-dynamic: ONNX Runtime offline fusions on, off, or auto (only if measured faster).")] = "auto",
    tune_split: Annotated[str, typer.Option(help="Split on which the accuracy drop is measured.")] = "dev",
    max_length: Annotated[Optional[int], typer.Option(help="Tokens per input (default: the model's training length).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per batch for evaluation and timing.")] = 32,
    measure_speed: Annotated[bool, typer.Option(help="Time input and quantized model side by side.")] = True,
    threads: Annotated[Optional[int], typer.Option(help="Intra-op threads (default: physical cores).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the calibration sample.")] = 0,
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    labels: LabelsOpt = None,
    on_empty: OnEmptyOpt = "skip",
    json_out: Annotated[bool, typer.Option("--json", help="Print the full metrics as JSON.")] = False,
    region: RegionOpt = None,
    pue: PueOpt = None,
) -> None:
    from greenlm.common import GreenlmError
    from greenlm.compress.quantize import QuantizeConfig, run

    for name, value in (("--per-channel", per_channel), ("--optimize-graph", optimize_graph)):
        if value not in _TRI:
            raise GreenlmError(f"{name} must be auto, on or off, got {value!r}")
    config = QuantizeConfig(
        scheme=scheme, per_channel=_TRI[per_channel], calibration_examples=calibration_examples,
        calibration_method=calibration_method, tolerance_points=tolerance, fallback=fallback,
        max_fallback_nodes=max_fallback_nodes, sensitivity_examples=sensitivity_examples,
        keep_over_tolerance=keep_over_tolerance, optimize_graph=_TRI[optimize_graph], tune_split=tune_split,
        max_length=max_length, batch_size=batch_size, measure_speed=measure_speed, threads=threads, seed=seed,
    )
    _check_out(out)
    loaded_task = load_task_from_options(task, text_fields, label_field, labels, on_empty)
    work_dir = out.parent / f".{out.name}.quantize-work"
    priced = PricedOutput("quantize", region, pue)
    with priced:
        metrics = run(Path(model), loaded_task, config, out, work_dir=work_dir,
                      on_note=lambda note: err(f"note: {note}"))
    priced.finish(out, method="quantize", task=loaded_task.name, source=model, reused=False)
    import shutil

    shutil.rmtree(work_dir, ignore_errors=True)  # the output is complete; the exports are not needed again
    if json_out:
        print_json(metrics)
        return
    _table(metrics)
    err(f"saved to {out}" if metrics['quantize']['output_is'] == 'quantized' else f"{out} holds the input model, unchanged")


def _check_out(out: Path) -> None:
    """Refuse to replace a folder that is not an earlier quantize output (nothing is overwritten by surprise)."""
    from greenlm.common import GreenlmError

    if not out.exists():
        return
    if not out.is_dir():
        raise GreenlmError(f"output '{out}' is a file; give a folder")
    if not any(out.iterdir()):
        return
    try:
        previous = json.loads((out / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        previous = {}
    if previous.get("method") != "quantize":
        raise GreenlmError(f"output folder '{out}' is not empty and holds no quantize result; choose a new folder")


def _table(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    q = metrics["quantize"]
    speed = q.get("speed") or {}
    table = Table(title=f"{metrics['task']}: {q['scheme']} of {metrics['model']} ({q['status']})")
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
    console.print(line, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("quantize", help=_HELP)(quantize_command)
