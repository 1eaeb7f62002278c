"""The one training loop (Accelerate), its checkpoints, callbacks and metrics."""

from greenlm.train.config import TrainConfig
from greenlm.train.loop import Callback, TrainResult, TrainState, evaluate, train
from greenlm.train.metrics import classification_metrics
from greenlm.train.precision import resolve_precision

__all__ = ["Callback", "TrainConfig", "TrainResult", "TrainState", "classification_metrics", "evaluate",
           "resolve_precision", "train"]
