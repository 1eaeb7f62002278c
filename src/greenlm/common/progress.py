"""A progress bar with ETA for anything that takes more than a few seconds (training, inference).

With the bar disabled (``--no-progress``, logs, CI) it can instead write a line on the ``greenlm``
logger every ``log_every_s`` seconds, so long jobs still show life; the CLI prints those to stderr.
"""

from __future__ import annotations

import logging
import time

_log = logging.getLogger("greenlm.progress")
_QUIET = False  # `greenlm --quiet`: no bar is shown, whatever the command asked for


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = bool(quiet)


class ProgressBar:
    """``advance()`` once per unit of work; ``close()`` at the end (or use it as a context manager)."""

    def __init__(self, enabled: bool, description: str, total: int, completed: int = 0, *, unit: str = "steps",
                 log: bool = False, log_every_s: float = 30.0):
        self._bar = None
        self._description, self._total, self._completed, self._unit = description, total, completed, unit
        enabled = enabled and not _QUIET
        self._log = log and not enabled
        self._log_every_s = log_every_s
        self._started = self._last_log = time.perf_counter()
        self._first = completed
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[extra]}")]
        self._bar = Progress(*columns, transient=False, console=Console(stderr=True))  # stdout stays data
        self._task = self._bar.add_task(description, total=total, completed=completed, extra="")
        self._bar.start()

    def advance(self, loss: float | None = None) -> None:
        self._completed += 1
        extra = f"loss {loss:.4f}" if loss is not None else ""
        if self._bar is not None:
            self._bar.update(self._task, advance=1, extra=extra)
            return
        now = time.perf_counter()
        if self._log and (now - self._last_log >= self._log_every_s or self._completed == self._total):
            self._last_log = now
            done = self._completed - self._first
            eta_s = (now - self._started) / done * (self._total - self._completed) if done else float("nan")
            _log.info("%s: %s %d/%d (%.0f%%)%s, ETA %s", self._description, self._unit.rstrip("s") or self._unit,
                      self._completed, self._total, 100 * self._completed / max(self._total, 1),
                      f", {extra}" if extra else "", format_duration(eta_s))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def format_duration(seconds: float) -> str:
    """``1h05m`` / ``3m07s``; ``?`` when unknown (NaN)."""
    if seconds != seconds:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
