"""Distillation's models from folders: the teacher (checked to be fine-tuned for the task, unless allowed) and
a pre-trained student (checked to share the teacher's tokens)."""

from __future__ import annotations

from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.compress.distill_config import DistillConfig
from greenlm.data import Task
from greenlm.models import load_classifier
from greenlm.models.loading import is_sequence_classifier
from greenlm.models import students as st


def teacher_tuning_problem(config, task: Task) -> str | None:
    """Why a teacher folder's model is not fine-tuned for ``task`` (None when it is)."""
    if not is_sequence_classifier(config):
        archs = getattr(config, "architectures", None) or []
        return f"it is a {archs[0] if archs else 'model'} without a classification head fine-tuned on '{task.name}'"
    labels = [config.id2label[i] for i in sorted(config.id2label)]
    if sorted(labels) != sorted(task.labels):
        return f"its labels {labels} are not the task's {list(task.labels)}"
    return None


def check_teacher(path: Path, task: Task, allow_untuned: bool) -> str | None:
    """Refuse a teacher folder that is missing or not fine-tuned for ``task`` (unless allowed); returns the problem."""
    from greenlm.models.loading import check_local_weights, model_config

    if not path.is_dir():
        raise GreenlmError(f"teacher '{path}' is not a model folder; give the folder `greenlm train` wrote")
    check_local_weights(path, allow_pickle=False)
    problem = teacher_tuning_problem(model_config(path), task)
    if problem and not allow_untuned:
        raise GreenlmError(
            f"teacher '{path}' is not fine-tuned for task '{task.name}': {problem}. Fine-tune it first"
            f" (greenlm train --task {task.name} --model {path} --out DIR), or pass --allow-untuned-teacher"
            " (distilling from an untuned teacher gives a useless student)"
        )
    return problem


def _load_teacher(path: Path, task: Task, config: DistillConfig, on_note):
    problem = check_teacher(path, task, config.allow_untuned_teacher)
    if problem:
        on_note(f"teacher is not fine-tuned for '{task.name}' ({problem}); distilling anyway, as asked")
        loaded = load_classifier(str(path), labels=list(task.labels), trainable=True)
    else:
        loaded = load_classifier(str(path), trainable=True)
    saved = getattr(loaded.model.config, "greenlm", None) or {}
    if not problem and saved.get("task") not in (None, task.name):
        on_note(f"teacher was fine-tuned on '{saved['task']}', not '{task.name}' (same labels); using it")
    st.check_bert_style(loaded.model.config, f"teacher '{path}'")
    return loaded


def _pretrained_student(spec: str, teacher_loaded, note):
    """A pre-trained model as the student (e.g. a general-distilled TinyBERT): it must share the teacher's tokens."""
    loaded = load_classifier(spec, labels=list(teacher_loaded.labels), trainable=True)
    for message in loaded.notes:
        note(f"student: {message}")
    if loaded.tokenizer.get_vocab() != teacher_loaded.tokenizer.get_vocab():
        raise GreenlmError(
            f"student '{spec}' has a different tokenizer (vocabulary) from the teacher's; distillation here compares"
            " token by token, so the student must use the teacher's tokenizer (or give a shape such as 4x312)"
        )
    st.check_bert_style(loaded.model.config, f"student '{spec}'")
    return loaded.model, loaded.tokenizer, st.teacher_shape(loaded.model.config)
