"""The team ledger: one interface, SQLite and PostgreSQL back ends; hosts and users; concurrent writers from two
"machines"; a server that cannot be reached (one line, exit 2, the record parked and imported later); psycopg
missing; a schema-1 SQLite ledger still read and upgraded in place.

The PostgreSQL tests run against the server named by GREENLM_TEST_POSTGRES_URL (``.ci/run`` installs and starts
Debian's PostgreSQL and sets it); each test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import pytest

from greenlm.common import GreenlmError
from greenlm.measure import Ledger, PriceTag, PriceTagWarning
from greenlm.measure.ledger_postgres import PostgresLedger, redact
from greenlm.measure.ledger_sqlite import SqliteLedger

BAD_URL = "postgresql://alice:s3cret-pw@127.0.0.1:1/team"  # nothing listens on port 1


def record(name="run", host=None, user=None, energy=0.5, day="2025-06-01", **extra):
    row = {"id": str(uuid.uuid4()), "name": name, "project": "p", "status": "ok",
           "started_at_utc": f"{day}T10:00:00+00:00", "wall_s": 60.0, "energy_kwh": energy, "co2e_kg": 0.1, **extra}
    if host:
        row["host"] = host
    if user:
        row["user"] = user
    return row


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GREENLM_HOME", str(tmp_path / "home"))
    for name in ("GREENLM_LEDGER", "GREENLM_SETTINGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


# ---- one interface -------------------------------------------------------------------------------


def test_the_location_chooses_the_back_end(home, tmp_path, monkeypatch):
    assert type(Ledger(tmp_path / "l.sqlite")) is SqliteLedger
    assert type(Ledger(str(tmp_path / "l.sqlite"))) is SqliteLedger
    assert type(Ledger(BAD_URL)) is PostgresLedger and type(Ledger("postgres://h/db")) is PostgresLedger
    assert isinstance(Ledger(BAD_URL), Ledger)
    assert repr(Ledger(BAD_URL)) == "PostgresLedger('postgresql://alice:***@127.0.0.1:1/team')"
    monkeypatch.setenv("GREENLM_LEDGER", BAD_URL)  # the setting, as GREENLM_LEDGER or a settings file gives it
    assert type(Ledger()) is PostgresLedger and Ledger().host == "127.0.0.1"
    with pytest.raises(GreenlmError, match="is a PostgreSQL URL"):
        from greenlm.measure import default_ledger_path

        default_ledger_path()
    monkeypatch.delenv("GREENLM_LEDGER")
    (tmp_path / "greenlm.toml").write_text(f'ledger = "{BAD_URL}"\n')
    assert type(Ledger()) is PostgresLedger
    (tmp_path / "greenlm.toml").unlink()
    assert type(Ledger()) is SqliteLedger and Ledger().path == home / "ledger.sqlite"
    assert redact("postgresql://bob@h/db") == "postgresql://bob@h/db"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_hosts_users_totals_and_no_double(backend, home, tmp_path, request):
    where = tmp_path / "l.sqlite" if backend == "sqlite" else request.getfixturevalue("pg_url")
    ledger = Ledger(where)
    first = record(host="m1", user="alice", energy=1.0)
    ledger.append(first)
    ledger.append(first)  # the same id again: written once
    ledger.append(record(host="m2", user="alice", energy=2.0))
    ledger.append(record(host="m2", user="bob", energy=4.0, day="2025-06-03"))
    ledger.append(record(energy=8.0, day="2025-06-04"))  # this machine, this user
    rows = ledger.records()
    assert len(rows) == 4 and len({r["id"] for r in rows}) == 4
    assert [r["name"] for r in rows] == ["run"] * 4 and rows[-1]["host"] and rows[-1]["host"] not in ("m1", "m2")
    by_host = {g["group"]: g for g in ledger.totals(group_by="host")}
    assert by_host["m1"]["energy_kwh"] == 1.0 and by_host["m2"]["energy_kwh"] == 6.0
    assert by_host["m2"]["users"] == 2 and by_host["m1"]["users"] == 1
    by_user = {g["group"]: g for g in ledger.totals(group_by="user")}
    assert by_user["alice"]["records"] == 2 and by_user["alice"]["hosts"] == 2 and by_user["bob"]["energy_kwh"] == 4.0
    (total,) = ledger.totals()
    assert total["records"] == 4 and total["energy_kwh"] == 15.0 and total["hosts"] == 3
    (later,) = ledger.totals(since="2025-06-02")
    assert later["records"] == 2 and later["energy_kwh"] == 12.0
    if backend == "sqlite":  # host and user live in the row's columns, not in the record (pricetag.json's twin)
        stored = [json.loads(t) for (t,) in sqlite3.connect(where).execute("SELECT record_json FROM pricetags")]
        assert len(stored) == 4 and not any("host" in s or "user" in s for s in stored)


def test_pricetag_goes_to_the_postgres_ledger_named_by_the_setting(pg_url, monkeypatch):
    monkeypatch.setenv("GREENLM_LEDGER", pg_url)
    with PriceTag("unit", project="team", pue=1.0, backend="estimate"):
        with PriceTag("phase"):
            pass
    (row,) = Ledger().records()
    assert row["name"] == "unit" and row["project"] == "team" and row["phases"][0]["name"] == "phase"


# ---- concurrency ---------------------------------------------------------------------------------

_WRITER = """
import sys, time, uuid
from greenlm.measure import Ledger
where, host, count, start_at, shared = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
ledger = Ledger(where)
while time.time() < start_at:
    pass
