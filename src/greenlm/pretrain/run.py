"""``run_pretraining(config, out_dir)``: pre-train an encoder on the one training loop and write a model folder.

    result = run_pretraining(PretrainConfig(corpus="wikitext2", objective="electra"), "runs/electra-small")

In order:
1. Bad input stops before anything is written: the settings (PretrainConfig), the corpus (empty, binary, not
   UTF-8), the model spec and its tokenizer (whole-word and content-word masking need a fast one).
2. Identity: the settings, the corpus's sha256 and the greenlm version make the run's key. ``out_dir`` holding a
   finished run with this key is returned as it is; holding anything else, it is refused.
3. Lock and resume (``greenlm.common.workdir``): ``.OUT.lock`` keeps a second process out; ``.OUT.work`` holds the
   vocabulary, the loop's checkpoints and each attempt's price tag, so running the same thing again resumes and
   ends with the same weights as an uninterrupted run (batch order and masks are pure functions of
   (seed, epoch, batch position); the checkpoint holds the RNG for dropout and ELECTRA's sampling).
4. Training: ``greenlm.train.loop.train`` with a masking ``collate_fn`` and a masked-LM validation ``eval_fn``.
5. Output, written under the work folder and renamed into place: the encoder (``BertForMaskedLM``, or for ELECTRA
   the discriminator ``ElectraForPreTraining``; both load with ``AutoModelForSequenceClassification``, so with
   ``greenlm train --model OUT``), the tokenizer, ``generator/config.json`` (ELECTRA), ``metrics.json``,
   ``pricetag.json`` (every attempt added up) and ``README.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from greenlm.common import BudgetExceeded, GreenlmError, atomic_dir, atomic_write_json, atomic_write_text, move_into_place, read_json
from greenlm.common.workdir import claim, folder_lock
from greenlm.measure import PriceTag, PriceTagRecord, PriceTagWarning, combine_records, count_flops
from greenlm.pretrain.config import PretrainConfig
from greenlm.pretrain.corpus import Blocks, encode_blocks, locate, read_lines
from greenlm.pretrain.masking import IGNORE, batch_generator, replace, select, select_random
from greenlm.models.loading import _quiet_transformers as quiet_transformers
from greenlm.models.loading import mark_format_file
from greenlm.pretrain.models import build_models, source_tokenizer
from greenlm.train.budget import stage_spend
from greenlm.train.config import TrainConfig
from greenlm.train.loop import Callback, train

METRICS_FILE, PRICETAG_FILE = "metrics.json", "pricetag.json"
SNAPSHOT_EVERY_S = 30.0  # an attempt's price tag is saved this often, so a killed attempt still counts
EVAL_BATCH = 64


@dataclass
class PretrainResult:
    folder: Path
    status: str  # "ran" or "reused"
    metrics: dict
    pricetag: dict | None


def run_key(config: PretrainConfig, corpus_fingerprint: str) -> str:
    import hashlib

    from greenlm import __version__

    identity = {"config": config.to_dict(), "corpus": corpus_fingerprint, "greenlm": __version__}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def run_pretraining(config: PretrainConfig, out_dir: str | Path, *, progress: bool = True,
                    callbacks: tuple[Callback, ...] = (), on_note=print, region: str | None = None,
                    pue: float | None = None, command: str | None = None) -> PretrainResult:
    """Pre-train as ``config`` says into ``out_dir`` (resuming an interrupted run); see the module docstring."""
    out_dir = Path(out_dir)
    files = locate(config.corpus)
    train_lines = read_lines(files.train)
    valid_lines = read_lines(files.valid) if files.valid is not None else None
    old_tokenizer, _ = source_tokenizer(config.model)
    if config.masking != "random" and old_tokenizer is not None and config.vocab_size is None \
            and not getattr(old_tokenizer, "is_fast", False):
        raise GreenlmError(f"--masking {config.masking} needs word boundaries, which only a fast tokenizer gives;"
                           f" '{config.model}' has a slow one: use --masking random, or --vocab-size to train one")
    key = run_key(config, files.fingerprint())
    finished = _finished_key(out_dir)
    if finished == key:
        on_note(f"{out_dir} already holds this pre-training run: nothing to do")
        metrics = read_json(out_dir / METRICS_FILE)
        pricetag = read_json(out_dir / PRICETAG_FILE) if (out_dir / PRICETAG_FILE).is_file() else None
        return PretrainResult(out_dir, "reused", metrics, pricetag)
    if out_dir.exists():
        raise GreenlmError(f"{out_dir} exists and holds something else; choose another --out or remove it")

    work_dir = out_dir.parent / f".{out_dir.name}.work"
    with folder_lock(out_dir, holder=command or "greenlm pretrain"):
        claimed = claim(work_dir, key)
        if claimed.resumed:
            on_note(f"resuming from {work_dir}")
        attempts_dir = work_dir / "pricetags"
        attempts = _earlier_attempts(attempts_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PriceTagWarning)  # the default-PUE note is in the record itself
            tag = PriceTag("pretrain", region=region, pue=pue, stage="pretrain", ledger=True,
                           meta={"flops_convention": "electra"})
            with tag:
                metrics = _pretrain(config, files, train_lines, valid_lines, old_tokenizer, claimed.work_dir, tag,
                                    attempts, attempts_dir / f"{len(attempts) + 1:03d}.json", progress, callbacks,
                                    on_note)
        record = combine_records([*attempts, tag.record]) if attempts else tag.record
        metrics["key"] = key
        output = claimed.output_dir
        atomic_write_json(output / PRICETAG_FILE, record.to_dict())
        atomic_write_json(output / METRICS_FILE, metrics)
        atomic_write_text(output / "README.md", _model_card(config, metrics, record))
        move_into_place(output, out_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
    return PretrainResult(out_dir, "ran", metrics, record.to_dict())


def _finished_key(out_dir: Path) -> str | None:
    try:
        return read_json(out_dir / METRICS_FILE).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def _earlier_attempts(folder: Path) -> list[PriceTagRecord]:
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            records.append(PriceTagRecord.from_dict(read_json(path)))
        except (OSError, ValueError, TypeError):
            continue  # a snapshot cut short by the kill: that attempt goes uncounted
    return records


# ---- the run ---------------------------------------------------------------------------------------------------


def _pretrain(config, files, train_lines, valid_lines, old_tokenizer, work_dir: Path, tag, attempts, tag_file,
              progress, callbacks, on_note) -> dict:
    from greenlm.models import load_tokenizer

    tokenizer_dir = work_dir / "tokenizer"
    if not tokenizer_dir.is_dir():
        with atomic_dir(tokenizer_dir) as tmp:
            _make_tokenizer(config, train_lines, old_tokenizer).save_pretrained(tmp)
    tokenizer = load_tokenizer(str(tokenizer_dir))
    new_vocab = config.vocab_size is not None
    models = build_models(config.model, tokenizer, objective=config.objective,
                          generator_fraction=config.generator_fraction, disc_weight=config.disc_weight,
                          max_length=config.max_length, seed=config.seed, new_vocab=new_vocab,
                          old_tokenizer=old_tokenizer, attention=config.attention)
    for note in models.notes:
        on_note(note)
    train_blocks, valid_blocks, corpus_stats = _blocks(config, files, train_lines, valid_lines, tokenizer)
    per_example = _flops(config, models, steps=None)
    steps = _steps(config, per_example["electra"].train_flops_per_example)

    mask_id, vocab = tokenizer.mask_token_id, len(tokenizer)
    scheme = "electra" if config.objective == "electra" else "bert"

    def collate_fn(indices, epoch, batch_index):
        rows = train_blocks.take(torch.tensor(indices))
        generator = batch_generator(config.seed, epoch, batch_index)
        chosen = select(config.masking, rows.word_ids, rows.content, config.mask_rate, generator)
        masked, labels = replace(rows.input_ids, chosen, generator, mask_token_id=mask_id, vocab_size=vocab,
                                 scheme=scheme)
        return {"input_ids": masked, "attention_mask": torch.ones_like(masked), "labels": labels}

    def eval_fn(model):
        return evaluate_mlm(model, valid_blocks, config, mask_token_id=mask_id, vocab_size=vocab)

    train_config = TrainConfig(epochs=1e9, batch_size=config.batch_size, learning_rate=config.learning_rate,
                               weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio, seed=config.seed,
                               max_steps=steps, precision=config.precision, select_metric=None,
                               checkpoint_every_steps=config.checkpoint_every_steps, length_group_factor=1)
    per_step = {name: report.train_flops_per_example * config.batch_size for name, report in per_example.items()}
    watch = _Watch(tag, attempts, tag_file, per_step["electra"], config.checkpoint_every_steps)
    snapshot_steps = {0 if f == 0 else max(1, round(f * steps)) for f in config.snapshot_fractions}  # 0: before training
    snapshots = _Snapshots(config, snapshot_steps, models.encoder, tokenizer, work_dir / "output" / "snapshots", watch,
                           per_step, evaluate=lambda: eval_fn(models.model))
    description = f"pretrain {config.objective}/{config.masking}"
    try:
        with stage_spend(tag, attempts):  # a budget (--max-kwh ...) reads this run's price tag
            result = train(models.model, train_blocks, None, train_config, pad_token_id=tokenizer.pad_token_id,
                           work_dir=work_dir / "state", collate_fn=collate_fn, eval_fn=eval_fn,
                           callbacks=(watch, snapshots, *callbacks), progress=progress, description=description)
    except BudgetExceeded:  # stopped at a checkpoint: the attempt counts up to now when the run resumes
        watch.save(status="error: BudgetExceeded")
        raise
    tag.add_flops(per_step["electra"] * (result.state.step - watch.first_step))

    output = work_dir / "output"
    output.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        models.encoder.save_pretrained(output)
        tokenizer.save_pretrained(output)
        mark_format_file(output)  # a linear-attention encoder must not load as softmax in plain transformers
        if models.generator is not None:
            models.generator.config.save_pretrained(output / "generator")
    state = result.state
    tokens = state.examples_seen * result.num_processes * config.max_length
    return {
        "model": {"spec": config.model, "architecture": type(models.encoder).__name__,
                  "params": per_example["electra"].params},
        "objective": config.objective,
        "config": config.to_dict(),
        "corpus": {"name": files.name, "train_file": str(files.train),
                   "valid_file": str(files.valid) if files.valid else None, **corpus_stats},
        "vocabulary": _vocabulary_record(config, models, tokenizer, old_tokenizer, per_example),
        "masking": _masking_record(config, valid_blocks),
        "train": {"steps": state.step, "blocks": state.examples_seen * result.num_processes, "tokens": tokens,
                  "train_seconds": round(state.train_seconds, 3),
                  "tokens_per_s": round(tokens / state.train_seconds, 1) if state.train_seconds else None,
                  "precision": result.precision, "num_processes": result.num_processes, "history": state.history},
        "validation": state.history[-1] if state.history else None,
        "flops": {name: _flop_record(report, config, state.step) for name, report in per_example.items()},
        "greenlm_flops_command": _flops_command(config, state.step),
        "snapshots": snapshots.records(),
        "notes": models.notes,
    }


def _make_tokenizer(config, lines, old_tokenizer):
    from greenlm.models import TinySpec, resolve_model_source
    from greenlm.pretrain.vocab import train_wordpiece

    size = config.vocab_size
    if size is None and old_tokenizer is None:
        size = TinySpec.parse(resolve_model_source(config.model).location).vocab
    if size is None:
        return old_tokenizer
    return train_wordpiece(lines, size, config.max_length)


def _blocks(config, files, train_lines, valid_lines, tokenizer) -> tuple[Blocks, Blocks, dict]:
    blocks, stats = encode_blocks(train_lines, tokenizer, config.max_length)
    if valid_lines is not None:
        valid, valid_stats = encode_blocks(valid_lines, tokenizer, config.max_length)
        train_blocks = blocks
    else:
        n_valid = max(1, round(config.valid_fraction * len(blocks)))
        train_blocks, valid = blocks.take(slice(0, len(blocks) - n_valid)), blocks.take(slice(len(blocks) - n_valid, None))
        valid_stats = {"blocks": len(valid), "held_out_from": "train (its last blocks)"}
    if len(train_blocks) < config.batch_size or len(valid) == 0:
        raise GreenlmError(f"corpus '{files.name}' is too small: {stats['tokens']} tokens make {len(train_blocks)}"
                           f" training block(s) of {config.max_length} (need a batch of {config.batch_size}, plus"
                           " validation blocks); give more text, or lower --max-length / --batch-size")
    valid = valid.take(slice(0, config.eval_blocks))
    return train_blocks, valid, {"train": {**stats, "blocks": len(train_blocks)},
                                 "valid": {**valid_stats, "blocks_scored": len(valid)}}


def _flops(config, models, steps):
    generator = models.generator if config.objective == "electra" else None
    return {convention: count_flops(models.encoder, config.max_length, convention=convention,
                                    pretraining=config.objective, generator=generator)
            for convention in ("electra", "matmul")}


def _steps(config, train_flops_per_example: float) -> int:
    if config.steps is not None:
        return config.steps
    if config.flops_budget is None:
        return config.default_steps
    per_step = train_flops_per_example * config.batch_size
    steps = int(config.flops_budget // per_step)
    if steps < 1:
        raise GreenlmError(f"a FLOPs budget of {config.flops_budget:.4g} buys no step: one step of {config.batch_size}"
                           f" blocks costs {per_step:.4g} FLOPs (ELECTRA's convention)")
    return steps


def _flop_record(report, config, steps: int) -> dict:
    return {"convention": report.convention, "train_flops_per_block": report.train_flops_per_example,
            "train_flops": report.train_flops_per_example * config.batch_size * steps,
            "infer_flops_per_block": report.infer_flops_per_example, "seq_len": config.max_length,
            "train_steps": steps, "batch_size": config.batch_size, "pretraining": config.objective}


def _flops_command(config, steps: int) -> str:
    generator = " --generator OUT/generator" if config.objective == "electra" else ""
    return (f"greenlm flops OUT --seq-len {config.max_length} --convention electra --pretraining {config.objective}"
            f"{generator} --train-steps {steps} --batch-size {config.batch_size}")


# ---- evaluation and records ------------------------------------------------------------------------------------


def evaluate_mlm(model, blocks: Blocks, config: PretrainConfig, *, mask_token_id: int, vocab_size: int) -> dict:
    """Masked-LM loss and perplexity on ``blocks``, always with BERT's random masking at ``config.mask_rate`` and
    the same masks every time (so runs with different maskings compare); for ELECTRA, the generator's, plus the
    discriminator's loss and accuracy on replaced-token detection."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    electra = hasattr(model, "discriminator")
    mlm = model.generator if electra else model
    masks = torch.Generator().manual_seed(config.seed + 1)
    samples = torch.Generator().manual_seed(config.seed + 2)
    loss_sum = predicted = disc_loss = disc_right = disc_tokens = 0.0
    with torch.no_grad():
        for start in range(0, len(blocks), EVAL_BATCH):
            rows = blocks.take(slice(start, start + EVAL_BATCH))
            chosen = select_random(rows.word_ids, config.mask_rate, masks)
            masked, labels = replace(rows.input_ids, chosen, masks, mask_token_id=mask_token_id,
                                     vocab_size=vocab_size, scheme="bert")
            masked, labels = masked.to(device), labels.to(device)
            attention = torch.ones_like(masked)
            logits = mlm(input_ids=masked, attention_mask=attention).logits.float()
            loss_sum += float(torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1),
                                                                ignore_index=IGNORE, reduction="sum"))
            predicted += float((labels != IGNORE).sum())
            if electra:
                out = model(input_ids=masked, attention_mask=attention, labels=labels, sample_generator=samples)
                disc_loss += float(out.discriminator_loss) * masked.numel()
                disc_right += float(((out.discriminator_logits > 0) == out.replaced).sum())
                disc_tokens += masked.numel()
    model.train(was_training)
    loss = loss_sum / max(predicted, 1.0)
    key = "generator_mlm" if electra else "mlm"
    metrics = {f"{key}_loss": round(loss, 5), f"{key}_perplexity": round(math.exp(min(loss, 50.0)), 3)}
    if electra:
        metrics["disc_loss"] = round(disc_loss / disc_tokens, 5)
        metrics["disc_accuracy"] = round(disc_right / disc_tokens, 5)
    return metrics


