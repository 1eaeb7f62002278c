"""The stage shell: one way to run any method (``greenlm <method>`` and every stage of ``greenlm run``).

A method is an algorithm module (config dataclass + ``run(ctx, config) -> StageOutput``) registered in
``registry.py``; this package gives it its inputs and services (``context.py``), the price tag of its
phases (``costs.py``), a locked, resumable work folder (``workdir.py``), and writes its folder whole
(``folders.py``, ``shell.py``). It sits above training, runtime and report, below the methods: methods
are found through the registry's module names, never imported here.
"""

from greenlm.stage.context import StageContext, StageOutput
from greenlm.stage.registry import METHODS, Method, get_method, known_methods
from greenlm.stage.shell import PriceSettings, StageResult, run_stage, stage_identity

__all__ = ["METHODS", "Method", "PriceSettings", "StageContext", "StageOutput", "StageResult", "get_method",
           "known_methods", "run_stage", "stage_identity"]
