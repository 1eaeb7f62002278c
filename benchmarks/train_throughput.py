"""Issue 2 figure: greenlm's training loop vs a plain Hugging Face Trainer, side by side in one process.

Same model (the offline MiniLM teacher), same SST-2 training rows, same batch size, epochs, learning
rate, schedule, max length, seed and threads. What differs is what each loop does by default:
greenlm groups batches by length (dynamic padding of near-equal lengths), the Trainer pads each
random batch to its longest row (DataCollatorWithPadding). Both are timed around their training
calls only; dev accuracy is measured with the same evaluation code for both.

    python benchmarks/train_throughput.py --train-rows 4000 --epochs 1
writes the section "## Training throughput (issue 2)" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402


def run_greenlm(task, train_split, args, work: Path, precision: str = "fp32") -> dict:
    from greenlm.data import encode_split
    from greenlm.models import load_classifier
    from greenlm.train import TrainConfig, evaluate, train

    torch.manual_seed(args.seed)
    loaded = load_classifier("minilm", labels=list(task.labels))
    tok = loaded.tokenizer
    train_data = encode_split(train_split, tok, args.max_length)
    dev_data = encode_split(task.split("dev"), tok, args.max_length)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                         precision=precision, warmup_ratio=0.06, weight_decay=0.01, select_metric=None,
                         checkpoint_every_steps=10**9)
    started = time.perf_counter()
    result = train(loaded.model, train_data, None, config, pad_token_id=tok.pad_token_id, work_dir=work,
                   progress=False)
    seconds = time.perf_counter() - started
    dev = evaluate(loaded.model, dev_data, pad_token_id=tok.pad_token_id, num_labels=2)
    return {"seconds": seconds, "train_loop_seconds": result.state.train_seconds,
            "examples_per_s": len(train_split) * args.epochs / seconds, "dev_accuracy": dev["accuracy"],
            "steps": result.state.step}


def run_trainer(task, train_split, args, work: Path) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from greenlm.data import encode_split
    from greenlm.models import load_classifier
    from greenlm.train import evaluate

    torch.manual_seed(args.seed)
    loaded = load_classifier("minilm", labels=list(task.labels))
    tok = loaded.tokenizer
    encoded = encode_split(train_split, tok, args.max_length)
    rows = [{"input_ids": ids, "token_type_ids": tt, "labels": y}
            for ids, tt, y in zip(encoded.input_ids, encoded.token_type_ids, encoded.labels)]
    training_args = TrainingArguments(
        output_dir=str(work), per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
        learning_rate=args.lr, warmup_steps=0.06, weight_decay=0.01, lr_scheduler_type="linear", seed=args.seed,
        save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[], use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = Trainer(model=loaded.model, args=training_args, train_dataset=rows,
                      data_collator=DataCollatorWithPadding(tok))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    dev = evaluate(loaded.model, encode_split(task.split("dev"), tok, args.max_length),
                   pad_token_id=tok.pad_token_id, num_labels=2)
    return {"seconds": seconds, "examples_per_s": len(train_split) * args.epochs / seconds,
            "dev_accuracy": dev["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=8e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42, help="seed of the training subset")
    parser.add_argument("--seeds", default="42", help="training seeds (head init, batch order, dropout), comma-separated")
    parser.add_argument("--no-doc", action="store_true", help="print only; do not write docs/benchmarks.md")
    args = parser.parse_args()

    from greenlm.common.hardware import cpu_has_bf16
    from greenlm.data import load_task

    task = load_task("sst2")
    train_split = task.split("train").subset(args.train_rows, seed=args.seed)
    seeds = [int(x) for x in args.seeds.split(",")]
    runs = {"hf_trainer": [], "greenlm": [], "greenlm_bf16": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            run_args = argparse.Namespace(**{**vars(args), "seed": seed})
            # One run of each per seed, Trainer first so greenlm gets no warm-cache advantage.
            runs["hf_trainer"].append(run_trainer(task, train_split, run_args, Path(tmp) / f"trainer{seed}"))
            runs["greenlm"].append(run_greenlm(task, train_split, run_args, Path(tmp) / f"greenlm{seed}"))
        if cpu_has_bf16():  # what bf16 autocast would gain on this CPU (first seed only)
            run_args = argparse.Namespace(**{**vars(args), "seed": seeds[0]})
            runs["greenlm_bf16"].append(run_greenlm(task, train_split, run_args, Path(tmp) / "bf16", "bf16"))

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    results = {k: {"examples_per_s": mean(v, "examples_per_s"), "dev_accuracy": mean(v, "dev_accuracy"),
                   "seconds": mean(v, "seconds"), "runs": v} for k, v in runs.items() if v}
    ratio = results["greenlm"]["examples_per_s"] / results["hf_trainer"]["examples_per_s"]
    print(json.dumps({"args": vars(args), "results": results, "speedup_x": ratio}, indent=2))
    if args.no_doc:
        return
    g, t = results["greenlm"], results["hf_trainer"]
    b = results.get("greenlm_bf16")

    def per_seed(rows):
        return ", ".join(f"{100 * r['dev_accuracy']:.2f}" for r in rows)

    bf16_row = (f"| `greenlm train` loop, bf16 autocast (seed {seeds[0]} only) | {b['seconds']:.1f} |"
                f" {b['examples_per_s']:.1f} | {100 * b['dev_accuracy']:.2f}% | {per_seed(b['runs'])} |") if b else ""
    bf16_note = (f"bf16 autocast on this CPU: {b['examples_per_s'] / g['examples_per_s']:.2f}x the fp32 throughput."
                 " greenlm's `precision: auto` stays fp32 on CPU (bf16 only on GPUs that have it)"
                 + (": this measurement agrees." if b['examples_per_s'] <= g['examples_per_s'] else
                    ": on this run bf16 was faster, so that default deserves another look.")) if b else \
        "No native bf16 on this CPU."
    met = ratio >= 1.5 and g["dev_accuracy"] >= t["dev_accuracy"]
    body = f"""Command: `python benchmarks/train_throughput.py --train-rows {args.train_rows} --epochs {args.epochs:g} --seeds {args.seeds}`
Machine: {machine_line()}; date: {datetime.date.today().isoformat()}.
Setup: MiniLM-L6 (`minilm`), {args.train_rows:,} SST-2 train rows (seeded subset), batch {args.batch_size},
{args.epochs:g} epoch(s), AdamW lr {args.lr:g}, warm-up 6% + linear decay, max length {args.max_length}, fp32,
{torch.get_num_threads()} threads, one process, Trainer then greenlm for each training seed ({args.seeds}).

| loop | mean wall s | mean examples/s | mean dev accuracy | dev accuracy per seed (%) |
|---|---:|---:|---:|---|
| Hugging Face `Trainer` (DataCollatorWithPadding, random batches) | {t['seconds']:.1f} | {t['examples_per_s']:.1f} | {100 * t['dev_accuracy']:.2f}% | {per_seed(t['runs'])} |
| `greenlm train` loop (length-grouped batches) | {g['seconds']:.1f} | {g['examples_per_s']:.1f} | {100 * g['dev_accuracy']:.2f}% | {per_seed(g['runs'])} |
{bf16_row}

greenlm / Trainer throughput: **{ratio:.2f}x**, mean dev accuracy {100 * (g['dev_accuracy'] - t['dev_accuracy']):+.2f} points
(target: >= 1.5x with equal or better dev accuracy: **{"met" if met else "MISSED"}**). One dev example is 0.11 points.
{bf16_note}
"""
    write_section("Training throughput (issue 2)", body)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
