"""The ledger: every price tag appended to one SQLite file, and totals over it.

Where: ``$GREENLM_HOME/ledger.sqlite`` when ``GREENLM_HOME`` is set, else the user's data folder
(``$XDG_DATA_HOME/greenlm`` or ``~/.local/share/greenlm`` on Linux, ``~/Library/Application
Support/greenlm`` on macOS, ``%LOCALAPPDATA%\\greenlm`` on Windows).

Safety:
- each append is one ``BEGIN IMMEDIATE`` transaction with a busy timeout, so processes appending at
  the same time queue up and none loses a row;
- a ledger still locked after the timeout, or a file that is not a greenlm ledger (corrupt, another
  database), is reported as a GreenlmError and never rewritten; the record that could not be
  appended is saved as JSON under ``<ledger>.pending/`` and imported by the next successful append.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_json, read_json

SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
GROUPS = ("project", "stage", "day", "name")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pricetags (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    project TEXT,
    stage TEXT,
    status TEXT,
    started_at_utc TEXT NOT NULL,
    ended_at_utc TEXT,
    wall_s REAL,
    cpu_s REAL,
    energy_kwh REAL,
    co2e_kg REAL,
    cost_usd REAL,
    energy_source TEXT,
    intensity_source TEXT,
    record_json TEXT NOT NULL,
    appended_at_utc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pricetags_started ON pricetags (started_at_utc);
"""


def default_ledger_path() -> Path:
    """The ``ledger`` setting (``GREENLM_LEDGER``, a settings file: ``greenlm.measure.settings``), else
    ``$GREENLM_HOME/ledger.sqlite``, else ``ledger.sqlite`` in the user's data folder."""
    from greenlm.measure.settings import resolve

    chosen = resolve("ledger")
    if chosen.value is not None:
        return Path(chosen.value).expanduser()
    home = os.environ.get("GREENLM_HOME")
    if home:
        return Path(home).expanduser() / "ledger.sqlite"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "greenlm" / "ledger.sqlite"


