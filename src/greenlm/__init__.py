"""greenlm: cheaper transformer text models, with an honest price tag on every result.

``greenlm.PriceTag`` measures any block of code; ``greenlm.finetune``, ``distill``, ``prune``, ``quantize``,
``early_exit`` and ``run`` are the CLI's commands as functions (docs/python-api.md):

    teacher = greenlm.finetune("minilm", task="sst2", epochs=1)
    student = greenlm.distill(teacher, task="sst2", student="3x256")

Heavier parts load only when first used.
"""

from greenlm.common.lazy import lazy_names

__version__ = "0.1.0"

# Public names -> "module:attribute", imported on first access so `import greenlm` stays instant.
_LAZY = {
    "PriceTag": "greenlm.measure:PriceTag",
    "PriceTagRecord": "greenlm.measure:PriceTagRecord",
    "count_flops": "greenlm.measure:count_flops",
    "count_params": "greenlm.measure:count_params",
    "load": "greenlm.runtime.engine:load",
    "finetune": "greenlm.api:finetune",
    "distill": "greenlm.api:distill",
    "prune": "greenlm.api:prune",
    "quantize": "greenlm.api:quantize",
    "early_exit": "greenlm.api:early_exit",
    "convert_attention": "greenlm.api:convert_attention",
    "run": "greenlm.api:run",
    "apply": "greenlm.stage.inmemory:apply",
    "RunResult": "greenlm.api:RunResult",
    "StageResult": "greenlm.stage.shell:StageResult",
}


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)
