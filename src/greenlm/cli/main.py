"""The ``greenlm`` command. Each sub-command lives in its own module with no logic of its own."""

from __future__ import annotations

import importlib
import sys

import typer

from greenlm.common import GreenlmError

app = typer.Typer(
    name="greenlm",
    help="Make transformer text models cheaper to train and run, and put a price tag on every result.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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


def _show_greenlm_logs():
    """greenlm's own log lines (e.g. training progress under --no-progress) go to stderr, one per line, for the
    length of the command; returns what puts the ``greenlm`` logger back as it was.

    Printed by this handler only: while it is there the ``greenlm`` logger does not pass its lines on to the root
    logger, so a handler a library leaves there (``logging.basicConfig``, run on import or by a module-level
    ``logging.warning``) cannot print them a second time."""
    import logging

    logger = logging.getLogger("greenlm")
    if logger.handlers:  # someone configured it (an embedding program): leave it alone
        return lambda: None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("greenlm: %(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate

    return restore


def main() -> None:
    """Entry point: bad input ends in one line on stderr and exit code 2, never a traceback."""
    restore_logs = _show_greenlm_logs()
    try:
        app(prog_name="greenlm")
    except GreenlmError as err:
        print(f"greenlm: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("greenlm: interrupted; run the same command again to resume.", file=sys.stderr)
        sys.exit(130)
    finally:
        restore_logs()
