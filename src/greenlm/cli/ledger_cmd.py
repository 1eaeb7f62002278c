"""``greenlm ledger``: what did my experiments cost (totals from the ledger)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

HELP = """Show totals of the price-tag ledger: wall time, energy, CO2e and cost, overall or by group.

Every price tag from `greenlm run` stages, `greenlm measure` and the Python API (unless ledger=False) is in
the ledger: $GREENLM_HOME/ledger.sqlite, else the user data folder, or a team ledger shared by several machines
and users in PostgreSQL (--ledger postgresql://user:password@host/database, or GREENLM_LEDGER). A total counts
only the records that have that figure (e.g. CO2e needs a region): the table says how many did.
Example: greenlm ledger --since 2025-06-01 --group-by host
"""


def ledger_command(
    since: Annotated[Optional[str], typer.Option(help="Only records started on or after this date: YYYY-MM-DD, an ISO time, or Nd (N days ago).")] = None,
    group_by: Annotated[Optional[str], typer.Option("--group-by", help="Group totals by project, stage, day, name, host or user.")] = None,
    ledger: Annotated[Optional[str], typer.Option(help="Ledger: a file, or postgresql://user:password@host/database for a team ledger (pip install 'greenlm[team]'). Default: GREENLM_LEDGER or the settings file, else $GREENLM_HOME/ledger.sqlite or the user data folder.")] = None,
    records: Annotated[bool, typer.Option("--records", help="List the records themselves instead of totals.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    from greenlm.cli._common import err
    from greenlm.measure import Ledger

    book = Ledger(ledger)
    waiting = len(book.pending())
    if waiting:
        err(f"note: {waiting} record(s) wait in {book.pending_dir}; the next price tag added to this ledger"
            " imports them")
    if records:
        rows = book.records(since)
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        _print_records(book, rows)
        return
    totals = book.totals(since, group_by)
    if as_json:
        print(json.dumps({"ledger": book.where, "since": since, "group_by": group_by, "pending": waiting,
                          "totals": totals}, indent=2))
        return
    _print_totals(book, totals, group_by)


def _print_totals(book, totals, group_by) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not totals:
        console.print(f"no price tags in {book.where} for this period", markup=False)
        return
    table = Table(title=f"price tags in {book.where}")
    for column in (group_by or "", "records", "hosts", "users", "wall h", "energy kWh", "CO2e kg", "cost USD"):
        table.add_column(column, justify="left" if column == (group_by or "") else "right")
    for g in totals:
        table.add_row(
            g["group"],
            str(g["records"]),
            str(g["hosts"]),
            str(g["users"]),
            f"{g['wall_s'] / 3600:.4g}",
            _part(g["energy_kwh"], g["energy_records"], g["records"]),
            _part(g["co2e_kg"], g["co2e_records"], g["records"]),
            _part(g["cost_usd"], g["cost_records"], g["records"]),
        )
    console.print(table)
    estimated = sum(g["estimated_energy_records"] for g in totals)
    if estimated:
        console.print(f"note: energy of {estimated} record(s) is an estimate (no RAPL/NVML counters)", style="dim")


def _part(value, have, total) -> str:
    text = f"{value:.4g}"
    return text if have == total else f"{text} ({have}/{total})"


def _print_records(book, rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"price tags in {book.where}")
    for column in ("started (UTC)", "name", "project", "stage", "host", "user", "wall s", "kWh", "kg CO2e", "USD",
                   "energy source"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            (r.get("started_at_utc") or "")[:19],
            r.get("name") or "",
            r.get("project") or "",
            r.get("stage") or "",
            r.get("host") or "",
            r.get("user") or "",
            f"{r.get('wall_s') or 0:.4g}",
            "n/a" if r.get("energy_kwh") is None else f"{r['energy_kwh']:.4g}",
            "n/a" if r.get("co2e_kg") is None else f"{r['co2e_kg']:.4g}",
            "n/a" if r.get("cost_usd") is None else f"{r['cost_usd']:.4g}",
            r.get("energy_source") or "",
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("ledger", help=HELP)(ledger_command)
