"""Pre-training that costs less (issue 17): masked-LM and ELECTRA pre-training of encoders on the one training loop,
random / whole-word / content-word masking on one budget, a vocabulary of your size, and comparisons at equal FLOPs.

Layer: above ``greenlm.train`` (it runs the one loop), below ``greenlm.stage``. Settings (``config.py``) import without
torch; the rest loads on first use. See docs/pretraining.md.
"""

from greenlm.common.lazy import by_module, lazy_names

_LAZY = by_module({
    "greenlm.pretrain.config": "PretrainConfig",
    "greenlm.pretrain.run": "PretrainResult run_pretraining",
    "greenlm.pretrain.compare": "CompareConfig run_compare",
})

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)
