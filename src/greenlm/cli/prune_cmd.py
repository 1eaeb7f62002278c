"""``greenlm prune``: remove heads / FFN neurons / layers (structured) or zero weights (unstructured)."""

from __future__ import annotations

import typer

from greenlm.cli._common import err, metrics_table
from greenlm.cli._method_command import method_command, model_argument, optional_path_option

_HELP = """Prune a fine-tuned classifier (MODEL: its folder) and save the smaller model in --out.

Structured (default): attention heads, FFN neurons and whole layers are ranked by Michel et al.
(2019)'s gate-gradient importance and removed physically, so the saved model has fewer parameters
and FLOPs and runs faster. Example: remove 40% of the heads, recover by distilling from the
unpruned model:  greenlm prune runs/teacher --task sst2 --head-sparsity 0.4 --out runs/pruned

Iterative: --schedule iterative --iterations 4 --max-drop 1.0 prunes in 4 rounds (recovering after
each) and keeps the last round within 1.0 accuracy point of the input model (if even round 1 loses
more, round 1 is kept and the output says so: raise --iterations for smaller steps).

Unstructured: --method magnitude|movement --sparsity 0.9 zeroes 90% of the encoder's linear
weights; the report gives the compressed (CSR) checkpoint size and latency measured with zeros in
dense matrices (no gain) and with torch's sparse kernel.

Supported architectures: BERT (incl. MiniLM), RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT.
Re-running the same command resumes an interrupted run.
"""


def show(result, config, task) -> None:
    metrics = result.metrics
    out = result.folder
    if metrics["splits"]:
        metrics_table(f"{task.name}: {metrics['model']} pruned ({config.method})", metrics["splits"])
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
        split = metrics.get("eval_split") or "dev"  # the split this folder reported on
        lines.append(f"{split} accuracy {details['input_dev']['accuracy']:.4f} -> {metrics['splits'][split]['accuracy']:.4f}"
                     f" ({details['accuracy_drop_points']:+.2f} points lost)")
    if details.get("speed"):
        lines.append(details["speed"]["note"])
    for line in lines:
        err(line)
    err(f"saved to {out}")


prune_command = method_command(
    "prune",
    source=model_argument("Folder of a classifier fine-tuned on the task (e.g. from greenlm train)."),
    out_help="Output folder (HF format, safetensors, metrics.json).",
    aliases={"head_sparsity": ("--heads",), "ffn_sparsity": ("--ffn",), "train_examples": ("--train-subset",),
             "learning_rate": ("--lr",), "teacher": ("--distill-from",)},
    extra=(optional_path_option("teacher_dir", "--teacher-dir",
                                "Fine-tuned teacher folder, for --teacher teacher (distil from it instead of the input)."),),
    teacher_option="teacher_dir",
    show=show,
)


def register(app: typer.Typer) -> None:
    app.command("prune", help=_HELP)(prune_command)
