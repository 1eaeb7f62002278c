"""Which numeric precision to train in: bf16 autocast where the hardware runs it natively, else fp32."""

from __future__ import annotations

import torch

from greenlm.common import GreenlmError
from greenlm.common.hardware import cpu_has_bf16


def resolve_precision(requested: str) -> str:
    """``auto`` -> ``bf16`` on a bf16-capable GPU, else ``fp32`` (CPU included); ``bf16`` is refused where unsupported."""
    if torch.cuda.is_available():
        supported = torch.cuda.is_bf16_supported()
    else:
        supported = cpu_has_bf16()
    if requested == "auto":
        # On CPU auto stays fp32: bf16 autocast changes every matmul's numerics, and its gain on this
        # project's 2-core Xeon (AMX present) ranged from a loss under heavy load to 1.3x fp32 when quieter
        # (docs/benchmarks.md, training throughput). Ask for it with precision bf16.
        return "bf16" if supported and torch.cuda.is_available() else "fp32"
    if requested == "bf16" and not supported:
        raise GreenlmError("precision bf16 asked for, but this machine has no native bf16 (AVX512-BF16/AMX or GPU); use fp32")
    return requested
