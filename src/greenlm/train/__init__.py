"""The one training loop (Accelerate), its checkpoints, callbacks and metrics.

Names load on first use, so ``greenlm.train.config`` (the settings, plain Python) imports without torch:
the command line builds its options from the configs at start-up.
"""

from greenlm.common.lazy import by_module, lazy_names

_LAZY = by_module({
    "greenlm.train.config": "TrainConfig",
    "greenlm.train.loop": "Callback TrainResult TrainState evaluate train",
    "greenlm.train.metrics": "classification_metrics",
    "greenlm.train.precision": "resolve_precision",
})

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)