for i in range(count):
    ids = [str(uuid.uuid4())] + ([f"{shared}-{i}"] if i % 5 == 0 else [])  # every 5th: an id all writers share
    for id_ in ids:
        ledger.append({"id": id_, "name": f"w{i}", "started_at_utc": "2025-06-01T00:00:00+00:00", "wall_s": 1.0,
                       "energy_kwh": 1.0, "host": host, "user": "ci"})
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_writers_on_two_machines_at_once_lose_nothing_and_double_nothing(backend, home, tmp_path, request):
    where = str(tmp_path / "l.sqlite") if backend == "sqlite" else request.getfixturevalue("pg_url")
    processes, count = 4, 30
    start_at = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, where, f"machine-{k % 2}", str(count), str(start_at),
                               "shared"]) for k in range(processes)]
    assert [p.wait(timeout=300) for p in procs] == [0] * processes
    rows = Ledger(where).records()
    shared = count // 5
    assert len(rows) == processes * count + shared  # each writer's own, plus each shared id once
    assert len({r["id"] for r in rows}) == len(rows)
    by_host = {g["group"]: g["records"] for g in Ledger(where).totals(group_by="host")}
    assert sum(by_host.values()) == len(rows) and set(by_host) == {"machine-0", "machine-1"}
    assert by_host["machine-0"] >= processes // 2 * count and by_host["machine-1"] >= processes // 2 * count
    assert list(Ledger(where).pending()) == []


# ---- a server that cannot be reached -------------------------------------------------------------


def test_unreachable_server_parks_the_record_and_names_the_host_not_the_password(home):
    ledger = Ledger(BAD_URL, timeout_s=2)
    if not __import__("greenlm.common.optional", fromlist=["x"]).is_available("psycopg"):
        pytest.skip("psycopg not installed: the missing-package path is tested below")
    rec = record()
    with pytest.raises(GreenlmError) as err:
        ledger.append(rec)
    text = str(err.value)
    assert "\n" not in text and "127.0.0.1:1" in text and "s3cret" not in text and "saved to" in text
    (parked,) = ledger.pending()
    assert parked.parent == home / "ledger-postgresql-127.0.0.1-1-team.pending"
    assert json.loads(parked.read_text())["id"] == rec["id"]
    with pytest.raises(GreenlmError, match="cannot connect to the PostgreSQL ledger team on 127.0.0.1:1"):
        ledger.totals()


def test_refused_login_parks_then_the_next_append_imports(pg_url):
    parts = urlsplit(pg_url)
    wrong = pg_url.replace(f"{parts.netloc}", f"{parts.username}:not-the-password@{parts.hostname}:{parts.port or 5432}", 1)
    good = pg_url.replace(f"{parts.netloc}", f"{parts.netloc.rsplit('@', 1)[0]}@{parts.hostname}:{parts.port or 5432}", 1)
    lost = record(name="parked")
    with pytest.raises(GreenlmError, match="saved to") as err:
        Ledger(wrong).append(lost)
    assert "not-the-password" not in str(err.value) and parts.hostname in str(err.value)
    assert len(Ledger(good).pending()) == 1  # one pending folder per server and database, whoever logs in
    Ledger(good).append(record(name="next"))
    assert sorted(r["name"] for r in Ledger(good).records()) == ["next", "parked"]
    assert Ledger(good).pending() == []


