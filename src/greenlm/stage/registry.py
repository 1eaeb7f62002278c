"""The methods a stage can run: one registration line each.

A method is a config dataclass in a plain-Python module (flat, typed, validated: the recipe's settings,
their defaults and, as comments, their help, in one place) and an algorithm module with
``run(ctx: StageContext, config) -> StageOutput``: the algorithm, given
the stage's inputs and services (``greenlm.stage.context``). Optionally ``uses_teacher(config) ->
bool``: whether the method learns from the fine-tuned teacher (then the teacher is part of the
stage's identity). Modules are imported only when used, so a registration costs nothing.

To add a method: write its config module and its algorithm module, add one ``Method(...)`` line below, its
tests and its docs. ``greenlm run`` recipes and the Python API take it at once; a sub-command is ten lines
(``greenlm.cli._method_command``).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from greenlm.common import GreenlmError


@dataclass(frozen=True)
class Method:
    name: str
    module: str  # the algorithm: run(ctx, config) -> StageOutput
    config: str  # "module:Class" of its settings; a plain-Python module (the CLI reads it at start-up)
    summary: str
    input: str = "folder"  # what it starts from: "folder" (a fine-tuned model folder) or "spec" (any model spec)

    def load(self):
        return importlib.import_module(self.module)

    def config_type(self) -> type:
        module, _, name = self.config.partition(":")
        return getattr(importlib.import_module(module), name)

    def run(self, ctx, config):
        return self.load().run(ctx, config)

    def uses_teacher(self, config) -> bool:
        decide = getattr(self.load(), "uses_teacher", None)
        return bool(decide(config)) if decide is not None else False

    def available(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False


# Order is the order `greenlm run` documents them in.
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("finetune", "greenlm.pipeline.finetune_stage", "greenlm.pipeline.finetune_config:FinetuneStageConfig",
           "fine-tune a pre-trained model on the task (the teacher)", input="spec"),
    Method("distill", "greenlm.compress.distill", "greenlm.compress.distill_config:DistillConfig",
           "train a smaller student to imitate the teacher (TinyBERT / DistilBERT losses)"),
    Method("prune", "greenlm.compress.prune", "greenlm.compress.prune_config:PruneConfig",
           "remove heads, FFN neurons and layers (structured) or zero weights (unstructured)"),
    Method("quantize", "greenlm.compress.quantize", "greenlm.compress.quantize_config:QuantizeConfig",
           "int8 (ONNX Runtime, dynamic or static) or bf16 weights"),
    Method("early_exit", "greenlm.compress.early_exit", "greenlm.compress.early_exit_config:EarlyExitConfig",
           "exit heads after intermediate layers, a threshold chosen on held-out training data"),
    Method("convert_attention", "greenlm.compress.convert_attention",
           "greenlm.compress.convert_attention_config:ConvertAttentionConfig",
           "swap softmax attention for a linear one (RFA, Performer, ABC), recover by distillation"),
)}


def known_methods() -> list[str]:
    """The methods this installation has."""
    return [name for name, method in METHODS.items() if method.available()]


def get_method(name: str) -> Method:
    if name not in METHODS:
        import difflib

        hint = difflib.get_close_matches(name, list(METHODS), n=1)
        raise GreenlmError(f"unknown method '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else
                                                          f"; known: {', '.join(METHODS)}"))
    return METHODS[name]
