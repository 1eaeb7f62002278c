"""The PostgreSQL server the team-ledger and sweep-storage tests use: GREENLM_TEST_POSTGRES_URL (``.ci/run`` installs
Debian's PostgreSQL, starts it and sets the URL through scripts/ci_postgres.sh). Each test gets a schema of its own
(the URL's search_path), dropped afterwards; without the variable those tests skip and say why."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

PG_ENV = "GREENLM_TEST_POSTGRES_URL"


@pytest.fixture
def pg_url(tmp_path, monkeypatch):
    """A URL whose tables live in a fresh schema; GREENLM_HOME (where pending records go) in this test's folder."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL server here (.ci/run installs and starts one)")
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'greenlm[team]')")
    monkeypatch.setenv("GREENLM_HOME", str(tmp_path / "home"))
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:  # a URL that is set must work: fail, never skip
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
