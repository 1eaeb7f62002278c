"""``greenlm early-exit``: add calibrated early exits to a fine-tuned model and pick the threshold for a goal."""

from __future__ import annotations

import typer

from greenlm.cli._common import err, metrics_table
from greenlm.cli._method_command import method_command, model_argument

HELP = """Add exits after chosen layers of MODEL so easy inputs leave early; calibrate them and choose the threshold.

Writes a model folder that greenlm eval / predict load (predict reports each input's exit layer; early-exit
models always run on the torch runtime) and the speed/accuracy curve over thresholds. Re-running the same
command resumes an interrupted run. BERT-layout encoders (BERT, RoBERTa, ELECTRA, greenlm's pruned and
distilled students) take exits; DistilBERT-layout and ONNX/quantized models are refused.
"""


def show(result, config, task) -> None:
    metrics = result.metrics
    metrics_table(f"{task.name}: {metrics['model']}", metrics["splits"])
    details = metrics["early_exit"]
    knob = "patience" if details["policy"] == "patience" else "threshold"
    err(f"{details['policy']} {knob} {details[knob]}; exits after layers {details['exit_layers']}")
    for split, info in details["splits"].items():
        err(f"{split}: mean exit layer {info['mean_exit_layer']} of {details['num_layers']}, FLOPs speedup"
            f" {info['flops_speedup']}x, accuracy {info['accuracy']:.4f} (upstream {info['accuracy_upstream']:.4f})")
    if details.get("speed"):
        s = details["speed"]
        err(f"measured: throughput x{s['throughput_speedup']} (batch {s['early_exit']['throughput_batch_size']}),"
            f" latency p50 x{s['latency_p50_speedup']} (batch 1), {s['early_exit']['threads']} threads")
    err(f"saved to {result.folder} (curve: curve.json, curve.csv)")


early_exit_command = method_command(
    "early_exit",
    source=model_argument("Folder of a classifier fine-tuned on the task (e.g. from greenlm train)."),
    out_help="Output folder (model with exits, metrics.json, curve.json, curve.csv).",
    aliases={"learning_rate": ("--lr",), "exit_learning_rate": ("--exit-lr",), "heldout_max_examples": ("--heldout-max",),
             "measure_speed": ("--speed",)},
    show=show,
)


def register(app: typer.Typer) -> None:
    app.command("early-exit", help=HELP)(early_exit_command)
