"""Issue 17 figure: a small vocabulary against BERT's 30k size, at equal pre-training compute.

The same small encoder is pre-trained twice with `greenlm pretrain`'s own comparison function
(`greenlm.pretrain.run_compare`: MLM, random masking, WikiText-2, the same FLOPs budget in ELECTRA's convention),
once with a WordPiece vocabulary of 8,000 tokens and once of 30,522 (BERT's size), both trained on the corpus by
`--vocab-size` so that only the size differs. Snapshots (0 = untrained) are fine-tuned on SST-2 and RTE (best epoch
on a validation split carved from train, accuracy on dev). The table gives, per vocabulary: its real size, the
encoder's parameters (and the embeddings' share), the saved folder's size on disk, pre-training FLOPs per block and
the steps the budget bought, SST-2 dev tokens per sentence under that tokenizer (a smaller vocabulary cuts words into
more pieces) and the inference FLOPs of a classifier at that mean length, MLM validation loss, dev accuracies, energy.

    python benchmarks/vocab_size.py --out runs/vocab-compare --flops-budget 4e13
writes the section "A vocabulary of 8k against 30k (issue 17)". Re-running reuses finished arms and fine-tunings.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402

SHAPE = "layers=2,hidden=128,heads=2,ffn=512,positions=128"


def _encoder_numbers(folder: Path, dev_texts: list[str]) -> dict:
    """Parameters, disk size and tokens per SST-2 dev sentence of one pre-trained encoder folder."""
    from transformers import AutoModelForMaskedLM

    from greenlm.measure.flops import count_flops
    from greenlm.models.loading import load_tokenizer, model_config

    config = model_config(folder)
    model = AutoModelForMaskedLM.from_pretrained(str(folder))
    encoder = model.base_model
    params = sum(p.numel() for p in encoder.parameters())
    embeddings = encoder.embeddings.word_embeddings.weight.numel()
    tokenizer = load_tokenizer(str(folder))
    ids = tokenizer(dev_texts, truncation=False)["input_ids"]
    lengths = [len(row) for row in ids]  # [CLS] and [SEP] included
    mean_tokens = sum(lengths) / len(lengths)
    seq_len = max(1, round(mean_tokens))
    flops = count_flops(config, seq_len, head="sequence-classification", num_labels=2)
    disk = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    unk_share = sum(row.count(tokenizer.unk_token_id) for row in ids) / max(1, sum(lengths))
    return {"vocab": len(tokenizer), "params": params, "embedding_params": embeddings, "disk_bytes": disk,
            "dev_tokens_mean": mean_tokens, "infer_flops_at_mean": flops.infer_flops_per_example,
            "unk_share": unk_share}


def main() -> None:
    from greenlm.data import load_task
    from greenlm.pretrain import CompareConfig, run_compare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/vocab-compare")
    parser.add_argument("--vocabs", default="8000,30522")
    parser.add_argument("--flops-budget", type=float, default=4e13)
    parser.add_argument("--fractions", default="0,0.5,1")
    parser.add_argument("--finetune-rows", type=int, default=20000)
    parser.add_argument("--finetune-epochs", type=float, default=2.0)
    parser.add_argument("--finetune-lr", type=float, default=5e-4)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()

    dev_texts = list(load_task("sst2").split("dev").text_a)
    results = {}
    for vocab in (int(v) for v in args.vocabs.split(",")):
        config = CompareConfig(flops_budget=args.flops_budget, model=f"tiny:{SHAPE},vocab={vocab}",
                               arms=("mlm/random",), fractions=tuple(float(f) for f in args.fractions.split(",")),
                               tasks=("sst2", "rte"), vocab_size=vocab, finetune_rows=args.finetune_rows,
                               finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr)
        out = Path(args.out) / f"v{vocab}"
        compared = run_compare(config, out, progress=False, on_note=lambda m: print(m, flush=True))
        folder = out / "arms" / "mlm-random"
        metrics = json.loads((folder / "metrics.json").read_text())
        results[vocab] = {"rows": compared["rows"], "encoder": _encoder_numbers(folder, dev_texts),
                          "flops": metrics["flops"]["electra"], "train": metrics["train"]}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "vocab_size.json").write_text(json.dumps(results, indent=2, default=str))

    lines = ["| vocabulary (asked / real) | encoder params | embeddings | folder MB | pre-training FLOPs per block"
             " | steps in the budget | SST-2 dev tokens per sentence | classifier FLOPs per sentence | [UNK] share"
             " | MLM validation loss | SST-2 dev (untrained -> half -> full budget) | RTE dev (same) | pre-training kWh |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for vocab, r in results.items():
        e, rows = r["encoder"], r["rows"]
        steps = sorted({row["step"] for row in rows})
        by = {(row["step"], row["task"]): row for row in rows}
        last = by[(steps[-1], "sst2")]
        loss = (last.get("validation") or {}).get("mlm_loss")

        def accuracies(task):
            return " -> ".join(f"{by[(s, task)]['dev_accuracy'] * 100:.2f}" for s in steps)
        lines.append(
            f"| {vocab:,} / {e['vocab']:,} | {e['params'] / 1e6:.2f} M | {e['embedding_params'] / 1e6:.2f} M"
            f" ({100 * e['embedding_params'] / e['params']:.0f}%) | {e['disk_bytes'] / 1e6:.1f} |"
            f" {r['flops']['train_flops_per_block']:.3g} | {r['train']['steps']} | {e['dev_tokens_mean']:.1f} |"
            f" {e['infer_flops_at_mean']:.3g} | {100 * e['unk_share']:.2f}% |"
            f" {f'{loss:.3f}' if isinstance(loss, (int, float)) else 'n/a'} | {accuracies('sst2')} |"
            f" {accuracies('rte')} | {last['pretrain_energy_kwh']:.2e} |")
    command = "python benchmarks/vocab_size.py " + " ".join(sys.argv[1:])
    body = "\n".join([
        f"Command: `{command.strip()}` ({datetime.date.today().isoformat()}).", f"Machine: {machine_line()}.", "",
        f"Encoder `tiny:{SHAPE}` with each vocabulary, pre-trained by `greenlm pretrain` (MLM, random 15% masking) on "
        f"WikiText-2 (Merity et al. 2016; ../shared/data/wikitext2, CC BY-SA) to {args.flops_budget:.2g} FLOPs each "
        "(ELECTRA's convention: the budget buys more steps for the cheaper model), blocks of 128 tokens, batch 32; "
        "both vocabularies are WordPiece trained on WikiText-2 (`--vocab-size`), so only the size differs. "
        f"Snapshots fine-tuned on {args.finetune_rows} rows of SST-2 and all of RTE, {args.finetune_epochs:g} epochs, "
        f"lr {args.finetune_lr:g}, best epoch on the validation split carved from train. Parameters: the encoder "
        "(no MLM head; the head's decoder is tied to the embeddings); folder MB: the saved pre-training folder; "
        "classifier FLOPs: one forward of the encoder with a 2-label head at the mean SST-2 dev length under that "
        "tokenizer (greenlm's matmul count).", "", *lines, "",
        "Raw figures: `benchmarks/results/vocab_size.json`.",
    ])
    results_file = Path(__file__).resolve().parent / "results" / "vocab_size.json"
    results_file.write_text(json.dumps(results, indent=2, default=str))
    print(body)
    if not args.no_doc:
        write_section("A vocabulary of 8k against 30k (issue 17)", body)


if __name__ == "__main__":
    main()
