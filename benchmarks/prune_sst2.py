"""Pruning benchmark on SST-2: structured (heads; heads + FFN) and unstructured (90% sparsity).

Prunes the greenlm-fine-tuned teacher with the ``prune`` stage (``greenlm.stage.run_stage``, the same
code as ``greenlm prune``), then times every model side by side
in this one process (``greenlm.runtime.measure_speed``: same inputs, same threads) and writes the
figures, the command, the machine and the date into the "## Pruning (issue 6)" section of
docs/benchmarks.md (and everything into <work>/results.json).

    python benchmarks/prune_sst2.py --teacher runs/teacher-sst2 --work runs/prune-bench

Re-running reuses finished stage outputs (the stage caches by its inputs) and only re-times; an
interrupted experiment resumes from its work folder (``<work>/.<name>.work``). A folder from a different
configuration is refused by the stage: delete it, or give another ``--work``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import torch

from greenlm.common import atomic_write_json, atomic_write_text
from greenlm.common.hardware import cpu_model
from greenlm.compress import sparsity as sp
from greenlm.compress.prune_config import PruneConfig
from greenlm.data import align_labels, encode_split, load_task
from greenlm.models import load_classifier
from greenlm.runtime import measure_speed, speed_inputs, torch_forward
from greenlm.stage import run_stage

SECTION = "## Pruning (issue 6)"
ROOT = Path(__file__).resolve().parents[1]


def experiments(args) -> dict[str, PruneConfig]:
    common = dict(recovery="distill", train_examples=args.train_examples, importance_examples=args.importance_examples,
                  measure_speed=False, learning_rate=args.lr, batch_size=32)
    return {
        "heads": PruneConfig(head_sparsity=args.heads, epochs=args.epochs, **common),
        "heads_ffn": PruneConfig(head_sparsity=args.heads_ffn_heads, ffn_sparsity=args.heads_ffn_ffn,
                                 schedule="iterative" if args.rounds > 1 else "one_shot", iterations=args.rounds,
                                 epochs=args.epochs, **{**common, "learning_rate": args.heads_ffn_lr,
                                                        "train_examples": args.heads_ffn_train_examples or args.train_examples}),
        "sparse90": PruneConfig(method=args.sparse_method, schedule="cubic", sparsity=0.9, epochs=args.sparse_epochs,
                                sparsity_warmup=args.sparse_warmup, sparsity_cooldown=args.sparse_cooldown,
                                mask_update_steps=1, **{**common, "train_examples": args.sparse_train_examples,
                                                        "learning_rate": args.sparse_lr}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, default=ROOT / "runs" / "teacher-sst2")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "prune-bench")
    parser.add_argument("--only", default="heads,heads_ffn,sparse90", help="experiments to run, comma-separated")
    parser.add_argument("--heads", type=float, default=0.5, help="head share removed in the heads-only run")
    parser.add_argument("--heads-ffn-heads", type=float, default=0.5)
    parser.add_argument("--heads-ffn-ffn", type=float, default=0.65)
    parser.add_argument("--heads-ffn-lr", type=float, default=1e-4)
    parser.add_argument("--heads-ffn-train-examples", type=int, default=None, help="default: --train-examples")
    parser.add_argument("--rounds", type=int, default=2, help="iterative rounds for heads + FFN (1 = one shot)")
    parser.add_argument("--train-examples", type=int, default=4000, help="SST-2 training subset for recovery")
    parser.add_argument("--importance-examples", type=int, default=1024)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--sparse-method", default="magnitude", choices=["magnitude", "movement"])
    parser.add_argument("--sparse-train-examples", type=int, default=8000)
    parser.add_argument("--speed-rounds", type=int, default=3, help="interleaved timing rounds (best per model)")
    parser.add_argument("--sparse-epochs", type=float, default=1.0)
    parser.add_argument("--sparse-lr", type=float, default=3e-4)
    parser.add_argument("--sparse-warmup", type=float, default=0.0, help="share of steps before pruning starts")
    parser.add_argument("--sparse-cooldown", type=float, default=0.4, help="share of steps at 90%% at the end")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while timing")
    parser.add_argument("--train-threads", type=int, default=None, help="torch threads while training")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--note", action="append", default=[], help="a line added to the doc section (e.g. earlier attempts)")
    args = parser.parse_args()
    if args.train_threads:
        torch.set_num_threads(args.train_threads)
    if not (args.teacher / "metrics.json").is_file():
        sys.exit(f"teacher {args.teacher} is not complete (no metrics.json); fine-tune it first")

    load_start = os.getloadavg()[0]
    task = load_task("sst2")
    wanted = [name for name in args.only.split(",") if name]
    results: dict = {"experiments": {}}
    started = time.time()
    cpu_before = time.process_time()
    for name, config in experiments(args).items():
        if name not in wanted:
            continue
        t0, c0 = time.time(), time.process_time()
        result = run_stage("prune", args.teacher, task, config, args.work / name, work_dir=args.work / f".{name}.work",
                           progress=False, on_note=lambda note: print(f"[{name}] {note}", file=sys.stderr),
                           command=f"benchmarks/prune_sst2.py ({name})")
        metrics = result.metrics
        if result.reused:
            print(f"[{name}] reused {result.folder}", file=sys.stderr)
        results["experiments"][name] = {"config": config.to_dict(), "metrics": metrics,
                                         "wall_s": round(time.time() - t0, 1),
                                         "process_cpu_s": round(time.process_time() - c0, 1)}
        print(f"[{name}] dev {metrics['splits']['dev']['accuracy']:.4f} in {time.time() - t0:.0f}s", file=sys.stderr)

    results["speed"] = time_side_by_side(args, task, wanted)
    results["wall_s"] = round(time.time() - started, 1)
    results["process_cpu_s"] = round(time.process_time() - cpu_before, 1)
    results["command"] = "python " + shlex.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    results["machine"] = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__, "timing_threads": args.threads,
                          "speed_rounds": args.speed_rounds, "load_average_start": load_start,
                          "load_average_end": os.getloadavg()[0]}
    results["date"] = datetime.date.today().isoformat()
    results["teacher"] = str(args.teacher)
    results["notes"] = args.note
    atomic_write_json(args.work / "results.json", results)
    write_doc(args.doc, render(results))
    print(render(results))


def time_side_by_side(args, task, wanted) -> dict:
    """Latency / throughput of the teacher and every pruned model, in one process, interleaved rounds."""
    teacher = load_classifier(str(args.teacher))
    tokenizer = teacher.tokenizer
    max_length = int((getattr(teacher.model.config, "greenlm", None) or {}).get("max_length", 128))
    dev = encode_split(align_labels(task.split("dev"), task, teacher.labels, "teacher"), tokenizer, max_length)
    inputs = speed_inputs(dev, max_examples=256)
    # The teacher timed twice: the spread between its two rows is the noise floor of this run (A/A control).
    models = {"teacher (dense)": teacher.model.eval(), "teacher again (A/A control)": teacher.model}
    for name in wanted:
        folder = args.work / name
        if (folder / "metrics.json").is_file():
            models[name] = load_classifier(str(folder)).model.eval()
    if "sparse90" in models:
        models["sparse90 + CSR kernel"] = sp.to_sparse_kernels(models["sparse90"])
    best: dict[str, dict] = {}
    names = list(models)
    # Interleaved rounds (A B C, C B A, A B C, ...); the best figure per model is kept.
    for round_index in range(args.speed_rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            report = measure_speed(torch_forward(models[name]), inputs, pad_token_id=tokenizer.pad_token_id,
                                   threads=args.threads).to_dict()
            previous = best.get(name)
            if previous is None:
                best[name] = report
                continue
            if report["latency_ms_p50"] < previous["latency_ms_p50"]:
                previous.update(latency_ms_p50=report["latency_ms_p50"], latency_ms_p90=report["latency_ms_p90"])
            previous["throughput_examples_per_s"] = max(previous["throughput_examples_per_s"],
                                                        report["throughput_examples_per_s"])
    return best


def render(results: dict) -> str:
    exp, speed = results["experiments"], results["speed"]
    base = speed["teacher (dense)"]
    first = next(iter(exp.values()), None)
    teacher_acc = first["metrics"]["prune"]["input_dev"]["accuracy"] if first else None
    lines = [
        SECTION,
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, torch {results['machine']['torch']};"
        f" timing with {results['machine']['timing_threads']} torch thread(s). Date: {results['date']}.  ",
        f"Teacher: `{results['teacher']}` (greenlm-fine-tuned MiniLM-L6, SST-2 dev accuracy {teacher_acc:.4f}).  "
        if teacher_acc is not None else f"Teacher: `{results['teacher']}`.  ",
        f"Total: {results['wall_s']:.0f} s wall, {results['process_cpu_s']:.0f} s CPU of this process.",
        "",
        "Speed: `greenlm.runtime.measure_speed` on the same 256 SST-2 dev sentences for every model, side by side in",
        f"one process, {results['machine']['speed_rounds']} interleaved rounds, best figure per model; latency = batch 1 (p50 over 64 sentences),",
        "throughput = length-grouped batches of 32. **The machine was shared with other jobs while this ran**",
        f"(load average {results['machine']['load_average_start']:.1f} at the start, {results['machine']['load_average_end']:.1f}"
        f" at the end, on {results['machine']['cores']} cores): absolute timings are noisy; ratios are taken within one run.",
        "",
        "| model | dev acc | vs teacher | heads | FFN neurons | params | FLOPs/ex | latency p50 ms | speedup | throughput ex/s | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    first_details = first["metrics"]["prune"] if first else None
    if first_details:
        b = first_details["before"]
        lines.append(
            f"| teacher (dense) | {teacher_acc:.4f} | - | {sum(b['heads_per_layer'])} | {sum(b['intermediate_per_layer'])}"
            f" | {b['params']:,} | {b['flops_per_example'] / 1e6:.1f} M | {base['latency_ms_p50']:.2f} | 1.00x"
            f" | {base['throughput_examples_per_s']:.1f} | 1.00x |"
        )
    control = speed.get("teacher again (A/A control)")
    if control is not None:
        lines.append(
            f"| teacher again (A/A control) | - | - | - | - | - | - | {control['latency_ms_p50']:.2f}"
            f" | {base['latency_ms_p50'] / control['latency_ms_p50']:.2f}x | {control['throughput_examples_per_s']:.1f}"
            f" | {control['throughput_examples_per_s'] / base['throughput_examples_per_s']:.2f}x |"
        )
    for name, item in exp.items():
        m, d = item["metrics"], item["metrics"]["prune"]
        a = d["after"]
        for label in [name] + ([f"{name} + CSR kernel"] if f"{name} + CSR kernel" in speed else []):
            s = speed.get(label)
            if s is None:
                continue
            lines.append(
                f"| {label} | {m['splits']['dev']['accuracy']:.4f} | {100 * d['accuracy_kept']:.1f}%"
                f" ({-d['accuracy_drop_points']:+.2f} pts) | {sum(a['heads_per_layer'])}"
                f" | {sum(a['intermediate_per_layer'])} | {a['params']:,} | {a['flops_per_example'] / 1e6:.1f} M"
                f" | {s['latency_ms_p50']:.2f} | {base['latency_ms_p50'] / s['latency_ms_p50']:.2f}x"
                f" | {s['throughput_examples_per_s']:.1f} | {s['throughput_examples_per_s'] / base['throughput_examples_per_s']:.2f}x |"
            )
    lines += ["", "FLOPs/ex: forward FLOPs (matmul convention, `greenlm.measure.count_flops`) at the mean SST-2 dev"
              " length in tokens; a sparse model computes its zeros in dense kernels, so its FLOPs do not drop.", ""]
    lines += ["What was run (all recovery/pruning training on SST-2 *train* subsets; dev only for evaluation and"
              " the best-epoch choice):", ""]
    for name, item in exp.items():
        c, d = item["config"], item["metrics"]["prune"]
        if c["method"] == "structured":
            what = (f"structured, {c['schedule']}" + (f" ({c['iterations']} rounds)" if c["schedule"] == "iterative" else "")
                    + f", head_sparsity {c['head_sparsity']}, ffn_sparsity {c['ffn_sparsity']},"
                    f" importance on {d['importance_examples']} train examples")
        else:
            what = f"{c['method']} pruning, cubic schedule to {c['sparsity']:.0%} of the encoder's linear weights"
        cost = (f"{item['wall_s']:.0f} s wall, {item['process_cpu_s']:.0f} s CPU" if item["wall_s"] >= 1
                else "reused: the finished output of an earlier run of this script with the same settings")
        lines.append(f"- **{name}**: {what}; recovery `{c['recovery']}` from the unpruned model, {c['epochs']} epoch(s) on"
                     f" {d['train_examples']} train examples, lr {c['learning_rate']}; {cost}.")
    if "sparse90" in exp:
        d = exp["sparse90"]["metrics"]["prune"]
        ck = d["checkpoint"]
        lines += [
            "",
            f"Unstructured: {d['sparsity']:.2%} of the encoder's linear weights are zero ({d['overall_sparsity']:.2%} of all"
            " parameters: the embeddings stay dense).",
            f"Checkpoint on disk: dense safetensors {ck['dense_safetensors_bytes'] / 1e6:.1f} MB; CSR safetensors"
            f" {ck['csr_safetensors_bytes'] / 1e6:.1f} MB (**{ck['csr_compression_ratio']:.2f}x smaller**); gzip of the dense"
            f" file {ck['dense_gzip_bytes'] / 1e6:.1f} MB. The CSR file stores matrices with >= 30% zeros as CSR (fp32 values,"
            " int16 column ids); the token embedding table (30522 x 384, dense) is most of what is left.",
            "Zeros in dense matrices give no speedup on CPU: the sparse90 row runs the same dense kernels as the teacher"
            " (any difference there is noise; compare the A/A control row); only the CSR-kernel row (torch.sparse.mm,"
            " MKL) can gain, and its figure is the one measured above.",
        ]
    if results.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {note}" for note in results["notes"]]
    lines += ["", "Targets (issue 6) against these figures:", ""]
    lines += targets(results)
    return "\n".join(lines) + "\n"


def targets(results) -> list[str]:
    exp, speed = results["experiments"], results["speed"]
    base = speed["teacher (dense)"]
    out = []
    if "heads" in exp and "heads" in speed:
        d = exp["heads"]["metrics"]["prune"]
        gain = base["latency_ms_p50"] / speed["heads"]["latency_ms_p50"]
        ok = d["head_sparsity"] >= 0.4 and d["accuracy_drop_points"] <= 1.0 and gain > 1.0
        out.append(f"- >= 40% of heads removed, <= 1.0 point drop, measured latency gain: {d['head_sparsity']:.0%} removed,"
                   f" {d['accuracy_drop_points']:.2f} points lost, latency x{gain:.2f} -> **{'met' if ok else 'missed'}**")
    if "heads_ffn" in exp and "heads_ffn" in speed:
        d = exp["heads_ffn"]["metrics"]["prune"]
        gain = speed["heads_ffn"]["throughput_examples_per_s"] / base["throughput_examples_per_s"]
        ok = gain >= 2.0 and d["accuracy_kept"] >= 0.99
        out.append(f"- heads + FFN to >= 2x throughput at >= 99% accuracy: throughput x{gain:.2f},"
                   f" {100 * d['accuracy_kept']:.1f}% of the teacher's accuracy -> **{'met' if ok else 'missed'}**")
    if "sparse90" in exp:
        d = exp["sparse90"]["metrics"]["prune"]
        ok = d["sparsity"] >= 0.899 and d["accuracy_kept"] >= 0.97
        out.append(f"- 90% unstructured sparsity at >= 97% of dense accuracy: {d['sparsity']:.1%} sparse,"
                   f" {100 * d['accuracy_kept']:.1f}% of the teacher's accuracy, checkpoint"
                   f" {d['checkpoint']['csr_compression_ratio']:.2f}x smaller on disk -> **{'met' if ok else 'missed'}**")
    return out


def write_doc(path: Path, section: str) -> None:
    """Replace this benchmark's section (up to the next '## ' heading), keeping every other section."""
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(path, text)


if __name__ == "__main__":
    main()
