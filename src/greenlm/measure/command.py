"""Run a command under a price tag, like ``time``: its wall time, the CPU time of it and its
children, energy, CO2e and cost; the command's own exit status is kept.

Exit codes follow the shells: the command's own code; 128 + N when a signal N ended it; 127 when
the command does not exist; 126 when it exists but cannot be run. Processes that detach from the
command's tree (daemons re-parented to init) are not followed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from greenlm.measure.energy import ProcessTree
from greenlm.measure.pricetag import PriceTag, PriceTagRecord

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    record: PriceTagRecord | None  # None when the command could not start
    error: str | None = None  # one line for the user when it could not start


def resolve_command(argv: list[str]) -> tuple[str | None, int, str | None]:
    """(path to run, 0, None), or (None, exit code, message) when it cannot be run."""
    if not argv:
        return None, 2, "no command given: greenlm measure [OPTIONS] -- COMMAND [ARGS...]"
    program = argv[0]
    if os.sep in program or (os.altsep and os.altsep in program):
        if not os.path.exists(program):
            return None, EXIT_NOT_FOUND, f"command not found: {program}"
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            return None, EXIT_NOT_EXECUTABLE, f"cannot run {program}: not an executable file"
        return program, 0, None
    found = shutil.which(program)
    if found is None:
        return None, EXIT_NOT_FOUND, f"command not found: {program} (not on PATH)"
    return found, 0, None


def measure_command(argv: list[str], *, name: str | None = None, **tag_options) -> CommandResult:
    """Run ``argv`` (no shell) under a PriceTag built with ``tag_options``; wait for it; return its
    exit code and the record. The tag starts before the command and stops after it was reaped."""
    path, code, message = resolve_command(argv)
    if path is None:
        return CommandResult(code, None, message)
    tree = ProcessTree.for_command()
    meta = dict(tag_options.pop("meta", None) or {})
    meta.update(program=os.path.basename(argv[0]), arguments=len(argv) - 1)
    tag = PriceTag(name or os.path.basename(argv[0]), _process_tree=tree, meta=meta, **tag_options)
    tag.start()
    restore = _ignore_sigint()  # Ctrl-C reaches the command; greenlm waits and still reports
    try:
        try:
            proc = subprocess.Popen([path, *argv[1:]])
        except OSError as err:  # nothing ran: close the tag without adding it to the ledger
            tag._ledger = False
            tag.stop(status=f"error: {type(err).__name__}")
            code = EXIT_NOT_EXECUTABLE if isinstance(err, PermissionError) else EXIT_NOT_FOUND
            return CommandResult(code, None, f"cannot run {argv[0]}: {err.strerror}")
        tree.attach(proc.pid)
        exit_code, cpu_s, peak_rss = _wait(proc)
        tree.finish(cpu_s, peak_rss)
    finally:
        restore()
    record = tag.stop(status="ok" if exit_code == 0 else f"exit {exit_code}")
    return CommandResult(exit_code, record)


def _wait(proc: subprocess.Popen) -> tuple[int, float, int | None]:
    """Exit code (shell convention), CPU seconds and peak RSS (bytes) of the command and its reaped
    descendants, from the kernel's rusage."""
    if hasattr(os, "wait4"):
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu_s = usage.ru_utime + usage.ru_stime
        peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux
    else:  # Windows: no rusage; the last sampled figures stand
        proc.wait()
        cpu_s, peak = 0.0, None
    code = proc.returncode
    return (128 - code if code < 0 else code), cpu_s, peak


def _ignore_sigint():
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    # a Python handler, not SIG_IGN: an ignored signal would stay ignored in the exec'd command
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    return lambda: signal.signal(signal.SIGINT, previous)
