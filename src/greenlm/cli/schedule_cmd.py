"""``greenlm schedule``: when (and where) to run a job on hourly grid intensity; ``greenlm schedule simulate``:
the same over every start hour of a year. The logic is in greenlm.schedule (imported inside the commands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

HELP = """When to run a job: the best start (Flexible Start) and the best hours before the deadline (Pause & Resume) on an hourly grid-intensity series, against starting now (Dodge et al. 2022).

The decision uses a forecast (--forecast FILE, else greenlm's own, from the series' past only); every saving is reported twice: realised with the forecast's choice, and with perfect knowledge (oracle). Series: greenlm's CSV (timestamp_utc,region,gco2_per_kwh), an Electricity Maps export, or WattTime MOER (lbs/MWh, converted). See docs/scheduling.md.

Example: greenlm schedule --series eia930.csv --region CISO --duration 6h --within 24h --now 2022-06-01T00:00Z
"""

SIMULATE_HELP = """Replay every start hour of the series: mean, median, p10/p90 of the savings of Flexible Start (per window) and Pause & Resume (per window and per budget), forecast vs oracle, per region. Writes schedule_simulation.csv, .json and .png (with matplotlib) into --out.

Example: greenlm schedule simulate --series eia930.csv --regions CISO,BPAT --durations 1,6,24 --out sim
"""

SeriesOpt = Annotated[Optional[Path], typer.Option("--series", help="Grid-intensity file: greenlm CSV, Electricity Maps export or WattTime MOER (CSV/JSON); or live: electricitymaps:ZONE, watttime:REGION (docs/scheduling.md).")]
ScopeOpt = Annotated[Optional[str], typer.Option("--scope", help="lifecycle or direct: the Electricity Maps column to read (default lifecycle), or what a greenlm CSV holds.")]
KindOpt = Annotated[Optional[str], typer.Option("--kind", help="average or marginal: what a greenlm CSV holds (its README says; shown beside every figure).")]
TimezoneOpt = Annotated[Optional[str], typer.Option("--timezone", help="IANA zone of times written without an offset in a column not marked UTC (ambiguous daylight-saving hours are refused).")]
PauseCostOpt = Annotated[Optional[str], typer.Option("--pause-cost", help="Checkpoint/restart time per resumption, run at the job's power (e.g. 10m). Default 0.")]
ForecasterOpt = Annotated[Optional[str], typer.Option("--forecaster", help="greenlm's forecaster: week-mean-persist (default), week-mean, week-weighted or yesterday.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]

app = typer.Typer(help=HELP, no_args_is_help=False, invoke_without_command=True)


@app.callback(invoke_without_command=True)
def schedule_command(
    ctx: typer.Context,
    series: SeriesOpt = None,
    duration: Annotated[Optional[str], typer.Option(help="The job's length: 90m, 6h, 2d (default: wall_s of --pricetag).")] = None,
    within: Annotated[Optional[str], typer.Option(help="The deadline, from now: all of the job runs before now + this (e.g. 24h).")] = None,
    region: Annotated[Optional[str], typer.Option(help="The region (as the series names it, e.g. CISO).")] = None,
    regions: Annotated[Optional[str], typer.Option(help="Rank these regions for the job, comma-separated (e.g. CISO,BPAT,ERCO).")] = None,
    now: Annotated[Optional[str], typer.Option(help="Decision time, ISO-8601 (UTC without offset; default: the clock). Replays the past when the series has the window.")] = None,
    energy_kwh: Annotated[Optional[float], typer.Option("--energy-kwh", help="The job's energy (kWh). Without it (or --pricetag) figures are per kWh and in %.")] = None,
    pricetag: Annotated[Optional[Path], typer.Option("--pricetag", help="pricetag.json of an earlier run (or its folder): its energy_kwh and wall_s give the power.")] = None,
    pause_cost: PauseCostOpt = None,
    run: Annotated[Optional[Path], typer.Option("--run", help="A greenlm run folder (runs/NAME): the job is that run again, as long and as energy-hungry as its stages were (report.json).")] = None,
    forecast: Annotated[Optional[Path], typer.Option("--forecast", help="A forecast file (any series format) to decide on instead of greenlm's forecaster; it must cover the window.")] = None,
    forecaster: ForecasterOpt = None,
    live: Annotated[bool, typer.Option("--live", help="The window may lie beyond the series: plan from the forecast alone (no realised figures yet).")] = False,
    scope: ScopeOpt = None,
    kind: KindOpt = None,
    timezone: TimezoneOpt = None,
    as_json: JsonOpt = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from greenlm.common import GreenlmError
    from greenlm.schedule.job import job_from_earlier_run
    from greenlm.schedule.request import plan_request

    if run is not None and (duration or energy_kwh is not None or pricetag is not None):
        raise GreenlmError("--run gives the job's length and energy: drop --duration, --energy-kwh and --pricetag")
    job = job_from_earlier_run(run / "report.json", pause_cost) if run is not None else None
    result = plan_request(series=series, duration=duration, within=within, region=region, regions=regions, now=now, job=job,
                          energy_kwh=energy_kwh, pricetag=None if pricetag is None else str(pricetag),
                          pause_cost=pause_cost, forecast=None if forecast is None else str(forecast),
                          forecaster=forecaster, scope=scope, kind=kind, timezone_name=timezone, live=live)
    if as_json:
        print(json.dumps(result, indent=2))
    elif "plan" in result:
        _print_plan(result["plan"])
    else:
        _print_ranking(result["ranking"])


@app.command("simulate", help=SIMULATE_HELP)
def simulate_command(
    series: SeriesOpt = None,
    regions: Annotated[Optional[str], typer.Option(help="Regions, comma-separated (default: all in the series).")] = None,
    durations: Annotated[Optional[str], typer.Option(help="Job lengths in hours, comma-separated.")] = "1,3,6,12,24,72",
    windows: Annotated[Optional[str], typer.Option(help="Hours the start may move (Flexible Start; Pause & Resume too), comma-separated.")] = "6,12,24",
    pause_budgets: Annotated[Optional[str], typer.Option("--pause-budgets", help="Pause & Resume: how much longer the job's span may get, as fractions (0.5 = +50%).")] = "0.25,0.5,1.0",
    pause_cost: PauseCostOpt = None,
    forecaster: ForecasterOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for schedule_simulation.csv/.json/.png.")] = Path("schedule-simulation"),
    figure: Annotated[bool, typer.Option("--figure/--no-figure", help="Draw the figure (needs matplotlib).")] = True,
    scope: ScopeOpt = None,
    kind: KindOpt = None,
    timezone: TimezoneOpt = None,
    as_json: JsonOpt = False,
) -> None:
    from greenlm.schedule.request import simulate_request
    from greenlm.schedule.simulate import write_outputs

    result = simulate_request(series=series, regions=regions, durations=durations, windows=windows,
                              pause_budgets=pause_budgets, pause_cost=pause_cost, forecaster=forecaster, scope=scope,
                              kind=kind, timezone_name=timezone)
    written = write_outputs(result, out, figure=figure)
    if as_json:
        print(json.dumps({**result, "written": {k: str(v) for k, v in written.items()}}, indent=2))
        return
    _print_simulation(result, written)


EXEC_HELP = """Wait until the best start before the deadline (Flexible Start, decided on the forecast), then run the command; greenlm exits with its exit code. With --pause-above G the command is also stopped by signal (SIGSTOP/SIGCONT, its memory held) while the series' hour is above G.

