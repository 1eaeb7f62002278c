"""``greenlm predict``: label texts with a saved model; JSON lines out."""

from __future__ import annotations

import json
import io
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def predict_command(
    model: Annotated[str, typer.Argument(help="A model folder saved by greenlm (or any HF classifier folder).")],
    input_file: Annotated[str, typer.Argument(help="File with one text (or a tab-separated pair) per line; '-' reads stdin.")] = "-",
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per forward pass.")] = 64,
    max_length: Annotated[Optional[str], typer.Option(help="Token limit (default: the one the model was trained with);"
                                                      " auto: the length that covers 99% of the input rows.")] = None,
    allow_pickle: Annotated[bool, typer.Option(help="Allow pickle weights: only for sources you trust.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar with ETA (on stderr).")] = True,
    runtime: Annotated[str, typer.Option(help="torch: the model as loaded; auto: the fastest runtime measured on this machine (greenlm.load, cached); or torch-fp32, torch-bf16, torch-int8, onnx-fp32, onnx-int8.")] = "torch",
) -> None:
    """Predict a label for each input line; prints one JSON object per line (label, probabilities)."""
    from greenlm.common import GreenlmError
    from greenlm.common.numbers import max_length_setting
    from greenlm.data import read_prediction_lines
    from greenlm.runtime.engine import predict_split

    max_length = max_length_setting(max_length, minimum=2, name="--max-length")

    if input_file == "-":
        # bytes decoded strictly: the terminal's default (surrogate escapes) would pass bad bytes to the tokenizer
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict", newline="")
        try:
            split = read_prediction_lines(stream, source="stdin")
        except UnicodeDecodeError:
            raise GreenlmError("stdin is not UTF-8 text; convert it (e.g. iconv -t utf-8) and try again") from None
    else:
        path = Path(input_file)
        if not path.is_file():
            raise GreenlmError(f"input file '{input_file}' does not exist")
        with open(path, encoding="utf-8", errors="strict", newline="") as stream:
            split = read_prediction_lines(stream, source=str(path))
    for record in predict_split(model, split, runtime=runtime, batch_size=batch_size, max_length=max_length,
                                allow_pickle=allow_pickle, progress=progress,
                                on_note=lambda note: print(f"greenlm: note: {note}", file=sys.stderr)):
        sys.stdout.write(json.dumps(record) + "\n")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
