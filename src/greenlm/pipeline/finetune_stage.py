"""The ``finetune`` stage: fine-tune the recipe's teacher on the task (``greenlm train`` as a stage)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.data import Task
from greenlm.train import TrainConfig
from greenlm.train.finetune import finetune


@dataclass(frozen=True)
class FinetuneStageConfig(TrainConfig):
    max_length: int = 128  # inputs are truncated to this many tokens (every later stage keeps it)
    train_subset: int | None = None  # train on a seeded random subset of this many rows (None: all)

    def __post_init__(self):
        super().__post_init__()
        if self.max_length < 8:
            raise GreenlmError("max_length must be >= 8")
        if self.train_subset is not None and self.train_subset < 1:
            raise GreenlmError("train_subset must be >= 1 or null")

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})

    def to_dict(self) -> dict:
        return asdict(self)


def run(model_spec: str, task: Task, config: FinetuneStageConfig, out_dir: Path, *, work_dir: Path,
        progress: bool = True, on_note=print, teacher_dir: Path | None = None) -> dict:
    """Fine-tune ``model_spec`` (the recipe's teacher); resumes from ``out_dir``'s checkpoint."""
    outcome = finetune(task, model_spec, out_dir, config.train_config(), max_length=config.max_length,
                       train_subset=config.train_subset, progress=progress, on_note=on_note)
    return {**outcome.metrics, "method": "finetune"}
