"""``greenlm distill``: distil a fine-tuned teacher into a smaller student (no logic here: see compress/distill.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from greenlm.cli._common import (LabelFieldOpt, LabelsOpt, OnEmptyOpt, PricedOutput, PueOpt, RegionOpt, TaskOpt,
                                 TextFieldsOpt, err, load_task_from_options, metrics_table)

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


def distill_command(
    teacher: Annotated[Path, typer.Argument(help="Fine-tuned teacher: a folder written by `greenlm train`.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the student (HF format, metrics.json, pricetag.json).")],
    task: TaskOpt = "sst2",
    student: Annotated[Optional[str], typer.Option(help="Student shape LAYERSxHIDDEN, optionally xHEADS and xFFN (4x312, 2x256, 4x312x12x1200), or a pre-trained model folder/hub id sharing the teacher's tokenizer. Default 4x312 unless a budget is given.")] = None,
    target_speedup: Annotated[Optional[float], typer.Option(help="Pick the largest shape at least this much faster than the teacher (FLOPs, then measured).")] = None,
    max_flops: Annotated[Optional[float], typer.Option(help="Pick the largest shape with at most this many forward FLOPs per example (at the task's median length).")] = None,
    init: Annotated[str, typer.Option(help="Student initialisation: 'teacher' (copy the mapped teacher layers, selecting the most important coordinates where narrower) or 'random'.")] = "teacher",
    layer_map: Annotated[str, typer.Option(help="Teacher layer each student layer imitates and starts from: uniform, bottom, top, or a list like 2,4,6 (1-based).")] = "uniform",
    trim_vocab: Annotated[bool, typer.Option(help="Keep only the vocabulary rows the training text uses (smaller embedding matrix).")] = False,
    intermediate_epochs: Annotated[float, typer.Option(help="Epochs of TinyBERT intermediate-layer distillation before the prediction phase (0 skips it).")] = 0.0,
    intermediate_lr: Annotated[float, typer.Option(help="Peak learning rate of the intermediate phase.")] = 1e-4,
    attention_weight: Annotated[float, typer.Option(help="Weight of the attention-score MSE (intermediate phase).")] = 1.0,
    hidden_weight: Annotated[float, typer.Option(help="Weight of the hidden-state MSE (intermediate phase).")] = 1.0,
    embedding_weight: Annotated[float, typer.Option(help="Weight of the embedding-layer MSE (intermediate phase).")] = 1.0,
    epochs: Annotated[float, typer.Option(help="Epochs of the prediction phase (soft targets).")] = 3.0,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate of the prediction phase.")] = 1e-4,
    temperature: Annotated[float, typer.Option(help="Softmax temperature T of the soft targets (the loss is scaled by T^2).")] = 1.0,
    hard_label_weight: Annotated[float, typer.Option(help="Weight w of the gold-label cross-entropy: (1-w)*KD + w*CE.")] = 0.0,
    cosine_weight: Annotated[float, typer.Option(help="Weight of DistilBERT's cosine loss on the last hidden states (prediction phase).")] = 0.0,
    augment: Annotated[str, typer.Option(help="Augment the training text: none, embedding (teacher word-embedding neighbours), mlm (needs --augment-mlm-model).")] = "none",
    augment_copies: Annotated[int, typer.Option(help="Augmented sentences per training sentence (TinyBERT: 20).")] = 4,
    augment_prob: Annotated[float, typer.Option(help="Chance each word is replaced.")] = 0.4,
    augment_candidates: Annotated[int, typer.Option(help="Candidate words per word (K).")] = 15,
    augment_mlm_model: Annotated[Optional[str], typer.Option(help="Masked LM (folder or hub id) sharing the teacher's vocabulary, for --augment mlm.")] = None,
    train_subset: Annotated[Optional[int], typer.Option(help="Distil on a random subset of N training rows (before augmentation).")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Truncate inputs to this many tokens (default: the teacher's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per step per process.")] = 32,
    warmup_ratio: Annotated[float, typer.Option(help="Share of steps with linear warm-up.")] = 0.1,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Random seed (init, subset, augmentation, batch order).")] = 42,
    precision: Annotated[str, typer.Option(help="auto (bf16 on a GPU that has it; fp32 on CPU, where bf16 autocast's gain varies: docs/benchmarks.md), bf16 or fp32.")] = "auto",
    keep_best: Annotated[bool, typer.Option(help="Keep the prediction epoch with the best dev accuracy (else the last).")] = True,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps (and each epoch end).")] = 500,
    allow_untuned_teacher: Annotated[bool, typer.Option(help="Distil from a teacher not fine-tuned for the task (a known failure; for experiments).")] = False,
    region: RegionOpt = None,
    pue: PueOpt = None,
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    labels: LabelsOpt = None,
    on_empty: OnEmptyOpt = "skip",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    from greenlm.compress.distill import DistillConfig, distill_to_folder

    config = DistillConfig(
        student=student, target_speedup=target_speedup,
        max_flops=max_flops, init=init, layer_map=layer_map, trim_vocab=trim_vocab,
        intermediate_epochs=intermediate_epochs, intermediate_learning_rate=intermediate_lr,
        attention_weight=attention_weight, hidden_weight=hidden_weight, embedding_weight=embedding_weight,
        epochs=epochs, learning_rate=lr, temperature=temperature, hard_label_weight=hard_label_weight,
        cosine_weight=cosine_weight, augment=augment, augment_copies=augment_copies, augment_prob=augment_prob,
        augment_candidates=augment_candidates, augment_mlm_model=augment_mlm_model, train_subset=train_subset,
        max_length=max_length, batch_size=batch_size, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
        seed=seed, precision=precision, keep_best=keep_best, checkpoint_every_steps=checkpoint_every,
        allow_untuned_teacher=allow_untuned_teacher,
    )
    loaded_task = load_task_from_options(task, text_fields, label_field, labels, on_empty)
    priced = PricedOutput("distill", region, pue)  # validates region/pue before any work
    with priced:
        outcome = distill_to_folder(teacher, loaded_task, config, out, progress=progress,
                                    on_note=lambda note: err(f"note: {note}"))
    if outcome.reused:
        err(f"{out} already holds this finished run; nothing to do (delete it to distil again)")
    priced.finish(out, method="distill", task=loaded_task.name, source=teacher, reused=outcome.reused)
    metrics = outcome.metrics
    details = metrics["distill"]
    rows = {f"student {name}": m for name, m in metrics["splits"].items()}
    rows.update({f"teacher {name}": m for name, m in details["teacher"]["splits"].items()})
    metrics_table(f"{loaded_task.name}: {metrics['model']}", rows)
    cost = details["cost"]["total"]
    energy = f"{cost['energy_kwh']:.4g} kWh" if cost.get("energy_kwh") is not None else "energy unknown"
    err(f"saved to {out}: {details['student']['params']:,} parameters ({details['params_ratio']:.1%} of the teacher),"
        f" accuracy retained {details['accuracy_retained']}, distillation took {cost['wall_s']:.0f} s, {energy}")


def register(app: typer.Typer) -> None:
    app.command("distill", help=HELP)(distill_command)
