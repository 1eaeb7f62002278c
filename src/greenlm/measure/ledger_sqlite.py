"""The SQLite back end of the ledger: one file per machine, the default (``ledger.Ledger`` chooses it for a path).

- Each append is one ``BEGIN IMMEDIATE`` transaction with a busy timeout, so processes appending at the same time
  queue up and none loses a row; ``INSERT OR IGNORE`` on the id never writes a record twice.
- A ledger still locked after the timeout, or a file that is not a greenlm ledger (corrupt, another database), is
  reported as a GreenlmError and never rewritten.
- Schema 2 added the ``host`` and ``username`` columns; a schema-1 file (greenlm before the team ledger) is read as
  it is (host and user unknown) and gains the two columns on its next append.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.measure.ledger import COLUMNS, Ledger, _columns, schema_statements

SCHEMA_VERSION = 2
SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = ";\n".join(schema_statements("pricetags")) + ";\n"
_INSERT = f"INSERT OR IGNORE INTO pricetags ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


class SqliteLedger(Ledger):
    """An append-only SQLite ledger of price tags."""

    def __init__(self, path: str | os.PathLike | None = None, *, timeout_s: float = 30.0):
        from greenlm.measure.ledger import default_ledger_path

        self.path = Path(path) if path is not None else default_ledger_path()
        self.timeout_s = timeout_s
        self.where = str(self.path)

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

    @staticmethod
    def _has_columns(conn) -> set[str]:
        return {r[1] for r in conn.execute("PRAGMA table_info(pricetags)")}

    # ---- the back end ----------------------------------------------------------------------------

    def _write(self, rows: list[dict]) -> None:
        try:
            conn = self._connect(create=True)
        except sqlite3.Error as err:
            raise GreenlmError(f"cannot open ledger {self.path}: {err}") from None
        try:
            conn.execute("BEGIN IMMEDIATE")
            missing = [c for c in ("host", "username") if c not in self._has_columns(conn)]
            for column in missing:  # a schema-1 ledger: add the columns, in the same transaction as the rows
                conn.execute(f"ALTER TABLE pricetags ADD COLUMN {column} TEXT")
            if missing:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.executemany(_INSERT, [_columns(item) for item in rows])
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            _rollback(conn)
            raise self._unusable(err) from None
        finally:
            conn.close()

    def _fetch(self, start: str | None) -> list[tuple]:
        try:
            conn = self._connect(create=False)
        except FileNotFoundError:
            return []
        try:
            have = self._has_columns(conn)
            who = ", ".join(c if c in have else "NULL" for c in ("host", "username"))
            query = f"SELECT record_json, {who} FROM pricetags"
            params: tuple = ()
            if start is not None:
                query += " WHERE started_at_utc >= ?"
                params = (start,)
            return conn.execute(query + " ORDER BY started_at_utc", params).fetchall()
        except sqlite3.DatabaseError as err:
            raise self._unusable(err) from None
        finally:
            conn.close()


def _rollback(conn) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
