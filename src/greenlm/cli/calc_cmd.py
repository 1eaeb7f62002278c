"""``greenlm calc --watts W --hours H``: a price tag by hand, the way papers compute one."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

HELP = """Compute energy, CO2e and cost from power and time, as papers do (Strubell et al. 2019).

energy_kwh = PUE x hours x watts / 1000;  co2e_kg = energy_kwh x gCO2e/kWh / 1000;  cost_usd = USD/h x hours.

Give the power as --watts, or by component: --cpu-watts, --ram-watts, --gpu-watts (one GPU) with --gpus N.
--preset strubell2019 sets PUE 1.58 and 0.954 lbs CO2e/kWh (US average, EPA 2018), to reproduce and
extend their Table 3; flags you also give override the preset. --list-regions prints the known regions.
"""


def calc_command(
    hours: Annotated[Optional[float], typer.Option(help="Duration in hours (> 0).")] = None,
    watts: Annotated[Optional[float], typer.Option(help="Average total power in watts (> 0).")] = None,
    cpu_watts: Annotated[Optional[float], typer.Option("--cpu-watts", help="Average CPU power (W).")] = None,
    ram_watts: Annotated[Optional[float], typer.Option("--ram-watts", help="Average RAM power (W).")] = None,
    gpu_watts: Annotated[Optional[float], typer.Option("--gpu-watts", help="Average power of one GPU (W).")] = None,
    gpus: Annotated[Optional[int], typer.Option(help="Number of GPUs (with --gpu-watts; default 1).")] = None,
    pue: Annotated[Optional[float], typer.Option(help="Data-centre PUE (>= 1). Default 1.0 (the machine alone).")] = None,
    intensity_g_per_kwh: Annotated[Optional[float], typer.Option("--intensity-g-per-kwh", help="Carbon intensity, gCO2e per kWh.")] = None,
    region: Annotated[Optional[str], typer.Option(help="Carbon-intensity region: USA, FRA, USA/CA, CAN/quebec, SE3, gcp:us-central1, WORLD...")] = None,
    usd_per_hour: Annotated[Optional[float], typer.Option("--usd-per-hour", help="Price per hour (USD), for the cost.")] = None,
    instance: Annotated[Optional[str], typer.Option(help="Cloud instance from greenlm's dated price table (e.g. aws:p3.2xlarge).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="strubell2019: PUE 1.58 and 0.954 lbs CO2e/kWh.")] = None,
    list_regions: Annotated[bool, typer.Option("--list-regions", help="Print every region name --region accepts, and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: energy_kwh, co2e_kg, co2e_lbs, cost_usd and their sources.")] = False,
) -> None:
    from greenlm.common import GreenlmError
    from greenlm.measure import known_regions, price_by_hand

    if list_regions:
        print("\n".join(known_regions()))
        return
    if hours is None:
        raise GreenlmError("--hours is required (the duration, > 0)")
    result = price_by_hand(
        hours=hours,
        watts=watts,
        cpu_watts=cpu_watts,
        ram_watts=ram_watts,
        gpu_watts=gpu_watts,
        gpus=gpus,
        pue=pue,
        intensity_g_per_kwh=intensity_g_per_kwh,
        region=region,
        usd_per_hour=usd_per_hour,
        instance=instance,
        preset=preset,
    )
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(f"power   {result['power_w']:.6g} W for {result['hours']:.6g} h")
    print(f"energy  {result['energy_kwh']:.6g} kWh (PUE {result['pue']:g}, {result['pue_source']}; "
          f"{result['energy_kwh_hardware']:.6g} kWh at the machine)")
    if result["co2e_kg"] is not None:
        print(f"CO2e    {result['co2e_kg']:.6g} kg = {result['co2e_lbs']:.6g} lbs "
              f"at {result['intensity_g_per_kwh']:.6g} g/kWh ({result['intensity_source']})")
    else:
        print(f"CO2e    n/a ({result['reasons']['co2e_kg']})")
    if result["cost_usd"] is not None:
        print(f"cost    {result['cost_usd']:.6g} USD at {result['usd_per_hour']:g} USD/h ({result['cost_source']})")
    else:
        print(f"cost    n/a ({result['reasons']['cost_usd']})")
    for note in result["notes"]:
        print(f"note: {note}")


def register(app: typer.Typer) -> None:
    app.command("calc", help=HELP)(calc_command)
