"""``greenlm distill``: distil a fine-tuned teacher into a smaller student (the method: compress/distill.py)."""

from __future__ import annotations

import typer

from greenlm.cli._common import err, metrics_table
from greenlm.cli._method_command import method_command, model_argument

HELP = """Distil a fine-tuned TEACHER folder into a smaller, faster student; save it with metrics.json.

Choose the student by shape (--student 4x312: LAYERSxHIDDEN, optionally xHEADS and xFFN), by a pre-trained
model sharing the teacher's tokenizer (--student FOLDER), or by budget (--target-speedup 6 or
--max-flops 2e8: a shape from greenlm's FLOP model, confirmed by a measured throughput ratio).

Two phases (TinyBERT): --intermediate-epochs N trains embeddings, hidden states and attention scores
to imitate the teacher's layers (layer map: --layer-map); then --epochs of soft-target KD on the
logits (Hinton et al.), optionally mixed with the gold labels (--hard-label-weight) and DistilBERT's
cosine loss (--cosine-weight). --augment embedding|mlm adds TinyBERT-style augmented sentences,
--trim-vocab keeps only the vocabulary the training text uses. Re-running the same command resumes.
"""


def show(result, config, task) -> None:
    metrics = result.metrics
    details = metrics["distill"]
    rows = {f"student {name}": m for name, m in metrics["splits"].items()}
    rows.update({f"teacher {name}": m for name, m in details["teacher"]["splits"].items()})
    metrics_table(f"{task.name}: {metrics['model']}", rows)
    cost = details["cost"]["total"]
    energy = f"{cost['energy_kwh']:.4g} kWh" if cost.get("energy_kwh") is not None else "energy unknown"
    err(f"saved to {result.folder}: {details['student']['params']:,} parameters ({details['params_ratio']:.1%} of the"
        f" teacher), accuracy retained {details['accuracy_retained']}, distillation took {cost['wall_s']:.0f} s,"
        f" {energy}")


distill_command = method_command(
    "distill",
    source=model_argument("Fine-tuned teacher: a folder written by `greenlm train`."),
    out_help="Output folder for the student (HF format, metrics.json, pricetag.json).",
    aliases={"learning_rate": ("--lr",), "intermediate_learning_rate": ("--intermediate-lr",),
             "checkpoint_every_steps": ("--checkpoint-every",)},
    show=show,
)


def register(app: typer.Typer) -> None:
    app.command("distill", help=HELP)(distill_command)
