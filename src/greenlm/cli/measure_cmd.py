"""``greenlm measure -- COMMAND...``: run a command under a price tag, like ``time``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

HELP = """Run COMMAND, measure it and its child processes, print its price tag, add it to the ledger.

Put the command after `--` (or after the last option): greenlm measure --region USA -- python train.py --lr 3e-5

The price tag (wall time, CPU time, energy by component and its source, CO2e, cost) goes to stderr,
so the command's own output is untouched. greenlm exits with the command's exit code; 128+N if
signal N ended it; 127 if the command does not exist; 126 if it cannot be run; 2 for bad options;
3 if a budget (--max-kwh, --max-co2e-kg, --max-usd) stopped it: what it spent so far is checked
every second, and past the limit the command gets SIGTERM (SIGKILL 10 s later), its price tag is
printed and one line says what it spent against which limit.
"""

_BUDGET = "Budgets (a stop exits with code 3)"


def measure_command(
    command: Annotated[Optional[list[str]], typer.Argument(metavar="-- COMMAND [ARGS]...", help="The command to run, after `--`.", show_default=False)] = None,
    region: Annotated[Optional[str], typer.Option(help="Carbon-intensity region: USA, FRA, USA/CA, SE3, gcp:us-central1... or a region of --intensity-csv (e.g. CISO). Default: GREENLM_REGION or the settings file.")] = None,
    pue: Annotated[Optional[float], typer.Option(help="Data-centre PUE (>= 1). Default: GREENLM_PUE or the settings file, else 1.0 (the machine alone); data centres run ~1.1-1.6.")] = None,
    intensity_g_per_kwh: Annotated[Optional[float], typer.Option("--intensity-g-per-kwh", help="A fixed carbon intensity (gCO2e/kWh) instead of --region.")] = None,
    intensity_csv: Annotated[Optional[Path], typer.Option("--intensity-csv", help="Hourly intensities, CSV timestamp_utc,region,gco2_per_kwh; CO2e is then summed hour by hour (needs --region).")] = None,
    usd_per_hour: Annotated[Optional[float], typer.Option("--usd-per-hour", help="Price of the hardware per hour (USD), for the cost. Default: GREENLM_USD_PER_HOUR or the settings file.")] = None,
    instance: Annotated[Optional[str], typer.Option(help="Cloud instance from greenlm's dated price table (e.g. aws:g5.xlarge) instead of --usd-per-hour.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Name of the price tag (default: the program's name).")] = None,
    project: Annotated[Optional[str], typer.Option(help="Project label, for `greenlm ledger --group-by project`.")] = None,
    stage: Annotated[Optional[str], typer.Option(help="Stage label, for `greenlm ledger --group-by stage`.")] = None,
    ledger: Annotated[Optional[str], typer.Option(help="Ledger: a file, or postgresql://user:password@host/database for a team ledger (pip install 'greenlm[team]'). Default: GREENLM_LEDGER or the settings file, else $GREENLM_HOME/ledger.sqlite or the user data folder.")] = None,
    no_ledger: Annotated[bool, typer.Option("--no-ledger", help="Do not add the price tag to the ledger.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write the price tag as JSON to this file.")] = None,
    emissions_csv: Annotated[Optional[Path], typer.Option("--emissions-csv", help="Also append it to a CodeCarbon-compatible emissions.csv (file or folder).")] = None,
    cpu_tdp_w: Annotated[Optional[float], typer.Option("--cpu-tdp-w", help="CPU TDP in watts for the CPU estimate (default: the CPU table greenlm ships, from CodeCarbon).")] = None,
    backend: Annotated[str, typer.Option(help="Energy backend: auto (NVML, RAPL, else estimates), estimate, codecarbon, zeus (Zeus's monitor: GPUs of several vendors, RAPL).")] = "auto",
    max_kwh: Annotated[Optional[float], typer.Option("--max-kwh", rich_help_panel=_BUDGET, help="Energy budget (kWh, after PUE): past it, the command gets SIGTERM and greenlm exits with code 3.")] = None,
    max_co2e_kg: Annotated[Optional[float], typer.Option("--max-co2e-kg", rich_help_panel=_BUDGET, help="CO2e budget (kg), as --max-kwh; needs a region or intensity.")] = None,
    max_usd: Annotated[Optional[float], typer.Option("--max-usd", rich_help_panel=_BUDGET, help="Cost budget (USD), as --max-kwh; needs a price (--usd-per-hour or --instance).")] = None,
    budget_check_s: Annotated[float, typer.Option("--budget-check-s", hidden=True, min=0.01, help="Seconds between budget checks.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the price tag as JSON (on stderr) instead of text.")] = False,
) -> None:
    import warnings

    from greenlm.common import atomic_write_json
    from greenlm.measure import Budget, Ledger, PriceTag, PriceTagWarning, append_emissions_csv
    from greenlm.measure import measure_command as run_measured

    warnings.simplefilter("ignore", PriceTagWarning)  # the summary below lists the same notes
    budget = Budget(max_kwh, max_co2e_kg, max_usd)  # a budget that is not positive and finite: exit 2, nothing run
    if budget:
        check = PriceTag("check", region=region, pue=pue, intensity_g_per_kwh=intensity_g_per_kwh,
                         intensity_csv=intensity_csv, usd_per_hour=usd_per_hour, instance=instance, ledger=False)
        budget.check_measurable(co2e=check.prices()["co2e_kg"], cost=check.prices()["cost_usd"])

    result = run_measured(
        list(command or []),
        name=name,
        region=region,
        pue=pue,
        intensity_g_per_kwh=intensity_g_per_kwh,
        intensity_csv=intensity_csv,
        usd_per_hour=usd_per_hour,
        instance=instance,
        project=project,
        stage=stage,
        ledger=False if no_ledger else Ledger(ledger),
        cpu_tdp_w=cpu_tdp_w,
        backend=backend,
        budget=budget or None,
        check_every_s=budget_check_s,
    )
    if result.record is None:  # nothing ran: bad input (2) is one error line, as everywhere; 126/127 as a shell says
        print(f"greenlm: {'error: ' if result.exit_code == 2 else ''}{result.error}", file=sys.stderr)
        raise typer.Exit(result.exit_code)
    record = result.record
    if as_json:
        print(json.dumps(record.to_dict(), indent=2), file=sys.stderr)
    else:
        print(record.summary(), file=sys.stderr)
    # greenlm's own bookkeeping never changes the measured command's exit code, and never loses the record:
    # a file that cannot be written is said in one line, and the full record is printed as JSON instead (a ledger
    # that cannot take it parks it in a pending folder, named in the summary's notes).
    failed = [problem for problem in (
        _try_write(out, lambda: atomic_write_json(out, record.to_dict())),
        _try_write(emissions_csv, lambda: append_emissions_csv(emissions_csv, record)),
    ) if problem]
    for problem in failed:
        print(f"greenlm: warning: {problem}", file=sys.stderr)
    if failed and not as_json:
        print(json.dumps(record.to_dict()), file=sys.stderr)
    if result.budget_stop:  # the last line, and an exit code of its own (the command's would be 143 for SIGTERM)
        from greenlm.common import EXIT_BUDGET

        print(f"greenlm: {result.budget_stop}", file=sys.stderr)
        raise typer.Exit(EXIT_BUDGET)
    raise typer.Exit(result.exit_code)


def _try_write(path: Path | None, write) -> str | None:
    """None when ``path`` is None or ``write()`` succeeded; else one line saying what could not be written."""
    from greenlm.common import GreenlmError, write_error

    if path is None:
        return None
    try:
        write()
    except GreenlmError as err:
        return f"could not write {path}: {err}"
    except Exception as err:  # noqa: BLE001 (any failure here must not change the command's exit code)
        return f"could not write {path}: {write_error(err) or err}"
    return None


def register(app: typer.Typer) -> None:
    app.command(
        "measure",
        help=HELP,
        context_settings={"allow_interspersed_args": False},  # options end at the command's name
    )(measure_command)
