"""Settings of the ``distill`` method (``greenlm.compress.distill``): every setting and its default, here only.

Plain Python (no torch): the command line builds ``greenlm distill``'s options from this class at start-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from greenlm.common.numbers import check_numbers, max_length_setting
from greenlm.common import GreenlmError
from greenlm.train.config import TrainConfig

AUGMENT_METHODS = ("none", "embedding", "mlm")  # the text augmentations of compress/augment.py
INIT_CHOICES = ("teacher", "random")
DEFAULT_STUDENT = "4x312"  # TinyBERT-4's shape


@dataclass(frozen=True)
class DistillConfig:
    # --- the student ---
    student: str | None = None  # shape LxH[xA[xF]] (4x312, 2x256) or a model (folder / hub id); None: 4x312, or by budget
    target_speedup: float | None = None  # with student=None: pick a shape this much faster (FLOPs, then measured)
    max_flops: float | None = None  # with student=None: forward FLOPs per example at the task's median length
    init: str = "teacher"  # "teacher": copy the mapped teacher layers (selecting coordinates if narrower); "random"
    layer_map: str = "uniform"  # teacher layer per student layer: uniform | bottom | top | "2,4,6" (1-based)
    trim_vocab: bool = False  # keep only the vocabulary rows the training text uses (smaller embedding matrix)
    attention: str = "softmax"  # the student's attention: softmax | rfa | performer | t2r | abc, with options (abc:k=32)
    # --- phase 1: intermediate layers (TinyBERT) ---
    intermediate_epochs: float = 0.0  # 0 skips the phase
    intermediate_learning_rate: float = 1e-4  # peak learning rate of the intermediate phase
    attention_weight: float = 1.0  # attention-score MSE
    hidden_weight: float = 1.0  # hidden-state MSE (through W_h when widths differ)
    embedding_weight: float = 1.0  # embedding-output MSE (through W_e)
    # --- phase 2: prediction layer ---
    epochs: float = 3.0  # epochs of the prediction phase (soft targets)
    learning_rate: float = 1e-4  # peak learning rate of the prediction phase
    temperature: float = 1.0  # T of the soft targets
    hard_label_weight: float = 0.0  # w in (1 - w) * T^2 * KL + w * CE(gold); 0 = soft targets only (TinyBERT)
    cosine_weight: float = 0.0  # DistilBERT's cosine loss on the last hidden states
    # --- data ---
    augment: str = "none"  # none | embedding (teacher's word-embedding neighbours) | mlm (needs augment_mlm_model)
    augment_copies: int = 4  # new sentences per training sentence (TinyBERT: 20)
    augment_prob: float = 0.4  # chance each word is replaced (TinyBERT's p_t)
    augment_candidates: int = 15  # candidate words per word (TinyBERT's K)
    augment_mlm_model: str | None = None  # masked LM sharing the teacher's vocabulary, for augment="mlm"
    train_subset: int | None = None  # distil on a random subset of this many training rows (before augmentation)
    train_selection: str | None = None  # rows from a data map (before augmentation): ambiguous:0.33, easy:0.5, random:0.33, ...
    selection_map: str | None = None  # folder whose data map train_selection uses ("teacher": the teacher's, trained with record_dynamics)
    max_length: int | str | None = None  # tokens per input; unset: the teacher's fine-tuning max_length (or 128); auto: the length that covers 99% of the training rows
    # --- training ---
    batch_size: int = 32  # examples per step per process
    warmup_ratio: float = 0.1  # share of steps with linear warm-up
    weight_decay: float = 0.01  # AdamW weight decay
    seed: int = 42  # initialisation, subset, augmentation, batch order
    precision: str = "auto"  # auto (bf16 on a GPU that has it; fp32 on CPU), bf16 or fp32
    keep_best: bool = True  # keep the prediction epoch with the best accuracy on validation (else dev), as fine-tuning does
    checkpoint_every_steps: int = 500  # checkpoint every N steps (and at each epoch end)
    allow_untuned_teacher: bool = False  # distilling from a teacher not fine-tuned on the task is a known failure

    def __post_init__(self):
        check_numbers(self)
        object.__setattr__(self, "max_length", max_length_setting(self.max_length, minimum=3))
        budget = self.target_speedup is not None or self.max_flops is not None
        checks = [
            (not (self.student is not None and budget), "give a student or a budget (target_speedup / max_flops), not both"),
            (self.student is None or self.student.strip() != "", "student must not be empty"),
            (self.target_speedup is None or self.target_speedup > 1, "target_speedup must be > 1"),
            (self.max_flops is None or self.max_flops > 0, "max_flops must be > 0"),
            (self.init in INIT_CHOICES, f"init must be one of {', '.join(INIT_CHOICES)}"),
            (self.intermediate_epochs >= 0, "intermediate_epochs must be >= 0"),
            (self.epochs > 0, "epochs must be > 0"),
            (self.learning_rate > 0 and self.intermediate_learning_rate > 0, "learning rates must be > 0"),
            (min(self.attention_weight, self.hidden_weight, self.embedding_weight, self.cosine_weight) >= 0,
             "loss weights must be >= 0"),
            (self.intermediate_epochs == 0 or self.attention_weight + self.hidden_weight + self.embedding_weight > 0,
             "the intermediate phase needs at least one of attention/hidden/embedding weight > 0"),
            (self.temperature > 0, "temperature must be > 0"),
            (0 <= self.hard_label_weight <= 1, "hard_label_weight must be in [0, 1]"),
            (self.augment in AUGMENT_METHODS, f"augment must be one of {', '.join(AUGMENT_METHODS)}"),
            (1 <= self.augment_copies <= 100, "augment_copies must be from 1 to 100 (TinyBERT used 20)"),
            (0 < self.augment_prob <= 1, "augment_prob must be in (0, 1]"),
            (1 <= self.augment_candidates <= 1000, "augment_candidates must be from 1 to 1000 (TinyBERT's K was 15)"),
            (self.augment != "mlm" or self.augment_mlm_model, "augment 'mlm' needs augment_mlm_model (a masked LM"
             " sharing the teacher's vocabulary); a fine-tuned classifier keeps no MLM head"),
            (self.train_subset is None or self.train_subset >= 1, "train_subset must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.checkpoint_every_steps >= 1, "checkpoint_every_steps must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise GreenlmError(f"distill setting: {message}")
        from greenlm.datamap.spec import check_selection_settings  # plain Python, no numpy

        try:
            check_selection_settings(self.train_selection, self.selection_map, self.train_subset)
        except GreenlmError as err:
            raise GreenlmError(f"distill setting: {err}") from None
        from greenlm.models.attention_spec import AttentionSpec

        if AttentionSpec.parse(self.attention).linear and self.intermediate_epochs > 0 and self.attention_weight > 0:
            raise GreenlmError("distill setting: a student with linear attention has no attention scores to imitate;"
                               " set attention_weight to 0 or intermediate_epochs to 0")
        self.train_config(phase="prediction")  # validates warmup, weight decay, precision

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def student_spec(self) -> str | None:
        """The student to build: the one given, the default shape, or None when a budget decides."""
        if self.student is not None:
            return self.student.strip()
        return None if (self.target_speedup is not None or self.max_flops is not None) else DEFAULT_STUDENT

    @classmethod
    def from_dict(cls, values: dict) -> "DistillConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            import difflib

            hint = difflib.get_close_matches(unknown[0], sorted(known), n=1)
            raise GreenlmError(f"unknown distill setting '{unknown[0]}'" + (f"; did you mean '{hint[0]}'?" if hint else ""))
        return cls(**values)

    def train_config(self, *, phase: str) -> TrainConfig:
        """The training-loop settings of one phase ("intermediate" or "prediction")."""
        intermediate = phase == "intermediate"
        return TrainConfig(
            epochs=(self.intermediate_epochs or 1.0) if intermediate else self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.intermediate_learning_rate if intermediate else self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_ratio=self.warmup_ratio,
            seed=self.seed,
            precision=self.precision,
            checkpoint_every_steps=self.checkpoint_every_steps,
            # the intermediate phase has no meaningful dev accuracy (the head is not trained yet): keep the last
            select_metric=None if intermediate or not self.keep_best else "accuracy",
        )


# ---- attention scores -------------------------------------------------------------------------------
