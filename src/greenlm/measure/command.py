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
import logging
import threading
from dataclasses import dataclass

from greenlm.measure.budget import FIGURES, WARN_AT, Budget, Spend, fmt, stop_message
from greenlm.measure.energy import ProcessTree
from greenlm.measure.pricetag import PriceTag, PriceTagRecord

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
TERM_GRACE_S = 10.0  # after SIGTERM from a budget stop, how long a command has to end before SIGKILL
log = logging.getLogger("greenlm")


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    record: PriceTagRecord | None  # None when the command could not start
    error: str | None = None  # one line for the user when it could not start
    budget_stop: str | None = None  # the one line, when a budget stopped the command (greenlm exits EXIT_BUDGET)


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


def measure_command(argv: list[str], *, name: str | None = None, budget: Budget | None = None,
                    check_every_s: float = 1.0, **tag_options) -> CommandResult:
    """Run ``argv`` (no shell) under a PriceTag built with ``tag_options``; wait for it; return its
    exit code and the record. The tag starts before the command and stops after it was reaped.

    ``budget``: every ``check_every_s`` seconds the energy, CO2e and cost so far are checked against it (a command's
    progress is unknown, so nothing is projected); past 80% of a limit one warning line is logged, past the limit
    the command gets SIGTERM (SIGKILL after ``TERM_GRACE_S`` more seconds) and ``budget_stop`` says why."""
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
        guard = _BudgetGuard(tag, proc, budget, check_every_s, argv[0]) if budget else None
        try:
            exit_code, cpu_s, peak_rss = _wait(proc)
        finally:
            if guard is not None:
                guard.stop()
        tree.finish(cpu_s, peak_rss)
    finally:
        restore()
    stopped = guard.message if guard is not None else None
    record = tag.stop(status="ok" if exit_code == 0 and not stopped else
                      "stopped: budget" if stopped else f"exit {exit_code}")
    return CommandResult(exit_code, record, budget_stop=stopped)


class _BudgetGuard:
    """A thread that reads the running tag and ends the command once what it spent passes the budget."""

    def __init__(self, tag: PriceTag, proc: subprocess.Popen, budget: Budget, every_s: float, program: str):
        self.tag, self.proc, self.budget, self.every_s = tag, proc, budget, max(float(every_s), 0.01)
        self.program = os.path.basename(program)
        self.message: str | None = None
        self.warned = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="greenlm-budget", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                spent = Spend.of(self.tag.peek())
            except RuntimeError:  # the tag has stopped
                return
            unknown = self.budget.unknown(spent)
            if unknown is not None:  # e.g. the codecarbon backend, which reads only whole tags
                log.warning("budget: the price tag has no %s figure while the command runs, so %s cannot be checked",
                            unknown, FIGURES[unknown][0])
                return
            figure = self.budget.over(spent)
            if figure is not None:
                self.message = stop_message(
                    self.budget, figure, spent, None, f"{self.program} (sent SIGTERM) after {self.tag.peek().wall_s:.1f} s",
                    "run it again")
                self._terminate()
                return
            near = self.budget.over(spent, WARN_AT)
            if near is not None and not self.warned:
                self.warned = True
                log.warning("budget: %s spent, %.0f%% of %s %g; the command is stopped when it passes the limit",
                            fmt(near, spent.get(near)), 100 * spent.get(near) / self.budget.limit(near),
                            FIGURES[near][0], self.budget.limit(near))

    def _terminate(self) -> None:
        try:
            self.proc.send_signal(signal.SIGTERM)
        except OSError:
            return  # it has just ended
        if self._done.wait(TERM_GRACE_S):
            return
        try:
            self.proc.kill()
        except OSError:
            pass

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


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
