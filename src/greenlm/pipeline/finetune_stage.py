"""The ``finetune`` method: fine-tune a pre-trained model on the task (the teacher every other stage
starts from). ``greenlm train`` and the ``finetune`` stage of ``greenlm run`` both run it through the
stage shell (``greenlm.stage``).

With ``record_dynamics`` the training rows' logits are recorded at each record point into the work folder
(``dynamics/``, kept across interruptions) and copied into the model folder's ``training_dynamics/``; with
``train_selection`` the training rows are chosen from a data map first (``greenlm.datamap.selection``), and
the chosen rows are written to ``selection.json`` beside the model (``metrics.json`` says how many, and their
sha256).
"""

from __future__ import annotations

from greenlm.common import atomic_write_json
from greenlm.models import save_classifier
from greenlm.pipeline.finetune_config import FinetuneStageConfig
from greenlm.stage import StageContext, StageOutput
from greenlm.train.finetune import finetune

__all__ = ["FinetuneStageConfig", "run"]

SELECTION_FILE = "selection.json"


def run(ctx: StageContext, config: FinetuneStageConfig) -> StageOutput:
    """Fine-tune ``ctx.source`` (any model spec: a folder, ``minilm``, ``tiny:...``, a hub id) on the task."""
    rows, selection = None, None
    if config.train_selection is not None:
        from greenlm.datamap.selection import selection_for_task

        chosen, selection = selection_for_task(config.train_selection, config.selection_map, ctx.task,
                                               seed=config.seed, min_rows=config.batch_size)
        rows = chosen.rows
        selection["rows_file"] = SELECTION_FILE
        ctx.note(f"training on {len(rows)} of {chosen.available} rows chosen by {config.train_selection}")
    dynamics_dir = ctx.work_dir / "dynamics" if config.record_dynamics else None
    result = finetune(ctx.task, ctx.source, config.train_config(), work_dir=ctx.work_dir / "train",
                      max_length=config.max_length, train_subset=config.train_subset, train_rows=rows,
                      record_dynamics_to=dynamics_dir, dynamics_mode=config.dynamics_mode,
                      allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code,
                      progress=ctx.progress, on_note=ctx.note)
    metrics = dict(result.metrics)
    if selection is not None:
        metrics["train_selection"] = selection  # "selection" says which split chose the best epoch

    def write(folder):
        save_classifier(result.model, result.tokenizer, folder)
        if dynamics_dir is not None:
            from greenlm.train.dynamics import install_dynamics

            install_dynamics(dynamics_dir, folder)
        if rows is not None:
            atomic_write_json(folder / SELECTION_FILE, {"spec": config.train_selection, "map": config.selection_map,
                                                        "rows": rows})

    return StageOutput(metrics=metrics, write=write)
