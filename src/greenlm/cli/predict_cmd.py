"""``greenlm predict``: label texts with a saved model; JSON lines out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def predict_command(
    model: Annotated[str, typer.Argument(help="A model folder saved by greenlm (or any HF classifier folder).")],
    input_file: Annotated[str, typer.Argument(help="File with one text (or a tab-separated pair) per line; '-' reads stdin.")] = "-",
    batch_size: Annotated[int, typer.Option(help="Examples per forward pass.")] = 64,
    max_length: Annotated[Optional[int], typer.Option(help="Token limit (default: the one the model was trained with).")] = None,
    allow_pickle: Annotated[bool, typer.Option(help="Allow pickle weights: only for sources you trust.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar with ETA (on stderr).")] = True,
    runtime: Annotated[str, typer.Option(help="torch: the model as loaded; auto: the fastest runtime measured on this machine (greenlm.load, cached); or torch-fp32, torch-bf16, onnx-fp32, onnx-int8.")] = "torch",
) -> None:
    """Predict a label for each input line; prints one JSON object per line (label, probabilities)."""
    from greenlm.common import GreenlmError
    from greenlm.data import read_prediction_lines
    from greenlm.models import load_classifier, predict_records

    if runtime != "torch" and _is_early_exit(model):
        # Exits are data-dependent control flow: only the torch path runs them (and reports exit layers).
        print("greenlm: note: early-exit models run on the torch runtime (exits need it); --runtime ignored",
              file=sys.stderr)
        runtime = "torch"
    if runtime != "torch":  # greenlm.load: sorted batches, the runtime and batch size measured fastest here
        from greenlm.models.runtime import load

        predictor = load(model, runtime=runtime, max_length=max_length, allow_pickle=allow_pickle)
    else:
        loaded = load_classifier(model, allow_pickle=allow_pickle)
    if input_file == "-":
        split = read_prediction_lines(sys.stdin, source="stdin")
    else:
        path = Path(input_file)
        if not path.is_file():
            raise GreenlmError(f"input file '{input_file}' does not exist")
        with open(path, encoding="utf-8", errors="strict", newline="") as stream:
            split = read_prediction_lines(stream, source=str(path))
    if runtime != "torch":
        for i, record in enumerate(predictor.predict(split.text_a, split.text_b)):
            pair = {"text_b": split.text_b[i]} if split.text_b is not None else {}
            sys.stdout.write(json.dumps({"text": split.text_a[i], **pair, **record}) + "\n")
        return
    saved = getattr(loaded.model.config, "greenlm", None) or {}
    records = predict_records(loaded.model, loaded.tokenizer, split, loaded.labels,
                              max_length=max_length or saved.get("max_length") or 128, batch_size=batch_size,
                              progress="predict" if progress else None)
    for record in records:
        sys.stdout.write(json.dumps(record) + "\n")


def _is_early_exit(model: str) -> bool:
    from greenlm.models.early_exit import FORMAT

    config = Path(model) / "config.json"
    try:
        return ((json.loads(config.read_text()).get("greenlm") or {}).get("format")) == FORMAT
    except (OSError, ValueError):
        return False


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
