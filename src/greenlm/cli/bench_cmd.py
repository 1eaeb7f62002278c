"""``greenlm bench``: models x runtimes on the same dev inputs, next to the peers, JSON + table."""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from greenlm.cli._common import (LabelFieldOpt, LabelsOpt, OnEmptyOpt, TaskOpt, TextFieldsOpt, err,
                                 load_task_from_options)

_HELP = """Benchmark MODELs on every runtime, on the same dev inputs, side by side in one process.

Runtimes (--runtimes, comma-separated; groups: peers, torch, onnx, greenlm, all):

- peers: hf-eager-pad128 (transformers fp32, every input padded to 128 tokens, the naive path); ort-fp32 and ort-int8 (ONNX Runtime on a plain export, and its own quantize_dynamic defaults), fed batches in the given order, padded per batch.

- greenlm: torch-fp32, torch-bf16, onnx-fp32, onnx-int8 (length-sorted batches, dynamic padding, a fixed thread count) and saved (a folder greenlm exported or quantized, run as saved).

Per model and runtime: latency p50/p90 at batch 1, throughput at each batch size > 1, peak memory, size on disk, dev accuracy, energy per 1,000 examples (PriceTag), speedup vs the first row and vs the first model on the same runtime, and achieved GFLOP/s vs this machine's measured fp32 matrix-product peak.

Example:  greenlm bench runs/teacher runs/teacher-int8 --task sst2 --batch-sizes 1,32 --json bench.json
On a machine shared with other work, timings are noisy; --threads 1 avoids thread oversubscription.

Lengths:  greenlm bench --seq-lens 128,512,2048,8192 [--attention softmax,rfa,performer,abc:k=32] [--batch-sizes 1,8]
times a random-weight encoder (--bench-shape, default MiniLM's 6x384) with each attention at each length: latency,
tokens/s, peak memory of the forward (a fresh process per configuration) and the length where linear attention starts
to win (docs/attention.md). No MODEL is given in this mode.
"""


