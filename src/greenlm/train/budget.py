"""Budgets inside the training loop: stop at a checkpoint when the projected total passes ``--max-kwh``,
``--max-co2e-kg`` or ``--max-usd``.

A ``BudgetWatch`` is installed around a command (``with budgeting(watch): ...``, as ``pausing`` installs a pause
policy), and the one training loop asks it before every optimizer step. It reads the running price tag of the stage
(``PriceTag.peek()``, about 0.2 ms) and projects the total:

    projected = spent so far + (spent since this training began / steps done since) x steps left

where "spent so far" is what the run's finished stages cost (``greenlm run``: ``charge``), plus the stage's earlier,
interrupted attempts, plus this attempt's price tag so far. The first time a projection passes 80% of a limit it
warns (one line); when it passes the limit, the loop's checkpoint is saved first (as a carbon-aware pause does) and
``BudgetExceeded`` ends the command, with no model folder written: the same command with a higher budget resumes from
that checkpoint and ends with the same weights as an uninterrupted run (the budget is no part of a stage's identity).

What the projection does not see: work after the last optimizer step (the final evaluation, writing the folder, the
measuring pass of ``greenlm run``), trainings of the same stage that have not started yet, and stages not started.
Only single-process training is watched (a launched group would need every process to agree on the decision).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from greenlm.measure.budget import FIGURES, WARN_AT, Budget, BudgetExceeded, Spend, fmt, stop_message
from greenlm.train.pause import single_process

_ACTIVE: list = []
log = logging.getLogger("greenlm")


class BudgetWatch:
    """The budget of one command, and what it has seen.

    ``resume``: how the stop line tells the person to go on ("run the same command again"). ``read``: a test seam,
    ``() -> Spend`` of the current stage so far (default: its price tag's running totals plus its earlier attempts).
    """

    def __init__(self, budget: Budget, *, resume: str = "run the same command again", read: Callable | None = None):
        self.budget = budget
        self.resume = resume
        self._read = read
        self.before = Spend()  # finished stages of this run
        self._stage = None  # (price tag, what its earlier attempts spent)
        self._training = None  # (TrainState, spent when it began, its step then)
        self.warned = False
        self.checks = 0
        self.last_projection: Spend | None = None

    def charge(self, record) -> None:
        """Count a finished stage's price tag (a record or its dict) toward the budget."""
        self.before = self.before + Spend.of(record)

    def spent(self) -> Spend:
        if self._read is not None:
            return self.before + self._read()
        if self._stage is None:
            return self.before
        tag, prior = self._stage
        return self.before + prior + Spend.of(tag.peek())

    def check(self, state, save_checkpoint: Callable[[], None]) -> None:
        """Before an optimizer step: warn, or save the checkpoint and stop, as the projection says."""
        self.checks += 1
        spent = self.spent()
        unknown = self.budget.unknown(spent)
        if unknown is not None:
            if not self.warned:
                log.warning("budget: the price tag has no %s figure, so %s cannot be checked", unknown,
                            FIGURES[unknown][0])
                self.warned = True
            return
        if self._training is None or self._training[0] is not state:  # a training begins (or resumes)
            self._training = (state, spent, state.step)
            if self.budget.over(spent):  # spent already (earlier stages or attempts)
                self._stop(state, save_checkpoint, spent, None)
            return
        _, began, first_step = self._training
        done, left = state.step - first_step, max(state.total_steps - state.step, 0)
        if done <= 0:
            return
        projected = spent + (spent - began).scaled(left / done)
        self.last_projection = projected
        if self.budget.over(projected):
            self._stop(state, save_checkpoint, spent, projected)
        near = self.budget.over(projected, WARN_AT)
        if near is not None and not self.warned:
            self.warned = True
            limit = self.budget.limit(near)
            log.warning("budget: projected total %s is %.0f%% of %s %g (spent %s at step %d of %d%s); greenlm stops at"
                        " a checkpoint if the projection passes the limit", fmt(near, projected.get(near)),
                        100 * projected.get(near) / limit, FIGURES[near][0], limit, fmt(near, spent.get(near)),
                        state.step, state.total_steps, self._of())

    def _stop(self, state, save_checkpoint, spent: Spend, projected: Spend | None) -> None:
        save_checkpoint()
        figure = self.budget.over(projected if projected is not None else spent)
        where = f"at step {state.step} of {state.total_steps}{self._of()} (checkpoint saved, no model written)"
        raise BudgetExceeded(stop_message(self.budget, figure, spent, projected, where, self.resume))

    def _of(self) -> str:
        return f" of {self._stage[0].name}" if self._stage is not None else ""


@contextlib.contextmanager
def budgeting(watch: BudgetWatch | None) -> Iterator[None]:
    """Install ``watch`` for the trainings run inside the block (None, or an empty budget, installs nothing)."""
    if watch is None or not watch.budget:
        yield
        return
    _ACTIVE.append(watch)
    try:
        yield
    finally:
        _ACTIVE.remove(watch)


def active_watch() -> BudgetWatch | None:
    return _ACTIVE[-1] if _ACTIVE else None


@contextlib.contextmanager
def stage_spend(tag, attempts=()) -> Iterator[None]:
    """Within the block the active watch reads ``tag`` (a running stage's price tag), after ``attempts`` (the records
    of the stage's earlier, interrupted attempts)."""
    watch = active_watch()
    if watch is None:
        yield
        return
    prior = Spend()
    for record in attempts:
        prior = prior + Spend.of(record)
    watch._stage, watch._training = (tag, prior), None
    try:
        yield
    finally:
        watch._stage, watch._training = None, None


def charge(record) -> None:
    """A finished stage's price tag counts toward the active budget (``greenlm run``: the budget covers the run)."""
    watch = active_watch()
    if watch is not None and record is not None:
        watch.charge(record)


def budget_point(state, save_checkpoint: Callable[[], None], *, world: int = 1) -> None:
    """Called by the loop before each optimizer step."""
    watch = active_watch()
    if watch is None:
        return
    if not single_process(watch, world, "budgets are checked in single-process training only; this launched run of"
                                        " %d processes is not stopped by its budget"):
        return
    watch.check(state, save_checkpoint)
