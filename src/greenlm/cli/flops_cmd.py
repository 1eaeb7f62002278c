"""``greenlm flops MODEL_OR_CONFIG --seq-len S``: parameters and FLOPs, per module, in two conventions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

HELP = """Count parameters and FLOPs of a BERT / RoBERTa / DistilBERT / ELECTRA model folder or config.json.

Prints parameters (total, embedding, non-embedding), forward FLOPs per example with a breakdown
(embeddings / attention / ffn / head), and training FLOPs when --train-steps and --batch-size are given.

--convention matmul (default): 2 FLOPs per multiply-add of every matrix product the model runs
(attention included); equals torch's FlopCounterMode; training = 3 x forward.
--convention electra: ELECTRA's accounting (Clark et al. 2020), for comparing with published tables:
dense embedding lookups, element-wise costs, a classifier at every position, training = 2 x forward;
--pretraining mlm puts an MLM head on 15.625% of positions; --pretraining electra adds --generator.
Pruned configs (greenlm_heads_per_layer, greenlm_intermediate_per_layer) and dropped layers are exact.
"""


def flops_command(
    model_or_config: Annotated[Path, typer.Argument(metavar="MODEL_OR_CONFIG", help="A Hugging Face model folder or a config.json.", show_default=False)],
    seq_len: Annotated[int, typer.Option("--seq-len", help="Tokens per example.", show_default=False)],
    convention: Annotated[str, typer.Option(help="matmul (what runs, = FlopCounterMode) or electra (ELECTRA's paper tables).")] = "matmul",
    train_steps: Annotated[Optional[int], typer.Option("--train-steps", min=1, help="Training steps, for total training FLOPs (with --batch-size).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Examples per training step (with --train-steps).")] = None,
    pretraining: Annotated[Optional[str], typer.Option(help="Training objective head: mlm, or electra (needs --generator). Default: fine-tuning with the model's head.")] = None,
    generator: Annotated[Optional[Path], typer.Option(help="Generator folder or config.json, for --pretraining electra.")] = None,
    head: Annotated[str, typer.Option(help="Head to count: auto (from the config's architectures), base, sequence-classification, token-classification, question-answering, masked-lm, pretraining, electra-discriminator.")] = "auto",
    num_labels: Annotated[Optional[int], typer.Option("--num-labels", min=1, help="Classes of a classification head (default: the config's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: params, infer_flops, infer_flops_by_module, train_flops...")] = False,
) -> None:
    from greenlm.measure import count_flops

    report = count_flops(
        model_or_config,
        seq_len,
        convention=convention,
        train_steps=train_steps,
        batch_size=batch_size,
        pretraining=pretraining,
        generator=generator,
        head=head,
        num_labels=num_labels,
    )
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    _print_report(report)


def _print_report(report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    p = report.params
    console.print(f"{report.model}: {report.family}, head {report.head}, {report.convention} convention, seq_len {report.seq_len}")
    console.print(
        f"parameters: {p['total']:,} total, {p['embedding']:,} embedding, {p['non_embedding']:,} non-embedding"
    )
    table = Table(title="forward FLOPs per example")
    for column in ("module", "params", "FLOPs", "share"):
        table.add_column(column, justify="left" if column == "module" else "right")
    total = report.infer_flops_per_example or 1
    for module, flops in report.infer_flops_by_module.items():
        table.add_row(module, f"{p['by_module'][module]:,}", f"{flops:.4g}", f"{100 * flops / total:.1f}%")
    table.add_row("total", f"{p['total']:,}", f"{report.infer_flops_per_example:.4g}", "100%")
    console.print(table)
    if report.train_flops_per_example is not None:
        console.print(f"training FLOPs per example: {report.train_flops_per_example:.4g}"
                      + (f" ({report.pretraining} pretraining)" if report.pretraining else ""))
    if report.train_flops is not None:
        console.print(f"training FLOPs: {report.train_flops:.4g} ({report.train_steps:,} steps x {report.batch_size:,} examples)")
    for note in report.notes:
        console.print(f"note: {note}", style="dim")


def register(app: typer.Typer) -> None:
    app.command("flops", help=HELP)(flops_command)
