"""``greenlm convert-attention``: swap a fine-tuned classifier's attention for a linear one and recover by distillation."""

from __future__ import annotations

import typer

from greenlm.cli._common import err, metrics_table
from greenlm.cli._method_command import method_command, model_argument

HELP = """Swap MODEL's softmax self-attention for RFA, Performer, T2R or ABC (cost linear in length) and fine-tune it with
the original model as teacher (Kasai et al. 2021). --attention rfa:features=64 | performer:features=128 |
t2r:features=32 (a learned feature map, the paper's own) | abc:k=32;
--max-positions N extends the position table for longer inputs. BERT-family encoders (BERT, MiniLM, RoBERTa,
XLM-RoBERTa, ELECTRA) convert. The folder loads in greenlm eval / predict / bench (torch runtime). Formulas: docs/attention.md.
"""


def show(result, config, task) -> None:
    metrics = result.metrics
    metrics_table(f"{task.name}: {metrics['model']}", metrics["splits"])
    details = metrics["convert_attention"]
    for split, change in details["accuracy_change_points"].items():
        err(f"{split}: accuracy {change:+.2f} points vs the softmax original"
            f" (agreement {details['agreement_with_original'][split]:.4f})")
    err(f"saved to {result.folder}")


convert_attention_command = method_command(
    "convert_attention",
    source=model_argument("Folder of a classifier fine-tuned on the task (e.g. from greenlm train)."),
    out_help="Output folder (the converted model, metrics.json).",
    aliases={"learning_rate": ("--lr",)},
    show=show,
)


def register(app: typer.Typer) -> None:
    app.command("convert-attention", help=HELP)(convert_attention_command)
