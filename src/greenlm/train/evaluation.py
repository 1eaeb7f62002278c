"""Evaluate a saved classifier on a task split, matching the task's labels to the model's by name."""

from __future__ import annotations

from greenlm.common import GreenlmError
from greenlm.data import Task, align_labels, encode_split, truncation_record
from greenlm.models import load_classifier, model_max_length
from greenlm.train.loop import predict_logits
from greenlm.train.metrics import detailed_metrics


def evaluate_on_task(model_spec: str, task: Task, split_name: str, *, batch_size: int = 128,
                     max_length: int | None = None, allow_pickle: bool = False, progress: bool = False) -> dict:
    """Metrics of ``model_spec`` on one split, and ``truncation`` (how many rows were cut at max_length)."""
    loaded = load_classifier(model_spec, allow_pickle=allow_pickle)
    model, tokenizer = loaded.model, loaded.tokenizer
    saved = getattr(model.config, "greenlm", None) or {}
    max_length = max_length if max_length is not None else saved.get("max_length") or 128
    limit = model_max_length(model.config)
    if max_length > limit:
        raise GreenlmError(f"--max-length {max_length} is above what the model's positions allow ({limit})")
    split = align_labels(task.split(split_name), task, loaded.labels, model_spec)
    encoded = encode_split(split, tokenizer, max_length)
    logits = predict_logits(model, encoded, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size,
                            progress=f"eval {task.name}/{split_name}" if progress else None)
    # accuracy, macro-F1, MCC, and each class's precision/recall/F1, the confusion matrix, the accuracy's interval
    metrics = detailed_metrics(encoded.labels, logits.argmax(-1).tolist(), [str(label) for label in loaded.labels])
    return {**metrics, "truncation": truncation_record(encoded)}
