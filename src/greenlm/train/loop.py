"""The one training loop: fine-tuning now, distillation, pruning and early-exit heads later.

Built on Hugging Face Accelerate, so the same code runs on one CPU, several processes (gloo), one GPU
or many. What it does, in order, every optimizer step:
  forward (bf16 autocast where supported) -> loss (cross-entropy, or the caller's ``loss_fn``) ->
  backward (accumulated over ``grad_accum_steps`` micro-batches) -> clip -> AdamW -> LR schedule.
Batches are length-grouped (short sentences are not padded to long ones) and their order is a pure
function of (seed, epoch), which is what makes resume exact: a checkpoint stores the epoch, the
batch position, the optimizer, the scheduler and the RNG, and a resumed run replays the same batches.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from greenlm.common import GreenlmError
from greenlm.data import EncodedSplit, collate, length_grouped_batches
from greenlm.runtime import predict_logits
from greenlm.common.progress import ProgressBar
from greenlm.train.checkpoint import has_checkpoint, load_checkpoint, rng_state, save_checkpoint
from greenlm.train.config import TrainConfig
from greenlm.train.metrics import classification_metrics
from greenlm.train.budget import budget_point
from greenlm.train.pause import pause_point
from greenlm.train.trackers import TrackerLog, active_tracking
from greenlm.train.precision import resolve_precision


LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]
# collate_fn(indices, epoch, batch_index) -> batch: replaces padding + labels (pretraining masks here; a pure
# function of its arguments keeps resume exact). eval_fn(model) -> metrics: replaces classification metrics.
CollateFn = Callable[[list, int, int], dict]
EvalFn = Callable[[torch.nn.Module], dict]


class Callback:
    """Hooks into the loop. Override what you need; every hook receives the live ``TrainState``.

    A callback with ``wants_train_logits = True`` gets ``on_train_logits`` after each training forward pass (plain
    cross-entropy training only: with a ``loss_fn`` the loop has no logits to give): the micro-batch's row indices
    in ``train_data`` and its logits [batch, labels], detached, in the training precision. ``on_save`` runs on the
    main process just before each checkpoint is written, so a callback's own state is never older than the
    checkpoint a resumed run starts from (replayed steps may overwrite it; they compute the same values).
    """

    wants_train_logits: bool = False

    def on_train_begin(self, state: "TrainState") -> None: ...

    def on_train_logits(self, state: "TrainState", indices: list, logits: torch.Tensor) -> None: ...

    def on_save(self, state: "TrainState") -> None: ...

    def on_step_end(self, state: "TrainState") -> None: ...

    def on_evaluate(self, state: "TrainState", metrics: dict) -> None: ...

    def on_train_end(self, state: "TrainState") -> None: ...


@dataclass
class TrainState:
    epoch: int = 0  # epoch in progress
    batch_in_epoch: int = 0  # next micro-batch of this epoch to run
    step: int = 0  # optimizer steps done
    total_steps: int = 0
    examples_seen: int = 0  # by this process
    train_seconds: float = 0.0  # forward/backward/step time, excluding evaluation and checkpoints
    last_loss: float = float("nan")
    best_metric: float | None = None
    best_step: int | None = None
    history: list[dict] = field(default_factory=list)  # one entry per evaluation
    pauses: list[dict] = field(default_factory=list)  # carbon-aware pauses taken (greenlm.train.pause)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class TrainResult:
    state: TrainState
    best_metrics: dict | None  # dev metrics of the kept weights
    precision: str  # "bf16" or "fp32"
    num_processes: int
    train_examples_per_s: float  # all processes together


def evaluate(model, encoded: EncodedSplit, *, pad_token_id: int, num_labels: int, batch_size: int = 128,
             progress: str | None = None) -> dict:
    """Accuracy, macro-F1 and MCC of ``model`` on ``encoded`` (``progress``: a bar's description)."""
    logits = predict_logits(model, encoded, pad_token_id=pad_token_id, batch_size=batch_size, progress=progress)
    return classification_metrics(encoded.labels, logits.argmax(-1).tolist(), num_labels)


def _autocast(device, precision: str):
    """bf16 autocast on ``device`` when training in bf16; fp32 otherwise."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _param_groups(modules: Sequence[torch.nn.Module], weight_decay: float,
                  lr_scale: dict[str, float] | None = None, learning_rate: float | None = None) -> list[dict]:
    """AdamW groups: no weight decay on biases and normalisation weights (BERT's recipe). With ``lr_scale``
    (parameter-name prefix -> multiplier), the matching parameters get groups of their own at that multiple
    of ``learning_rate``."""
    decay, no_decay = [], []
    scaled: dict[tuple[float, bool], list] = {}
    for module in modules:
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            skip_decay = param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
            scale = next((v for prefix, v in (lr_scale or {}).items() if name.startswith(prefix)), None)
            if scale is not None:
                scaled.setdefault((scale, skip_decay), []).append(param)
            else:
                (no_decay if skip_decay else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    for (scale, skip_decay), params in scaled.items():
        groups.append({"params": params, "weight_decay": 0.0 if skip_decay else weight_decay, "lr": learning_rate * scale})
    return groups


def _linear_warmup_decay(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def _diverged(what: str, step: int, config: TrainConfig) -> GreenlmError:
    """Training that produced NaN or infinity stops here: nothing is saved as if it had succeeded."""
    return GreenlmError(
        f"training diverged at step {step}: {what}; no model was written. Try a lower learning rate (now"
        f" {config.learning_rate:g}), gradient clipping (max_grad_norm, now {config.max_grad_norm:g}) or fp32")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    model: torch.nn.Module,
    train_data: EncodedSplit,
    eval_data: EncodedSplit | None,
    config: TrainConfig,
    *,
    pad_token_id: int,
    work_dir: str | Path,
    loss_fn: LossFn | None = None,
    extra_module: torch.nn.Module | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    description: str = "train",
    lr_scale: dict[str, float] | None = None,
    collate_fn: CollateFn | None = None,
    eval_fn: EvalFn | None = None,
) -> TrainResult:
    """Train ``model`` in place and return what happened; the kept weights are left in ``model``.

    ``work_dir`` holds the checkpoint (``work_dir/checkpoint``) and the best weights so far
    (``work_dir/best.safetensors``); if a checkpoint is there, training resumes from it.
    ``loss_fn(model, batch) -> loss`` replaces the default cross-entropy (distillation uses it);
    ``extra_module`` holds extra trainable parameters (e.g. projections) that are optimised and
    checkpointed with the model. ``lr_scale`` maps parameter-name prefixes (names in ``model``) to
    learning-rate multipliers, e.g. ``{"exits.": 50.0}`` for new heads on a pre-trained encoder.
    ``collate_fn(indices, epoch, batch_index) -> batch`` builds each micro-batch instead of ``collate`` (pretraining
    masks tokens there); ``eval_fn(model) -> metrics`` is run instead of classification metrics on ``eval_data``
    (at the end of each epoch and of training; pass ``eval_data=None`` with it).
    """
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from safetensors.torch import load_model, save_model

    precision = resolve_precision(config.precision)
    # Accelerate's state is a process-wide singleton that fixes mixed precision at its first use, so two
    # trainings in one process (a recipe's stages, a benchmark) could not differ in precision; bf16 needs
    # no loss scaling, so greenlm casts with torch.autocast itself and Accelerate always runs "no".
    spec = active_tracking()  # --report-to: Accelerate's trackers (greenlm.train.trackers)
    trackers = dict(log_with=spec.log_with(), project_dir=str(spec.logging_dir)) if spec is not None else {}
    accelerator = Accelerator(mixed_precision="no", cpu=not torch.cuda.is_available(), **trackers)
    rank, world = accelerator.process_index, accelerator.num_processes
    is_main = accelerator.is_main_process
    work_dir = Path(work_dir)
    ckpt_dir, best_path = work_dir / "checkpoint", work_dir / "best.safetensors"
    _seed_everything(config.seed)

    # Per-process batches: each process takes every world-th batch, all the same count (DDP needs it).
    def epoch_batches(epoch: int) -> list[list[int]]:
        batches = length_grouped_batches(
            train_data.lengths(), config.batch_size, shuffle=True, seed=config.seed + epoch,
            group_factor=config.length_group_factor,
        )
        per_process = len(batches) // world
        return batches[rank::world][:per_process]

    micro_per_epoch = len(epoch_batches(0))
    if micro_per_epoch == 0:
        raise GreenlmError(
            f"{len(train_data)} training examples make no batch of {config.batch_size} for each of {world} processes;"
            " use more data or a smaller batch size"
        )
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum_steps)
    total_steps = math.ceil(config.epochs * steps_per_epoch)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    modules = [model] + ([extra_module] if extra_module is not None else [])
    optimizer = torch.optim.AdamW(_param_groups(modules, config.weight_decay, lr_scale, config.learning_rate),
                                  lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _linear_warmup_decay(total_steps, int(config.warmup_ratio * total_steps))
    )
    state = TrainState(total_steps=total_steps)
    if has_checkpoint(ckpt_dir):
        saved = load_checkpoint(ckpt_dir, model=model, optimizer=optimizer, scheduler=scheduler,
                                extras=extra_module, rank=rank)
        state = TrainState(**{**saved, "total_steps": total_steps})
    # The scheduler is stepped by us once per optimizer step, so it is not handed to Accelerate
    # (whose wrapper would step it once per process).
    ddp_model, optimizer = accelerator.prepare(model, optimizer)
    trainable = [p for m in modules for p in m.parameters() if p.requires_grad]

    def checkpoint() -> None:
        rngs = gather_object([rng_state()]) if world > 1 else [rng_state()]
        if is_main:
            for cb in callbacks:
                cb.on_save(state)
            save_checkpoint(ckpt_dir, model=accelerator.unwrap_model(ddp_model), optimizer=optimizer,
                            scheduler=scheduler, extras=extra_module, state=state.to_dict(), rng_states=rngs)
        accelerator.wait_for_everyone()

    def run_eval() -> None:
        if eval_data is None and eval_fn is None:
            return
        raw = accelerator.unwrap_model(ddp_model)
        with _autocast(accelerator.device, precision):
            if eval_fn is not None:
                metrics = eval_fn(raw)
            else:
                metrics = evaluate(raw, eval_data, pad_token_id=pad_token_id, num_labels=raw.config.num_labels,
                                   batch_size=config.eval_batch_size)
        entry = {"step": state.step, "epoch": round(state.step / steps_per_epoch, 3), **metrics}
        state.history.append(entry)
        value = metrics.get(config.select_metric) if config.select_metric else None
        if value is not None and (state.best_metric is None or value > state.best_metric):
            state.best_metric, state.best_step = value, state.step
            if is_main:
                best_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = best_path.with_suffix(".tmp")
                save_model(raw, str(tmp))
                tmp.replace(best_path)
        if tracker is not None:
            tracker.evaluation(state, metrics)
        for cb in callbacks:
            cb.on_evaluate(state, metrics)

    tracker = TrackerLog(accelerator, spec, config.to_dict(), description) if spec is not None else None
    logit_watchers = [cb for cb in callbacks if cb.wants_train_logits]
    if logit_watchers and loss_fn is not None:
        raise GreenlmError("training-pass logits are recorded only for plain fine-tuning (cross-entropy), not with a"
                           " custom loss; record in eval mode instead")
    for cb in callbacks:
        cb.on_train_begin(state)
    bar = ProgressBar(progress and is_main, description, total_steps, state.step, log=is_main, unit="steps")
    ddp_model.train()
    try:
        while state.step < total_steps:
            batches = epoch_batches(state.epoch)
            while state.batch_in_epoch < len(batches) and state.step < total_steps:
                pause_point(state, checkpoint, world=world)  # a carbon-aware pause saves the checkpoint first
                budget_point(state, checkpoint, world=world)  # so does a budget stop (--max-kwh ...), then raises
                started = time.perf_counter()
                group = batches[state.batch_in_epoch : state.batch_in_epoch + config.grad_accum_steps]
                examples = sum(len(b) for b in group)
                for i, indices in enumerate(group):
                    if collate_fn is not None:
                        batch = collate_fn(indices, state.epoch, state.batch_in_epoch + i)
                    else:
                        batch = collate(train_data, indices, pad_token_id)
                    batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                    # Micro-batches are weighted by size so accumulation equals one big batch.
                    weight = len(indices) / examples
                    sync = i == len(group) - 1
                    with contextlib.nullcontext() if sync else accelerator.no_sync(ddp_model):
                        with _autocast(accelerator.device, precision):
                            if loss_fn is not None:
                                loss = loss_fn(ddp_model, batch)
                            else:
                                output = ddp_model(**batch)
                                loss = output.loss
                                for cb in logit_watchers:
                                    cb.on_train_logits(state, indices, output.logits.detach())
                        if not torch.isfinite(loss.detach()).all():
                            raise _diverged(f"the loss is {float(loss.detach())}", state.step + 1, config)
                        accelerator.backward(loss * weight)
                if config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.batch_in_epoch += len(group)
                state.step += 1
                state.examples_seen += examples
                state.last_loss = float(loss.detach())
                state.train_seconds += time.perf_counter() - started
                bar.advance(loss=state.last_loss)
                if tracker is not None:
                    tracker.step(state, scheduler.get_last_lr()[0], state.step / steps_per_epoch)
                epoch_done = state.batch_in_epoch >= len(batches)
                if epoch_done or state.step >= total_steps:
                    run_eval()
                if epoch_done:
                    state.epoch += 1
                    state.batch_in_epoch = 0
                if epoch_done or state.step >= total_steps or state.step % config.checkpoint_every_steps == 0:
                    checkpoint()
                for cb in callbacks:  # after the checkpoint: a callback that stops the run loses nothing
                    cb.on_step_end(state)
                if epoch_done:
                    break  # the next epoch draws its own batch order (as a resumed run does)
    finally:
        bar.close()
        if tracker is not None:
            tracker.end(state)

    raw = accelerator.unwrap_model(ddp_model)
    best_metrics = state.history[-1] if state.history else None
    if config.select_metric and best_path.is_file() and state.best_step is not None:
        load_model(raw, str(best_path))
        best_metrics = next(h for h in state.history if h["step"] == state.best_step)
    broken = next((name for m in modules for name, p in m.named_parameters() if not torch.isfinite(p).all()), None)
    if broken is not None:  # a finite loss can still leave an infinite update behind it
        raise _diverged(f"weight '{broken}' is not finite", state.step, config)
    for cb in callbacks:
        cb.on_train_end(state)
    examples_total = state.examples_seen * world
    throughput = examples_total / state.train_seconds if state.train_seconds > 0 else 0.0
    accelerator.free_memory()
    return TrainResult(state, best_metrics, precision, world, throughput)
