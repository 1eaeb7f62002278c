"""Act on a plan: wait until its start, then run the command (``greenlm schedule exec``).

Waiting goes through a Clock, so tests never sleep for real: ``FakeClock`` jumps ahead when asked to sleep,
``ScaledClock`` sleeps ``speed`` times faster than the wall clock (``--clock-speed``, for demos and subprocess
tests), ``SystemClock`` is the real one. A command cannot be paused from outside, so exec runs the Flexible Start
plan (one contiguous run); Pause & Resume needs the job's own checkpoints.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field

EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE = 127, 126  # the shells' codes, as `greenlm measure` uses them


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class FakeClock:
    """A clock that only moves when slept on (tests)."""

    t: float
    slept: list = field(default_factory=list)

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


class ScaledClock:
    """Starts at ``start_s`` and runs at the wall clock's pace, except that its sleeps pass ``speed`` times faster:
    a wait of an hour takes 3600 / speed real seconds."""

    def __init__(self, start_s: float, speed: float):
        self.start_s, self.speed, self.t0, self.skipped = start_s, speed, time.monotonic(), 0.0

    def now(self) -> float:
        return self.start_s + (time.monotonic() - self.t0) + self.skipped

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds / self.speed)
        self.skipped += seconds - seconds / self.speed


def clock_from_options(now: str | None, clock_speed: float | None):
    """The real clock, or (``--clock-speed N [--now TIME]``, demos and tests) a ScaledClock starting at ``now``."""
    from greenlm.common import GreenlmError
    from greenlm.schedule.job import parse_time_s

    if clock_speed is not None and not clock_speed > 0:
        raise GreenlmError(f"--clock-speed must be greater than 0, got {clock_speed}")
    if now is not None and clock_speed is None:
        raise GreenlmError("greenlm waits on the real clock: --now needs --clock-speed")
    if clock_speed is None:
        return SystemClock()
    return ScaledClock(parse_time_s(now) if now else time.time(), clock_speed)


def wait_until(start_s: float, clock, step_s: float = 60.0, on_wait=None) -> int:
    """Sleep in steps of at most ``step_s`` (clock time) until ``start_s``; returns the number of steps. Short steps
    keep the wait right after a laptop's suspend or a clock change."""
    steps = 0
    while (left := start_s - clock.now()) > 0:
        if on_wait is not None:
            on_wait(left)
        clock.sleep(min(left, step_s))
        steps += 1
    return steps


def run_command(argv: list[str]) -> int:
    """Run ``argv`` in the foreground; its exit code (128 + N for signal N, 127 not found, 126 not runnable)."""
    try:
        code = subprocess.run(argv).returncode
    except FileNotFoundError:
        return EXIT_NOT_FOUND
    except PermissionError:
        return EXIT_NOT_EXECUTABLE
    return 128 - code if code < 0 else code
