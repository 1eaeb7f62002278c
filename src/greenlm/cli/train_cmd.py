"""``greenlm train``: fine-tune a sequence classifier and save it as a Hugging Face folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from greenlm.cli._common import (LabelFieldOpt, LabelsOpt, OnEmptyOpt, PricedOutput, PueOpt, RegionOpt, TaskOpt,
                                 TextFieldsOpt, err, load_task_from_options, metrics_table)


def train_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (HF format, safetensors, metrics.json).")],
    task: TaskOpt = "sst2",
    model: Annotated[str, typer.Option("--model", "-m", help="'minilm' (offline default), a local HF folder, a hub id, or 'tiny[:layers=2,hidden=32,heads=4,ffn=37,vocab=99]'.")] = "minilm",
    epochs: Annotated[float, typer.Option(help="Epochs (may be fractional).")] = 3.0,
    batch_size: Annotated[int, typer.Option(help="Examples per step per process.")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).")] = 5e-5,
    max_length: Annotated[int, typer.Option(help="Truncate inputs to this many tokens.")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed (init, batch order, dropout).")] = 42,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many optimizer steps.")] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 on a GPU that has it; fp32 on CPU, where bf16 autocast's gain varies: docs/benchmarks.md), bf16 or fp32.")] = "auto",
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    warmup_ratio: Annotated[float, typer.Option(help="Share of steps with linear warm-up.")] = 0.06,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps (and each epoch end).")] = 200,
    train_subset: Annotated[Optional[int], typer.Option(help="Train on a random subset of N rows.")] = None,
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    labels: LabelsOpt = None,
    on_empty: OnEmptyOpt = "skip",
    allow_pickle: Annotated[bool, typer.Option(help="Allow pickle weights (pytorch_model.bin): only for sources you trust.")] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Run model code from the hub: only for sources you trust.")] = False,
    region: RegionOpt = None,
    pue: PueOpt = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Fine-tune a sequence classifier on a task; save model, metrics.json, pricetag.json and a model card
    (README.md). Re-running resumes."""
    from greenlm.train import TrainConfig
    from greenlm.train.finetune import finetune

    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=lr, seed=seed, max_steps=max_steps,
        precision=precision, grad_accum_steps=grad_accum, warmup_ratio=warmup_ratio,
        weight_decay=weight_decay, checkpoint_every_steps=checkpoint_every,
    )
    loaded_task = load_task_from_options(task, text_fields, label_field, labels, on_empty)
    priced = PricedOutput("finetune", region, pue)
    with priced:
        outcome = finetune(
            loaded_task, model, out, config, max_length=max_length, train_subset=train_subset,
            allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, progress=progress,
            on_note=lambda note: err(f"note: {note}"),
        )
    if not outcome.is_main_process:
        return
    processes = outcome.metrics["train"]["num_processes"]
    priced.finish(out, method="finetune", task=loaded_task.name, source=model, reused=outcome.reused,
                  note=f"measured on the main process only; {processes - 1} other training process(es) are not"
                       " counted (greenlm measure -- accelerate launch ... counts them all)" if processes > 1 else None)
    if outcome.reused:
        err(f"{out} already holds this finished run; nothing to train (delete it to train again)")
    metrics_table(f"{loaded_task.name}: {model}", outcome.metrics["splits"])
    train_info = outcome.metrics["train"]
    err(f"saved to {out} ({train_info['steps']} steps, {train_info['train_examples_per_s']} examples/s, {train_info['precision']})")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
