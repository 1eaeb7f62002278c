"""``greenlm train``: fine-tune a sequence classifier and save it as a Hugging Face folder (the ``finetune``
method: pipeline/finetune_stage.py)."""

from __future__ import annotations

import inspect
from typing import Annotated

import typer

from greenlm.cli._common import err, metrics_table
from greenlm.cli._method_command import method_command

HELP = """Fine-tune a sequence classifier on a task; save model, metrics.json, pricetag.json and a model card
(README.md). The best epoch is chosen on a validation split carved from train (--validation-fraction); dev is
only reported. Re-running the same command resumes."""


def show(result, config, task) -> None:
    metrics = result.metrics
    train_info = metrics["train"]
    metrics_table(f"{task.name}: {metrics['model']}", metrics["splits"])
    err(f"saved to {result.folder} ({train_info['steps']} steps, {train_info['train_examples_per_s']} examples/s,"
        f" {train_info['precision']})")


train_command = method_command(
    "finetune",
    source=inspect.Parameter("model", inspect.Parameter.KEYWORD_ONLY, default="minilm", annotation=Annotated[
        str, typer.Option("--model", "-m", help="'minilm' (offline default), a local HF folder, a hub id, or"
                                                " 'tiny[:layers=2,hidden=32,heads=4,ffn=37,vocab=99]'.")]),
    out_help="Output folder (HF format, safetensors, metrics.json).",
    aliases={"learning_rate": ("--lr",), "grad_accum_steps": ("--grad-accum",),
             "checkpoint_every_steps": ("--checkpoint-every",)},
    show=show,
)


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP)(train_command)
