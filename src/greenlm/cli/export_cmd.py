"""``greenlm export``: a PyTorch classifier as an ONNX model folder, verified against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from greenlm.cli._common import err, print_json

_HELP = """Export MODEL (a classifier folder) to --out as an ONNX model folder.

The graph is exported in fp32 and run on real inputs (with --task: rows of its dev split; without: random token ids of 3-48 tokens), and every logit must match PyTorch within 1e-4 + 1e-3 x |logit|. ONNX Runtime's offline transformer fusions (attention, layer norm, GELU) are kept only where a side-by-side timing says they help (--optimize auto), or always (on), or never (off).

The folder (model.onnx, config.json, tokenizer, export.json) loads with greenlm.load, greenlm eval, greenlm predict and greenlm bench. For int8, use greenlm quantize.

Example:  greenlm export runs/teacher --format onnx --task sst2 --out runs/teacher-onnx
"""

_TRI = {"auto": None, "on": True, "off": False}


def export_command(
    model: Annotated[str, typer.Argument(help="A classifier folder (greenlm train output or any HF classifier).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    format: Annotated[str, typer.Option("--format", "-f", help="Export format: onnx.")] = "onnx",
    optimize: Annotated[str, typer.Option(help="ONNX Runtime offline fusions: auto (where measured faster), on, off.")] = "auto",
    opset: Annotated[int, typer.Option(help="ONNX opset (14-20).")] = 17,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Task whose dev rows check the export (default: random ids).")] = None,
    max_length: Annotated[Optional[int], typer.Option(min=1, help="Tokens per check input (default: the model's training length).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the export report as JSON.")] = False,
) -> None:
    from greenlm.common import GreenlmError
    from greenlm.runtime.engine import export_folder

    if format != "onnx":
        raise GreenlmError(f"export format {format!r} is not supported; use --format onnx")
    if optimize not in _TRI:
        raise GreenlmError(f"--optimize must be auto, on or off, got {optimize!r}")
    if not 14 <= opset <= 20:
        raise GreenlmError(f"--opset must be between 14 and 20 (the TorchScript exporter's range), got {opset}")
    loaded_task = None
    if task is not None:
        from greenlm.data import load_task

        loaded_task = load_task(task)
    report = export_folder(model, out, task=loaded_task, optimize=_TRI[optimize], opset=opset, max_length=max_length)
    if json_out:
        print_json(report)
        return
    fused = ", ".join(f"{k} {v}" for k, v in report["fused_ops"].items()) or "none kept"
    err(f"exported {model} to {out} (model.onnx {report['disk_bytes'] / 1e6:.1f} MB, opset {report['opset']})")
    err(f"verified on {report['check_examples']} inputs: max |onnx - torch| logit {report['max_abs_diff']:.2e}"
        f" (tolerance {report['atol']} + {report['rtol']} x |logit|)")
    err(f"offline fusions: {fused}")
    for note in report["notes"]:
        err(f"note: {note}")


def register(app: typer.Typer) -> None:
    app.command("export", help=_HELP)(export_command)