def _masking_record(config: PretrainConfig, blocks: Blocks) -> dict:
    """What the training masking does, measured on the validation blocks with the training strategy."""
    from greenlm.pretrain.content_words import stop_list_source

    generator = torch.Generator().manual_seed(config.seed + 3)
    chosen = select(config.masking, blocks.word_ids, blocks.content, config.mask_rate, generator)
    candidates = int((blocks.word_ids >= 0).sum())
    masked = int(chosen.sum())
    return {"strategy": config.masking, "rate": config.mask_rate,
            "budget": "max(1, round(rate x non-special tokens)) tokens per block, the same for every strategy",
            "replacement": "85% [MASK], 15% kept (ELECTRA)" if config.objective == "electra"
            else "80% [MASK], 10% random token, 10% kept (BERT)",
            "masked_share": round(masked / max(candidates, 1), 5),
            "content_share_of_masked": round(int((chosen & blocks.content).sum()) / max(masked, 1), 5),
            "content_share_of_tokens": round(int(blocks.content.sum()) / max(candidates, 1), 5),
            "measured_on": f"{len(blocks)} validation blocks", "content_words": stop_list_source()}


def _vocabulary_record(config, models, tokenizer, old_tokenizer, per_example) -> dict:
    """The vocabulary's size and, for a vocabulary trained here, what it saves against the model's own."""
    from greenlm.models import TinySpec, resolve_model_source

    record = {"size": len(tokenizer), "trained_on_corpus": config.vocab_size is not None or old_tokenizer is None}
    if config.vocab_size is None:
        return record
    if old_tokenizer is not None:
        reference = len(old_tokenizer)
    else:
        reference = TinySpec.parse(resolve_model_source(config.model).location).vocab
    record["reference_size"] = reference
    if reference == len(tokenizer):
        return record
    encoder_config = _with_vocab(models.encoder.config, reference)
    generator = _with_vocab(models.generator.config, reference) if models.generator is not None else None
    ref = count_flops(encoder_config, config.max_length, convention="electra", pretraining=config.objective,
                      generator=generator)
    ours = per_example["electra"]
    record["params_saved"] = ref.params["total"] - ours.params["total"]
    record["train_flops_per_block_saved"] = ref.train_flops_per_example - ours.train_flops_per_example
    record["reference_params"] = ref.params["total"]
    record["reference_train_flops_per_block"] = ref.train_flops_per_example
    return record


