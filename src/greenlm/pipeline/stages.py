"""The stage methods a recipe can name, each a config dataclass plus a ``run`` function.

Every method's module exposes ``<Name>Config`` (flat, typed, validated, the recipe's settings and
their defaults) and ``run(input_dir, task, config, out_dir, *, work_dir, progress, on_note,
teacher_dir) -> metrics``, which writes a complete model folder at ``out_dir`` and resumes from
``work_dir``. Modules are imported only when a recipe uses them.
"""

from __future__ import annotations

import importlib
import importlib.util

# method -> (module, config class). Order is the order `greenlm run` documents them in.
_METHODS: dict[str, tuple[str, str]] = {
    "finetune": ("greenlm.pipeline.finetune_stage", "FinetuneStageConfig"),
    "distill": ("greenlm.compress.distill", "DistillConfig"),
    "prune": ("greenlm.compress.prune", "PruneConfig"),
    "quantize": ("greenlm.compress.quantize", "QuantizeConfig"),
    "early_exit": ("greenlm.compress.early_exit", "EarlyExitConfig"),
}


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def known_methods() -> list[str]:
    """The methods this installation has (compression methods land one by one)."""
    return [name for name, (module, _) in _METHODS.items() if _available(module)]


def method_module(method: str):
    return importlib.import_module(_METHODS[method][0])


def method_config_class(method: str):
    return getattr(method_module(method), _METHODS[method][1])


def method_runner(method: str):
    return method_module(method).run
