"""The ``greenlm`` command. Each sub-command lives in its own module with no logic of its own."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Annotated

import typer

from greenlm.common import BudgetExceeded, GreenlmError, write_error

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


def _show_greenlm_logs():
    """greenlm's own log lines (e.g. training progress under --no-progress) go to stderr, one per line, for the
    length of the command; returns what puts the ``greenlm`` logger back as it was.

    Printed by this handler only: while it is there the ``greenlm`` logger does not pass its lines on to the root
    logger, so a handler a library leaves there (``logging.basicConfig``, run on import or by a module-level
    ``logging.warning``) cannot print them a second time."""
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


_MESSAGE_CHARS = 600  # a message naming a huge value is cut here


def _one_line(message: str) -> str:
    line = " ".join(str(message).split())
    return line if len(line) <= _MESSAGE_CHARS else line[: _MESSAGE_CHARS - 1] + "…"


def _fail(message: str, code: int = 2) -> None:
    print(f"greenlm: error: {_one_line(message)}", file=sys.stderr)
    sys.exit(code)


def _os_problem(err: OSError) -> str:
    """An OSError as the person meets it: what failed, on which file, and what to try."""
    import errno

    where = f" ({err.filename})" if err.filename else ""
    hints = {
        errno.ENOSPC: "the disk is full; free space, then run the same command again",
        errno.EDQUOT: "the disk quota is used up; free space, then run the same command again",
        errno.EROFS: "the file system is read-only; choose a folder you can write",
        errno.EACCES: "permission denied; choose a folder you can write",
        errno.EPERM: "permission denied; choose a folder you can write",
        errno.ENAMETOOLONG: "a file name is too long; choose a shorter path",
        errno.ENOENT: "no such file or folder",
    }
    return f"{hints.get(err.errno, err.strerror or str(err))}{where}"


_OUT_OF_MEMORY = "out of memory: a size is too large for this machine; try a smaller batch size, length, model or input"


def _out_of_memory(err: BaseException) -> bool:
    """torch refuses an allocation with its own errors: a RuntimeError from the CPU allocator ("can't allocate
    memory"), torch.OutOfMemoryError on a GPU."""
    text = str(err)
    return type(err).__name__ == "OutOfMemoryError" or (
        isinstance(err, RuntimeError) and ("can't allocate memory" in text or "CUDA out of memory" in text))


def _note_interrupts() -> list:
    """Ctrl-C still raises KeyboardInterrupt where it lands; the returned list becomes non-empty when it did."""
    import signal

    seen: list = []
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return seen  # ignored (a background job) or handled by someone else: leave it alone

    def on_interrupt(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread (greenlm called from a thread): nothing to add
        pass
    return seen


def _click_exceptions():
    """Click's exception classes: typer >= 0.24 carries its own copy of click, older typer uses click itself."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def main() -> None:
    """Entry point: bad input ends in one line on stderr and exit code 2, never a traceback.

    Click runs outside its standalone mode so that usage errors and Ctrl-C reach greenlm's own one-line
    messages (click would print a box, or "Aborted!" with exit code 1). Problems of the machine rather than
    of greenlm (a full disk, a read-only folder, a name too long, bytes that are not UTF-8) get one line too.
    """
    cx = _click_exceptions()
    restore_logs = _show_greenlm_logs()
    interrupted = _note_interrupts()
    try:
        code = app(prog_name="greenlm", standalone_mode=False)
        if interrupted:  # typer turned Ctrl-C into exit code 130 before greenlm could say anything
            raise KeyboardInterrupt
    except GreenlmError as err:
        _fail(str(err))
    except BudgetExceeded as err:  # not bad input: its own exit code, so CI can fail a job that would overspend
        print(f"greenlm: {_one_line(str(err))}", file=sys.stderr)
        sys.exit(err.exit_code)
    except cx.NoArgsIsHelpError as err:
        err.show()  # the help text, as for --help
        sys.exit(2)
    except cx.UsageError as err:
        command = err.ctx.command_path if err.ctx is not None else "greenlm"
        _fail(f"{err.format_message()} (see '{command} --help')")
    except cx.ClickException as err:  # click's own bad-input errors (a file option, say)
        _fail(err.format_message())
    except (KeyboardInterrupt, typer.Abort):
        print("greenlm: interrupted; run the same command again to resume.", file=sys.stderr)
        sys.exit(130)
    except OSError as err:
        _fail(_os_problem(err))
    except UnicodeDecodeError as err:
        _fail(f"input is not UTF-8 text (byte {err.start}: {err.object[err.start:err.start + 1]!r}); save it as UTF-8")
    except ValueError as err:
        if "null byte" not in str(err):
            raise
        _fail("a path or name contains a NUL byte; remove it")
    except RecursionError:
        _fail("the input is nested too deeply to read")
    except MemoryError:
        _fail(_OUT_OF_MEMORY)
    except Exception as err:  # a failed write, or memory refused, reported by torch or safetensors in their own types
        if _out_of_memory(err):
            _fail(f"{_OUT_OF_MEMORY} ({_one_line(str(err))[:160]})")
        why = write_error(err)
        if why is None:
            raise
        _fail(f"could not write a file ({why}); free space or choose a folder you can write, then run the same"
              " command again: finished work is kept")
    finally:
        restore_logs()
    sys.exit(code if isinstance(code, int) else 0)  # as click's standalone mode does: always exit