def _with_vocab(model_config, vocab_size: int):
    import copy

    clone = copy.deepcopy(model_config)
    clone.vocab_size = vocab_size
    return clone


def _model_card(config: PretrainConfig, metrics: dict, record) -> str:
    flops = metrics["flops"]["electra"]
    valid = metrics.get("validation") or {}
    scores = ", ".join(f"{k} {v}" for k, v in valid.items() if k not in ("step", "epoch"))
    energy = f"{record.energy_kwh:.4g} kWh" if record.energy_kwh is not None else "not measured"
    return f"""# Pre-trained with greenlm ({config.objective}, {config.masking} masking)

- model: `{config.model}` -> `{metrics['model']['architecture']}`, {metrics['model']['params']['total']:,} parameters
- corpus: {metrics['corpus']['name']}; vocabulary {metrics['vocabulary']['size']:,} tokens
- {metrics['train']['steps']} steps x {config.batch_size} blocks x {config.max_length} tokens; {metrics['train']['tokens_per_s']} tokens/s
- training FLOPs: {flops['train_flops']:.4g} (ELECTRA's convention), {metrics['flops']['matmul']['train_flops']:.4g} (matmul)
- validation: {scores or 'none'}
- price tag: {record.wall_s:.1f} s, energy {energy}

Fine-tune: `greenlm train --model THIS_FOLDER --task sst2`. Load: `transformers.AutoModel.from_pretrained(...)`.
Recount the FLOPs: `{metrics['greenlm_flops_command']}` (OUT = this folder).
"""


