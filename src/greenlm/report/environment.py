"""What this machine is: the dump a user pastes into an issue (``greenlm env``)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

from greenlm.common.optional import PACKAGES, is_available, missing_message

_PACKAGES = ("greenlm", "torch", "transformers", "accelerate", "tokenizers", "safetensors", "numpy", *PACKAGES)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _rapl_status() -> dict:
    root = Path("/sys/class/powercap")
    zones = sorted(root.glob("intel-rapl:*/energy_uj")) if root.is_dir() else []
    readable = []
    for zone in zones:
        try:
            zone.read_text()
            readable.append(str(zone.parent.name))
        except OSError:
            pass
    if readable:
        return {"readable": True, "zones": readable}
    reason = "no /sys/class/powercap/intel-rapl zones" if not zones else "energy_uj not readable (permissions)"
    return {"readable": False, "reason": reason}


def _nvml_status() -> dict:
    if not is_available("nvidia-ml-py"):
        return {"readable": False, "reason": missing_message("nvidia-ml-py")}
    import pynvml

    try:
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            return {"readable": count > 0, "gpus": count}
        finally:
            pynvml.nvmlShutdown()
    except Exception as err:  # NVMLError_LibraryNotFound, driver missing, ...
        return {"readable": False, "reason": str(err) or type(err).__name__}


def environment_report() -> dict:
    import psutil
    import torch

    from greenlm.common.hardware import cpu_has_bf16, cpu_model

    gpus = []
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "cpu": {
            "model": cpu_model(),
            "physical_cores": psutil.cpu_count(logical=False),
            "logical_cores": psutil.cpu_count(logical=True),
            "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "bf16_native": cpu_has_bf16(),
        },
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": {
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "cuda_available": torch.cuda.is_available(),
            "gpus": gpus,
        },
        "energy_counters": {"rapl": _rapl_status(), "nvml": _nvml_status()},
        "env_vars": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "GREENLM_HOME",
                                                 "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES") if k in os.environ},
    }
