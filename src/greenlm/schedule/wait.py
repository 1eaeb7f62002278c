"""Act on a plan: wait until its start, then run the command (``greenlm schedule exec``).

Waiting goes through a Clock, so tests never sleep for real: ``FakeClock`` jumps ahead when asked to sleep,
``ScaledClock`` sleeps ``speed`` times faster than the wall clock (``--clock-speed``, for demos and subprocess
tests), ``SystemClock`` is the real one.

With a pause policy (``greenlm schedule exec --pause-above G``), ``run_command_with_pauses`` also pauses the running
command from outside, by signal: SIGSTOP to its whole process group while the policy says "paused", SIGCONT after.
A stopped process keeps its memory (resident set measured at each pause and reported: the idle cost of pausing
this way) and its open connections may time out; a job with checkpoints pauses better from inside (``greenlm train
--pause-above``). POSIX only.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE = 127, 126  # the shells' codes, as `greenlm measure` uses them


class SystemClock:
    simulated = False

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class FakeClock:
    """A clock that only moves when slept on (tests)."""

    t: float
    slept: list = field(default_factory=list)
    simulated = True  # class attribute, not a field

    def describe(self) -> str:
        return "simulated: a fake clock that moves only when slept on (tests)"

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


class ScaledClock:
    """Starts at ``start_s`` and runs at the wall clock's pace, except that its sleeps pass ``speed`` times faster:
    a wait of an hour takes 3600 / speed real seconds."""

    simulated = True

    def __init__(self, start_s: float, speed: float):
        self.start_s, self.speed, self.t0, self.skipped = start_s, speed, time.monotonic(), 0.0

    def describe(self) -> str:
        start = datetime.fromtimestamp(self.start_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (f"simulated: started at {start}, runs at the wall clock's pace, and its waits pass {self.speed:g}x "
                "faster (--now / --clock-speed)")

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
    return _shell_code(code)


def _shell_code(code: int) -> int:
    """A child's return code as a shell reports it: 128 + N when signal N ended it."""
    return 128 - code if code < 0 else code


def run_command_with_pauses(argv: list[str], policy, *, poll_s: float = 5.0, log=None) -> tuple[int, list[dict]]:
    """Run ``argv`` in its own process group; stop it (SIGSTOP) while ``policy.paused_until(now)`` says so and
    continue it (SIGCONT) after, on ``policy.clock``. Returns (exit code as ``run_command``, the pauses taken)."""
    import os
    import signal

    clock = policy.clock
    try:
        proc = subprocess.Popen(argv, start_new_session=True)
    except FileNotFoundError:
        return EXIT_NOT_FOUND, []
    except PermissionError:
        return EXIT_NOT_EXECUTABLE, []
    pauses: list[dict] = []
    paused_until = None
    try:
        while proc.poll() is None:
            now = clock.now()
            if paused_until is None:
                until = policy.paused_until(now)
                if until is not None and until > now:
                    os.killpg(proc.pid, signal.SIGSTOP)
                    rss = _group_rss_bytes(proc.pid)
                    pauses.append({"from_s": now, "until_s": until, "held_rss_mb": round(rss / 2**20, 1)})
                    paused_until = until
                    if log is not None:
                        log(f"paused the command (SIGSTOP) for {(until - now) / 3600:.2f} h, holding "
                            f"{rss / 2**20:.0f} MB of memory: {policy.describe(now) if hasattr(policy, 'describe') else ''}")
            elif now >= paused_until:
                os.killpg(proc.pid, signal.SIGCONT)
                pauses[-1]["resumed_s"] = now
                paused_until = None
                if log is not None:
                    log("resumed the command (SIGCONT)")
            clock.sleep(poll_s if paused_until is None else min(poll_s * 12, max(1e-3, paused_until - now)))
    finally:
        if paused_until is not None and proc.poll() is None:  # never leave a stopped process behind
            os.killpg(proc.pid, signal.SIGCONT)
    return _shell_code(proc.wait()), pauses


def _group_rss_bytes(pid: int) -> int:
    """Resident memory of the process and its children (what a stopped job keeps holding)."""
    import psutil

    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0
