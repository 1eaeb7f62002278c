"""Live grid sources (greenlm/schedule/live.py) against a local HTTP server that answers as Electricity Maps' and
WattTime's documented v3 APIs do: credentials sent the documented way, responses saved as files greenlm reads, a
plan made from them through the real command, and every failure one line with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from greenlm.common import GreenlmError
from greenlm.measure.grid_series import GridSeries
from greenlm.schedule.live import fetch_series, live_provider

NOW_S = 1654041600  # 2022-06-01T00:00Z
TOKEN, USER, PASSWORD, BEARER = "em-secret", "ada", "pw", "wt-bearer"


def _stamp(t: float, fmt: str = "%Y-%m-%dT%H:%M:%S.000Z") -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime(fmt)


def _intensity(t: float) -> float:
    """A daily cycle: cleanest at 12:00 UTC."""
    hour = (t // 3600) % 24
    return 200.0 + 10.0 * abs(hour - 12)


class _Api(BaseHTTPRequestHandler):
    calls: list = []

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def _send(self, code: int, doc) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urllib.parse.urlparse(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        type(self).calls.append((url.path, q, {k.lower(): v for k, v in self.headers.items()}))
        if url.path.startswith("/v3/carbon-intensity/"):
            if self.headers.get("auth-token") != TOKEN:
                return self._send(401, {"message": "Invalid auth-token"})
            if q.get("zone") != "US-CAL-CISO":
                return self._send(404, {"message": f"Zone {q.get('zone')} not found"})
            if url.path.endswith("/past-range"):
                start = datetime.fromisoformat(q["start"].replace("Z", "+00:00")).timestamp()
                end = datetime.fromisoformat(q["end"].replace("Z", "+00:00")).timestamp()
                hours = range(int(start), int(end), 3600)
                return self._send(200, {"zone": q["zone"], "data": [
                    {"zone": q["zone"], "datetime": _stamp(t), "carbonIntensity": _intensity(t), "isEstimated": False,
                     "emissionFactorType": q.get("emissionFactorType")} for t in hours]})
            if url.path.endswith("/forecast"):
                return self._send(200, {"zone": q["zone"], "updatedAt": _stamp(NOW_S), "forecast": [
                    {"datetime": _stamp(NOW_S + 3600 * i), "carbonIntensity": _intensity(NOW_S + 3600 * i)}
                    for i in range(48)]})
        if url.path == "/login":
            import base64

            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            return self._send(200, {"token": BEARER}) if self.headers.get("Authorization") == expected else \
                self._send(403, {"error": "bad credentials"})
        if url.path in ("/v3/forecast", "/v3/historical"):
            if self.headers.get("Authorization") != f"Bearer {BEARER}":
                return self._send(401, {"error": "token expired"})
            first = NOW_S - 8 * 86400 if url.path == "/v3/historical" else NOW_S
            count = 8 * 24 * 12 if url.path == "/v3/historical" else 24 * 12
            data = [{"point_time": _stamp(first + 300 * i, "%Y-%m-%dT%H:%M:%S+00:00"),
                     "value": _intensity(first + 300 * i) / 0.45359237} for i in range(count)]  # lbs/MWh
            return self._send(200, {"data": data, "meta": {"region": q["region"], "signal_type": q["signal_type"],
                                                           "units": "lbs_co2_per_mwh",
                                                           "generated_at": _stamp(NOW_S)}})
        self._send(404, {"message": "no such endpoint"})


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _env(server: str, tmp_path: Path, **extra) -> dict:
    return {"GREENLM_ELECTRICITYMAPS_URL": server, "GREENLM_WATTTIME_URL": server, "GREENLM_CACHE": str(tmp_path),
            "ELECTRICITYMAPS_TOKEN": TOKEN, "WATTTIME_USER": USER, "WATTTIME_PASSWORD": PASSWORD, **extra}


def test_live_specs_are_recognised():
    assert live_provider("electricitymaps:DE") == "electricitymaps"
    assert live_provider("WattTime:CAISO_NORTH") == "watttime"
    assert live_provider("grid.csv") is None and live_provider("C:/data/grid.csv") is None
    with pytest.raises(GreenlmError, match="name the zone"):
        live_provider("watttime:")


def test_electricitymaps_history_and_forecast_are_saved_readable(server, tmp_path):
    _Api.calls.clear()
    env = _env(server, tmp_path)
    history = GridSeries.load(fetch_series("electricitymaps:US-CAL-CISO", "history", NOW_S, env=env))
    assert history.regions == ("US-CAL-CISO",) and history.n_hours == 8 * 24
    assert history.end_s == NOW_S and history.source.format == "electricitymaps"
    assert history.source.scope == "lifecycle" and history.source.kind == "average"
    assert history.values("US-CAL-CISO")[-1] == pytest.approx(_intensity(NOW_S - 3600))
    path, query, headers = _Api.calls[-1]
    assert path == "/v3/carbon-intensity/past-range" and query["emissionFactorType"] == "lifecycle"
    assert headers.get("auth-token") == TOKEN
    forecast = GridSeries.load(fetch_series("electricitymaps:US-CAL-CISO", "forecast", NOW_S, scope="direct",
                                            env=env), scope="direct")
    assert forecast.start_s == NOW_S and forecast.n_hours == 48 and forecast.source.scope == "direct"
    assert sorted(p.name for p in (tmp_path / "grid").iterdir()) == [
        "electricitymaps_US-CAL-CISO_direct_forecast_20220601T0000Z.csv",
        "electricitymaps_US-CAL-CISO_lifecycle_history_20220601T0000Z.csv"]


def test_watttime_logs_in_and_converts_lbs(server, tmp_path):
    _Api.calls.clear()
    series = GridSeries.load(fetch_series("watttime:CAISO_NORTH", "forecast", NOW_S, env=_env(server, tmp_path)))
    assert [c[0] for c in _Api.calls] == ["/login", "/v3/forecast"]
    assert _Api.calls[1][1]["signal_type"] == "co2_moer" and _Api.calls[1][1]["region"] == "CAISO_NORTH"
    assert series.regions == ("CAISO_NORTH",) and series.source.kind == "marginal" and series.n_hours == 24
    # twelve 5-minute points averaged into each clock hour, lbs/MWh converted back to g/kWh
    expected = sum(_intensity(NOW_S + 300 * i) for i in range(12)) / 12
    assert series.values("CAISO_NORTH")[0] == pytest.approx(expected)


@pytest.mark.parametrize("provider, change, message", [
    ("electricitymaps:US-CAL-CISO", {"ELECTRICITYMAPS_TOKEN": ""}, "set ELECTRICITYMAPS_TOKEN"),
    ("electricitymaps:US-CAL-CISO", {"ELECTRICITYMAPS_TOKEN": "wrong"}, "refused the credentials (HTTP 401: Invalid"),
    ("electricitymaps:XX", {}, "HTTP 404"),
    ("watttime:CAISO_NORTH", {"WATTTIME_PASSWORD": ""}, "set WATTTIME_USER and WATTTIME_PASSWORD"),
    ("watttime:CAISO_NORTH", {"WATTTIME_PASSWORD": "nope"}, "refused the credentials (HTTP 403: bad credentials"),
    ("watttime:CAISO_NORTH", {"GREENLM_WATTTIME_URL": "http://127.0.0.1:9"}, "could not reach WattTime"),
])
def test_failures_are_one_line_and_save_nothing(server, tmp_path, provider, change, message):
    with pytest.raises(GreenlmError) as err:
        fetch_series(provider, "history", NOW_S, env=_env(server, tmp_path, **change))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "grid").exists() or not any((tmp_path / "grid").iterdir())


def _greenlm(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "greenlm", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, env={**os.environ, **env})


def test_schedule_plans_on_a_live_forecast(server, tmp_path):
    env = _env(server, tmp_path)
    run = _greenlm("schedule", "--series", "electricitymaps:US-CAL-CISO", "--forecast", "electricitymaps:US-CAL-CISO",
                   "--duration", "2h", "--within", "24h", "--now", "2022-06-01T00:00Z", "--json", env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    plan = json.loads(run.stdout)["plan"]
    assert plan["region"] == "US-CAL-CISO"
    # the server's cleanest hours are 11:00-13:00 UTC: a 2 h job starts at 11:00 or 12:00
    start = plan["flexible_start"]["forecast"]["hours_utc"][0][0]
    assert start[11:13] in ("11", "12"), start
    assert "electricitymaps_US-CAL-CISO_lifecycle_forecast" in json.dumps(plan)
    bad = _greenlm("schedule", "--series", "watttime:CAISO_NORTH", "--duration", "2h", "--within", "24h",
                   env={**env, "WATTTIME_USER": ""}, cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "WATTTIME_USER" in bad.stderr
