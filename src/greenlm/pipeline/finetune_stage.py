"""The ``finetune`` method: fine-tune a pre-trained model on the task (the teacher every other stage
starts from). ``greenlm train`` and the ``finetune`` stage of ``greenlm run`` both run it through the
stage shell (``greenlm.stage``).
"""

from __future__ import annotations

from greenlm.models import save_classifier
from greenlm.pipeline.finetune_config import FinetuneStageConfig
from greenlm.stage import StageContext, StageOutput
from greenlm.train.finetune import finetune

__all__ = ["FinetuneStageConfig", "run"]


def run(ctx: StageContext, config: FinetuneStageConfig) -> StageOutput:
    """Fine-tune ``ctx.source`` (any model spec: a folder, ``minilm``, ``tiny:...``, a hub id) on the task."""
    result = finetune(ctx.task, ctx.source, config.train_config(), work_dir=ctx.work_dir / "train",
                      max_length=config.max_length, train_subset=config.train_subset,
                      allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code,
                      progress=ctx.progress, on_note=ctx.note)
    return StageOutput(metrics=result.metrics,
                       write=lambda folder: save_classifier(result.model, result.tokenizer, folder))
