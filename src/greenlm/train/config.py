"""Settings of the one training loop. Defaults live here and nowhere else."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from greenlm.common.numbers import check_numbers
from greenlm.common import GreenlmError

PRECISIONS = ("auto", "bf16", "fp32")
SELECT_METRICS = ("accuracy", "macro_f1", "mcc")  # what greenlm.train.metrics computes on every evaluation


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 3.0  # passes over the training data; may be fractional (stops after that share of the last)
    batch_size: int = 32  # examples per optimizer step per process (before accumulation)
    learning_rate: float = 5e-5  # peak learning rate (AdamW), reached after the warm-up
    weight_decay: float = 0.01  # AdamW weight decay, not applied to biases and LayerNorm weights
    warmup_ratio: float = 0.06  # linear warm-up over this share of steps, then linear decay to 0
    max_grad_norm: float = 1.0  # gradient clipping (L2 norm); 0 disables
    grad_accum_steps: int = 1  # batches accumulated per optimizer step (effective batch = batch_size x this)
    seed: int = 42  # model head initialisation, data order, dropout
    max_steps: int | None = None  # stop after this many optimizer steps (caps epochs)
    precision: str = "auto"  # "auto": bf16 autocast on a bf16 GPU, fp32 on CPU (see train/precision.py)
    eval_batch_size: int = 128  # examples per batch when evaluating on dev
    checkpoint_every_steps: int = 200  # checkpoint every N steps (and at the end of every epoch)
    select_metric: str | None = "accuracy"  # keep the best epoch by this dev metric; None keeps the last
    length_group_factor: int = 50  # batches drawn from mega-batches of this many batches, sorted by length

    def __post_init__(self):
        check_numbers(self)
        checks = [
            (self.epochs > 0, "epochs must be > 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.max_grad_norm >= 0, "max_grad_norm must be >= 0"),
            (self.grad_accum_steps >= 1, "grad_accum_steps must be >= 1"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.checkpoint_every_steps >= 1, "checkpoint_every_steps must be >= 1"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.length_group_factor >= 1, "length_group_factor must be >= 1"),
            (self.select_metric is None or self.select_metric in SELECT_METRICS,
             f"select_metric must be one of {', '.join(SELECT_METRICS)}, got {self.select_metric!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise GreenlmError(f"training setting: {message}")

    def to_dict(self) -> dict:
        return asdict(self)
