"""greenlm: cheaper transformer text models, with an honest price tag on every result.

``greenlm.PriceTag`` measures any block of code; heavier parts load only when first used.
"""

import importlib

__version__ = "0.1.0"

# Public names -> "module:attribute", imported on first access so `import greenlm` stays instant.
_LAZY = {
    "PriceTag": "greenlm.measure:PriceTag",
    "PriceTagRecord": "greenlm.measure:PriceTagRecord",
    "count_flops": "greenlm.measure:count_flops",
    "count_params": "greenlm.measure:count_params",
    "load": "greenlm.models.runtime:load",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'greenlm' has no attribute {name!r}")
    module, _, attribute = _LAZY[name].partition(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
