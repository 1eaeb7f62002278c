"""Running models: the inference engine and its torch / ONNX Runtime back ends, ONNX export, speed
measurement (the timing protocol applied to models) and ``greenlm bench``. Sits above ``greenlm.models``
(architectures, loading) and below training and compression, which evaluate and time through it.

Names load on first use: importing a submodule (``greenlm.runtime.onnx``) does not import torch.
"""

from greenlm.common.lazy import by_module, lazy_names

_LAZY = by_module({
    "greenlm.runtime.inference": "predict_logits predict_outputs predict_records",
    "greenlm.runtime.speed": "SpeedReport interleaved_speed measure_speed run_batches side_by_side speed_inputs"
                             " torch_forward with_stream",
})

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)
