"""A price tag computed by hand, the way papers do: power x hours x PUE, x intensity, x price.

Strubell et al. (2019), Eq. 1-2:  p_t = PUE * t * (p_c + p_r + g * p_g) / 1000  [kWh],
CO2e = 0.954 * p_t  [lbs], with PUE 1.58 and 0.954 lbs CO2e/kWh (EPA, US average, 2018).
``preset="strubell2019"`` sets those two numbers so that their Table 3 can be reproduced and
extended; any figure the user also passes overrides the preset, and the result says so.
"""

from __future__ import annotations

import math

from greenlm.common import GreenlmError
from greenlm.measure import cost as cost_mod
from greenlm.measure.intensity import lookup_intensity, user_intensity
from greenlm.measure.units import (
    DEFAULT_PUE,
    PUE_WARNING,
    check_count,
    check_positive,
    check_pue,
    kg_to_lbs,
    lbs_per_kwh_to_g_per_kwh,
)

PRESETS = {
    "strubell2019": {
        "pue": 1.58,
        "lbs_per_kwh": 0.954,
        "source": "Strubell et al. 2019 (ACL), Eq. 2: 0.954 lbs CO2e/kWh, US average (EPA 2018); PUE 1.58",
    },
}


def price_by_hand(
    *,
    hours: float,
    watts: float | None = None,
    cpu_watts: float | None = None,
    ram_watts: float | None = None,
    gpu_watts: float | None = None,
    gpus: int | None = None,
    pue: float | None = None,
    intensity_g_per_kwh: float | None = None,
    region: str | None = None,
    usd_per_hour: float | None = None,
    instance: str | None = None,
    preset: str | None = None,
) -> dict:
    """Energy (kWh), CO2e (kg and lbs) and cost (USD) of ``watts`` (or the components) for ``hours``."""
    hours = check_positive(hours, "hours")
    notes: list[str] = []
    reasons: dict[str, str] = {}
    components = {"cpu_watts": cpu_watts, "ram_watts": ram_watts, "gpu_watts": gpu_watts}
    if watts is not None and any(v is not None for v in components.values()):
        raise GreenlmError("give --watts or the components (--cpu-watts/--ram-watts/--gpu-watts), not both")
    if gpus is not None and gpu_watts is None:
        raise GreenlmError("--gpus needs --gpu-watts (the power of one GPU)")
    by_component = None
    if watts is not None:
        power_w = check_positive(watts, "watts")
    elif any(v is not None for v in components.values()):
        count = check_count(gpus, "number of GPUs") if gpus is not None else 1
        by_component = {}
        for key, value in components.items():
            if value is not None:
                by_component[key.split("_")[0]] = check_positive(value, key.replace("_", " "))
        if "gpu" in by_component:
            by_component["gpu"] *= count
        power_w = sum(by_component.values())
    else:
        raise GreenlmError("give the power: --watts W, or --cpu-watts / --ram-watts / --gpu-watts [--gpus N]")

    chosen = None
    if preset is not None:
        chosen = PRESETS.get(preset)
        if chosen is None:
            raise GreenlmError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if intensity_g_per_kwh is not None and region is not None:
        raise GreenlmError("give --intensity-g-per-kwh or --region, not both")

    if pue is not None:
        pue_value, pue_source = check_pue(pue), "user"
        if chosen:
            notes.append(f"--pue {pue_value:g} overrides the {preset} preset's {chosen['pue']:g}")
    elif chosen:
        pue_value, pue_source = chosen["pue"], f"preset {preset}"
    else:
        pue_value, pue_source = DEFAULT_PUE, "default"
        notes.append(PUE_WARNING)

    if intensity_g_per_kwh is not None or region is not None:
        intensity = user_intensity(intensity_g_per_kwh) if region is None else lookup_intensity(region)
        g_per_kwh, intensity_source = intensity.g_per_kwh, intensity.source
        if chosen:
            notes.append(f"the given intensity overrides the {preset} preset's {chosen['lbs_per_kwh']} lbs/kWh")
    elif chosen:
        g_per_kwh, intensity_source = lbs_per_kwh_to_g_per_kwh(chosen["lbs_per_kwh"]), chosen["source"]
    else:
        g_per_kwh = intensity_source = None
        reasons["co2e_kg"] = "no intensity given (--intensity-g-per-kwh, --region or --preset)"

    hardware_kwh = power_w * hours / 1000.0
    energy_kwh = hardware_kwh * pue_value
    co2e_kg = energy_kwh * g_per_kwh / 1000.0 if g_per_kwh is not None else None
    price = cost_mod.resolve_price(usd_per_hour, instance)
    cost = price.usd_per_hour * hours if price is not None else None
    if price is None:
        reasons["cost_usd"] = "no price given (--usd-per-hour or --instance)"
    for figure, value in (("energy", energy_kwh), ("CO2e", co2e_kg), ("cost", cost)):
        if value is not None and not math.isfinite(value):
            raise GreenlmError(f"the {figure} of these inputs is too large to compute (it overflows to {value});"
                               " check --hours, the power and the PUE")
    return {
        "power_w": power_w,
        "power_w_by_component": by_component,
        "hours": hours,
        "energy_kwh_hardware": hardware_kwh,
        "pue": pue_value,
        "pue_source": pue_source,
        "energy_kwh": energy_kwh,
        "intensity_g_per_kwh": g_per_kwh,
        "intensity_source": intensity_source,
        "co2e_kg": co2e_kg,
        "co2e_lbs": kg_to_lbs(co2e_kg) if co2e_kg is not None else None,
        "cost_usd": cost,
        "usd_per_hour": price.usd_per_hour if price else None,
        "cost_source": price.source if price else None,
        "preset": preset,
        "formula": "energy_kwh = PUE x hours x watts / 1000; co2e_kg = energy_kwh x g/kWh / 1000; cost_usd = USD/h x hours",
        "reasons": reasons,
        "notes": notes,
    }
