"""The ledger: every price tag appended to one store, and totals over it.

One interface, ``Ledger``, two back ends chosen by where the ledger is:

- a file path (the default): an SQLite file, ``ledger_sqlite.SqliteLedger``;
- a ``postgresql://user:password@host[:port]/database`` URL: a team ledger shared by several machines and users,
  ``ledger_postgres.PostgresLedger`` (needs ``psycopg``: ``pip install 'greenlm[team]'``).

``Ledger(location)`` returns the right one; with no location, the ``ledger`` setting (``GREENLM_LEDGER``, a
settings file) is used, else ``$GREENLM_HOME/ledger.sqlite``, else ``ledger.sqlite`` in the user's data folder
(``$XDG_DATA_HOME/greenlm`` or ``~/.local/share/greenlm`` on Linux, ``~/Library/Application Support/greenlm`` on
macOS, ``%LOCALAPPDATA%\\greenlm`` on Windows).

Guarantees, the same for both back ends:
- nothing doubled: a record's id is the primary key and an append never writes an id twice (``INSERT OR IGNORE`` /
  ``ON CONFLICT (id) DO NOTHING``);
- nothing lost: each append is one transaction; processes appending at the same time queue up (SQLite) or run side
  by side (PostgreSQL) and every row arrives. A ledger that cannot be written (locked past the timeout, not a
  greenlm ledger, a server that cannot be reached) is reported as a one-line GreenlmError and never rewritten; the
  record is saved as JSON in the ledger's ``.pending/`` folder and imported by the next successful append;
- each row carries the host and the user that appended it, so ``totals(group_by="host" | "user")`` summarise a
  ledger shared across machines and users.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import tempfile
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_json, read_json

GROUPS = ("project", "stage", "day", "name", "host", "user")
URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(location) -> bool:
    """Whether ``location`` names a PostgreSQL ledger (a ``postgresql://`` URL) rather than a file."""
    return isinstance(location, str) and location.strip().lower().startswith(URL_SCHEMES)


def data_folder() -> Path:
    """greenlm's folder for the ledger: ``$GREENLM_HOME``, else the user's data folder."""
    home = os.environ.get("GREENLM_HOME")
    if home:
        return Path(home).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "greenlm"


def default_ledger_location() -> str | Path:
    """The ``ledger`` setting (``GREENLM_LEDGER``, a settings file: ``greenlm.measure.settings``): a path or a
    ``postgresql://`` URL; else ``ledger.sqlite`` in ``data_folder()``."""
    from greenlm.measure.settings import resolve

    chosen = resolve("ledger")
    if chosen.value is not None:
        return chosen.value.strip() if is_url(chosen.value) else Path(chosen.value).expanduser()
    return data_folder() / "ledger.sqlite"


def default_ledger_path() -> Path:
    """The default ledger's file (``default_ledger_location``); a GreenlmError where the setting is a URL."""
    where = default_ledger_location()
    if isinstance(where, str):
        raise GreenlmError("the ledger setting is a PostgreSQL URL, not a file; use default_ledger_location()")
    return where


class Ledger:
    """An append-only ledger of price tags: ``Ledger(path_or_url)`` is an SQLite or a PostgreSQL ledger.

    A back end implements ``_write(rows)`` (one transaction, ids never doubled, a GreenlmError of one line on
    failure), ``_fetch(start)`` (``(record_json, host, user)`` rows started at or after ``start``), ``where``
    (how messages name it, never with a password) and ``pending_dir``; appending, parking and totals are here.
    """

    def __new__(cls, location: str | os.PathLike | None = None, **kwargs):
        if cls is Ledger:
            chosen = location if location is not None else kwargs.get("path")  # Ledger(path=...), as before
            chosen = chosen if chosen is not None else default_ledger_location()
            if is_url(chosen):
                from greenlm.measure.ledger_postgres import PostgresLedger as cls
            else:
                from greenlm.measure.ledger_sqlite import SqliteLedger as cls
        return super().__new__(cls)

    timeout_s: float
    where: str  # how messages name the ledger: its path, or its URL without the password

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r})"

    @property
    def pending_dir(self) -> Path:  # pragma: no cover - every back end says
        raise NotImplementedError

    def _write(self, rows: list[dict]) -> None:  # pragma: no cover - every back end writes
        raise NotImplementedError

    def _fetch(self, start: str | None) -> list[tuple]:  # pragma: no cover - every back end reads
        raise NotImplementedError

    # ---- writing ---------------------------------------------------------------------------------

    def append(self, record) -> None:
        """Append a PriceTagRecord (or its dict), with the records parked in ``.pending/``. On failure the record
        is parked there and a GreenlmError says why and where."""
        row = record if isinstance(record, dict) else record.to_dict()
        rows = [row, *self._pending_rows()]
        try:
            self._write(rows)
        except (GreenlmError, OSError) as err:
            why = err if isinstance(err, GreenlmError) else f"cannot open ledger {self.where}: {err}"
            raise GreenlmError(f"{why}; {self._save_pending(row)}") from None
        self._clear_pending(rows[1:])

    def _save_pending(self, row: dict) -> str:
        """Park ``row`` for the next append to import; says where it went (never loses it silently).

        In the ledger's ``.pending/`` folder first; where that cannot be written (a read-only or full disk), in a
        per-user folder of the temporary directory; where neither can, the caller is told to keep the record it
        printed.
        """
        name = f"{row.get('id', 'record')}.json"
        fallback = Path(tempfile.gettempdir()) / f"greenlm-pending-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        for folder in (self.pending_dir, fallback):
            try:
                atomic_write_json(folder / name, row)
            except OSError:
                continue
            where = "" if folder == self.pending_dir else f" (the ledger's folder is not writable; move it to" \
                                                            f" {self.pending_dir} to have it imported)"
            return f"this record was saved to {folder / name}{where}"
        return "this record could not be saved to disk either: keep the price tag printed with this message"

    def pending(self) -> list[Path]:
        """The records parked in ``.pending/``, waiting for the next successful append."""
        return sorted(self.pending_dir.glob("*.json")) if self.pending_dir.is_dir() else []

    def _pending_rows(self) -> list[dict]:
        rows = []
        for path in self.pending():
            try:
                row = read_json(path)
                row["_pending_path"] = str(path)
                rows.append(row)
            except (OSError, ValueError):
                continue  # left for a person to look at
        return rows

    def _clear_pending(self, rows: list[dict]) -> None:
        for row in rows:
            try:
                Path(row["_pending_path"]).unlink()
            except (KeyError, OSError):
                pass

    # ---- reading ---------------------------------------------------------------------------------

    def records(self, since: str | datetime | None = None) -> list[dict]:
        """Records (as dicts) started at or after ``since``, oldest first; each with the ``host`` and ``user``
        that appended it (None for rows written before greenlm recorded them)."""
        records, broken = [], 0
        for text, host, user in self._fetch(parse_since(since)):
            try:
                record = json.loads(text)
            except (TypeError, ValueError):
                record = None
            if isinstance(record, dict):
                record["host"], record["user"] = host or record.get("host"), user or record.get("user")
                records.append(record)
            else:
                broken += 1
        if broken:  # a row edited by hand or cut by a crash of another tool: counted, never fatal
            warnings.warn(f"ledger {self.where}: skipped {broken} row(s) whose record is not valid JSON", stacklevel=2)
        return records

    def totals(self, since: str | datetime | None = None, group_by: str | None = None) -> list[dict]:
        """Sums of wall time, energy, CO2e and cost, overall or by project / stage / day / name / host / user, with
        how many hosts and users each group spans.

        A sum over records where some figure is null (no region given, no price) counts the records
        it covers: ``co2e_records`` of ``records``.
        """
        if group_by is not None and group_by not in GROUPS:
            raise GreenlmError(f"cannot group by {group_by!r}; use one of: {', '.join(GROUPS)}")
        groups: dict[str, dict] = {}
        seen: dict[str, tuple[set, set]] = {}
        for rec in self.records(since):
            if group_by == "day":
                key = (rec.get("started_at_utc") or "")[:10]
            elif group_by is not None:
                key = rec.get(group_by) or "(none)"
            else:
                key = "all"
            g = groups.setdefault(key, _empty_total(key))
            hosts, users = seen.setdefault(key, (set(), set()))
            g["records"] += 1
            g["wall_s"] += rec.get("wall_s") or 0.0
            for name in ("energy_kwh", "co2e_kg", "cost_usd"):
                if rec.get(name) is not None:
                    g[name] += rec[name]
                    g[name.split("_")[0] + "_records"] += 1
            g["estimated_energy_records"] += "estimate" in (rec.get("energy_source") or "")
            hosts.add(rec.get("host"))
            users.add(rec.get("user"))
            g["hosts"], g["users"] = len(hosts - {None}), len(users - {None})
        return [groups[k] for k in sorted(groups)]


