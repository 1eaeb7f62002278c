"""The ``train_selection`` setting, parsed and checked: plain Python (the command line reads it at start-up).

    ambiguous:0.33              the 33% of the mapped rows with the highest variability
    hard:0.25                   the 25% with the lowest confidence (hard-to-learn)
    easy:0.5                    the 50% with the highest confidence (easy-to-learn)
    random:0.33                 33% drawn at random (seeded; of the mapped rows, or of all rows without a map)
    ambiguous:0.2+easy:0.1      parts taken in order, each from the rows not chosen yet: 30% in all

A fraction is a share of the rows the map covers, in (0, 1]; the parts together may not exceed 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from greenlm.common import GreenlmError

REGION_NAMES = ("ambiguous", "hard", "easy", "random")


@dataclass(frozen=True)
class SelectionPart:
    region: str  # one of REGION_NAMES
    fraction: float  # share of the mapped rows, in (0, 1]

    def __str__(self) -> str:
        return f"{self.region}:{self.fraction:g}"


def parse_selection(spec: str) -> tuple[SelectionPart, ...]:
    """The parts of a ``train_selection`` value; a ``GreenlmError`` (one line) for anything malformed."""
    if not isinstance(spec, str) or not spec.strip():
        raise GreenlmError("train_selection is empty; give e.g. ambiguous:0.33, hard:0.25, easy:0.5, random:0.33"
                           " or a mix such as ambiguous:0.2+easy:0.1")
    parts: list[SelectionPart] = []
    for raw in spec.split("+"):
        text = raw.strip()
        region, colon, number = text.partition(":")
        region = region.strip().lower()
        if not colon:
            raise GreenlmError(f"train_selection part '{text}' needs REGION:FRACTION, e.g. ambiguous:0.33")
        if region not in REGION_NAMES:
            raise GreenlmError(f"train_selection region '{region}' is not one of {', '.join(REGION_NAMES)}")
        try:
            fraction = float(number)
        except ValueError:
            raise GreenlmError(f"train_selection fraction '{number.strip()}' of {region} is not a number;"
                               " give a share in (0, 1], e.g. 0.33") from None
        if not (math.isfinite(fraction) and 0 < fraction <= 1):
            raise GreenlmError(f"train_selection fraction {number.strip()} of {region} is outside (0, 1];"
                               " give a share of the training rows, e.g. 0.33")
        if any(p.region == region for p in parts):
            raise GreenlmError(f"train_selection names {region} twice; give each region once")
        parts.append(SelectionPart(region, fraction))
    total = sum(p.fraction for p in parts)
    if total > 1 + 1e-9:
        raise GreenlmError(f"train_selection '{spec}' adds up to {total:g} of the rows; the parts together must be <= 1")
    return tuple(parts)


def selection_needs_map(parts: tuple[SelectionPart, ...]) -> bool:
    """Whether any part ranks rows by a data map (only ``random`` does not)."""
    return any(p.region != "random" for p in parts)


def check_selection_settings(train_selection: str | None, selection_map: str | None,
                             train_subset: int | None) -> None:
    """The checks every stage that trains on a selection makes of its settings (finetune, distill): a valid spec,
    not with ``train_subset``, a map when the spec ranks by one, and no map without a spec."""
    if train_selection is not None:
        parts = parse_selection(train_selection)
        if train_subset is not None:
            raise GreenlmError("train_subset and train_selection cannot be combined; use random:FRACTION for a"
                               " random share")
        if selection_needs_map(parts) and not selection_map:
            raise GreenlmError(f"train_selection '{train_selection}' ranks rows by a data map: set"
                               " selection_map to a model folder trained with --record-dynamics")
    elif selection_map is not None:
        raise GreenlmError("selection_map is set but train_selection is not; give train_selection too"
                           " (e.g. ambiguous:0.33)")
