"""Settings of the ``early_exit`` method (``greenlm.compress.early_exit``): every setting and its default, here only.

Plain Python (no torch): the command line builds ``greenlm early-exit``'s options from this class at start-up.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass

from greenlm.common.numbers import check_numbers, max_length_setting
from greenlm.common import GreenlmError
from greenlm.models.exit_policies import POLICIES, POOLINGS
from greenlm.train.config import TrainConfig

LOSSES = ("sum", "weighted", "self_distill")
DEFAULT_MAX_DROP = 1.0  # accuracy points: the goal when none is given


@dataclass(frozen=True)
class EarlyExitConfig:
    # -- exits and policy
    exit_layers: list[int] | None = None  # 1-based layers with an exit; None: every layer (the last always: the model's classifier)
    policy: str = "max_prob"  # "max_prob" (Schwartz et al. 2020) | "entropy" (DeeBERT) | "patience" (PABEE)
    exit_pooling: str = "mean"  # what an exit reads: "mean" of the tokens' states | "cls" (first token, as BERT's pooler)
    # -- the goal: at most one of these four; none set means max_drop = DEFAULT_MAX_DROP
    max_drop: float | None = None  # accuracy points the exits may cost vs full depth, on held-out rows
    target_speedup: float | None = None  # expected FLOPs speedup per example to reach, on held-out rows
    threshold: float | None = None  # a fixed confidence threshold in (0, 1] (max_prob, entropy); 1.0 never exits early
    patience: int | None = None  # a fixed patience >= 1 (patience policy)
    # -- training
    train_encoder: bool = True  # False: freeze the encoder and its classifier; only the new exits learn
    loss: str = "sum"  # "sum" of exit losses | "weighted" by layer (PABEE) | "self_distill" from the final classifier (FastBERT)
    distill_temperature: float = 1.0  # softmax temperature of the self-distillation targets and students
    epochs: float = 2.0  # training epochs of the exits (and the encoder, if trained)
    batch_size: int = 32  # training examples per step
    learning_rate: float = 2e-5  # the encoder and its classifier (BERT fine-tuning's usual rate)
    exit_learning_rate: float = 1e-3  # the new exit heads: small, randomly initialised, they need larger steps
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_ratio: float = 0.06  # share of steps with linear warm-up
    max_steps: int | None = None  # stop training after this many optimizer steps
    train_subset: int | None = None  # train on this many random rows (after the held-out rows are set aside)
    heldout_fraction: float = 0.1  # share of the training split set aside for calibration and the threshold
    heldout_max_examples: int = 2000  # cap on the held-out rows
    max_length: int | str | None = None  # tokens per input; unset: the upstream model's own (else 128); auto: the length that covers 99% of the training rows
    seed: int = 42  # held-out draw, exit initialisation, batch order
    precision: str = "auto"  # training precision, as TrainConfig
    checkpoint_every_steps: int = 200  # checkpoint every N steps (and at each epoch end)
    # -- report
    measure_speed: bool = True  # time the chosen model and the upstream model side by side on dev
    speed_examples: int = 256  # dev rows used for timing (a fixed seeded sample)

    def __post_init__(self):
        check_numbers(self)
        object.__setattr__(self, "max_length", max_length_setting(self.max_length, minimum=4))
        def fail(message: str) -> None:
            raise GreenlmError(f"early-exit setting: {message}")

        def closest(value: str, choices) -> str:
            near = difflib.get_close_matches(str(value), choices, n=1)
            return f" (did you mean '{near[0]}'?)" if near else ""

        if self.exit_layers is not None:
            if not isinstance(self.exit_layers, (list, tuple)) or not self.exit_layers:
                fail("exit_layers must be a non-empty list of layer numbers (1 = first layer), or null for every layer")
            for layer in self.exit_layers:
                if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
                    fail(f"exit layer {layer!r} is out of range: layers are numbered from 1")
        if self.policy not in POLICIES:
            fail(f"unknown policy '{self.policy}'{closest(self.policy, POLICIES)}; use one of: {', '.join(POLICIES)}")
        if self.exit_pooling not in POOLINGS:
            fail(f"unknown exit_pooling '{self.exit_pooling}'{closest(self.exit_pooling, POOLINGS)};"
                 f" use one of: {', '.join(POOLINGS)}")
        goals = [k for k in ("max_drop", "target_speedup", "threshold", "patience") if getattr(self, k) is not None]
        if len(goals) > 1:
            fail(f"give at most one of max_drop, target_speedup, threshold, patience (got {', '.join(goals)})")
        if self.max_drop is not None and not (_number(self.max_drop) and 0 <= self.max_drop <= 100):
            fail(f"max_drop {self.max_drop!r} must be accuracy points in [0, 100]")
        if self.target_speedup is not None and not (_number(self.target_speedup) and self.target_speedup >= 1):
            fail(f"target_speedup {self.target_speedup!r} must be a number >= 1 (e.g. 3 for 3x)")
        if self.threshold is not None:
            if self.policy == "patience":
                fail("the patience policy takes patience, not threshold")
            if not (_number(self.threshold) and 0 < self.threshold <= 1):
                fail(f"threshold {self.threshold!r} is outside (0, 1]: 1.0 never exits early, smaller values exit earlier")
        if self.patience is not None:
            if self.policy != "patience":
                fail(f"patience is for the patience policy; policy '{self.policy}' takes a threshold")
            if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
                fail(f"patience {self.patience!r} must be a whole number >= 1")
        if self.loss not in LOSSES:
            fail(f"unknown loss '{self.loss}'{closest(self.loss, LOSSES)}; use one of: {', '.join(LOSSES)}")
        checks = [
            (_number(self.distill_temperature) and self.distill_temperature > 0, "distill_temperature must be > 0"),
            (_number(self.epochs) and self.epochs > 0, "epochs must be > 0"),
            (_count(self.batch_size), "batch_size must be a whole number >= 1"),
            (_number(self.learning_rate) and self.learning_rate > 0, "learning_rate must be > 0"),
            (_number(self.exit_learning_rate) and self.exit_learning_rate > 0, "exit_learning_rate must be > 0"),
            (self.max_steps is None or _count(self.max_steps), "max_steps must be a whole number >= 1"),
            (self.train_subset is None or _count(self.train_subset), "train_subset must be a whole number >= 1"),
            (_number(self.heldout_fraction) and 0 < self.heldout_fraction <= 0.5, "heldout_fraction must be in (0, 0.5]"),
            (_count(self.heldout_max_examples), "heldout_max_examples must be a whole number >= 1"),
            (_count(self.speed_examples), "speed_examples must be a whole number >= 1"),
            (_count(self.checkpoint_every_steps), "checkpoint_every_steps must be a whole number >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                fail(message)
        self.train_config()  # the training settings validate themselves

    def goal(self) -> tuple[str, float]:
        """("max_drop" | "target_speedup" | "threshold" | "patience", value)."""
        for key in ("target_speedup", "threshold", "patience", "max_drop"):
            if getattr(self, key) is not None:
                return key, getattr(self, key)
        return "max_drop", DEFAULT_MAX_DROP

    def train_config(self) -> TrainConfig:
        """The loop's settings; its learning rate is the encoder's (or the exits' when the encoder is frozen)."""
        rate = self.learning_rate if self.train_encoder else self.exit_learning_rate
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=rate,
                           weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio, seed=self.seed,
                           max_steps=self.max_steps, precision=self.precision,
                           checkpoint_every_steps=self.checkpoint_every_steps, select_metric=None)

    def lr_scale(self) -> dict[str, float] | None:
        """The exits' learning rate as a multiple of the encoder's (for ``train(lr_scale=...)``)."""
        return {"exits.": self.exit_learning_rate / self.learning_rate} if self.train_encoder else None

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["exit_layers"] is not None:
            out["exit_layers"] = list(out["exit_layers"])
        return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