def _empty_total(key: str) -> dict:
    return {
        "group": key,
        "records": 0,
        "wall_s": 0.0,
        "energy_kwh": 0.0,
        "energy_records": 0,
        "co2e_kg": 0.0,
        "co2e_records": 0,
        "cost_usd": 0.0,
        "cost_records": 0,
        "estimated_energy_records": 0,
        "hosts": 0,
        "users": 0,
    }


# the columns of a ledger row, in order, with their SQL types (both back ends; REAL is a double in each)
_COLUMN_TYPES = (("id", "TEXT PRIMARY KEY"), ("name", "TEXT NOT NULL"), ("project", "TEXT"), ("stage", "TEXT"),
                 ("status", "TEXT"), ("started_at_utc", "TEXT NOT NULL"), ("ended_at_utc", "TEXT"), ("wall_s", "REAL"),
                 ("cpu_s", "REAL"), ("energy_kwh", "REAL"), ("co2e_kg", "REAL"), ("cost_usd", "REAL"),
                 ("energy_source", "TEXT"), ("intensity_source", "TEXT"), ("record_json", "TEXT NOT NULL"),
                 ("appended_at_utc", "TEXT NOT NULL"), ("host", "TEXT"), ("username", "TEXT"))
COLUMNS = tuple(name for name, _ in _COLUMN_TYPES)


