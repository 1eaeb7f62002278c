"""Record training dynamics while fine-tuning: every training row's logits at each record point, for data maps
(``greenlm datamap``; Swayamdipta et al. 2020). A callback of the one training loop.

Two modes (``dynamics_mode``):

- ``eval`` (the default). Record points: the end of every epoch; when training for at most
  ``SHORT_TRAINING_EPOCHS`` epochs, also evenly inside each epoch (``POINTS_PER_EPOCH_SHORT`` per epoch in all,
  at steps ceil(j * steps_per_epoch / P)); and the last step, when training stops inside an epoch (fractional
  ``epochs``, ``max_steps``). Each point is one extra forward pass over the whole training set, in eval mode (no
  dropout), batched (``greenlm.runtime.predict_logits``: length-sorted batches of ``eval_batch_size``), in the
  training precision. It reads no random numbers and changes no weights, so training with the recorder ends with
  the same weights as training without it. Its cost (outside the loop's ``train_seconds``) is measured per point.
- ``train``: the paper's reference code's way: each row's logits are kept from the training forward pass that
  saw it (train mode, dropout on, weights moving during the epoch), one point at the end of every complete epoch
  (at least 2 epochs: a map needs 2 points); no extra forward pass. Its cost: keeping each batch's logits (on the
  training device; inside the loop's timed steps, so counted in ``train_seconds`` too), saving the epoch's logits
  with each checkpoint, writing each point. Single process only; a partial last epoch is not recorded.

Resume: each point is written atomically (``dynamics_epoch_<k>.jsonl`` in ``<folder>/training_dynamics``,
the format of ``greenlm.datamap.dynamics_io``) together with its entry in ``<folder>/points.json``. A resumed
run skips the points whose file is there (replayed steps recompute nothing), and records at start the point
of the step it resumes from when the interruption came between that step's checkpoint and its record. In
``train`` mode the logits of the epoch so far are saved (``partial.safetensors``) just before each checkpoint,
so a run resumed inside an epoch keeps the rows it saw before the interruption.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from greenlm.common import GreenlmError, atomic_write_json, read_json
from greenlm.data import EncodedSplit, length_grouped_batches
from greenlm.datamap.dynamics_io import DYNAMICS_DIR, point_file, write_point, written_points
from greenlm.runtime import predict_logits
from greenlm.train.config import TrainConfig
from greenlm.train.loop import Callback, TrainState
from greenlm.train.precision import resolve_precision

POINTS_PER_EPOCH_SHORT = 4  # record points per epoch when training for at most SHORT_TRAINING_EPOCHS epochs
SHORT_TRAINING_EPOCHS = 2.0
POINTS_FILE = "points.json"
PARTIAL_FILE = "partial.safetensors"  # train mode: the logits of the epoch in progress, as of the last checkpoint
MODES = ("eval", "train")
MODE_TEXT = {
    "eval": "a separate forward pass over the training rows in eval mode (no dropout) at each record point",
    "train": "the logits of the training forward pass (train mode, dropout on), one point per complete epoch",
}
FORMAT = "allenai/cartography training dynamics (jsonl): guid, logits_epoch_<k>, gold"


def points_per_epoch(epochs: float) -> int:
    return POINTS_PER_EPOCH_SHORT if epochs <= SHORT_TRAINING_EPOCHS else 1


def record_steps(*, steps_per_epoch: int, total_steps: int, epochs: float, mode: str = "eval") -> list[int]:
    """The optimizer steps (1-based counts of steps done) after which a point is recorded, in order. ``train``
    mode: the end of each complete epoch only (a point needs every row's training-pass logits)."""
    if mode == "train":
        return list(range(steps_per_epoch, total_steps + 1, steps_per_epoch))
    per_epoch = min(points_per_epoch(epochs), steps_per_epoch)
    offsets = sorted({math.ceil(j * steps_per_epoch / per_epoch) for j in range(1, per_epoch + 1)})
    steps = [e * steps_per_epoch + o for e in range(math.ceil(total_steps / steps_per_epoch)) for o in offsets]
    steps = [s for s in steps if s <= total_steps]
    if not steps or steps[-1] != total_steps:
        steps.append(total_steps)
    return steps


class DynamicsRecorder(Callback):
    """Writes record points of ``model`` on ``encoded`` (the training rows, in the order of ``guids``)."""

    def __init__(self, model: torch.nn.Module, encoded: EncodedSplit, guids: Sequence[int], config: TrainConfig, *,
                 pad_token_id: int, folder: str | Path, meta: dict | None = None, mode: str = "eval"):
        if len(guids) != len(encoded):
            raise ValueError("DynamicsRecorder: one guid per training row")
        if mode not in MODES:
            raise GreenlmError(f"unknown dynamics mode '{mode}'; known: {', '.join(MODES)}")
        self.mode = mode
        self.wants_train_logits = mode == "train"
        self.buffer: torch.Tensor | None = None  # train mode: [rows, labels] logits of the epoch in progress
        self.seen: torch.Tensor | None = None  # [rows] bool: which rows the epoch has seen so far
        self.buffer_epoch = -1
        self.pending_seconds = 0.0  # train mode: time spent keeping logits since the last point
        self.model, self.encoded, self.config = model, encoded, config
        self.guids = [int(g) for g in guids]
        self.pad_token_id = pad_token_id
        self.folder = Path(folder)
        self.files = self.folder / DYNAMICS_DIR
        self.meta = dict(meta or {})
        self.main = int(os.environ.get("RANK", "0")) == 0
        self.steps: list[int] = []
        self.steps_per_epoch = 0
        self.points: dict[int, dict] = {}  # k -> {"k", "step", "epoch", "seconds"}
        self.recorded_here: list[int] = []  # the points this process computed (a resumed run: only the missing)

    # ---- the schedule ----
    def _schedule(self, state: TrainState) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        batches = length_grouped_batches(self.encoded.lengths(), self.config.batch_size, shuffle=True,
                                         seed=self.config.seed, group_factor=self.config.length_group_factor)
        micro = len(batches) // world  # as the loop counts its micro-batches per process
        self.steps_per_epoch = math.ceil(micro / self.config.grad_accum_steps)
        self.steps = record_steps(steps_per_epoch=self.steps_per_epoch, total_steps=state.total_steps,
                                  epochs=self.config.epochs, mode=self.mode)

    def _load_points(self) -> None:
        try:
            saved = read_json(self.folder / POINTS_FILE)
        except (OSError, ValueError):
            saved = {}
        self.points = {int(p["k"]): p for p in saved.get("points", []) if isinstance(p, dict) and "k" in p}
        for k in written_points(self.files):  # a file written just before an interruption, its entry not yet
            if k not in self.points and k < len(self.steps):
                self.points[k] = self._entry(k, None)

    def _entry(self, k: int, seconds: float | None) -> dict:
        step = self.steps[k]
        return {"k": k, "step": step, "epoch": round(step / self.steps_per_epoch, 4),
                "seconds": None if seconds is None else round(seconds, 3)}

    # ---- hooks ----
    def on_train_begin(self, state: TrainState) -> None:
        if self.mode == "train" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise GreenlmError("dynamics mode 'train' records on one process (each process sees only its own rows);"
                               " use dynamics mode 'eval' for a multi-process run")
        self._schedule(state)
        if not self.main:
            return
        self._load_points()
        if self.mode == "train":
            if len(self.steps) < 2:
                raise GreenlmError(f"dynamics mode 'train' records one point per complete epoch and this training has"
                                   f" {len(self.steps)}; a map needs 2: train for at least 2 epochs or use mode 'eval'")
            self._load_partial()
            self._check_partial(state)
        written = set(written_points(self.files))
        for k, step in enumerate(self.steps):
            if step >= state.step or k in written:
                continue
            raise GreenlmError(f"record point {k} (step {step}) is missing from {self.files} and cannot be recomputed"
                               " from a later checkpoint; delete the work folder to train again from the start")
        if state.step in self.steps and self.steps.index(state.step) not in written:
            # interrupted between this step's checkpoint and its record: the weights (train mode: the logits
            # saved with that checkpoint) are that step's
            self._record(self.steps.index(state.step))

    def on_step_end(self, state: TrainState) -> None:
        if self.main and state.step in self.steps:
            k = self.steps.index(state.step)
            if not point_file(self.files, k).is_file():
                self._record(k)

    # ---- train mode: logits kept from the training forward pass ----
    def on_train_logits(self, state: TrainState, indices: list, logits: torch.Tensor) -> None:
        if not self.main:
            return
        started = time.perf_counter()
        if self.buffer is None or self.buffer_epoch != state.epoch:
            self.buffer = torch.full((len(self.guids), logits.shape[-1]), float("nan"), device=logits.device)
            self.seen = torch.zeros(len(self.guids), dtype=torch.bool, device=logits.device)
            self.buffer_epoch = state.epoch
        elif self.buffer.device != logits.device:  # restored from the partial file (CPU), training on a GPU
            self.buffer, self.seen = self.buffer.to(logits.device), self.seen.to(logits.device)
        rows = torch.as_tensor(indices, dtype=torch.long, device=logits.device)
        self.buffer.index_copy_(0, rows, logits.float())  # stays on the device: no sync per batch on a GPU
        self.seen[rows] = True
        self.pending_seconds += time.perf_counter() - started

    def on_save(self, state: TrainState) -> None:
        if self.mode != "train" or self.buffer is None:
            return
        from safetensors.torch import save_file

        started = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / (PARTIAL_FILE + ".tmp")
        self.pending_seconds += time.perf_counter() - started  # the save's own time is counted at the next save
        save_file({"logits": self.buffer.cpu().contiguous(), "seen": self.seen.cpu().to(torch.uint8)}, str(tmp),
                  metadata={"epoch": str(self.buffer_epoch), "step": str(state.step),
                            "pending_seconds": repr(self.pending_seconds)})
        os.replace(tmp, self.folder / PARTIAL_FILE)
        self.pending_seconds += time.perf_counter() - started

    def _load_partial(self) -> None:
        path = self.folder / PARTIAL_FILE
        if not path.is_file():
            return
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            logits, seen = f.get_tensor("logits"), f.get_tensor("seen").bool()
        if logits.shape[0] == len(self.guids):
            self.buffer, self.seen, self.buffer_epoch = logits, seen, int(meta["epoch"])
            self.pending_seconds = float(meta.get("pending_seconds", 0.0))

    def _check_partial(self, state: TrainState) -> None:
        """A run resumed inside an epoch needs the logits of the rows that epoch already saw: fail now, not after
        the epoch's training, when they are missing."""
        if state.batch_in_epoch == 0:
            return
        batches = length_grouped_batches(self.encoded.lengths(), self.config.batch_size, shuffle=True,
                                         seed=self.config.seed + state.epoch,
                                         group_factor=self.config.length_group_factor)
        rows = torch.as_tensor([i for batch in batches[:state.batch_in_epoch] for i in batch], dtype=torch.long)
        if self.buffer is None or self.buffer_epoch != state.epoch or not bool(self.seen[rows].all()):
            raise GreenlmError(f"training resumes inside epoch {state.epoch} but {self.folder / PARTIAL_FILE} does not"
                               " hold the logits of the rows that epoch already trained on; delete the work folder"
                               " to train again from the start")

    def _record(self, k: int) -> None:
        if self.mode == "train":
            self._write_kept(k)
        else:
            self._record_forward(k)

    def _write_kept(self, k: int) -> None:
        """Write point ``k`` from the training-pass logits of the epoch that just ended."""
        started = time.perf_counter()
        epoch = self.steps[k] // self.steps_per_epoch - 1
        if self.buffer is None or self.buffer_epoch != epoch or not bool(self.seen.all()):
            missing = len(self.guids) if self.buffer is None or self.buffer_epoch != epoch else \
                int((~self.seen).sum().item())
            raise GreenlmError(f"record point {k}: the training pass of epoch {epoch} left {missing} rows without"
                               f" logits in {self.folder}; delete the work folder to train again from the start")
        self._finish_point(k, self.buffer.cpu().tolist(), started - self.pending_seconds)
        self.pending_seconds = 0.0

    # ---- eval mode: a forward pass of its own ----
    def _record_forward(self, k: int) -> None:
        started = time.perf_counter()
        device = next(self.model.parameters()).device
        precision = resolve_precision(self.config.precision)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = predict_logits(self.model, self.encoded, pad_token_id=self.pad_token_id,
                                    batch_size=self.config.eval_batch_size)
        self._finish_point(k, logits.tolist(), started)

    def _finish_point(self, k: int, logits: list, started: float) -> None:
        """Write point ``k``; its seconds run from ``started`` to the end of the write."""
        write_point(self.files, k, self.guids, logits, self.encoded.labels)
        self.points[k] = self._entry(k, time.perf_counter() - started)
        self.recorded_here.append(k)
        atomic_write_json(self.folder / POINTS_FILE, {"points": [self.points[i] for i in sorted(self.points)]})

    # ---- what metrics.json says ----
    def summary(self, train_seconds: float | None = None) -> dict:
        points = [self.points[k] for k in sorted(self.points)]
        timed = [p["seconds"] for p in points if p.get("seconds") is not None]
        seconds = round(sum(timed), 3)
        return {
            "folder": DYNAMICS_DIR,
            "format": FORMAT,
            "guid": "row index in the task's train split (as loaded: rows with an empty text skipped)",
            "dynamics_mode": self.mode,
            "mode": MODE_TEXT[self.mode],
            "record_seconds_inside_train_seconds": self.mode == "train",  # train mode's copies run in the timed steps
            "examples": len(self.guids),
            "points_per_epoch": 1 if self.mode == "train" else min(points_per_epoch(self.config.epochs),
                                                                   self.steps_per_epoch or 1),
            "steps_per_epoch": self.steps_per_epoch,
            "points": points,
            "record_seconds": seconds,
            "untimed_points": len(points) - len(timed),
            "train_seconds": None if train_seconds is None else round(train_seconds, 3),
            "overhead_vs_train": round(seconds / train_seconds, 4) if train_seconds else None,
            **self.meta,
        }


def install_dynamics(folder: str | Path, model_folder: str | Path) -> Path:
    """Copy the recorded points (``<folder>/training_dynamics/*.jsonl``) into ``model_folder/training_dynamics``."""
    source, target = Path(folder) / DYNAMICS_DIR, Path(model_folder) / DYNAMICS_DIR
    target.mkdir(parents=True, exist_ok=True)
    for k in written_points(source):
        shutil.copyfile(point_file(source, k), point_file(target, k))
    return target