# ---- callbacks -------------------------------------------------------------------------------------------------


class _Watch(Callback):
    """The step this attempt started from, and the attempt's price tag saved at every checkpoint and at least every
    SNAPSHOT_EVERY_S seconds (a killed attempt counts up to its last save)."""

    def __init__(self, tag, attempts, path: Path, flops_per_step: float, checkpoint_every: int):
        self.tag, self.attempts, self.path, self.flops_per_step = tag, attempts, Path(path), flops_per_step
        self.checkpoint_every = checkpoint_every
        self.first_step = self.step = 0
        self._last = 0.0

    def on_train_begin(self, state) -> None:
        self.first_step = self.step = state.step
        self._last = time.monotonic()

    def on_step_end(self, state) -> None:
        self.step = state.step
        if state.step % self.checkpoint_every == 0 or time.monotonic() - self._last >= SNAPSHOT_EVERY_S:
            self._last = time.monotonic()
            self.save()

    def save(self, status: str | None = None) -> None:
        """The attempt's price tag so far, with the FLOPs of its steps (``status``: an attempt that has stopped)."""
        record = self.tag.peek()
        record.flops = self.flops_per_step * (self.step - self.first_step)
        if status is not None:
            record = dataclasses.replace(record, status=status)
        atomic_write_json(self.path, record.to_dict())

    def energy_so_far(self) -> float | None:
        values = [r.energy_kwh for r in self.attempts] + [self.tag.peek().energy_kwh]
        return None if any(v is None for v in values) else float(sum(values))