def schema_statements(table: str, real: str = "REAL") -> list[str]:
    """The table of a ledger and its index on the start time, as SQL statements (``real``: the double type)."""
    columns = ",\n    ".join(f"{name} {kind.replace('REAL', real)}" for name, kind in _COLUMN_TYPES)
    return [f"CREATE TABLE IF NOT EXISTS {table} (\n    {columns}\n)",
            f"CREATE INDEX IF NOT EXISTS {table}_started ON {table} (started_at_utc)"]


def this_host() -> str:
    return socket.gethostname() or "unknown"


def this_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no login name in the environment nor the password database (a bare container)
        return None


def _columns(row: dict) -> tuple:
    """A record as a ledger row (``COLUMNS``). The host and user are the record's ``host`` / ``user`` if it carries
    them (an import from another machine), else this machine's; they are kept in the row, not in the record."""
    clean = {k: v for k, v in row.items() if k not in ("_pending_path",)}
    host, user = clean.pop("host", None) or this_host(), clean.pop("user", None) or this_user()
    return (
        clean["id"],
        clean.get("name") or "run",
        clean.get("project"),
        clean.get("stage"),
        clean.get("status"),
        clean["started_at_utc"],
        clean.get("ended_at_utc"),
        clean.get("wall_s"),
        clean.get("cpu_s"),
        clean.get("energy_kwh"),
        clean.get("co2e_kg"),
        clean.get("cost_usd"),
        clean.get("energy_source"),
        clean.get("intensity_source"),
        json.dumps(clean, sort_keys=False),
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host,
        user,
    )


def parse_since(since) -> str | None:
    """An ISO date/time, or 'Nd' (N days ago), as the ISO string records are compared with."""
    if since is None or since == "":
        return None
    if isinstance(since, datetime):
        moment = since
    else:
        text = str(since).strip()
        if text.endswith("d") and text[:-1].isascii() and text[:-1].isdigit():
            try:
                moment = datetime.now(timezone.utc) - timedelta(days=int(text[:-1]))
            except (OverflowError, ValueError):  # before year 1, or more days than timedelta holds
                raise GreenlmError(f"--since {text[:40]!r} reaches back before the year 1; give fewer days") from None
        else:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise GreenlmError(f"--since {since!r} is not a date: use YYYY-MM-DD, an ISO time, or Nd (days ago)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")
