"""Architectures and loading: Hugging Face classifiers, the default offline teacher, tiny models, student
shapes, pruned and early-exit architectures. Running models fast lives one layer up, in ``greenlm.runtime``."""

from greenlm.models.loading import (
    LoadedModel,
    load_classifier,
    load_tokenizer,
    input_max_length,
    model_max_length,
    save_classifier,
)
from greenlm.models.sources import ModelSource, default_teacher_path, resolve_model_source
from greenlm.models.tiny import TinySpec, build_tiny_classifier

__all__ = [
    "LoadedModel",
    "ModelSource",
    "TinySpec",
    "build_tiny_classifier",
    "default_teacher_path",
    "load_classifier",
    "load_tokenizer",
    "input_max_length",
    "model_max_length",
    "resolve_model_source",
    "save_classifier",
]
