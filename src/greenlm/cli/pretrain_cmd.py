"""``greenlm pretrain`` and ``greenlm pretrain-compare``: pre-train an encoder (greenlm.pretrain), no logic here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from greenlm.cli._common import MaxCo2eOpt, MaxKwhOpt, MaxUsdOpt, PueOpt, RegionOpt, budget_watch, err
from greenlm.pretrain.config import DEFAULT_MODEL, PretrainConfig

HELP = """Pre-train an encoder from scratch, or continue pre-training one (domain adaptation), with masked-LM or ELECTRA.

Masking (same budget for all: --mask-rate x non-special tokens per block): random (BERT), whole-word (whole words
until the budget), content-words (whole content words only: not scikit-learn's English stop words, not punctuation
or numbers). --vocab-size trains a WordPiece vocabulary of that size on the corpus. Writes a Hugging Face folder
(BertForMaskedLM, or ELECTRA's discriminator) that `greenlm train --model OUT` fine-tunes, with metrics.json
(masked-LM validation loss and perplexity, tokens/s, FLOPs in ELECTRA's and the matmul convention), pricetag.json
and README.md. Re-running the same command resumes. See docs/pretraining.md."""

COMPARE_HELP = """Pre-train the same small encoder under each objective and masking to one FLOPs budget (ELECTRA's
convention), fine-tune snapshots at several points of the budget on SST-2 and RTE, and write results.json and a
figure of accuracy against pre-training FLOPs and energy. Re-running resumes each arm."""


def pretrain_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (HF format, safetensors, metrics.json, pricetag.json).", show_default=False)],
    corpus: Annotated[str, typer.Option(help="A UTF-8 text file (one paragraph per line) or 'wikitext2'.")] = "wikitext2",
    model: Annotated[str, typer.Option("--model", "-m", help="'tiny:layers=..,hidden=..,heads=..,ffn=..,vocab=..,positions=..' (from scratch), 'minilm' or a local HF folder (continued).")] = DEFAULT_MODEL,
    objective: Annotated[str, typer.Option(help="mlm (BERT's masked LM) or electra (replaced-token detection, Clark et al. 2020).")] = "mlm",
    masking: Annotated[str, typer.Option(help="random, whole-word or content-words.")] = "random",
    mask_rate: Annotated[float, typer.Option("--mask-rate", help="Masked tokens / non-special tokens per block, in (0, 1).")] = 0.15,
    generator_fraction: Annotated[float, typer.Option("--generator-fraction", help="ELECTRA: generator width as a share of the discriminator's, in (0, 1].")] = 0.25,
    attention: Annotated[str, typer.Option("--attention", help="Self-attention: softmax, rfa, performer, t2r or abc, with options (rfa:features=64, abc:k=32); linear in length (docs/attention.md).")] = "softmax",
    vocab_size: Annotated[Optional[int], typer.Option("--vocab-size", help="Train a WordPiece vocabulary of this size on the corpus (default: the model's own; a tiny model's 'vocab=').")] = None,
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens per block, [CLS] and [SEP] included (above a pre-trained model's positions: the table is extended by copying).")] = 128,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Blocks per optimizer step.")] = 32,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (default 1000 unless --flops-budget).")] = None,
    flops_budget: Annotated[Optional[float], typer.Option("--flops-budget", help="Training FLOPs to spend (ELECTRA's convention), e.g. 1e15; sets the steps.")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW; linear warm-up, then linear decay).")] = 5e-4,
    warmup_ratio: Annotated[float, typer.Option("--warmup-ratio", help="Share of steps of linear warm-up.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Initialisation, block order, masking, dropout.")] = 42,
    precision: Annotated[str, typer.Option(help="auto (bf16 on a bf16 GPU, fp32 on CPU), bf16 or fp32.")] = "auto",
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Checkpoint every N steps (a killed run resumes from the last).")] = 200,
    eval_blocks: Annotated[int, typer.Option("--eval-blocks", help="Validation blocks scored for masked-LM loss and perplexity.")] = 256,
    region: RegionOpt = None,
    pue: PueOpt = None,
    max_kwh: MaxKwhOpt = None,
    max_co2e_kg: MaxCo2eOpt = None,
    max_usd: MaxUsdOpt = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar (a log line every 30 s instead).")] = False,
) -> None:
    from greenlm.measure import PriceTag
    from greenlm.pretrain.run import run_pretraining
    from greenlm.train.budget import budgeting

    watch = budget_watch(max_kwh, max_co2e_kg, max_usd, PriceTag("check", region=region, pue=pue, ledger=False))

    config = PretrainConfig(corpus=corpus, model=model, objective=objective, masking=masking, mask_rate=mask_rate,
                            generator_fraction=generator_fraction, attention=attention, vocab_size=vocab_size,
                            max_length=max_length, batch_size=batch_size, steps=steps, flops_budget=flops_budget,
                            learning_rate=lr, warmup_ratio=warmup_ratio, seed=seed, precision=precision,
                            checkpoint_every_steps=checkpoint_every, eval_blocks=eval_blocks)
    with budgeting(watch):
        result = run_pretraining(config, out, progress=not no_progress, on_note=lambda m: err(f"note: {m}"),
                                 region=region, pue=pue, command=" ".join(["greenlm", *sys.argv[1:]]))
    metrics = result.metrics
    valid = metrics.get("validation") or {}
    scores = ", ".join(f"{k} {v}" for k, v in valid.items() if k not in ("step", "epoch"))
    err(f"{result.status}: {result.folder} ({metrics['train']['steps']} steps, {metrics['train']['tokens_per_s']} tokens/s,"
        f" {metrics['flops']['electra']['train_flops']:.4g} training FLOPs (ELECTRA's convention); {scores})")


def compare_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the arms, the fine-tuning runs, results.json and the figure.", show_default=False)],
    flops_budget: Annotated[float, typer.Option("--flops-budget", help="Pre-training FLOPs per arm (ELECTRA's convention).", show_default=False)],
    corpus: Annotated[str, typer.Option(help="A UTF-8 text file or 'wikitext2'.")] = "wikitext2",
    model: Annotated[str, typer.Option("--model", "-m", help="The encoder every arm pre-trains (a tiny spec).")] = DEFAULT_MODEL,
    arms: Annotated[str, typer.Option(help="Comma-separated OBJECTIVE/MASKING pairs.")] = "mlm/random,mlm/whole-word,mlm/content-words,electra/random",
    fractions: Annotated[str, typer.Option(help="Points of the budget where a snapshot is fine-tuned, comma-separated (0: the untrained encoder, the baseline).")] = "0,0.25,0.5,1.0",
    tasks: Annotated[str, typer.Option(help="Fine-tuning tasks, comma-separated (bundled names or folders).")] = "sst2,rte",
    vocab_size: Annotated[Optional[int], typer.Option("--vocab-size", help="WordPiece vocabulary size (default: the tiny spec's).")] = None,
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens per pre-training block.")] = 128,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Blocks per pre-training step.")] = 32,
    finetune_rows: Annotated[int, typer.Option("--finetune-rows", help="Training rows per task for each fine-tuning (0: all).")] = 2000,
    finetune_epochs: Annotated[float, typer.Option("--finetune-epochs", help="Fine-tuning epochs.")] = 3.0,
    finetune_lr: Annotated[float, typer.Option("--finetune-lr", help="Fine-tuning learning rate (small encoders from little pre-training want a high one).")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed of every arm.")] = 42,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
) -> None:
    from greenlm.pretrain.compare import CompareConfig, run_compare

    config = CompareConfig(corpus=corpus, model=model, flops_budget=flops_budget, arms=_split(arms),
                           fractions=_floats(fractions), tasks=_split(tasks),
                           vocab_size=vocab_size, max_length=max_length, batch_size=batch_size,
                           finetune_rows=finetune_rows or None, finetune_epochs=finetune_epochs,
                           finetune_lr=finetune_lr, seed=seed)
    results = run_compare(config, out, progress=not no_progress, on_note=lambda m: err(f"note: {m}"))
    err(f"wrote {results['results_file']}" + (f" and {results['figure']}" if results.get("figure") else ""))


def _floats(value: str) -> tuple[float, ...]:
    from greenlm.common import GreenlmError

    try:
        return tuple(float(v) for v in _split(value))
    except ValueError:
        raise GreenlmError(f"--fractions must be numbers separated by commas, got '{value}'") from None


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def register(app: typer.Typer) -> None:
    app.command("pretrain", help=HELP)(pretrain_command)
    app.command("pretrain-compare", help=COMPARE_HELP)(compare_command)
