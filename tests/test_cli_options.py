"""Every method's sub-command takes exactly its config's settings, under the recipe's names, with the config's
defaults: defaults live in one place (the config dataclass) and the command line cannot drift from it."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys

import pytest

from greenlm.cli._config_options import TRI_STATE, config_from_options, field_docs, option_name
from greenlm.stage import METHODS

COMMANDS = {"finetune": ("greenlm.cli.train_cmd", "train_command", "train"),
            "distill": ("greenlm.cli.distill_cmd", "distill_command", "distill"),
            "prune": ("greenlm.cli.prune_cmd", "prune_command", "prune"),
            "quantize": ("greenlm.cli.quantize_cmd", "quantize_command", "quantize"),
            "early_exit": ("greenlm.cli.early_exit_cmd", "early_exit_command", "early-exit"),
            "convert_attention": ("greenlm.cli.convert_attention_cmd", "convert_attention_command", "convert-attention")}


def _command(method):
    import importlib

    module, name, _ = COMMANDS[method]
    return getattr(importlib.import_module(module), name)


def test_every_registered_method_has_a_command():
    assert set(COMMANDS) == set(METHODS)


@pytest.mark.parametrize("method", sorted(COMMANDS))
def test_options_are_the_config_fields(method):
    command = _command(method)
    config = METHODS[method].config_type()
    fields = {f.name: f for f in dataclasses.fields(config)}
    defaults = config()
    params = inspect.signature(command).parameters
    settings = [name for name in params if name not in command.command_only]
    # a field with no option, or an option with no field, fails here
    assert sorted(settings) == sorted(fields), (set(settings) ^ set(fields))
    for name in settings:
        option = params[name].annotation.__metadata__[0]
        # with Annotated, Typer reads a first positional "--name" as the first option name
        decls = [option.default, *option.param_decls] if str(option.default).startswith("-") else option.param_decls
        assert decls[0].split("/")[0] == option_name(name), name  # the recipe's name comes first
        built = config_from_options(config, {name: params[name].default})
        assert getattr(built, name) == getattr(defaults, name), name  # the default is the config's
        assert field_docs(config).get(name), f"{method}.{name} has no comment to serve as its help"


def test_tri_state_and_list_options_round_trip():
    from greenlm.compress.early_exit_config import EarlyExitConfig
    from greenlm.compress.quantize_config import QuantizeConfig

    assert config_from_options(QuantizeConfig, {"per_channel": "on"}).per_channel is True
    assert config_from_options(QuantizeConfig, {"per_channel": "auto"}).per_channel is None
    assert set(TRI_STATE) == {"auto", "on", "off"}
    assert config_from_options(EarlyExitConfig, {"exit_layers": "2,4"}).exit_layers == [2, 4]
    assert config_from_options(EarlyExitConfig, {"exit_layers": "all"}).exit_layers is None


def test_old_short_names_still_work_and_help_comes_from_the_config():
    out = subprocess.run([sys.executable, "-m", "greenlm", "prune", "--help"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0
    assert "--head-sparsity" in out.stdout and "--heads" in out.stdout
    assert "share of attention heads to remove" in out.stdout.lower()

