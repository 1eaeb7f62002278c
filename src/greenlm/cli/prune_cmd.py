"""``greenlm prune``: remove heads / FFN neurons / layers (structured) or zero weights (unstructured)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from greenlm.cli._common import (LabelFieldOpt, LabelsOpt, OnEmptyOpt, PricedOutput, PueOpt, RegionOpt, TaskOpt,
                                 TextFieldsOpt, err,
                                 load_task_from_options, metrics_table, print_json)

_HELP = """Prune a fine-tuned classifier (MODEL: its folder) and save the smaller model in --out.

Structured (default): attention heads, FFN neurons and whole layers are ranked by Michel et al.
(2019)'s gate-gradient importance and removed physically, so the saved model has fewer parameters
and FLOPs and runs faster. Example: remove 40% of the heads, recover by distilling from the
unpruned model:  greenlm prune runs/teacher --task sst2 --heads 0.4 --out runs/pruned

Iterative: --schedule iterative --iterations 4 --max-drop 1.0 prunes in 4 rounds (recovering after
each) and keeps the last round within 1.0 accuracy point of the input model (if even round 1 loses
more, round 1 is kept and the output says so: raise --iterations for smaller steps).

Unstructured: --method magnitude|movement --sparsity 0.9 zeroes 90% of the encoder's linear
weights; the report gives the compressed (CSR) checkpoint size and latency measured with zeros in
dense matrices (no gain) and with torch's sparse kernel.

Supported architectures: BERT (incl. MiniLM), RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT.
Re-running the same command resumes an interrupted run.
"""


def prune_command(
    model: Annotated[str, typer.Argument(help="Folder of a classifier fine-tuned on the task (e.g. from greenlm train).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (HF format, safetensors, metrics.json).")],
    task: TaskOpt = "sst2",
    method: Annotated[str, typer.Option(help="structured (heads/neurons/layers removed), magnitude or movement (unstructured).")] = "structured",
    schedule: Annotated[Optional[str], typer.Option(help="structured: one_shot | iterative; magnitude: one_shot | cubic; movement: cubic. Default: one_shot (movement: cubic).")] = None,
    heads: Annotated[float, typer.Option("--heads", help="Structured: share of attention heads to remove, in [0, 1).")] = 0.5,
    ffn: Annotated[float, typer.Option("--ffn", help="Structured: share of FFN neurons to remove, in [0, 1).")] = 0.0,
    drop_layers: Annotated[int, typer.Option(help="Structured: whole layers to remove (least important first).")] = 0,
    min_heads_per_layer: Annotated[int, typer.Option(help="Heads every kept layer keeps; 0 lets a layer lose its whole attention.")] = 1,
    min_neurons_per_layer: Annotated[int, typer.Option(help="FFN neurons every kept layer keeps.")] = 1,
    ranking: Annotated[str, typer.Option(help="global (compare layer-normalised scores across layers) or per_layer (same share per layer).")] = "global",
    iterations: Annotated[int, typer.Option(help="Iterative: rounds of prune + recover.")] = 4,
    max_drop: Annotated[Optional[float], typer.Option(help="Dev accuracy points the result may lose vs the input model (iterative stops before).")] = None,
    importance_examples: Annotated[int, typer.Option(help="Training examples used to score importance.")] = 2048,
    sparsity: Annotated[float, typer.Option(help="Unstructured: share of encoder linear weights set to zero, in [0, 1).")] = 0.9,
    scope: Annotated[str, typer.Option(help="Magnitude: global (one threshold) or per_layer (same share per matrix).")] = "global",
    recovery: Annotated[str, typer.Option(help="none, finetune or distill (from the unpruned model, or --teacher with --distill-from teacher).")] = "distill",
    epochs: Annotated[float, typer.Option(help="Epochs of each recovery / of the unstructured pruning run.")] = 1.0,
    train_subset: Annotated[Optional[int], typer.Option(help="Recover / prune-train on a random subset of N training rows.")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate of recovery / pruning runs.")] = 3e-5,
    batch_size: Annotated[int, typer.Option(help="Training examples per step.")] = 32,
    distill_from: Annotated[str, typer.Option(help="input (the unpruned MODEL) or teacher (--teacher).")] = "input",
    teacher: Annotated[Optional[Path], typer.Option(help="Fine-tuned teacher folder, for --distill-from teacher.")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Tokens per input (default: the model's training length).")] = None,
    measure_speed: Annotated[bool, typer.Option(help="Time input and pruned model side by side.")] = True,
    seed: Annotated[int, typer.Option(help="Random seed (subsets, batch order).")] = 42,
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    labels: LabelsOpt = None,
    on_empty: OnEmptyOpt = "skip",
    json_out: Annotated[bool, typer.Option("--json", help="Print the full metrics as JSON.")] = False,
    region: RegionOpt = None,
    pue: PueOpt = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    from greenlm.compress.prune import PruneConfig, run

    config = PruneConfig(
        method=method, schedule=schedule,
        head_sparsity=heads, ffn_sparsity=ffn, drop_layers=drop_layers, min_heads_per_layer=min_heads_per_layer,
        min_neurons_per_layer=min_neurons_per_layer, ranking=ranking, importance_examples=importance_examples,
        iterations=iterations, max_drop=max_drop, sparsity=sparsity, scope=scope, recovery=recovery, epochs=epochs,
        train_examples=train_subset, learning_rate=lr, batch_size=batch_size, teacher=distill_from,
        max_length=max_length, measure_speed=measure_speed, seed=seed,
    )
    loaded_task = load_task_from_options(task, text_fields, label_field, labels, on_empty)
    work_dir = out.parent / f".{out.name}.prune-work"
    priced = PricedOutput("prune", region, pue)
    with priced:
        metrics = run(Path(model), loaded_task, config, out, work_dir=work_dir, progress=progress,
                      on_note=lambda note: err(f"note: {note}"), teacher_dir=teacher)
    priced.finish(out, method="prune", task=loaded_task.name, source=model, reused=False)
    if json_out:
        print_json(metrics)
        return
    if metrics["splits"]:
        metrics_table(f"{loaded_task.name}: {model} pruned ({config.method})", metrics["splits"])
    details = metrics["prune"]
    before, after = details["before"], details["after"]
    lines = [f"params {before['params']:,} -> {after['params']:,} (x{details['params_ratio']}),"
             f" FLOPs/example at {details['flops_seq_len']} tokens x{details['flops_ratio']}"]
    if config.method == "structured":
        lines.append(f"heads {details['heads']['before']} -> {details['heads']['after']},"
                     f" FFN neurons {details['ffn_neurons']['before']} -> {details['ffn_neurons']['after']},"
                     f" layers {before['layers']} -> {after['layers']}")
    else:
        ckpt = details["checkpoint"]
        lines.append(f"sparsity {details['sparsity']:.2%} of encoder linear weights; checkpoint"
                     f" {ckpt['dense_safetensors_bytes']:,} B dense -> {ckpt['csr_safetensors_bytes']:,} B CSR"
                     f" (x{ckpt['csr_compression_ratio']})")
    if details.get("accuracy_drop_points") is not None:
        lines.append(f"dev accuracy {details['input_dev']['accuracy']:.4f} -> {metrics['splits']['dev']['accuracy']:.4f}"
                     f" ({details['accuracy_drop_points']:+.2f} points lost)")
    if details.get("speed"):
        lines.append(details["speed"]["note"])
    for line in lines:
        err(line)
    err(f"saved to {out}")


def register(app: typer.Typer) -> None:
    app.command("prune", help=_HELP)(prune_command)
