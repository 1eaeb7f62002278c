"""Live grid intensity from the Electricity Maps and WattTime APIs, saved as files greenlm already reads.

Wherever a series or forecast file is accepted (``greenlm schedule --series``, ``--forecast``, ``schedule exec``),
``electricitymaps:ZONE`` or ``watttime:REGION`` fetches it instead:

    --series   electricitymaps:US-CAL-CISO   the past 8 days (what greenlm's forecaster learns from)
    --forecast electricitymaps:US-CAL-CISO   the provider's forecast (what the plan decides on)
    --series   watttime:CAISO_NORTH          likewise, WattTime's marginal (MOER) signal

Each response is written to ``$GREENLM_CACHE/grid/`` (default ``~/.cache/greenlm/grid``) in a format greenlm reads
(Electricity Maps: the columns of its CSV exports; WattTime: its own v3 JSON, unchanged), and the plan is computed
from that file, so every figure names the file it came from and a decision can be replayed offline.

Endpoints (the providers' documented v3 APIs; base URLs can be overridden for tests and proxies):

| provider | credentials (environment) | history | forecast |
|---|---|---|---|
| Electricity Maps | ``ELECTRICITYMAPS_TOKEN`` sent as header ``auth-token`` | ``GET /v3/carbon-intensity/past-range?zone=&start=&end=&emissionFactorType=`` -> ``{"data": [{"datetime", "carbonIntensity"}]}`` | ``GET /v3/carbon-intensity/forecast?zone=&emissionFactorType=`` -> ``{"forecast": [...]}`` |
| WattTime | ``WATTTIME_USER``, ``WATTTIME_PASSWORD``: ``GET /login`` (HTTP basic) -> ``{"token"}``, then ``Authorization: Bearer`` | ``GET /v3/historical?region=&start=&end=&signal_type=co2_moer`` | ``GET /v3/forecast?region=&signal_type=co2_moer&horizon_hours=`` |

Base URLs: ``GREENLM_ELECTRICITYMAPS_URL`` (default https://api.electricitymap.org), ``GREENLM_WATTTIME_URL``
(default https://api.watttime.org). Every failure (no credentials, refused token, unknown zone, no network, an answer
that is not the documented JSON) is one ``GreenlmError`` line; nothing is saved from a failed call.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_text

PROVIDERS = ("electricitymaps", "watttime")
HISTORY_DAYS = 8  # a week of history (greenlm's week-based forecasters) plus the day in progress
FORECAST_HORIZON_H = 72
TIMEOUT_S = 30
DEFAULT_URLS = {"electricitymaps": "https://api.electricitymap.org", "watttime": "https://api.watttime.org"}
URL_VARIABLES = {"electricitymaps": "GREENLM_ELECTRICITYMAPS_URL", "watttime": "GREENLM_WATTTIME_URL"}
# Electricity Maps' CSV exports name their intensity columns this way; greenlm's reader keys on them.
_EM_COLUMNS = {"lifecycle": "Carbon Intensity gCO₂eq/kWh (LCA)", "direct": "Carbon Intensity gCO₂eq/kWh (direct)"}

Opener = Callable[[urllib.request.Request, float], object]


def live_provider(spec) -> str | None:
    """``"electricitymaps"`` or ``"watttime"`` when ``spec`` names a live source (``provider:zone``), else None."""
    text = str(spec)
    provider, sep, zone = text.partition(":")
    if not sep or provider.lower() not in PROVIDERS:
        return None
    if not zone.strip():
        raise GreenlmError(f"{text!r}: name the zone after the colon, e.g. {provider}:"
                           f"{'US-CAL-CISO' if provider.lower() == 'electricitymaps' else 'CAISO_NORTH'}")
    return provider.lower()


def fetch_series(spec: str, what: str, now_s: float, *, scope: str | None = None, env: Mapping[str, str] | None = None,
                 opener: Opener | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Fetch ``what`` ("history": the days before ``now_s``; "forecast": the provider's forecast) for the live source
    ``spec`` and return the path of the file it was saved as (readable by ``GridSeries.load``)."""
    if what not in ("history", "forecast"):
        raise ValueError(f"what must be history or forecast, got {what!r}")
    env = os.environ if env is None else env
    provider = live_provider(spec)
    if provider is None:
        raise GreenlmError(f"{spec!r} is not a live source; use electricitymaps:ZONE or watttime:REGION")
    zone = str(spec).partition(":")[2].strip()
    client = _Client(provider, env, opener or _urlopen)
    stamp = datetime.fromtimestamp(now_s, timezone.utc).strftime("%Y%m%dT%H%MZ")
    folder = Path(cache_dir) if cache_dir is not None else _cache_dir(env)
    safe_zone = "".join(c if c.isalnum() or c in "-_" else "_" for c in zone)
    if provider == "electricitymaps":
        scope = scope or "lifecycle"
        if scope not in _EM_COLUMNS:
            raise GreenlmError(f"scope must be lifecycle or direct, got {scope!r}")
        points = _electricitymaps_points(client, zone, what, now_s, scope)
        path = folder / f"electricitymaps_{safe_zone}_{scope}_{what}_{stamp}.csv"
        atomic_write_text(path, _electricitymaps_csv(zone, points, scope))
    else:
        doc = _watttime_document(client, zone, what, now_s)
        path = folder / f"watttime_{safe_zone}_{what}_{stamp}.json"
        atomic_write_text(path, json.dumps(doc, indent=1))
    return path


