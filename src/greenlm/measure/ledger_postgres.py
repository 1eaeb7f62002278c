"""The PostgreSQL back end of the ledger: one database shared by a team's machines (``--ledger postgresql://...``).

    greenlm ledger --ledger postgresql://alice:secret@db.lab.example/greenlm --group-by host

- Rows go to the table ``greenlm_pricetags`` (created on first use; the same columns as the SQLite ledger). Each
  append is one transaction, ``INSERT ... ON CONFLICT (id) DO NOTHING``: appends from many processes and machines
  run side by side, none is lost and none is written twice. Creating the table is serialised by an advisory lock,
  so two first appends at once both succeed.
- A server that cannot be reached, refuses the login, or holds a ``greenlm_pricetags`` table that is not greenlm's:
  one line naming the host and database (never the password); an append parks its record in this URL's
  ``.pending/`` folder (``<data folder>/ledger-postgresql-HOST-PORT-DATABASE.pending``, with a hash of the URL's
  query when it has one), imported by the next
  successful append from this machine.
- Needs ``psycopg`` 3 (``pip install 'greenlm[team]'``); without it, a one-line GreenlmError saying so.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from greenlm.common import GreenlmError
from greenlm.common.optional import require
from greenlm.measure.ledger import COLUMNS, Ledger, _columns, data_folder, schema_statements

TABLE = "greenlm_pricetags"
_LOCK_KEY = 0x67726E6C6D  # pg_advisory_xact_lock key while the table is created ("grnlm")
_REQUIRED = {"id", "record_json", "started_at_utc"}

_SCHEMA = schema_statements(TABLE, real="DOUBLE PRECISION")
_INSERT = (f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
           " ON CONFLICT (id) DO NOTHING")


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (how every message names a PostgreSQL ledger)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def _server(url: str) -> tuple[str, str, str]:
    """(host, port, database) of the URL, as messages and the pending folder name them."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "localhost", str(parts.port or 5432)
    except ValueError:  # a port that is not a number
        raise GreenlmError(f"ledger URL {redact(url)} is not a valid postgresql:// URL (the port must be a number)")\
            from None
    database = unquote(parts.path.lstrip("/")) or (parts.username or "")
    return host, port, database


class PostgresLedger(Ledger):
    """An append-only ledger of price tags in a PostgreSQL database."""

    def __init__(self, url: str | None = None, *, timeout_s: float = 10.0):
        from greenlm.measure.ledger import default_ledger_location, is_url

        url = default_ledger_location() if url is None else url
        if not is_url(url):
            raise GreenlmError(f"a PostgreSQL ledger needs a postgresql:// URL, got {str(url)!r}")
        self.url = str(url).strip()
        self.timeout_s = timeout_s
        self.host, self.port, self.database = _server(self.url)
        self._checked = False
        self.where = redact(self.url)

    @property
    def pending_dir(self) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.host}-{self.port}-{self.database}")
        query = urlsplit(self.url).query  # options such as a search_path name another table: another folder
        if query:
            safe += "-" + hashlib.sha256(query.encode()).hexdigest()[:8]
        return data_folder() / f"ledger-postgresql-{safe}.pending"

    def _named(self) -> str:
        return f"PostgreSQL ledger {self.database} on {self.host}:{self.port}"

    def _scrub(self, err: Exception) -> str:
        """The driver's first line, without the URL or the password."""
        text = (str(err).strip().splitlines() or [type(err).__name__])[0]
        password = urlsplit(self.url).password
        for secret in (self.url, password and unquote(password), password):
            if secret:
                text = text.replace(secret, "***")
        return text[:300]

    def _connect(self):
        psycopg = require("psycopg", "a PostgreSQL ledger")
        url = "postgresql://" + self.url.split("://", 1)[1]  # libpq takes postgresql:// and postgres:// alike
        try:
            return psycopg.connect(url, connect_timeout=max(2, round(self.timeout_s)),
                                   application_name="greenlm-ledger")
        except psycopg.Error as err:
            raise GreenlmError(f"cannot connect to the {self._named()}: {self._scrub(err)}") from None

    def _check_table(self, cur) -> bool:
        """Whether the table exists; a GreenlmError if it exists and is not a greenlm ledger."""
        if self._checked:
            return True
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                    " AND table_schema = current_schema()", (TABLE,))
        have = {r[0] for r in cur.fetchall()}
        if have and not _REQUIRED <= have:
            raise GreenlmError(f"the table {TABLE} in the {self._named()} is not a greenlm ledger; it was left"
                               " untouched")
        self._checked = bool(have)
        return self._checked

    # ---- the back end ----------------------------------------------------------------------------

    def _write(self, rows: list[dict]) -> None:
        psycopg = require("psycopg", "a PostgreSQL ledger")
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor() as cur:
                if not self._check_table(cur):
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                    for statement in _SCHEMA:
                        cur.execute(statement)
                    self._checked = True
                cur.executemany(_INSERT, [_no_nul(_columns(item)) for item in rows])
        except psycopg.Error as err:
            self._checked = False
            raise GreenlmError(f"the {self._named()} refused the record: {self._scrub(err)}") from None
        finally:
            conn.close()

    def _fetch(self, start: str | None) -> list[tuple]:
        psycopg = require("psycopg", "a PostgreSQL ledger")
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                if not self._check_table(cur):
                    return []
                query = f"SELECT record_json, host, username FROM {TABLE}"
                params: tuple = ()
                if start is not None:
                    query += " WHERE started_at_utc >= %s"
                    params = (start,)
                cur.execute(query + " ORDER BY started_at_utc", params)
                return cur.fetchall()
        except psycopg.Error as err:
            raise GreenlmError(f"cannot read the {self._named()}: {self._scrub(err)}") from None
        finally:
            conn.close()


def _no_nul(values: tuple) -> tuple:
    """PostgreSQL text holds no NUL character (JSON escapes it; a label might not): drop it from text columns."""
    return tuple(v.replace("\x00", "") if isinstance(v, str) else v for v in values)