Example: greenlm schedule exec --series grid.csv --region CISO --duration 2h --within 12h -- python train.py
"""


def exec_command(
    command: Annotated[Optional[list[str]], typer.Argument(metavar="-- COMMAND [ARGS]...", help="The command to run, after `--`.", show_default=False)] = None,
    series: SeriesOpt = None,
    region: Annotated[Optional[str], typer.Option(help="The region (as the series names it).")] = None,
    duration: Annotated[Optional[str], typer.Option(help="The command's expected length: 90m, 6h (default: wall_s of --pricetag).")] = None,
    within: Annotated[Optional[str], typer.Option(help="The deadline, from now (e.g. 12h).")] = None,
    pricetag: Annotated[Optional[Path], typer.Option("--pricetag", help="pricetag.json of an earlier run of the command (or its folder).")] = None,
    forecast: Annotated[Optional[Path], typer.Option("--forecast", help="A forecast file to decide on (it must cover the window).")] = None,
    forecaster: ForecasterOpt = None,
    scope: ScopeOpt = None,
    kind: KindOpt = None,
    timezone: TimezoneOpt = None,
    now: Annotated[Optional[str], typer.Option(hidden=True, help="With --clock-speed: the simulated clock's start.")] = None,
    clock_speed: Annotated[Optional[float], typer.Option("--clock-speed", hidden=True, help="Wait this many times faster than real time (demos, tests).")] = None,
    pause_above: Annotated[Optional[float], typer.Option("--pause-above", help="Also stop the command (SIGSTOP, its memory held) while the series' hour is above this many gCO2e/kWh; continue it (SIGCONT) after.")] = None,
    max_pause: Annotated[Optional[str], typer.Option("--max-pause", help="Longest single pause (default 24h).")] = None,
) -> None:
    import sys

    from greenlm.schedule.request import exec_request
    from greenlm.schedule.wait import clock_from_options

    clock = clock_from_options(now, clock_speed)
    code = exec_request(command=list(command or []), clock=clock, log=lambda m: print(f"greenlm: {m}", file=sys.stderr),
                        series=series, duration=duration, within=within, region=region,
                        pricetag=None if pricetag is None else str(pricetag),
                        forecast=None if forecast is None else str(forecast), forecaster=forecaster, scope=scope,
                        kind=kind, timezone_name=timezone, pause_above=pause_above, max_pause=max_pause)
    raise typer.Exit(code)


app.command("exec", help=EXEC_HELP, context_settings={"allow_interspersed_args": False})(exec_command)


# ---- printing ------------------------------------------------------------------------------------------


def _amount(figure: dict | None) -> str:
    if figure is None:
        return "-"
    if figure["co2e_kg"] is not None:
        return f"{figure['co2e_kg']:.4g} kg"
    return f"{figure['gco2_per_job_kwh']:.4g} g/kWh"


def _saving(saving: dict | None) -> str:
    if saving is None:
        return "-"
    kg = f"{saving['co2e_kg']:.3g} kg, " if saving["co2e_kg"] is not None else ""
    return f"{kg}{saving['pct']:.1f}%"


def _hours(blocks: list) -> str:
    return ", ".join(f"{a[5:10]} {a[11:16]}..{b[11:16] if a[:10] == b[:10] else b[5:10] + ' ' + b[11:16]}"
                     for a, b in blocks)


def _print_plan(p: dict) -> None:
    job = p["job"]
    energy = f"{job['energy_kwh']:.4g} kWh ({job['energy_source']})" if job["energy_kwh"] else job["energy_source"]
    print(f"{p['region']}: decide at {p['now_utc']}, finish by {p['deadline_utc']} ({p['window_h']} h); "
          f"job {job['duration_h']:g} h in {job['n_slots']} clock hour(s), {energy}"
          + (f", {job['pause_h'] * 60:g} min per resumption" if job["pause_h"] else ""))
    print(f"intensity  {p['series']['label']}")
    print(f"forecast   {p['forecast']}")
    rows = [("start now", p["now"], None)]
    for method, title in (("flexible_start", "flexible start"), ("pause_resume", "pause & resume")):
        rows.append((title, p[method]["forecast"], "forecast"))
        if "oracle" in p[method]:
            rows.append(("  oracle", p[method]["oracle"], "oracle"))
    print(f"{'':16} {'hours (UTC)':34} {'forecast':>14} {'realised':>14}  saving vs now")
    for title, plan, who in rows:
        hours = _hours(plan["hours_utc"]) + (f" ({plan['pauses']} pause{'s' * (plan['pauses'] != 1)})"
                                             if plan.get("pauses") else "")
        expected = _amount(plan.get("expected")) if who != "oracle" else ""
        print(f"{title:16} {hours:34} {expected:>14} {_amount(plan.get('realised')):>14}  {_saving(plan.get('saving'))}")
    if "note" in p:
        print(f"note: {p['note']}")


def _print_ranking(ranking: dict) -> None:
    rows = ranking["regions"]
    first = ranking["plans"][0]
    print(f"job {first['job']['duration_h']:g} h, decide at {first['now_utc']}, finish by {first['deadline_utc']}; "
          f"forecast: {first['forecast'].split(':')[0]}; intensity: {first['series']['label']}")
    print(f"{'rank':>4} {'region':10} {'now':>12} {'FS realised':>12} {'P&R expected':>13} {'P&R realised':>13} "
          f"{'P&R oracle':>12} {'at mean':>12} {'mean rank':>9}")
    for r in rows:
        pr = r["pause_resume"]
        print(f"{r['rank_at_chosen_hours']:>4} {r['region']:10} {_amount(r['now'].get('realised')):>12} "
              f"{_amount(r['flexible_start']['forecast'].get('realised')):>12} {_amount(pr['forecast']['expected']):>13} "
              f"{_amount(pr['forecast'].get('realised')):>13} {_amount(pr.get('oracle', {}).get('realised')):>12} "
              f"{_amount(r['at_mean']):>12} {r['rank_on_mean']:>9}")
    print("rank: by the forecast's expected Pause & Resume emissions (known when deciding); mean rank: by the "
          "region's mean intensity over the series")


def _print_simulation(result: dict, written: dict) -> None:
    meta = result["meta"]
    print(f"{meta['series']['label']}: {meta['starts']} start hours {meta['first_start_utc']}..{meta['last_start_utc']}, "
          f"forecaster {meta['forecaster']['name']}, pause cost {meta['pause_h'] * 60:g} min, "
          f"{meta['scenarios_per_region']} scenarios x {len(meta['regions'])} region(s) in {meta['elapsed_s']:.2f} s")
    w = max(meta["windows_h"]) if meta["windows_h"] else None
    b = max(meta["budgets"]) if meta["budgets"] else None
    pick = {(r["region"], r["method"], r["duration_h"], r["slack_kind"], r["slack"], r["decision"]): r
            for r in result["rows"]}
    print(f"mean saving vs starting now (%), forecast / oracle; FS = Flexible Start within {w} h, "
          f"P&R = Pause & Resume up to {b:.0%} longer" if b is not None else "")
    print(f"{'region':10} {'hours':>5} {'FS forecast':>12} {'FS oracle':>10} {'P&R forecast':>13} {'P&R oracle':>11}")
    for region in meta["regions"]:
        for d in meta["durations_h"]:
            cells = []
            for key in (("flexible_start", "window", w), ("pause_resume", "budget", b)):
                for decision in ("forecast", "oracle"):
                    r = pick.get((region, key[0], d, key[1], key[2], decision))
                    cells.append("-" if r is None else f"{r['mean_saving_pct']:.1f}")
            print(f"{region:10} {d:>5} {cells[0]:>12} {cells[1]:>10} {cells[2]:>13} {cells[3]:>11}")
    for name, path in written.items():
        print(f"{name:6} {path}" if name != "figure_skipped" else f"figure not drawn: {path}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="schedule", help=HELP)
