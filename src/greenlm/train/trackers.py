"""Experiment trackers for the one training loop, through Accelerate's tracker integration.

    with tracking(Tracking(("tensorboard",), Path("runs/tracking"))):
        train(...)            # every training inside the block logs to the trackers

``greenlm train/distill/... --report-to tensorboard,wandb`` and ``greenlm run --report-to ...`` install a
``Tracking`` around their stages (like a pause policy: a command option, not a setting, so it does not change a
stage's identity: a run with trackers reuses a finished run without). The loop then builds its ``Accelerator``
with ``log_with=`` the trackers and ``project_dir=`` the tracking folder, calls ``init_trackers`` with the
training settings, and ``accelerator.log``s (on the main process only, as Accelerate does):

- every optimizer step: ``train/loss``, ``train/learning_rate``, ``train/epoch``;
- every evaluation: ``eval/<metric>`` (accuracy, macro-F1, MCC... of the dev split the loop selects on);
- every evaluation, the end, and steps at least ``ENERGY_EVERY_S`` apart: ``energy_kwh``, ``co2e_kg`` and
  ``cost_usd`` (those that are known) of the price tag the training runs under, so far (the stage's tag,
  which on several processes prices the node: greenlm.measure.distributed).

A tracker whose package is missing stops the command before any work with one line naming the pip package.
Plain Python (no torch, no accelerate at import): the command line parses ``--report-to`` with it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.common.optional import require

TRACKERS = ("tensorboard", "mlflow", "wandb")  # --report-to names, each also its pip distribution
ENERGY_EVERY_S = 1.0  # energy figures are read from the price tag at most this often between evaluations
FIGURES = ("energy_kwh", "co2e_kg", "cost_usd")


def parse_report_to(text: str | None) -> tuple[str, ...]:
    """``tensorboard,wandb`` -> ("tensorboard", "wandb"); ``none`` or nothing -> (); an unknown name is an error."""
    names = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    if names in ([], ["none"]):
        return ()
    unknown = [n for n in names if n not in TRACKERS]
    if unknown or "none" in names:
        bad = unknown[0] if unknown else "none"
        raise GreenlmError(f"--report-to: unknown tracker '{bad}'; use none, or a comma list of: {', '.join(TRACKERS)}")
    return tuple(dict.fromkeys(names))


def check_installed(names: tuple[str, ...]) -> None:
    """Every tracker's package is importable, or a GreenlmError naming the pip package (before any work)."""
    for name in names:
        require(name, f"--report-to {name}")


@dataclass
class Tracking:
    """Which trackers every training in a block logs to, and where the file-based ones write."""

    names: tuple[str, ...] = ()
    logging_dir: Path = Path("tracking")
    trackers: tuple = ()  # ready accelerate GeneralTracker instances (a custom tracker; tests)
    _runs: dict = field(default_factory=dict)  # run name -> trainings so far under it

    def log_with(self) -> list:
        return [*self.names, *self.trackers]

    def run_name(self, label: str) -> str:
        """A tracker run per training: the stage's label; a second training in the same stage gets ``-2``."""
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "train"
        self._runs[base] = self._runs.get(base, 0) + 1
        return base if self._runs[base] == 1 else f"{base}-{self._runs[base]}"


_ACTIVE: list[Tracking] = []
_LABELS: list[str] = []


@contextlib.contextmanager
def tracking(spec: Tracking | None) -> Iterator[None]:
    """Install ``spec`` for the trainings run inside the block (None, or no trackers, installs nothing)."""
    if spec is None or not spec.log_with():
        yield
        return
    _ACTIVE.append(spec)
    try:
        yield
    finally:
        _ACTIVE.remove(spec)


@contextlib.contextmanager
def tracking_label(label: str) -> Iterator[None]:
    """Name the tracker runs of the trainings inside the block (the stage shell passes the stage's name)."""
    _LABELS.append(label)
    try:
        yield
    finally:
        _LABELS.pop()


def active_tracking() -> Tracking | None:
    return _ACTIVE[-1] if _ACTIVE else None


def _scalars(config: dict) -> dict:
    """What every tracker accepts as a hyper-parameter: numbers, text, booleans (None and lists as text)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.items()}


class TrackerLog:
    """One training's logging: ``Accelerator(log_with=..., project_dir=...)`` was built from ``spec``."""

    def __init__(self, accelerator, spec: Tracking, settings: dict, description: str):
        self.accelerator = accelerator
        label = _LABELS[-1] if _LABELS else description
        accelerator.init_trackers(spec.run_name(label), config=_scalars({**settings, "description": description}))
        self._last_energy = 0.0

    def _energy(self, force: bool) -> dict:
        now = time.monotonic()
        if not self.accelerator.is_main_process or not force and now - self._last_energy < ENERGY_EVERY_S:
            return {}
        self._last_energy = now
        from greenlm.measure.pricetag import running_tag

        tag = running_tag()
        if tag is None:
            return {}
        so_far = tag.peek()
        return {key: getattr(so_far, key) for key in FIGURES if getattr(so_far, key) is not None}

    def step(self, state, learning_rate: float, epoch: float) -> None:
        values = {"train/loss": state.last_loss, "train/learning_rate": learning_rate, "train/epoch": epoch}
        self.accelerator.log({**values, **self._energy(force=False)}, step=state.step)

    def evaluation(self, state, metrics: dict) -> None:
        values = {f"eval/{k}": v for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.accelerator.log({**values, **self._energy(force=True)}, step=state.step)

    def end(self, state) -> None:
        self.accelerator.log(self._energy(force=True), step=state.step)
        # Not accelerator.end_training(): it also destroys the process group, which the next training of a launched
        # recipe (or the caller) still needs; finishing the trackers is all that ending them takes.
        for tracker in self.accelerator.trackers:
            tracker.finish()
