"""Energy, CO2e and money budgets (``--max-kwh``, ``--max-co2e-kg``, ``--max-usd``): the limits, what was spent, the
projection of the total, and the one line a stop ends with.

A budget is checked against a price tag's running totals (``PriceTag.peek()``). Training projects its total from
progress (``greenlm.train.budget``); ``greenlm measure``, which knows nothing of a command's progress, checks what was
spent so far (``greenlm.measure.command``). Either way a stop ends in ``BudgetExceeded``, which the command line turns
into one line and exit code ``EXIT_BUDGET`` (3), distinct from bad input (2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from greenlm.common import EXIT_BUDGET, BudgetExceeded, GreenlmError  # noqa: F401 (re-exported)

WARN_AT = 0.8  # warn once when a projection first passes this share of a limit

# figure in a price tag -> (command-line option, unit)
FIGURES = {"energy_kwh": ("--max-kwh", "kWh"), "co2e_kg": ("--max-co2e-kg", "kg CO2e"), "cost_usd": ("--max-usd", "USD")}


@dataclass(frozen=True)
class Spend:
    """Energy (facility kWh), CO2e (kg) and cost (USD); a figure not known is None."""

    energy_kwh: float | None = 0.0
    co2e_kg: float | None = 0.0
    cost_usd: float | None = 0.0

    @classmethod
    def of(cls, record) -> "Spend":
        """The totals of a price-tag record (a ``PriceTagRecord`` or its dict)."""
        get = record.get if isinstance(record, dict) else lambda name: getattr(record, name)
        return cls(get("energy_kwh"), get("co2e_kg"), get("cost_usd"))

    def get(self, figure: str) -> float | None:
        return getattr(self, figure)

    def __add__(self, other: "Spend") -> "Spend":
        def add(a, b):
            return None if a is None or b is None else a + b

        return Spend(*(add(self.get(f), other.get(f)) for f in FIGURES))

    def __sub__(self, other: "Spend") -> "Spend":
        def sub(a, b):
            return None if a is None or b is None else a - b

        return Spend(*(sub(self.get(f), other.get(f)) for f in FIGURES))

    def scaled(self, factor: float) -> "Spend":
        return Spend(*(None if self.get(f) is None else self.get(f) * factor for f in FIGURES))


@dataclass(frozen=True)
class Budget:
    """Limits on a run's total energy (kWh, after PUE), CO2e (kg) and cost (USD); None: no limit on that figure."""

    max_kwh: float | None = None
    max_co2e_kg: float | None = None
    max_usd: float | None = None

    def __post_init__(self):
        for figure, (option, unit) in FIGURES.items():
            value = self.limit(figure)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise GreenlmError(f"{option} must be a positive, finite number of {unit}, got {value!r}")

    def limit(self, figure: str) -> float | None:
        return {"energy_kwh": self.max_kwh, "co2e_kg": self.max_co2e_kg, "cost_usd": self.max_usd}[figure]

    @property
    def limits(self) -> dict[str, float]:
        """figure -> limit, for the figures that have one."""
        return {f: self.limit(f) for f in FIGURES if self.limit(f) is not None}

    def __bool__(self) -> bool:
        return bool(self.limits)

    def check_measurable(self, *, co2e: bool, cost: bool) -> None:
        """Refuse, before any work, a limit on a figure the price tag cannot have (CO2e with no region or intensity,
        a cost with no price)."""
        if self.max_co2e_kg is not None and not co2e:
            raise GreenlmError("--max-co2e-kg needs a carbon intensity: give --region (or set GREENLM_REGION or the"
                               " settings file)")
        if self.max_usd is not None and not cost:
            raise GreenlmError("--max-usd needs a price: give --usd-per-hour (or set GREENLM_USD_PER_HOUR or the"
                               " settings file)")

    def over(self, amount: Spend, share: float = 1.0) -> str | None:
        """The first figure of ``amount`` above ``share`` of its limit, or None."""
        for figure, limit in self.limits.items():
            value = amount.get(figure)
            if value is not None and value > share * limit:
                return figure
        return None

    def unknown(self, amount: Spend) -> str | None:
        """A limited figure that ``amount`` does not know (None: all known)."""
        return next((f for f in self.limits if amount.get(f) is None), None)


def fmt(figure: str, value: float | None) -> str:
    """A figure with its unit, to four significant digits."""
    if value is None:
        return "n/a"
    return f"{value:.4g} {FIGURES[figure][1]}"


def stop_message(budget: Budget, figure: str, spent: Spend, projected: Spend | None, where: str,
                 resume: str) -> str:
    """The one line a budget stop ends with: what was spent, what was projected, the limit, how to go on."""
    option, _ = FIGURES[figure]
    limit = budget.limit(figure)
    if projected is not None:
        need = projected.get(figure)
        head = (f"budget: stopped {where}: spent {fmt(figure, spent.get(figure))}, projected total"
                f" {fmt(figure, need)} > {option} {limit:g}")
    else:
        need = spent.get(figure)
        head = f"budget: stopped {where}: spent {fmt(figure, need)} > {option} {limit:g}"
    hint = f" (e.g. {option} {_round_up(need * 1.2)})" if need else ""
    return f"{head}; {resume} with a higher {option}{hint}"


def _round_up(value: float) -> str:
    """A budget suggestion: ``value`` rounded up to two significant digits."""
    exponent = math.floor(math.log10(value)) - 1
    step = 10.0 ** exponent
    return f"{math.ceil(value / step) * step:.2g}"
