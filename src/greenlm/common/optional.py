"""Optional dependencies: the greenlm extra that brings each one, whether it is installed, one error.

    if is_available("matplotlib"): ...               # a fallback exists: check without importing
    ort = require("onnxruntime", "int8 models")      # no fallback: the module, or a GreenlmError:
    # ONNX Runtime is not installed (needed for int8 models); install it with: pip install 'greenlm[onnx]'

Packages are named by their pip distribution (``nvidia-ml-py``, imported as ``pynvml``). Standard
library only; tests/test_common_optional.py checks the table against pyproject.toml's extras.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from types import ModuleType
from typing import NamedTuple

from greenlm.common.errors import GreenlmError


class OptionalPackage(NamedTuple):
    module: str  # the import name
    extra: str  # pip install 'greenlm[<extra>]' brings it
    title: str  # how messages name it
    purpose: str  # what greenlm needs it for: the message's default "needed for ..."


# pip distribution -> what greenlm knows about it (pyproject.toml [project.optional-dependencies])
PACKAGES: dict[str, OptionalPackage] = {
    "datasets": OptionalPackage("datasets", "hub", "datasets", "tasks from the Hugging Face Hub"),
    "codecarbon": OptionalPackage("codecarbon", "energy", "CodeCarbon", "the codecarbon energy backend"),
    "nvidia-ml-py": OptionalPackage("pynvml", "energy", "nvidia-ml-py", "reading GPU power through NVML"),
    "zeus": OptionalPackage("zeus", "zeus", "Zeus", "the zeus energy backend"),
    "onnx": OptionalPackage("onnx", "onnx", "ONNX", "ONNX export and int8 models"),
    "onnxruntime": OptionalPackage("onnxruntime", "onnx", "ONNX Runtime", "ONNX export and int8 models"),
    "matplotlib": OptionalPackage("matplotlib", "report", "matplotlib", "report figures"),
    "optuna": OptionalPackage("optuna", "sweep", "Optuna", "greenlm sweep"),
    "psycopg": OptionalPackage("psycopg", "team", "psycopg", "a PostgreSQL ledger or sweep storage"),
    "tensorboard": OptionalPackage("tensorboard", "tensorboard", "TensorBoard", "--report-to tensorboard"),
    "mlflow": OptionalPackage("mlflow", "mlflow", "MLflow", "--report-to mlflow"),
    "wandb": OptionalPackage("wandb", "wandb", "Weights & Biases (wandb)", "--report-to wandb"),
}


def is_available(name: str) -> bool:
    """Whether the optional package ``name`` can be imported; never imports it."""
    module = PACKAGES[name].module
    if module in sys.modules:  # imported already, or None: blocked (how tests hide a package)
        return sys.modules[module] is not None
    return _findable(module)


@functools.lru_cache(maxsize=None)
def _findable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def missing_message(name: str, purpose: str | None = None) -> str:
    """The one line that says ``name`` is missing, what for, and which greenlm extra to install."""
    package = PACKAGES[name]
    return (f"{package.title} is not installed (needed for {purpose or package.purpose}); "
            f"install it with: pip install 'greenlm[{package.extra}]'")


def require(name: str, purpose: str | None = None) -> ModuleType:
    """The imported module of ``name``, or a ``GreenlmError`` with ``missing_message``."""
    if not is_available(name):
        raise GreenlmError(missing_message(name, purpose))
    return importlib.import_module(PACKAGES[name].module)
