"""Compression methods, one algorithm module each (distill, prune, quantize, early exit) with its settings in a
plain-Python ``<method>_config.py`` beside it.

Every method is ``run(ctx: greenlm.stage.StageContext, config) -> greenlm.stage.StageOutput`` and returns a real,
smaller or faster model; the stage shell (``greenlm.stage``) runs it for ``greenlm <method>`` and ``greenlm run``.
Methods never import each other; shared pieces (losses, importance, sparsity, augmentation) are helper modules.
"""
