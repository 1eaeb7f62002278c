"""The ``greenlm`` command. Each sub-command lives in its own module with no logic of its own."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Annotated

import typer

from greenlm.common import GreenlmError

app = typer.Typer(
    name="greenlm",
    help="Make transformer text models cheaper to train and run, and put a price tag on every result.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    context_settings={"help_option_names": ["-h", "--help"]},
)

# One module per sub-command; each exposes ``register(app)``.
_COMMAND_MODULES = [
    "run_cmd",
    "report_cmd",
    "sweep_cmd",
    "recipes_cmd",
    "tasks_cmd",
    "train_cmd",
    "eval_cmd",
    "predict_cmd",
    "env_cmd",
    "measure_cmd",
    "flops_cmd",
    "calc_cmd",
    "ledger_cmd",
    "prune_cmd",
    "distill_cmd",
    "early_exit_cmd",
    "convert_attention_cmd",
    "quantize_cmd",
    "export_cmd",
    "bench_cmd",
    "schedule_cmd",
    "datamap_cmd",
    "data_cmd",
    "pretrain_cmd",
]

for _name in _COMMAND_MODULES:
    importlib.import_module(f"greenlm.cli.{_name}").register(app)


@app.callback()
def _global_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print results and errors only: no notes, progress bars or progress lines.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print greenlm's debug lines.")] = False,
) -> None:
    """Make transformer text models cheaper to train and run, and put a price tag on every result."""
    from greenlm.cli import _common
    from greenlm.common import progress

    if quiet and verbose:
        raise GreenlmError("give --quiet or --verbose, not both")
    _common.set_quiet(quiet)
    progress.set_quiet(quiet)
    logging.getLogger("greenlm").setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


def _show_greenlm_logs() -> None:
    """greenlm's own log lines (e.g. training progress under --no-progress) go to stderr, one per line."""
    logger = logging.getLogger("greenlm")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("greenlm: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main() -> None:
    """Entry point: bad input ends in one line on stderr and exit code 2, never a traceback."""
    _show_greenlm_logs()
    try:
        app(prog_name="greenlm")
    except GreenlmError as err:
        print(f"greenlm: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("greenlm: interrupted; run the same command again to resume.", file=sys.stderr)
        sys.exit(130)
