"""Evaluate a saved classifier on a task split, matching the task's labels to the model's by name."""

from __future__ import annotations

from greenlm.data import Task, align_labels, encode_split, truncation_record
from greenlm.models import input_max_length, load_classifier
from greenlm.train.loop import predict_logits
from greenlm.train.metrics import detailed_metrics


def evaluate_on_task(model_spec: str, task: Task, split_name: str, *, batch_size: int = 128,
                     max_length: int | str | None = None, allow_pickle: bool = False, progress: bool = False,
                     on_note=None) -> dict:
    """Metrics of ``model_spec`` on one split, and ``truncation`` (how many rows were cut at max_length).
    ``max_length``: tokens per row; "auto": the length that covers most of the split's rows (said to ``on_note``);
    None: what the model was fine-tuned with, else 128."""
    loaded = load_classifier(model_spec, allow_pickle=allow_pickle)
    model, tokenizer = loaded.model, loaded.tokenizer
    split = align_labels(task.split(split_name), task, loaded.labels, model_spec)
    max_length = input_max_length(model.config, tokenizer, max_length, split, on_note,
                                  rows_name=f"{split_name} rows")
    encoded = encode_split(split, tokenizer, max_length)
    logits = predict_logits(model, encoded, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size,
                            progress=f"eval {task.name}/{split_name}" if progress else None)
    # accuracy, macro-F1, MCC, and each class's precision/recall/F1, the confusion matrix, the accuracy's interval
    metrics = detailed_metrics(encoded.labels, logits.argmax(-1).tolist(), [str(label) for label in loaded.labels])
    return {**metrics, "truncation": truncation_record(encoded)}