def test_a_table_that_is_not_a_ledger_is_left_alone(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE greenlm_pricetags (name TEXT)")
    with pytest.raises(GreenlmError, match="not a greenlm ledger.*saved to"):
        Ledger(pg_url).append(record())
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM greenlm_pricetags").fetchone()[0] == 0


def test_missing_psycopg_is_one_line_and_the_record_is_parked(home, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(GreenlmError) as err:
        Ledger(BAD_URL).append(record())
    assert str(err.value).startswith("psycopg is not installed (needed for a PostgreSQL ledger")
    assert "pip install 'greenlm[team]'" in str(err.value) and "\n" not in str(err.value)
    assert len(Ledger(BAD_URL).pending()) == 1
    with pytest.warns(PriceTagWarning, match="psycopg is not installed"):  # the work itself is not failed
        with PriceTag("unit", pue=1.0, backend="estimate", ledger=Ledger(BAD_URL)) as tag:
            pass
    assert tag.record.status == "ok" and len(Ledger(BAD_URL).pending()) == 2


def _cli(*args, env_extra=None, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "greenlm", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)


def test_cli_bad_url_is_one_line_exit_2_and_a_measured_command_keeps_its_record(home, tmp_path):
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'greenlm[team]')")
    env = {"GREENLM_HOME": str(home)}
    result = _cli("ledger", "--ledger", BAD_URL, env_extra=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0] and "s3cret" not in result.stderr + result.stdout
    measured = _cli("measure", "--pue", "1", "--backend", "estimate", "--ledger", BAD_URL, "--", sys.executable,
                    "-c", "pass", env_extra=env)
    assert measured.returncode == 0, measured.stderr
    assert "s3cret" not in measured.stderr and "saved to" in measured.stderr
    assert len(Ledger(BAD_URL).pending()) == 1
    # a training command's price tag (here through the setting): the work is not failed, the record is parked
    tagged = _cli("measure", "--pue", "1", "--backend", "estimate", "--", sys.executable, "-c", "pass",
                  env_extra={**env, "GREENLM_LEDGER": BAD_URL})
    assert tagged.returncode == 0 and len(Ledger(BAD_URL).pending()) == 2


def test_cli_summarises_a_postgres_ledger_by_host(pg_url, home):
    ledger = Ledger(pg_url)
    for host, energy in (("gpu-box", 1.5), ("laptop", 0.25), ("gpu-box", 0.5)):
        ledger.append(record(host=host, user="alice", energy=energy))
    result = _cli("ledger", "--ledger", pg_url, "--group-by", "host", "--json", env_extra={"GREENLM_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {g["group"]: g["energy_kwh"] for g in out["totals"]} == {"gpu-box": 2.0, "laptop": 0.25}
    password = urlsplit(pg_url).password
    assert out["pending"] == 0 and (not password or password not in result.stdout)
    table = _cli("ledger", "--ledger", pg_url, "--group-by", "user", env_extra={"GREENLM_HOME": str(home)})
    assert table.returncode == 0 and "alice" in table.stdout and "hosts" in table.stdout


# ---- SQLite: files written before host and user ---------------------------------------------------

_SCHEMA_1 = """
CREATE TABLE pricetags (id TEXT PRIMARY KEY, name TEXT NOT NULL, project TEXT, stage TEXT, status TEXT,
    started_at_utc TEXT NOT NULL, ended_at_utc TEXT, wall_s REAL, cpu_s REAL, energy_kwh REAL, co2e_kg REAL,
    cost_usd REAL, energy_source TEXT, intensity_source TEXT, record_json TEXT NOT NULL, appended_at_utc TEXT NOT NULL);
CREATE INDEX pricetags_started ON pricetags (started_at_utc);
PRAGMA user_version = 1;
"""


def test_a_schema_1_sqlite_ledger_is_read_then_upgraded_on_append(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_1)
    old = record(name="old")
    conn.execute("INSERT INTO pricetags VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (old["id"], "old", "p", None, "ok", old["started_at_utc"], None, 60.0, 1.0, 0.5, 0.1, None, "x",
                  None, json.dumps(old), "2025-06-01T10:00:00+00:00"))
    conn.commit()
    conn.close()
    (row,) = Ledger(path).records()
    assert row["name"] == "old" and row["host"] is None and row["user"] is None
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1  # reading changes nothing
    Ledger(path).append(record(name="new", host="m1", user="bob"))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("SELECT name, host, username FROM pricetags ORDER BY name").fetchall() == \
        [("new", "m1", "bob"), ("old", None, None)]
    conn.close()
    by_host = {g["group"]: g["records"] for g in Ledger(path).totals(group_by="host")}
    assert by_host == {"(none)": 1, "m1": 1}
