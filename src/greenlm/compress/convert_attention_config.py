"""Settings of the ``convert_attention`` method (``greenlm.compress.convert_attention``): every setting and its
default, here only.

Plain Python (no torch): the command line builds ``greenlm convert-attention``'s options from this class at start-up.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from greenlm.common.numbers import check_numbers, max_length_setting
from greenlm.common import GreenlmError
from greenlm.models.attention_spec import AttentionSpec
from greenlm.models.limits import check_sizes
from greenlm.train.config import TrainConfig


@dataclass(frozen=True)
class ConvertAttentionConfig:
    # -- the new attention
    attention: str = "rfa"  # rfa | performer | t2r | abc, with options: rfa:features=64,redraw=fixed | abc:k=32
    max_positions: int | None = None  # extend the position table to this many tokens (copies of the learned one)
    # -- recovery: fine-tuning with distillation from the original model (Kasai et al. 2021)
    epochs: float = 3.0  # fine-tuning epochs after the swap
    batch_size: int = 32  # training examples per step
    learning_rate: float = 5e-5  # peak learning rate (the swapped model starts from trained weights)
    alpha: float = 0.5  # weight of the gold labels: (1 - alpha) * T^2 * KL(teacher || student) + alpha * CE
    temperature: float = 2.0  # softmax temperature of the teacher's soft targets
    hidden_weight: float = 0.0  # MSE between the last hidden states of the converted model and the original
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_ratio: float = 0.1  # share of steps with linear warm-up
    max_steps: int | None = None  # stop after this many optimizer steps
    train_subset: int | None = None  # fine-tune on this many random training rows
    max_length: int | str | None = None  # tokens per input; unset: the input model's own (else 128); auto: the length that covers 99% of the training rows
    keep_best: bool = True  # keep the epoch with the best accuracy on validation (else dev)
    seed: int = 42  # batch order, subset, redraws
    precision: str = "auto"  # training precision, as TrainConfig
    checkpoint_every_steps: int = 500  # checkpoint every N steps (and at each epoch end)

    def __post_init__(self):
        check_numbers(self)
        object.__setattr__(self, "max_length", max_length_setting(self.max_length, minimum=4))
        def fail(message: str) -> None:
            raise GreenlmError(f"convert-attention setting: {message}")

        spec = AttentionSpec.parse(self.attention)
        if not spec.linear:
            fail("attention must be a linear kind (rfa, performer, t2r, abc); softmax is what the model has")
        checks = [
            (self.max_positions is None or _count(self.max_positions), "max_positions must be a whole number >= 1"),
            (_number(self.epochs) and self.epochs > 0, "epochs must be > 0"),
            (_count(self.batch_size), "batch_size must be a whole number >= 1"),
            (_number(self.learning_rate) and self.learning_rate > 0, "learning_rate must be > 0"),
            (_number(self.alpha) and 0 <= self.alpha <= 1, "alpha must be in [0, 1]"),
            (_number(self.temperature) and self.temperature > 0, "temperature must be > 0"),
            (_number(self.hidden_weight) and self.hidden_weight >= 0, "hidden_weight must be >= 0"),
            (self.max_steps is None or _count(self.max_steps), "max_steps must be a whole number >= 1"),
            (self.train_subset is None or _count(self.train_subset), "train_subset must be a whole number >= 1"),
            (_count(self.checkpoint_every_steps), "checkpoint_every_steps must be a whole number >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                fail(message)
        check_sizes("convert-attention setting max_positions", positions=self.max_positions)
        if isinstance(self.max_length, int):  # "auto" is resolved against the data later, within the positions
            check_sizes("convert-attention setting max_length", positions=self.max_length)
        self.train_config()  # the training settings validate themselves

    @property
    def spec(self) -> AttentionSpec:
        return AttentionSpec.parse(self.attention)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio, seed=self.seed,
                           max_steps=self.max_steps, precision=self.precision,
                           checkpoint_every_steps=self.checkpoint_every_steps,
                           select_metric="accuracy" if self.keep_best else None)

    def to_dict(self) -> dict:
        return asdict(self)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
