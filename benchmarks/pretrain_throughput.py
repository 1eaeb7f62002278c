"""Issue 17 figure: `greenlm pretrain` (masked LM) against a plain Hugging Face Trainer with
DataCollatorForLanguageModeling, side by side in one process, in training tokens per second.

Same model (a BERT masked LM of the tiny spec, same config and initial weights), same WikiText-2 blocks of
--max-length tokens (greenlm's own tokenizer and blocks, handed to the Trainer as lists of ids), same batch size,
steps, learning rate, warm-up, weight decay, precision (fp32) and threads. What each does is its own default:
greenlm draws exactly 15% of each block's tokens per step (BERT's 80/10/10 replacement), the collator draws each
token with probability 0.15 (the same replacement). Both are timed around their training loops only: greenlm's
`train.train_seconds` (forward, backward, step; checkpoints and evaluation excluded), the Trainer's
`train_runtime` (its whole `train()` loop, with checkpointing and evaluation off). The two alternate for
--rounds rounds and each keeps its best round (the load of the machine is stated).

    python benchmarks/pretrain_throughput.py --steps 60 --rounds 2
writes the section "Pre-training throughput: greenlm pretrain vs Hugging Face Trainer (issue 17)".
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402


def run_greenlm(args, out: Path) -> tuple[float, Path]:
    from greenlm.pretrain import PretrainConfig, run_pretraining

    config = PretrainConfig(corpus="wikitext2", model=args.model, objective="mlm", masking="random", steps=args.steps,
                            batch_size=args.batch_size, max_length=args.max_length, precision="fp32",
                            checkpoint_every_steps=10**6, eval_blocks=8, seed=args.seed)
    run_pretraining(config, out, progress=False, on_note=lambda _: None)
    metrics = json.loads((out / "metrics.json").read_text())
    return float(metrics["train"]["tokens_per_s"]), out


def run_hf(args, greenlm_folder: Path, work: Path) -> float:
    from transformers import (AutoTokenizer, BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments)

    from greenlm.pretrain.corpus import encode_blocks, locate, read_lines

    tokenizer = AutoTokenizer.from_pretrained(greenlm_folder)
    blocks, _ = encode_blocks(read_lines(locate("wikitext2").train), tokenizer, args.max_length)
    rows = [{"input_ids": ids} for ids in blocks.input_ids.tolist()]
    torch.manual_seed(args.seed)
    model = BertForMaskedLM(BertConfig.from_pretrained(greenlm_folder))
    training = TrainingArguments(output_dir=str(work), per_device_train_batch_size=args.batch_size,
                                 max_steps=args.steps, learning_rate=5e-4, warmup_steps=max(1, args.steps // 10), weight_decay=0.01,
                                 lr_scheduler_type="linear", save_strategy="no", eval_strategy="no",
                                 logging_steps=10**6, report_to=[], use_cpu=True, seed=args.seed,
                                 dataloader_num_workers=0, disable_tqdm=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)
    result = Trainer(model=model, args=training, train_dataset=rows, data_collator=collator).train()
    runtime_s = float(result.metrics["train_runtime"])
    return args.steps * args.batch_size * args.max_length / runtime_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny:layers=4,hidden=256,heads=4,ffn=1024,vocab=8000,positions=128")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-doc", action="store_true", help="print only; do not write docs/benchmarks.md")
    args = parser.parse_args()

    greenlm_tps, hf_tps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            tps, folder = run_greenlm(args, Path(tmp) / f"greenlm-{round_}")
            greenlm_tps.append(tps)
            hf_tps.append(run_hf(args, folder, Path(tmp) / f"hf-{round_}"))
            print(f"round {round_ + 1}: greenlm {tps:.0f} tokens/s, HF Trainer {hf_tps[-1]:.0f} tokens/s", flush=True)
    best_g, best_h = max(greenlm_tps), max(hf_tps)
    command = "python benchmarks/pretrain_throughput.py " + " ".join(sys.argv[1:])
    body = f"""Command: `{command.strip()}` ({datetime.date.today().isoformat()}).
Machine: {machine_line()}.

Model `{args.model}` (BERT masked LM), WikiText-2 train blocks of {args.max_length} tokens, batch {args.batch_size},
{args.steps} steps, fp32, lr 5e-4 with 10% warm-up, both loops alternating for {args.rounds} rounds (best round each).

| loop | training tokens/s (best) | every round |
|---|---|---|
| `greenlm pretrain` (exact 15% per block, 80/10/10) | {best_g:,.0f} | {', '.join(f'{t:,.0f}' for t in greenlm_tps)} |
| HF `Trainer` + `DataCollatorForLanguageModeling` (p = 0.15) | {best_h:,.0f} | {', '.join(f'{t:,.0f}' for t in hf_tps)} |

greenlm / Trainer: **{best_g / best_h:.2f}x** (aim: at least 1.0x, i.e. at least as fast).
"""
    print(body)
    if not args.no_doc:
        write_section("Pre-training throughput: greenlm pretrain vs Hugging Face Trainer (issue 17)", body)


if __name__ == "__main__":
    main()
