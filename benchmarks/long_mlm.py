"""Issue 18 figure: masked-LM perplexity on 2,048-token WikiText-2 windows, one pre-training per attention, same budget.

    python benchmarks/long_mlm.py [--out runs/long-mlm] [--steps 150] [--max-length 2048]
        [--attentions softmax,rfa,performer,abc]

Each arm is `greenlm pretrain` (through its Python function, `greenlm.pretrain.run_pretraining`: the same code as
the command, so a killed benchmark resumes) of the same small encoder from scratch on WikiText-2's train file in
blocks of --max-length tokens, with the same vocabulary (WordPiece of 8,000 trained on the corpus), seed, batch and
steps: the same tokens seen. Only the self-attention differs. Scored on WikiText-2's validation windows of the same
length (masked-LM loss and perplexity with the same random 15% masks for every arm). Each arm's training FLOPs are
counted for its own attention; energy is its price tag (an estimate on this CPU). Writes
benchmarks/results/long_mlm.json and the section "Long inputs: masked-LM perplexity on 2,048-token WikiText-2
windows (issue 18)" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "long_mlm.json"


def main() -> None:
    from greenlm.pretrain.config import PretrainConfig
    from greenlm.pretrain.run import run_pretraining

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/long-mlm")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--attentions", default="softmax,rfa,performer,abc")
    parser.add_argument("--eval-blocks", type=int, default=48)
    args = parser.parse_args()
    model = f"tiny:layers=2,hidden=128,heads=4,ffn=512,vocab=8000,positions={args.max_length}"
    rows = []
    for attention in args.attentions.split(","):
        config = PretrainConfig(corpus="wikitext2", model=model, objective="mlm", masking="random", vocab_size=8000,
                                attention=attention, max_length=args.max_length, batch_size=args.batch_size,
                                steps=args.steps, learning_rate=1e-3, checkpoint_every_steps=25,
                                eval_blocks=args.eval_blocks)
        name = attention.split(":")[0]
        result = run_pretraining(config, Path(args.out) / name, progress=False,
                                 on_note=lambda m, n=name: print(f"{n}: {m}", flush=True))
        m, tag = result.metrics, result.pricetag
        valid = m.get("validation") or {}
        rows.append({"attention": name, "spec": attention, "steps": m["train"]["steps"],
                     "tokens": m["train"].get("tokens"), "tokens_per_s": m["train"]["tokens_per_s"],
                     "mlm_loss": valid.get("mlm_loss"), "mlm_perplexity": valid.get("mlm_perplexity"),
                     "train_flops_matmul": m["flops"]["matmul"]["train_flops"],
                     "train_flops_electra": m["flops"]["electra"]["train_flops"],
                     "energy_kwh": tag.get("energy_kwh"), "wall_s": tag.get("wall_s"),
                     "energy_source": tag.get("energy_source")})
        print(json.dumps(rows[-1]), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"date": datetime.date.today().isoformat(), "machine": machine_line(),
                                   "model": model, "args": vars(args), "rows": rows}, indent=1) + "\n")
    table = ["| attention | MLM loss | perplexity | tokens/s | training FLOPs (matmul) | kWh | wall min |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        table.append(f"| {r['spec']} | {r['mlm_loss']:.3f} | {r['mlm_perplexity']:.1f} | {r['tokens_per_s']:.0f} |"
                     f" {r['train_flops_matmul']:.2e} | {r['energy_kwh']:.2e} | {r['wall_s'] / 60:.1f} |")
    body = f"""Command: `python benchmarks/long_mlm.py --steps {args.steps} --max-length {args.max_length}`
({datetime.date.today().isoformat()}; machine: {machine_line()}).

`greenlm pretrain` of `{model}` from scratch on WikiText-2 (train file), blocks of {args.max_length} tokens, WordPiece
vocabulary of 8,000 trained on the corpus, masked LM with random 15% masking, batch {args.batch_size}, {args.steps}
steps (the same {args.steps * args.batch_size * args.max_length:,} tokens for every arm), peak learning rate 1e-3,
seed 42. Scored on {args.eval_blocks} WikiText-2 validation windows of {args.max_length} tokens (masked-LM loss and
perplexity, the same masks for every arm). Energy: each run's price tag (TDP x CPU time + RAM estimate, no RAPL here).

{chr(10).join(table)}

Raw figures: `benchmarks/results/long_mlm.json`. This is a small model after a short training (perplexities are far
from a converged model's); the comparison is of the attentions at one equal budget of tokens, not of a
state-of-the-art language model."""
    write_section(f"Long inputs: masked-LM perplexity on {args.max_length:,}-token WikiText-2 windows (issue 18)", body)
    print(body)


if __name__ == "__main__":
    main()
