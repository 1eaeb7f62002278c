"""``greenlm early-exit``: add calibrated early exits to a fine-tuned model and pick the threshold for a goal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from greenlm.cli._common import (LabelFieldOpt, LabelsOpt, OnEmptyOpt, PricedOutput, PueOpt, RegionOpt, TaskOpt,
                                 TextFieldsOpt, err,
                                 load_task_from_options, metrics_table)


def _layers(value: str | None) -> list[int] | None:
    from greenlm.common import GreenlmError

    if value is None or value.strip().lower() in ("", "all"):
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise GreenlmError(f"--exit-layers '{value}' must be layer numbers separated by commas, e.g. 2,4,6") from None


def early_exit_command(
    model: Annotated[str, typer.Argument(help="A fine-tuned model folder (teacher, distilled or pruned student).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: model with exits, metrics.json, curve.json, curve.csv.")],
    task: TaskOpt = "sst2",
    exit_layers: Annotated[Optional[str], typer.Option(help="Layers with an exit, e.g. 2,4,6 (1 = first layer; default: every layer). The last layer always exits through the model's own classifier.")] = None,
    policy: Annotated[str, typer.Option(help="Exit rule: max_prob (calibrated max probability, Schwartz et al. 2020), entropy (DeeBERT) or patience (PABEE).")] = "max_prob",
    exit_pooling: Annotated[str, typer.Option(help="What an exit reads: mean (of the tokens' states) or cls (the first token, as BERT's pooler).")] = "mean",
    max_drop: Annotated[Optional[float], typer.Option(help="Goal: the fastest threshold losing at most this many accuracy points vs full depth on held-out rows (default goal: 1.0).")] = None,
    target_speedup: Annotated[Optional[float], typer.Option(help="Goal: the most accurate threshold reaching this FLOPs speedup on held-out rows (a target no threshold reaches keeps the best reachable).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Use this confidence threshold in (0, 1] instead of a goal (1.0 never exits early).")] = None,
    patience: Annotated[Optional[int], typer.Option(help="Use this patience instead of a goal (patience policy).")] = None,
    train_encoder: Annotated[bool, typer.Option("--train-encoder/--freeze-encoder", help="Train exits with the encoder, or on a frozen encoder (full-depth predictions stay the original model's).")] = True,
    loss: Annotated[str, typer.Option(help="Exit loss: sum (Schwartz et al.), weighted (by layer, PABEE) or self_distill (from the final classifier, FastBERT).")] = "sum",
    epochs: Annotated[float, typer.Option(help="Training epochs (may be fractional).")] = 2.0,
    batch_size: Annotated[int, typer.Option(help="Training examples per step.")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate of the encoder and its classifier.")] = 2e-5,
    exit_lr: Annotated[float, typer.Option("--exit-lr", help="Learning rate of the new exit heads.")] = 1e-3,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop training after this many steps.")] = None,
    train_subset: Annotated[Optional[int], typer.Option(help="Train on N random rows of the training split.")] = None,
    heldout_fraction: Annotated[float, typer.Option(help="Share of the training split set aside for calibration and the threshold.")] = 0.1,
    heldout_max: Annotated[int, typer.Option(help="At most this many held-out rows.")] = 2000,
    max_length: Annotated[Optional[int], typer.Option(help="Token limit (default: the model's own).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (held-out rows, exit initialisation, batch order).")] = 42,
    precision: Annotated[str, typer.Option(help="auto (bf16 on a GPU that has it; fp32 on CPU, where bf16 autocast's gain varies: docs/benchmarks.md), bf16 or fp32.")] = "auto",
    speed: Annotated[bool, typer.Option("--speed/--no-speed", help="Time the model with exits and the original side by side on dev.")] = True,
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    labels: LabelsOpt = None,
    on_empty: OnEmptyOpt = "skip",
    region: RegionOpt = None,
    pue: PueOpt = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Add exits after chosen layers of MODEL so easy inputs leave early; calibrate them and choose the threshold.

    Writes a model folder that greenlm eval / predict load (predict reports each input's exit layer; early-exit
    models always run on the torch runtime) and the speed/accuracy curve over thresholds. Re-running the same
    command resumes an interrupted run. BERT-layout encoders (BERT, RoBERTa, ELECTRA, greenlm's pruned and
    distilled students) take exits; DistilBERT-layout and ONNX/quantized models are refused.
    """
    from greenlm.compress.early_exit import EarlyExitConfig, early_exit_model

    config = EarlyExitConfig(
        exit_layers=_layers(exit_layers), policy=policy, exit_pooling=exit_pooling, max_drop=max_drop, target_speedup=target_speedup,
        threshold=threshold, patience=patience, train_encoder=train_encoder, loss=loss, epochs=epochs,
        batch_size=batch_size, learning_rate=lr, exit_learning_rate=exit_lr, max_steps=max_steps, train_subset=train_subset,
        heldout_fraction=heldout_fraction, heldout_max_examples=heldout_max, max_length=max_length, seed=seed,
        precision=precision, measure_speed=speed,
    )
    loaded_task = load_task_from_options(task, text_fields, label_field, labels, on_empty)
    priced = PricedOutput("early_exit", region, pue)
    with priced:
        outcome = early_exit_model(model, loaded_task, out, config, progress=progress,
                                   on_note=lambda n: err(f"note: {n}"))
    priced.finish(out, method="early_exit", task=loaded_task.name, source=model, reused=outcome.reused)
    if outcome.reused:
        err(f"{out} already holds this finished run; nothing to do (delete it to run again)")
    metrics_table(f"{loaded_task.name}: {model} + early exits", outcome.metrics["splits"])
    details = outcome.metrics["early_exit"]
    knob = "patience" if details["policy"] == "patience" else "threshold"
    err(f"{details['policy']} {knob} {details[knob]}; exits after layers {details['exit_layers']}")
    for split, info in details["splits"].items():
        err(f"{split}: mean exit layer {info['mean_exit_layer']} of {details['num_layers']}, FLOPs speedup"
            f" {info['flops_speedup']}x, accuracy {info['accuracy']:.4f} (upstream {info['accuracy_upstream']:.4f})")
    if details.get("speed"):
        s = details["speed"]
        err(f"measured: throughput x{s['throughput_speedup']} (batch {s['early_exit']['throughput_batch_size']}),"
            f" latency p50 x{s['latency_p50_speedup']} (batch 1), {s['early_exit']['threads']} threads")
    err(f"saved to {out} (curve: curve.json, curve.csv)")


def register(app: typer.Typer) -> None:
    app.command("early-exit")(early_exit_command)