# ---- the two providers ---------------------------------------------------------------------------------


def _electricitymaps_points(client: "_Client", zone: str, what: str, now_s: float, scope: str) -> list[tuple]:
    params = {"zone": zone, "emissionFactorType": scope}
    if what == "history":
        params |= {"start": _iso(now_s - HISTORY_DAYS * 86400), "end": _iso(now_s)}
        doc, key = client.get("/v3/carbon-intensity/past-range", params), "data"
    else:
        doc, key = client.get("/v3/carbon-intensity/forecast", params), "forecast"
    items = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise client.unexpected(f"no '{key}' list")
    points = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "datetime" not in item or "carbonIntensity" not in item:
            raise client.unexpected(f"{key}[{i}] has no datetime and carbonIntensity")
        points.append((str(item["datetime"]), item["carbonIntensity"]))
    if not any(value is not None for _, value in points):
        raise GreenlmError(f"Electricity Maps returned no {what} values for zone {zone}")
    return points


def _electricitymaps_csv(zone: str, points: list[tuple], scope: str) -> str:
    """The points in the columns of an Electricity Maps CSV export (a missing value stays an empty cell: a gap)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Datetime (UTC)", "Zone Id", _EM_COLUMNS[scope]])
    for stamp, value in points:
        writer.writerow([stamp, zone, "" if value is None else value])
    return out.getvalue()


def _watttime_document(client: "_Client", region: str, what: str, now_s: float) -> dict:
    client.login()
    params = {"region": region, "signal_type": "co2_moer"}
    if what == "history":
        doc = client.get("/v3/historical", params | {"start": _iso(now_s - HISTORY_DAYS * 86400), "end": _iso(now_s)})
    else:
        doc = client.get("/v3/forecast", params | {"horizon_hours": FORECAST_HORIZON_H})
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise client.unexpected("no 'data' list")
    if not doc["data"]:
        raise GreenlmError(f"WattTime returned no {what} values for region {region}")
    doc.setdefault("meta", {}).setdefault("region", region)
    return doc


# ---- HTTP --------------------------------------------------------------------------------------------


class _Client:
    """One provider's base URL and credentials; every failure becomes one line naming the provider."""

    def __init__(self, provider: str, env: Mapping[str, str], opener: Opener):
        self.provider, self.env, self.opener = provider, env, opener
        self.name = "Electricity Maps" if provider == "electricitymaps" else "WattTime"
        self.base = env.get(URL_VARIABLES[provider], DEFAULT_URLS[provider]).rstrip("/")
        self.headers: dict[str, str] = {}
        if provider == "electricitymaps":
            token = env.get("ELECTRICITYMAPS_TOKEN", "").strip()
            if not token:
                raise GreenlmError("Electricity Maps needs an API token: set ELECTRICITYMAPS_TOKEN "
                                   "(from https://app.electricitymaps.com), or give a series file instead")
            self.headers["auth-token"] = token

    def login(self) -> None:
        user, password = self.env.get("WATTTIME_USER", ""), self.env.get("WATTTIME_PASSWORD", "")
        if not user or not password:
            raise GreenlmError("WattTime needs an account: set WATTTIME_USER and WATTTIME_PASSWORD "
                               "(register at https://watttime.org), or give a series file instead")
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        doc = self._call("/login", {}, {"Authorization": f"Basic {basic}"})
        token = doc.get("token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise self.unexpected("the login answer has no token")
        self.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, params: dict) -> object:
        return self._call(path, params, self.headers)

    def unexpected(self, what: str) -> GreenlmError:
        return GreenlmError(f"{self.name} answered {self.base} with something other than its documented JSON ({what})")

    def _call(self, path: str, params: dict, headers: dict) -> object:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
        try:
            body = self.opener(request, TIMEOUT_S)
        except urllib.error.HTTPError as err:
            detail = _error_detail(err)
            if err.code in (401, 403):
                raise GreenlmError(f"{self.name} refused the credentials (HTTP {err.code}{detail}); check "
                                   f"{'ELECTRICITYMAPS_TOKEN' if self.provider == 'electricitymaps' else 'WATTTIME_USER and WATTTIME_PASSWORD'}"
                                   " and that your plan includes this endpoint") from None
            if err.code == 429:
                raise GreenlmError(f"{self.name} is rate-limiting these requests (HTTP 429); try again later") from None
            raise GreenlmError(f"{self.name} answered HTTP {err.code} for {path}{detail}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise GreenlmError(f"could not reach {self.name} at {self.base} ({reason}); without network, give a "
                               "series file (--series FILE)") from None
        try:
            return json.loads(body)
        except ValueError:
            raise self.unexpected("not JSON") from None


def _urlopen(request: urllib.request.Request, timeout_s: float) -> bytes:
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (https URLs of the providers)
        return response.read()


def _error_detail(err: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(err.read() or b"{}")
    except (ValueError, OSError):
        return ""
    message = doc.get("message") or doc.get("error") if isinstance(doc, dict) else None
    return f": {str(message).splitlines()[0][:200]}" if message else ""


def _cache_dir(env: Mapping[str, str]) -> Path:
    root = env.get("GREENLM_CACHE") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                                    "greenlm")
    return Path(root) / "grid"


def _iso(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
