"""Where this machine prices its runs: region, PUE, price per hour and ledger, set once instead of on every command.

Each setting is resolved in one place, here, from the first of:

1. the option or argument given (``--region``, ``PriceTag(region=...)``, ``--set measure.region=...``);
2. the environment: ``GREENLM_REGION``, ``GREENLM_PUE``, ``GREENLM_USD_PER_HOUR``, ``GREENLM_LEDGER``;
3. a settings file (TOML, top-level keys ``region``, ``pue``, ``usd_per_hour``, ``ledger``): ``./greenlm.toml`` in
   the working folder (a project's), else the user's ``settings.toml`` in ``$GREENLM_HOME``, else in
   ``$XDG_CONFIG_HOME/greenlm`` (``~/.config/greenlm``; ``%APPDATA%\\greenlm`` on Windows). ``GREENLM_SETTINGS=FILE``
   names one file instead of those two;
4. the default (no region: no CO2e; PUE 1.0 with a warning; no price; the ledger in the user's data folder).

A recipe's ``measure`` section sits between 3 and 4 for ``greenlm run``: where this machine is (environment, file)
beats what a recipe, written anywhere, assumed. An unknown key, or a value that is not what the key takes, is a
``GreenlmError`` of one line naming the file and the closest valid key.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.common.inputs import SETTINGS_MAX_BYTES, decode_utf8, read_input

# setting -> (environment variable, what it takes)
KEYS = {
    "region": ("GREENLM_REGION", "a carbon-intensity region such as USA, FRA, USA/CA or gcp:us-central1"),
    "pue": ("GREENLM_PUE", "the facility's PUE, a number >= 1"),
    "usd_per_hour": ("GREENLM_USD_PER_HOUR", "the machine's price in USD per hour, a number > 0"),
    "ledger": ("GREENLM_LEDGER", "the ledger: a file path, or a postgresql://user:password@host/database URL (a team ledger)"),
}
SETTINGS_ENV = "GREENLM_SETTINGS"
PROJECT_FILE = "greenlm.toml"


@dataclass(frozen=True)
class Setting:
    """A resolved setting: its value and where it came from (``GREENLM_PUE``, a file's path, ``option``...)."""

    value: object
    source: str


def user_settings_file() -> Path:
    """``$GREENLM_HOME/settings.toml``, else ``settings.toml`` in the user's configuration folder."""
    home = os.environ.get("GREENLM_HOME")
    if home:
        return Path(home).expanduser() / "settings.toml"
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "greenlm" / "settings.toml"


def settings_files() -> list[Path]:
    """The files read, the one that wins first: ``$GREENLM_SETTINGS``, or ``./greenlm.toml`` then the user's."""
    named = os.environ.get(SETTINGS_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise GreenlmError(f"{SETTINGS_ENV}={named}: no such settings file")
        return [path]
    return [p for p in (Path.cwd() / PROJECT_FILE, user_settings_file()) if p.is_file()]


def check_value(key: str, value, where: str):
    """``value`` as ``key`` takes it (a number for pue / usd_per_hour), or a one-line GreenlmError naming ``where``."""
    if key in ("pue", "usd_per_hour"):
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or not math.isfinite(number):  # not a number, NaN, or an overflow to infinity (1e400)
            raise GreenlmError(f"{where}: {key} must be {KEYS[key][1]}, got {value!r}")
        if (key == "pue" and number < 1.0) or (key == "usd_per_hour" and number <= 0):
            raise GreenlmError(f"{where}: {key} must be {KEYS[key][1]}, got {value!r}")
        return number
    if not isinstance(value, str) or not value.strip():
        raise GreenlmError(f"{where}: {key} must be {KEYS[key][1]}, got {value!r}")
    return value.strip()


def _read_file(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10: the tomli backport (a dependency there)
        import tomli as tomllib
    text = decode_utf8(read_input(path, what="settings file", max_bytes=SETTINGS_MAX_BYTES), f"settings file {path}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise GreenlmError(f"settings file {path} is not valid TOML: {err}") from None
    out = {}
    for key, value in data.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, list(KEYS), n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise GreenlmError(f"settings file {path}: unknown key '{key}'; {hint}(keys: {', '.join(KEYS)})")
        out[key] = check_value(key, value, f"settings file {path}")
    return out


def machine_settings() -> dict[str, Setting]:
    """Every setting the environment or a settings file gives, checked (the environment beats the files)."""
    found: dict[str, Setting] = {}
    for path in reversed(settings_files()):  # the user's file first, then the project's over it
        for key, value in _read_file(path).items():
            found[key] = Setting(value, str(path))
    for key, (env, _) in KEYS.items():
        raw = os.environ.get(env)
        if raw is not None and raw.strip():
            found[key] = Setting(check_value(key, raw, env), env)
    return found


def resolve(key: str, given=None, *, default=None) -> Setting:
    """One setting: the value given (``option``), else the environment, else a settings file, else ``default``."""
    if key not in KEYS:
        raise KeyError(key)
    if given is not None:
        return Setting(given, "option")
    found = machine_settings().get(key)
    return found if found is not None else Setting(default, "default")
