"""Pause & Resume inside the training loop: a run that really stops while the grid is dirty (Dodge et al. 2022).

A pause policy is installed around any training (``with pausing(policy): ...``; ``greenlm train/distill/... --pause-above``
and ``greenlm run --pause-above`` do it) and the one training loop asks it before every optimizer step. When the
policy says "paused until T", the loop saves its checkpoint first (a pause is also a safe point to kill the
process: running the command again resumes from it), sleeps on the policy's clock until T, records the pause in
``TrainState.pauses`` and goes on. Pausing never changes the arithmetic: a paused run ends with the same weights as
an unpaused one (tested).

A policy is any object with ``clock`` (``now() -> s``, ``sleep(s)``) and ``paused_until(now_s) -> float | None``
(None: run now); ``describe(now_s) -> str`` is optional. ``greenlm.schedule.pause.ThresholdPause`` is the one greenlm
builds from a grid-intensity series. Only single-process training pauses (a launched group would need every process
to agree on the clock); with several processes the policy is ignored and a note says so.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

_ACTIVE: list = []
_STEP_S = 60.0  # sleep in steps of at most a minute of clock time (a laptop's suspend, a clock change)
log = logging.getLogger("greenlm")


@contextlib.contextmanager
def pausing(policy) -> Iterator[None]:
    """Install ``policy`` for the trainings run inside the block (None installs nothing)."""
    if policy is None:
        yield
        return
    _ACTIVE.append(policy)
    try:
        yield
    finally:
        _ACTIVE.remove(policy)


def active_policy():
    return _ACTIVE[-1] if _ACTIVE else None


def single_process(holder, world: int, refusal: str) -> bool:
    """Whether a per-step hook (a pause policy, a budget) may act: only in single-process training. In a launched
    group it says ``refusal`` (with ``%d``: the process count) once per ``holder`` and stands aside."""
    if world <= 1:
        return True
    if not getattr(holder, "_warned_world", False):
        log.info(refusal, world)
        holder._warned_world = True
    return False


def pause_point(state, save_checkpoint: Callable[[], None], *, world: int = 1) -> None:
    """Called by the loop before each optimizer step: pause here if the active policy says so."""
    policy = active_policy()
    if policy is None:
        return
    if not single_process(policy, world, "pausing is single-process only; this launched run of %d processes does"
                                         " not pause"):
        return
    clock = policy.clock
    now_s = clock.now()
    until_s = policy.paused_until(now_s)
    if until_s is None or until_s <= now_s:
        return
    save_checkpoint()
    why = policy.describe(now_s) if hasattr(policy, "describe") else "the pause policy says so"
    log.info("pausing at step %d until %s (%.2f h): %s; checkpoint saved", state.step, _iso(until_s),
             (until_s - now_s) / 3600.0, why)
    while (left := until_s - clock.now()) > 0:
        clock.sleep(min(left, _STEP_S))
    state.pauses.append({"at_step": state.step, "from_utc": _iso(now_s), "to_utc": _iso(clock.now()),
                         "paused_s": round(clock.now() - now_s, 3), "why": why})
    log.info("resuming at step %d", state.step)


def _iso(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
