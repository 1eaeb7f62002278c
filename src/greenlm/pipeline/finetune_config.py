"""Settings of the ``finetune`` method (``greenlm train``, the ``finetune`` stage): the training loop's settings
(``TrainConfig``) plus what fine-tuning adds. Plain Python (no torch): the command line builds its options from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from greenlm.common.numbers import check_numbers, max_length_setting
from greenlm.common import GreenlmError
from greenlm.stage.shell import KEY_OMITS_DEFAULT
from greenlm.train.config import TrainConfig


@dataclass(frozen=True)
class FinetuneStageConfig(TrainConfig):
    # inputs are truncated to this many tokens (every later stage keeps it); auto: the length that covers
    # 99% of the training rows
    max_length: int | str = 128
    train_subset: int | None = None  # train on a seeded random subset of this many rows (None: all)
    allow_pickle: bool = False  # load pickle weights (pytorch_model.bin): they can run code; only for files you trust
    trust_remote_code: bool = False  # run a hub model's own Python code (only for models you trust)
    record_dynamics: bool = False  # save each train row's logits per epoch (eval mode: 4x/epoch if epochs<=2) for greenlm datamap
    # how record_dynamics takes the logits: eval (a separate forward pass per point, no dropout; ~8% of an epoch
    # each) or train (the training forward pass's own logits, as the paper's code: one point per epoch, nearly free)
    dynamics_mode: str = field(default="eval", metadata={KEY_OMITS_DEFAULT: True})
    train_selection: str | None = None  # rows from a data map: ambiguous:0.33, hard:0.25, easy:0.5, random:0.33, ambiguous:0.2+easy:0.1
    selection_map: str | None = None  # model folder (or training_dynamics folder) whose map train_selection uses; not for random

    def __post_init__(self):
        check_numbers(self)
        super().__post_init__()
        object.__setattr__(self, "max_length", max_length_setting(self.max_length, minimum=8))
        if self.max_length is None:
            raise GreenlmError("max_length must be a number of tokens or 'auto', not empty")
        if self.dynamics_mode not in ("eval", "train"):
            raise GreenlmError(f"dynamics_mode must be 'eval' or 'train', not '{self.dynamics_mode}'")
        if self.dynamics_mode != "eval" and not self.record_dynamics:
            raise GreenlmError("dynamics_mode applies to record_dynamics; set record_dynamics too (--record-dynamics)")
        if self.dynamics_mode == "train" and self.epochs < 2:
            raise GreenlmError(f"dynamics_mode 'train' records one point per complete epoch and a map needs 2: train for"
                               f" at least 2 epochs (epochs is {self.epochs:g}) or use dynamics_mode 'eval'")
        if self.train_subset is not None and self.train_subset < 1:
            raise GreenlmError("train_subset must be >= 1 or null")
        from greenlm.datamap.spec import check_selection_settings  # plain Python, no numpy

        check_selection_settings(self.train_selection, self.selection_map, self.train_subset)

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})

    def to_dict(self) -> dict:
        return asdict(self)
