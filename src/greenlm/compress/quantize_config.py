"""Settings of the ``quantize`` method (``greenlm.compress.quantize``): every setting and its default, here only.

Plain Python (no torch): the command line builds ``greenlm quantize``'s options from this class at start-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from greenlm.common.numbers import check_numbers, max_length_setting
from greenlm.common import GreenlmError

# ONNX Runtime's static calibration methods; greenlm.runtime.onnx.CALIBRATION_METHODS is the same tuple (tested),
# repeated here so that this module, read by the command line at start-up, needs neither numpy nor ONNX.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
SCHEMES = ("int8-dynamic", "int8-static", "bf16")
RUNTIMES = ("onnx", "torch")  # where int8 runs: ONNX Runtime, or PyTorch (dynamic int8 of the linear layers)


@dataclass(frozen=True)
class QuantizeConfig:
    scheme: str = "int8-dynamic"  # int8-dynamic | int8-static | bf16
    # int8-dynamic runs in onnx (ONNX Runtime) or torch (PyTorch int8 of the linear layers: keeps early exits);
    # None: torch for a model with exits, else onnx (torch where ONNX Runtime is not installed)
    runtime: str | None = None
    # int8 weight scales per output channel (True) or per tensor (False); None: both, keep the closer to fp32
    per_channel: bool | None = None
    calibration_examples: int = 256  # int8-static: training rows whose activation ranges fix the scales
    calibration_method: str = "minmax"  # int8-static: minmax | entropy | percentile (99.999th)
    tolerance_points: float = 1.0  # largest accuracy drop (points, on tune_split) accepted vs the input model
    fallback: bool = True  # int8: put the most sensitive nodes back in fp32 until the drop is within tolerance
    max_fallback_nodes: int = 8  # int8: at most this many nodes go back to fp32
    sensitivity_examples: int = 256  # int8: rows of tune_split on which each node's sensitivity is measured
    keep_over_tolerance: bool = False  # still over tolerance: keep the quantized model (else output the input)
    # int8-dynamic: ONNX Runtime's offline transformer fusions (True), none (False), None: only if measured faster
    optimize_graph: bool | None = None
    # split on which the accuracy drop is measured (tolerance, fallback); None: the selection split (validation
    # carved from train, else dev)
    tune_split: str | None = None
    max_length: int | str | None = None  # tokens per input; unset: the length the model was trained with (else 128); auto: the length that covers 99% of the training rows
    batch_size: int = 32  # examples per batch when evaluating and measuring throughput
    measure_speed: bool = True  # time the input and the quantized model side by side (throughput, latency)
    speed_examples: int = 256  # rows of tune_split used for the speed measurement
    threads: int | None = None  # intra-op threads for evaluation and timing; None: the physical cores
    seed: int = 0  # calibration sample

    def __post_init__(self):
        check_numbers(self)
        object.__setattr__(self, "max_length", max_length_setting(self.max_length, minimum=1,
                                                                  name="quantize: max_length"))
        def fail(message: str):
            raise GreenlmError(f"quantize: {message}")

        if self.scheme not in SCHEMES:
            fail(f"unknown scheme {self.scheme!r}; use one of: {', '.join(SCHEMES)}")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            fail(f"unknown runtime {self.runtime!r}; use one of: {', '.join(RUNTIMES)} (or leave it unset)")
        if self.runtime == "torch" and self.scheme != "int8-dynamic":
            fail(f"runtime torch runs int8-dynamic only (PyTorch dynamic int8), not {self.scheme}")
        if self.runtime == "onnx" and self.scheme == "bf16":
            fail("bf16 runs in PyTorch: leave runtime unset")
        if self.calibration_method not in CALIBRATION_METHODS:
            fail(f"unknown calibration_method {self.calibration_method!r};"
                 f" use one of: {', '.join(CALIBRATION_METHODS)}")
        tolerance = self.tolerance_points
        if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not 0 <= tolerance <= 100:
            fail(f"tolerance_points must be between 0 and 100 accuracy points, got {tolerance!r}")
        for name in ("calibration_examples", "sensitivity_examples", "batch_size", "speed_examples", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "seed" else 1):
                fail(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} whole number, got {value!r}")
        if not isinstance(self.max_fallback_nodes, int) or isinstance(self.max_fallback_nodes, bool) \
                or self.max_fallback_nodes < 0:
            fail(f"max_fallback_nodes must be 0 or more, got {self.max_fallback_nodes!r}")
        for name in ("threads",):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                fail(f"{name} must be a positive whole number or null, got {value!r}")
        for name in ("per_channel", "optimize_graph"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                fail(f"{name} must be true, false or null (decide by measuring), got {getattr(self, name)!r}")
        for name in ("fallback", "keep_over_tolerance", "measure_speed"):
            if not isinstance(getattr(self, name), bool):
                fail(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.tune_split is not None and (not isinstance(self.tune_split, str) or not self.tune_split):
            fail(f"tune_split must name a split (e.g. validation) or be null (the selection split), got"
                 f" {self.tune_split!r}")

    def to_dict(self) -> dict:
        return asdict(self)


# ---- evaluation helpers --------------------------------------------------------------------------
