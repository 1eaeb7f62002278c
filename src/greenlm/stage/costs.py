"""Price tags of a stage's phases (augment, train, calibrate, evaluate...), kept across interruptions.

    costs = PhaseCosts(work_dir / "costs.json")
    with costs.phase("train") as tag:      # a greenlm.measure.PriceTag, nested in the stage's own tag
        ...
        tag.add_flops(flops)
    costs.to_dict()   # {"phases": {name: summary}, "total": {...}, "resumed": bool}

A phase finished before an interruption stays in the file; a phase run again after a resume adds its
new part to what came before, so the stage reports what it really cost.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from greenlm.common import atomic_write_json, read_json

_SUMMED = ("wall_s", "cpu_s", "energy_kwh", "co2e_kg", "flops")


def _summary(record) -> dict:
    return {
        "wall_s": round(record.wall_s, 3),
        "cpu_s": round(record.cpu_s, 3),
        "energy_kwh": record.energy_kwh,
        "energy_source": record.energy_source,
        "co2e_kg": record.co2e_kg,
        "intensity_source": record.intensity_source,
        "flops": record.flops,
    }


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class PhaseCosts:
    """The phases of one stage, persisted in ``file`` after each phase ends."""

    def __init__(self, file: Path, prefix: str = ""):
        self.file = Path(file)
        self.prefix = prefix  # the price tag names its phases "<prefix>:<phase>"
        self.phases: dict[str, dict] = read_json(self.file) if self.file.is_file() else {}
        self.resumed = bool(self.phases)

    @contextlib.contextmanager
    def phase(self, name: str):
        from greenlm.measure import PriceTag, PriceTagWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PriceTagWarning)  # the default-PUE note is in the record itself
            tag = PriceTag(f"{self.prefix}:{name}" if self.prefix else name)
            with tag:
                yield tag
        summary = _summary(tag.record)
        before = self.phases.get(name)
        if before:  # a resumed phase: add this part to the earlier one
            summary = {k: before[k] + v if _number(v) and _number(before.get(k)) else v for k, v in summary.items()}
        self.phases[name] = summary
        self.file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.file, self.phases)

    def total(self) -> dict:
        """Sums over phases: time and energy only when every phase has them; FLOPs count the phases that
        counted any (model passes), not augmentation or bookkeeping."""
        out = {}
        for key in _SUMMED[:-1]:
            values = [p.get(key) for p in self.phases.values()]
            out[key] = sum(values) if values and all(_number(v) for v in values) else None
        flops = [p["flops"] for p in self.phases.values() if _number(p.get("flops"))]
        out["flops"] = sum(flops) if flops else None
        return out

    def to_dict(self) -> dict:
        return {"phases": dict(self.phases), "total": self.total(), "resumed": self.resumed}