def bench_command(
    models: Annotated[Optional[list[str]], typer.Argument(help="Model folders (greenlm outputs or HF classifiers), or 'minilm'.")] = None,
    task: TaskOpt = "sst2",
    batch_sizes: Annotated[Optional[str], typer.Option(help="Comma-separated: 1 gives latency, each size > 1 a throughput (default 1,32; with --seq-lens 1,8).")] = None,
    seq_lens: Annotated[Optional[str], typer.Option(help="Comma-separated input lengths: time softmax against linear attention at each (no MODEL).")] = None,
    attention: Annotated[str, typer.Option(help="With --seq-lens: attentions to compare, e.g. softmax,rfa,performer,abc:k=32.")] = "softmax,rfa,performer,abc:k=32",
    bench_shape: Annotated[str, typer.Option(help="With --seq-lens: encoder LAYERSxHIDDEN[xHEADS[xFFN]] (MiniLM: 6x384).")] = "6x384",
    scope: Annotated[str, typer.Option(help="With --seq-lens: 'model' (the encoder) or 'attention' (one self-attention layer).")] = "model",
    memory: Annotated[bool, typer.Option(help="With --seq-lens: peak memory of each configuration in a fresh process.")] = True,
    runtimes: Annotated[str, typer.Option(help="Comma-separated runtimes or groups (peers, torch, onnx, greenlm, all).")] = "all",
    split: Annotated[Optional[str], typer.Option(help="Split to predict and time (default: the task's reported split: dev, or test where there is no dev).")] = None,
    max_examples: Annotated[Optional[int], typer.Option(min=1, help="Time on a seeded sample of N rows (accuracy always uses the whole split).")] = None,
    latency_examples: Annotated[int, typer.Option(help="Inputs timed one at a time for latency.")] = 64,
    repeats: Annotated[int, typer.Option(help="Timed passes per round.")] = 3,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds (each runtime keeps its best).")] = 3,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Intra-op threads for every runtime (default: physical cores).")] = None,
    naive_pad_to: Annotated[int, typer.Option(help="Tokens the naive peer pads every input to.")] = 128,
    max_length: Annotated[Optional[int], typer.Option(min=1, help="Truncation (default: the model's training length).")] = None,
    energy: Annotated[bool, typer.Option(help="Energy per 1,000 examples from a price tag.")] = True,
    pue: Annotated[Optional[float], typer.Option(help="Data-centre PUE for the energy figure (default 1.0).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the full result as JSON here ('-': stdout).")] = None,
    markdown: Annotated[Optional[Path], typer.Option(help="Also write the table as Markdown here.")] = None,
    work_dir: Annotated[Optional[Path], typer.Option(help="Keep exported graphs here (default: a temporary folder).")] = None,
    show_skipped: Annotated[bool, typer.Option(help="List runtimes that do not apply to a model.")] = False,
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    labels: LabelsOpt = None,
    on_empty: OnEmptyOpt = "skip",
) -> None:
    from greenlm.common import GreenlmError, atomic_write_json, writable_file
    from greenlm.runtime.bench import BenchConfig, bench
    from greenlm.report.bench import bench_markdown, print_bench

    for path, flag in ((json_path, "--json"), (markdown, "--markdown")):  # before minutes of measuring, not after
        if path is not None and str(path) != "-":
            writable_file(path, flag)
    batch_sizes = batch_sizes or ("1,8" if seq_lens else "1,32")
    try:
        sizes = tuple(int(b) for b in batch_sizes.split(",") if b.strip())
    except ValueError:
        raise GreenlmError(f"--batch-sizes must be whole numbers separated by commas, e.g. 1,32; got {batch_sizes!r}") from None
    if seq_lens is not None:
        if models:
            raise GreenlmError("--seq-lens times random-weight encoders of --bench-shape; give no MODEL with it")
        _length_bench(seq_lens, sizes, attention, bench_shape, scope, memory, repeats, rounds, threads, json_path, markdown)
        return
    if not models:
        raise GreenlmError("give at least one MODEL to benchmark (or --seq-lens to compare attentions by length)")
    from greenlm.models import resolve_model_source

    for spec in models:  # a path that does not exist stops here, before minutes of measuring the machine
        source = resolve_model_source(spec)
        if source.kind == "local" and not (Path(source.location) / "config.json").is_file():
            raise GreenlmError(f"model folder '{spec}' has no config.json; is it a Hugging Face model folder?")
    loaded_task = load_task_from_options(task, text_fields, label_field, labels, on_empty)
    split = split or loaded_task.eval_split
    config = BenchConfig(runtimes=tuple(runtimes.split(",")), batch_sizes=sizes, split=split, max_examples=max_examples,
                         latency_examples=latency_examples, repeats=repeats, rounds=rounds, threads=threads,
                         naive_pad_to=naive_pad_to, max_length=max_length, energy=energy, pue=pue)
    command = "greenlm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="greenlm-bench-") as tmp:
        result = bench(models, loaded_task, config, work_dir=work_dir or Path(tmp),
                       on_note=lambda note: err(f"bench: {note}"), command=command)
    if json_path is not None and str(json_path) == "-":
        import json

        print(json.dumps(result, indent=2))
    else:
        print_bench(result, skipped=show_skipped)
        if json_path is not None:
            atomic_write_json(json_path, result)
            err(f"wrote {json_path}")
    if markdown is not None:
        from greenlm.common import atomic_write_text

        atomic_write_text(markdown, bench_markdown(result, skipped=show_skipped))
        err(f"wrote {markdown}")


def _length_bench(seq_lens, sizes, attention, shape, scope, memory, repeats, rounds, threads, json_path, markdown) -> None:
    from greenlm.common import GreenlmError, atomic_write_json, atomic_write_text
    from greenlm.runtime.attention_bench import LengthBenchConfig, length_bench, length_table

    try:
        lengths = tuple(int(n) for n in seq_lens.split(",") if n.strip())
    except ValueError:
        raise GreenlmError(f"--seq-lens must be whole numbers separated by commas, e.g. 128,512; got {seq_lens!r}") from None
    config = LengthBenchConfig(seq_lens=lengths, attentions=attention, batch_sizes=sizes, shape=shape, scope=scope,
                               runs=repeats, rounds=rounds, threads=threads, memory=memory)
    result = length_bench(config, on_note=lambda note: err(f"bench: {note}"))
    result["command"] = "greenlm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    table = length_table(result)
    if json_path is not None and str(json_path) == "-":
        import json

        print(json.dumps(result, indent=2))
    else:
        print(table)
        if json_path is not None:
            atomic_write_json(json_path, result)
            err(f"wrote {json_path}")
    if markdown is not None:
        atomic_write_text(markdown, table + "\n")
        err(f"wrote {markdown}")


def register(app: typer.Typer) -> None:
    app.command("bench", help=_HELP)(bench_command)
