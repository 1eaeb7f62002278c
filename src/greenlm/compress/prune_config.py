"""Settings of the ``prune`` method (``greenlm.compress.prune``): every setting and its default, here only.

Plain Python (no torch): the command line builds ``greenlm prune``'s options from this class at start-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from greenlm.common.numbers import check_numbers, max_length_setting
from greenlm.common import GreenlmError

METHODS = ("structured", "magnitude", "movement")
SCHEDULES = {"structured": ("one_shot", "iterative"), "magnitude": ("one_shot", "cubic"), "movement": ("cubic",)}
RECOVERIES = ("none", "finetune", "distill")
RANKINGS = ("global", "per_layer")
SCOPES = ("global", "per_layer")  # magnitude pruning: one threshold over all matrices, or per matrix
TEACHERS = ("input", "teacher")


@dataclass(frozen=True)
class PruneConfig:
    method: str = "structured"  # structured (heads/neurons/layers removed) | magnitude | movement (unstructured zeros)
    # structured: one_shot | iterative; magnitude: one_shot | cubic; movement: cubic; None: one_shot (movement: cubic)
    schedule: str | None = None
    # -- structured: targets are shares of the input model's heads / neurons --
    head_sparsity: float = 0.5  # share of attention heads to remove, in [0, 1)
    ffn_sparsity: float = 0.0  # share of FFN neurons to remove, in [0, 1)
    drop_layers: int = 0  # whole layers to remove, least important first (their heads count as removed)
    min_heads_per_layer: int = 1  # every kept layer keeps this many heads; 0 lets a layer's attention go entirely
    min_neurons_per_layer: int = 1  # likewise for FFN neurons
    ranking: str = "global"  # global: layer-normalised scores compared across layers | per_layer: same share per layer
    importance_examples: int = 2048  # training examples whose gradients estimate importance
    iterations: int = 4  # iterative: rounds of prune + recover, targets growing linearly
    max_drop: float | None = None  # dev accuracy points the result may lose vs the input model; None: no limit
    # -- unstructured --
    sparsity: float = 0.9  # share of the encoder's linear weights set to zero, in [0, 1)
    scope: str = "global"  # magnitude: one threshold over all matrices (global) | the same share per matrix (per_layer)
    sparsity_warmup: float = 0.1  # cubic: share of training steps before pruning starts
    sparsity_cooldown: float = 0.2  # cubic: share of final steps at the final sparsity
    score_learning_rate: float = 1e-2  # movement: step size of the importance scores (Sanh et al. 2020)
    mask_update_steps: int = 10  # gradual magnitude: recompute the masks every this many steps
    # -- recovery / training (structured: after each pruning round; unstructured: while pruning) --
    recovery: str = "distill"  # none | finetune (cross-entropy) | distill (soft targets + (1 - alpha) cross-entropy)
    epochs: float = 1.0  # epochs of each recovery (structured) or of the pruning run (unstructured)
    train_examples: int | None = None  # train on a seeded subset of this many training examples; None: all
    learning_rate: float = 3e-5  # peak learning rate of recovery / pruning runs
    batch_size: int = 32  # training examples per step
    distill_alpha: float = 0.9  # weight of the soft-target loss
    distill_temperature: float = 2.0  # softmax temperature T of the soft targets (the loss is scaled by T^2)
    teacher: str = "input"  # distill from: input (the unpruned upstream model) | teacher (the pipeline's teacher)
    max_length: int | str | None = None  # tokens per input; unset: the input model's training length, else 128; auto: the length that covers 99% of the training rows
    measure_speed: bool = True  # time the input and the pruned model side by side on dev inputs
    speed_examples: int = 256  # dev inputs timed (the first 64 also one at a time, for latency)
    speed_threads: int | None = None  # torch threads while timing; None: torch's current setting
    seed: int = 42  # subsets and batch order

    def __post_init__(self):
        check_numbers(self)
        object.__setattr__(self, "max_length", max_length_setting(self.max_length, minimum=2))
        schedules = SCHEDULES.get(self.method, ())
        if self.schedule is None and schedules:
            object.__setattr__(self, "schedule", schedules[0])
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, got {self.method!r}"),
            (not schedules or self.schedule in schedules,
             f"schedule for method {self.method!r} must be one of {', '.join(schedules)}, got {self.schedule!r}"),
            (0 <= self.head_sparsity < 1, f"head_sparsity must be in [0, 1), got {self.head_sparsity}"),
            (0 <= self.ffn_sparsity < 1, f"ffn_sparsity must be in [0, 1), got {self.ffn_sparsity}"),
            (0 <= self.sparsity < 1, f"sparsity must be in [0, 1), got {self.sparsity}"),
            (self.drop_layers >= 0, f"drop_layers must be >= 0, got {self.drop_layers}"),
            (self.min_heads_per_layer >= 0, "min_heads_per_layer must be >= 0"),
            (self.min_neurons_per_layer >= 0, "min_neurons_per_layer must be >= 0"),
            (self.ranking in RANKINGS, f"ranking must be one of {', '.join(RANKINGS)}"),
            (self.importance_examples >= 1, "importance_examples must be >= 1"),
            (self.iterations >= 1, "iterations must be >= 1"),
            (self.max_drop is None or self.max_drop >= 0, "max_drop must be >= 0 (accuracy points)"),
            (self.scope in SCOPES, f"scope must be one of {', '.join(SCOPES)}"),
            (0 <= self.sparsity_warmup < 1 and 0 <= self.sparsity_cooldown < 1
             and self.sparsity_warmup + self.sparsity_cooldown < 1,
             "sparsity_warmup and sparsity_cooldown must be in [0, 1) and sum to less than 1"),
            (self.score_learning_rate > 0, "score_learning_rate must be > 0"),
            (self.mask_update_steps >= 1, "mask_update_steps must be >= 1"),
            (self.recovery in RECOVERIES, f"recovery must be one of {', '.join(RECOVERIES)}"),
            (self.epochs > 0, "epochs must be > 0"),
            (self.train_examples is None or self.train_examples >= 1, "train_examples must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (0 <= self.distill_alpha <= 1, "distill_alpha must be in [0, 1]"),
            (self.distill_temperature > 0, "distill_temperature must be > 0"),
            (self.teacher in TEACHERS, f"teacher must be one of {', '.join(TEACHERS)}"),
            (self.speed_examples >= 1, "speed_examples must be >= 1"),
            (self.speed_threads is None or self.speed_threads >= 1, "speed_threads must be >= 1"),
            (not (self.method == "movement" and self.recovery == "none"),
             "movement pruning learns while training: recovery must be finetune or distill"),
            (not (self.method == "structured" and self.head_sparsity == 0 and self.ffn_sparsity == 0
                  and self.drop_layers == 0),
             "nothing to prune: set head_sparsity, ffn_sparsity or drop_layers"),
        ]
        for ok, message in checks:
            if not ok:
                raise GreenlmError(f"prune setting: {message}")

    def to_dict(self) -> dict:
        return asdict(self)


# ---- distillation loss (Hinton et al. 2015, ``losses.kd_loss``) ------------------------------------
