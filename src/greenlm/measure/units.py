"""Unit constants, conversions and the checks every user-given number goes through.

Every quantity in greenlm carries its unit in its name (``energy_kwh``, ``co2e_kg``, ``wall_s``);
the conversions between those units live here and nowhere else.
"""

from __future__ import annotations

import math

from greenlm.common import GreenlmError

J_PER_KWH = 3.6e6  # 1 kWh = 1000 W x 3600 s
S_PER_H = 3600.0
KG_PER_LB = 0.45359237  # international avoirdupois pound, exact by definition (1959)
G_PER_KG = 1000.0

# Default PUE when the user gives none: the machine's own energy, no facility overhead. Data centres
# run about 1.1 (hyperscale) to 1.6 (typical enterprise); Strubell et al. (2019) used 1.58, the
# 2018 industry average of the Uptime Institute survey.
DEFAULT_PUE = 1.0
PUE_WARNING = (
    "PUE defaults to 1.0 (the machine's own energy only); data centres run about 1.1-1.6 "
    "(Strubell et al. 2019 used 1.58): pass pue= / --pue for a facility figure"
)


def joules_to_kwh(energy_j: float) -> float:
    return energy_j / J_PER_KWH


def watts_hours_to_kwh(power_w: float, duration_h: float) -> float:
    return power_w * duration_h / 1000.0


def kg_to_lbs(mass_kg: float) -> float:
    return mass_kg / KG_PER_LB


def lbs_to_kg(mass_lbs: float) -> float:
    return mass_lbs * KG_PER_LB


def lbs_per_kwh_to_g_per_kwh(rate_lbs_per_kwh: float) -> float:
    return rate_lbs_per_kwh * KG_PER_LB * G_PER_KG


def lbs_per_mwh_to_g_per_kwh(rate_lbs_per_mwh: float) -> float:
    return rate_lbs_per_mwh * KG_PER_LB  # lbs/MWh x kg/lb x 1000 g/kg / 1000 kWh/MWh


def co2e_kg(energy_kwh: float, intensity_g_per_kwh: float) -> float:
    return energy_kwh * intensity_g_per_kwh / G_PER_KG


# ---- checks on user input: one clear line each, raised as GreenlmError (CLI exit code 2) ----------


def check_number(value, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GreenlmError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise GreenlmError(f"{what} must be a finite number, got {value!r}")
    return number


def check_positive(value, what: str) -> float:
    number = check_number(value, what)
    if number <= 0:
        raise GreenlmError(f"{what} must be greater than 0, got {value!r}")
    return number


def check_non_negative(value, what: str) -> float:
    number = check_number(value, what)
    if number < 0:
        raise GreenlmError(f"{what} must be 0 or more, got {value!r}")
    return number


def check_pue(value) -> float:
    number = check_number(value, "PUE")
    if number < 1.0:
        raise GreenlmError(
            f"PUE must be 1.0 or more (facility energy / IT energy), got {value!r}; "
            "use 1.0 for the machine alone, about 1.1-1.6 for a data centre"
        )
    return number


def check_count(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise GreenlmError(f"{what} must be a whole number, got {value!r}")
    if value < minimum:
        raise GreenlmError(f"{what} must be {minimum} or more, got {value!r}")
    return int(value)
