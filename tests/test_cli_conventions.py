"""The conventions of a command-line tool: --json wherever results are printed, shell completion, --quiet and
--verbose before any command."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from greenlm.cli import _common
from greenlm.cli.main import app
from greenlm.common import progress

# Commands that print results (tables, figures, files written); each must offer them as JSON.
PRINTS_RESULTS = ("run", "report", "sweep", "train", "eval", "distill", "prune", "quantize", "early-exit",
                  "convert-attention", "export", "bench", "measure", "flops", "calc", "ledger", "schedule", "datamap")


def _commands():
    group = typer.main.get_command(app)
    return {name: group.commands[name] for name in group.commands}


@pytest.mark.parametrize("name", PRINTS_RESULTS)
def test_json_wherever_results_are_printed(name):
    command = _commands()[name]
    if hasattr(command, "commands"):  # a group (schedule): at least its main sub-command
        options = {opt for sub in command.commands.values() for p in sub.params for opt in p.opts}
    else:
        options = {opt for p in command.params for opt in p.opts}
    assert "--json" in options, name


def test_shell_completion_is_on():
    env = {**os.environ, "_GREENLM_COMPLETE": "complete_bash", "COMP_WORDS": "greenlm ru", "COMP_CWORD": "1"}
    done = subprocess.run([sys.executable, "-m", "greenlm"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["run"], done.stderr
    options = {opt for p in typer.main.get_command(app).params for opt in p.opts}
    assert {"--install-completion", "--show-completion"} <= options


def test_quiet_and_verbose(capsys):
    runner = CliRunner()
    logger = logging.getLogger("greenlm")
    level = logger.level
    try:
        assert runner.invoke(app, ["--quiet", "recipes"]).exit_code == 0
        assert logger.level == logging.WARNING and progress._QUIET
        _common.err("a note")
        assert capsys.readouterr().err == ""  # notes are not printed
        assert not progress.ProgressBar(True, "x", 3)._bar  # nor progress bars, whatever the command asked
        assert runner.invoke(app, ["--verbose", "recipes"]).exit_code == 0
        assert logger.level == logging.DEBUG and not progress._QUIET
        _common.err("a note")
        assert capsys.readouterr().err == "a note\n"
        assert runner.invoke(app, ["recipes"]).exit_code == 0
        assert logger.level == logging.INFO
        both = runner.invoke(app, ["-q", "-v", "recipes"])
        assert both.exit_code != 0 and "not both" in str(both.exception)
    finally:
        _common.set_quiet(False)
        progress.set_quiet(False)
        logger.setLevel(level)