class _Snapshots(Callback):
    """Save the encoder at the given steps (snapshots/step-N: a model folder plus snapshot.json)."""

    def __init__(self, config, steps: set[int], encoder, tokenizer, folder: Path, watch: _Watch, per_step: dict,
                 evaluate):
        self.steps = steps
        self.encoder, self.tokenizer, self.folder, self.watch, self.per_step = encoder, tokenizer, folder, watch, per_step
        self.config, self.evaluate = config, evaluate

    def _save(self, state) -> None:
        target = self.folder / f"step-{state.step}"
        if state.step not in self.steps or target.is_dir():
            return
        with atomic_dir(target) as tmp, quiet_transformers():
            self.encoder.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            mark_format_file(tmp)
            atomic_write_json(tmp / "snapshot.json", {
                "step": state.step, "blocks": state.examples_seen, "tokens": state.examples_seen * self.config.max_length,
                "train_flops_electra": self.per_step["electra"] * state.step,
                "train_flops_matmul": self.per_step["matmul"] * state.step,
                "energy_kwh": self.watch.energy_so_far(), "validation": self.evaluate()})

    on_train_begin = _save  # a run killed right after the checkpoint at a snapshot step saves it on resume
    on_step_end = _save

    def records(self) -> list[dict]:
        out = []
        for step in sorted(self.steps):
            path = self.folder / f"step-{step}" / "snapshot.json"
            if path.is_file():
                out.append({"folder": f"snapshots/step-{step}", **read_json(path)})
        return out
