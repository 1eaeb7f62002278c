"""Loading and saving Hugging Face classifiers, the default offline teacher, tiny models for tests."""

from greenlm.models.inference import predict_logits, predict_records
from greenlm.models.loading import (
    LoadedModel,
    load_classifier,
    load_tokenizer,
    model_max_length,
    save_classifier,
)
from greenlm.models.speed import SpeedReport, measure_speed, run_batches, speed_inputs, torch_forward, with_stream
from greenlm.models.sources import ModelSource, default_teacher_path, resolve_model_source
from greenlm.models.tiny import TinySpec, build_tiny_classifier

__all__ = [
    "LoadedModel",
    "ModelSource",
    "SpeedReport",
    "TinySpec",
    "build_tiny_classifier",
    "default_teacher_path",
    "load_classifier",
    "load_tokenizer",
    "model_max_length",
    "predict_logits",
    "predict_records",
    "resolve_model_source",
    "save_classifier",
    "measure_speed",
    "run_batches",
    "speed_inputs",
    "torch_forward",
    "with_stream",
]
