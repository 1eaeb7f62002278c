"""The job to place: its length, its energy (given, or from an earlier run's pricetag.json) and its pause cost.

Time is planned in whole clock hours ("slots"): a job of duration_h occupies n_slots = ceil(duration_h) hours,
its energy spread evenly over them (slot_kwh = energy_kwh / n_slots). Each resumption after a pause costs
pause_h of extra running at the job's power: pause_kwh = power_kw x pause_h, emitted in the hour it resumes.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from greenlm.common import GreenlmError, read_json

_UNITS_H = {"s": 1 / 3600, "m": 1 / 60, "min": 1 / 60, "h": 1.0, "d": 24.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|m|min|h|d)\s*$", re.I)


def parse_duration_h(text, what: str = "duration") -> float:
    """'90m' -> 1.5, '6h' -> 6.0, '2d' -> 48.0 (also s, min). Zero, negative or unit-less: a GreenlmError."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        raise GreenlmError(f"{what} needs a unit: {text}h, {text}m or {text}d")
    value = str(text).strip()
    match = _DURATION.match(value)
    if match is None:
        raise GreenlmError(f"{what} {value!r} is not a duration > 0 such as 90m, 6h or 2d")
    hours = float(match.group(1)) * _UNITS_H[match.group(2).lower()]
    if not hours > 0 or not math.isfinite(hours):
        raise GreenlmError(f"{what} must be greater than 0, got {value!r}")
    return hours


def parse_time_s(text: str, what: str = "--now") -> float:
    """ISO-8601 time -> Unix seconds; without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise GreenlmError(f"{what} {text!r} is not an ISO-8601 time such as 2022-06-01T00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@dataclass(frozen=True)
class Job:
    duration_h: float
    energy_kwh: float | None  # None: not given; figures are then per kWh of the job (g/kWh) and in %
    energy_source: str
    pause_h: float = 0.0  # checkpoint/restart time per resumption

    @property
    def n_slots(self) -> int:
        return max(1, math.ceil(self.duration_h - 1e-9))

    @property
    def power_kw(self) -> float:
        """The job's mean power; 1 kW when the energy is unknown (results are then reported per kWh)."""
        return self.energy_kwh / self.duration_h if self.energy_kwh is not None else 1.0

    @property
    def plan_kwh(self) -> float:
        """The energy the plans are computed with (the real one, or duration_h x 1 kW)."""
        return self.power_kw * self.duration_h

    @property
    def slot_kwh(self) -> float:
        return self.plan_kwh / self.n_slots

    @property
    def pause_kwh(self) -> float:
        return self.power_kw * self.pause_h

    def to_dict(self) -> dict:
        return {**asdict(self), "n_slots": self.n_slots, "power_kw": self.power_kw if self.energy_kwh else None}


def job_from_options(duration: str | None, energy_kwh: float | None, pricetag: str | None,
                     pause_cost: str | None = None) -> Job:
    """The Job of the command's options: --duration, and --energy-kwh or --pricetag (energy_kwh and wall_s of an
    earlier run give the power; the duration is wall_s unless --duration is given)."""
    pause_h = parse_pause_h(pause_cost)
    if energy_kwh is not None and pricetag is not None:
        raise GreenlmError("give --energy-kwh or --pricetag, not both")
    if pricetag is not None:
        tag_kwh, wall_s, where = _read_pricetag(pricetag)
        duration_h = parse_duration_h(duration, "--duration") if duration else wall_s / 3600.0
        power_kw = tag_kwh / (wall_s / 3600.0)
        return Job(duration_h, power_kw * duration_h,
                   f"{where}: {tag_kwh:.4g} kWh in {wall_s:.0f} s = {power_kw:.4g} kW"
                   + (f", times {duration_h:g} h" if duration else ""), pause_h)
    if duration is None:
        raise GreenlmError("--duration is required (e.g. 6h, 90m, 2d), unless --pricetag gives it")
    duration_h = parse_duration_h(duration, "--duration")
    if energy_kwh is not None:
        if not (math.isfinite(energy_kwh) and energy_kwh > 0):
            raise GreenlmError(f"--energy-kwh must be greater than 0, got {energy_kwh!r}")
        return Job(duration_h, float(energy_kwh), "--energy-kwh", pause_h)
    return Job(duration_h, None, "not given (figures per kWh of the job; give --energy-kwh or --pricetag for kg)",
               pause_h)


def job_from_earlier_run(report_path: str | Path, pause_cost: str | None = None) -> Job:
    """The Job of a greenlm run done before: the sum of its stages' wall time and energy from its report.json (a run
    of the same recipe costs about what it cost last time; reused stages count what they cost when they ran)."""
    path = Path(report_path)
    try:
        rows = read_json(path).get("rows") or []
    except FileNotFoundError:
        raise GreenlmError(f"no earlier run at {path.parent} to estimate the job from: give its length "
                           "(--job-duration, e.g. 2h)") from None
    except (OSError, ValueError, AttributeError) as err:
        raise GreenlmError(f"cannot read {path}: {err}") from None
    # time spent paused (carbon-aware pauses of an earlier run) is not part of the job's length
    wall_s = sum(float(r.get("stage_wall_s") or 0.0) - float(r.get("stage_paused_s") or 0.0)
                 for r in rows if isinstance(r, dict))
    kwh = sum(float(r.get("stage_energy_kwh") or 0.0) for r in rows if isinstance(r, dict))
    if not wall_s > 0:
        raise GreenlmError(f"{path} records no stage time: give the job's length (--job-duration, e.g. 2h)")
    return Job(wall_s / 3600.0, kwh if kwh > 0 else None,
               f"{path}: its stages took {wall_s:.0f} s and {kwh:.4g} kWh", parse_pause_h(pause_cost))


def parse_pause_h(pause_cost: str | None) -> float:
    if pause_cost in (None, "", "0"):
        return 0.0
    return parse_duration_h(pause_cost, "--pause-cost")


def _read_pricetag(path: str) -> tuple[float, float, str]:
    p = Path(path)
    if p.is_dir():
        p = p / "pricetag.json"
    try:
        data = read_json(p)
    except FileNotFoundError:
        raise GreenlmError(f"price tag {p} does not exist") from None
    except (OSError, ValueError) as err:
        raise GreenlmError(f"cannot read price tag {p}: {err}") from None
    kwh, wall = (data.get("energy_kwh"), data.get("wall_s")) if isinstance(data, dict) else (None, None)
    if not isinstance(kwh, (int, float)) or not kwh > 0:
        raise GreenlmError(f"price tag {p} has no energy_kwh > 0 (its run measured no energy); give --energy-kwh")
    if not isinstance(wall, (int, float)) or not wall > 0:
        raise GreenlmError(f"price tag {p} has no wall_s > 0")
    return float(kwh), float(wall), str(p)


def parse_numbers(text: str | None, what: str, default) -> list[float]:
    """'1,3,6' -> [1.0, 3.0, 6.0]; None -> default."""
    if text is None:
        return list(default)
    out = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        try:
            out.append(float(part))
        except ValueError:
            raise GreenlmError(f"{what} takes numbers separated by commas, e.g. 1,3,6; got {part.strip()!r}") from None
    if not out:
        raise GreenlmError(f"{what} is empty")
    return out