class Ledger:
    """An append-only SQLite ledger of price tags."""

    def __init__(self, path: str | os.PathLike | None = None, *, timeout_s: float = 30.0):
        self.path = Path(path) if path is not None else default_ledger_path()
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    @property
    def pending_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".pending")

    # ---- opening ---------------------------------------------------------------------------------

    def _check_file(self) -> None:
        if not self.path.exists():
            return
        if self.path.is_dir():
            raise GreenlmError(f"ledger path {self.path} is a folder; point GREENLM_HOME elsewhere")
        with open(self.path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise GreenlmError(
                f"ledger {self.path} is not an SQLite file (corrupt?); it was left untouched: move it away "
                "to start a new ledger, or set GREENLM_HOME"
            )

    def _connect(self, create: bool) -> sqlite3.Connection:
        self._check_file()
        if not create and not self.path.exists():
            raise FileNotFoundError(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        except sqlite3.Error as err:
            raise GreenlmError(f"cannot open ledger {self.path}: {err}") from None
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as err:
            conn.close()
            raise self._unusable(err) from None
        if tables and "pricetags" not in tables:
            conn.close()
            raise GreenlmError(f"{self.path} is an SQLite database but not a greenlm ledger; it was left untouched")
        if version > SCHEMA_VERSION:
            conn.close()
            raise GreenlmError(f"ledger {self.path} was written by a newer greenlm (schema {version}); upgrade greenlm")
        if create and not tables:
            try:  # idempotent, so two processes creating the same new ledger both succeed
                conn.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
            except sqlite3.DatabaseError as err:
                conn.close()
                raise self._unusable(err) from None
        return conn

    def _unusable(self, err: Exception) -> GreenlmError:
        if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
            return GreenlmError(f"ledger {self.path} is locked by another process (waited {self.timeout_s:g} s)")
        return GreenlmError(
            f"ledger {self.path} cannot be read ({err}); it was left untouched: move it away to start a new "
            "ledger, or set GREENLM_HOME"
        )

    # ---- writing ---------------------------------------------------------------------------------

    def append(self, record) -> None:
        """Append a PriceTagRecord (or its dict). On failure the record is kept under ``.pending/``
        and a GreenlmError says where."""
        row = record if isinstance(record, dict) else record.to_dict()
        try:
            conn = self._connect(create=True)
        except (GreenlmError, OSError, sqlite3.Error) as err:
            why = err if isinstance(err, GreenlmError) else f"cannot open ledger {self.path}: {err}"
            raise GreenlmError(f"{why}; {self._save_pending(row)}") from None
        try:
            rows = [row, *self._pending_rows()]
            try:
                conn.execute("BEGIN IMMEDIATE")
                for item in rows:
                    conn.execute(
                        "INSERT OR IGNORE INTO pricetags VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", _columns(item)
                    )
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as err:
                _rollback(conn)
                raise GreenlmError(f"{self._unusable(err)}; {self._save_pending(row)}") from None
            self._clear_pending(rows[1:])
        finally:
            conn.close()

    def _save_pending(self, row: dict) -> str:
        """Park ``row`` for the next append to import; says where it went (never loses it silently).

        Beside the ledger first; where that cannot be written (a read-only or full disk), in a per-user folder
        of the temporary directory; where neither can, the caller is told to keep the record it printed.
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

    def _pending_rows(self) -> list[dict]:
        if not self.pending_dir.is_dir():
            return []
        rows = []
        for path in sorted(self.pending_dir.glob("*.json")):
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
        """Records (as dicts) started at or after ``since``, oldest first."""
        start = parse_since(since)
        try:
            conn = self._connect(create=False)
        except FileNotFoundError:
            return []
        try:
            query = "SELECT record_json FROM pricetags"
            params: tuple = ()
            if start is not None:
                query += " WHERE started_at_utc >= ?"
                params = (start,)
            rows = conn.execute(query + " ORDER BY started_at_utc", params).fetchall()
        except sqlite3.DatabaseError as err:
            raise self._unusable(err) from None
        finally:
            conn.close()
        records, broken = [], 0
        for (text,) in rows:
            try:
                record = json.loads(text)
            except (TypeError, ValueError):
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                broken += 1
        if broken:  # a row edited by hand or cut by a crash of another tool: counted, never fatal
            warnings.warn(f"ledger {self.path}: skipped {broken} row(s) whose record is not valid JSON", stacklevel=2)
        return records

    def totals(self, since: str | datetime | None = None, group_by: str | None = None) -> list[dict]:
        """Sums of wall time, energy, CO2e and cost, overall or by project / stage / day / name.

        A sum over records where some figure is null (no region given, no price) counts the records
        it covers: ``co2e_records`` of ``records``.
        """
        if group_by is not None and group_by not in GROUPS:
            raise GreenlmError(f"cannot group by {group_by!r}; use one of: {', '.join(GROUPS)}")
        groups: dict[str, dict] = {}
        for rec in self.records(since):
            if group_by == "day":
                key = (rec.get("started_at_utc") or "")[:10]
            elif group_by is not None:
                key = rec.get(group_by) or "(none)"
            else:
                key = "all"
            g = groups.setdefault(key, _empty_total(key))
            g["records"] += 1
            g["wall_s"] += rec.get("wall_s") or 0.0
            for name in ("energy_kwh", "co2e_kg", "cost_usd"):
                if rec.get(name) is not None:
                    g[name] += rec[name]
                    g[name.split("_")[0] + "_records"] += 1
            g["estimated_energy_records"] += "estimate" in (rec.get("energy_source") or "")
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
    }


def _columns(row: dict) -> tuple:
    clean = {k: v for k, v in row.items() if k != "_pending_path"}
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
    )


def _rollback(conn) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def parse_since(since) -> str | None:
    """An ISO date/time, or 'Nd' (N days ago), as the ISO string records are compared with."""
    if since is None or since == "":
        return None
    if isinstance(since, datetime):
        moment = since
    else:
        text = str(since).strip()
        if text.endswith("d") and text[:-1].isdigit():
            moment = datetime.now(timezone.utc) - timedelta(days=int(text[:-1]))
        else:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise GreenlmError(f"--since {since!r} is not a date: use YYYY-MM-DD, an ISO time, or Nd (days ago)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")
