"""What machine this is (CPU model, logical CPUs, memory, GPUs) and the CPU's TDP with its source.

TDPs come from CodeCarbon's table ``data/hardware/cpu_power.csv``, shipped with greenlm as
``greenlm/measure/data/cpu_tdp.csv`` (written by ``scripts/build_measure_tables.py``; credits in
``greenlm/measure/data/README.md``), so the figure does not depend on CodeCarbon being installed. A CPU the
table does not know gets CodeCarbon's own fallback of 4 W per logical CPU, and the record says so;
``cpu_tdp_w=`` / ``GREENLM_CPU_TDP_W`` replace any of it with the user's figure.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass

from greenlm.common import GreenlmError
from greenlm.measure.units import check_positive

# CodeCarbon's figure for a CPU missing from its table (codecarbon/core/cpu.py, DEFAULT_POWER_PER_CORE,
# applied per logical CPU).
FALLBACK_W_PER_LOGICAL_CPU = 4.0


@dataclass(frozen=True)
class CpuPower:
    """The TDP used by the ``estimate:tdp-utilisation`` model, and where it came from."""

    tdp_w: float
    source: str
    cpu_model: str


def cpu_model() -> str:
    """The CPU's marketing name, e.g. ``Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz``; '' if unknown."""
    return _cpu_model()


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.lower().startswith(("model name", "hardware")):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    elif sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or ""


def logical_cpus() -> int:
    return os.cpu_count() or 1


def memory_total_gb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.virtual_memory().total / 1e9


def machine_summary() -> dict:
    """Host facts every record carries (no host name: records may be shared)."""
    return dict(_machine_summary())


@functools.lru_cache(maxsize=1)
def _machine_summary() -> dict:
    return {
        "cpu_model": cpu_model() or "unknown",
        "logical_cpus": logical_cpus(),
        "memory_total_gb": _round(memory_total_gb(), 2),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _round(value, digits):
    return None if value is None else round(value, digits)


# ---- TDP -----------------------------------------------------------------------------------------


def cpu_power(tdp_w: float | None = None, model: str | None = None) -> CpuPower:
    """The TDP to use: the user's figure, else the shipped table (CodeCarbon's), else CodeCarbon's fallback."""
    model = cpu_model() if model is None else model
    if tdp_w is not None:
        return CpuPower(check_positive(tdp_w, "CPU TDP (watts)"), "user: cpu_tdp_w", model)
    env = os.environ.get("GREENLM_CPU_TDP_W")
    if env:
        return CpuPower(check_positive(env, "GREENLM_CPU_TDP_W"), "user: GREENLM_CPU_TDP_W", model)
    found, source = _table_power(model)
    if found is not None:
        return found
    n = logical_cpus()
    return CpuPower(
        FALLBACK_W_PER_LOGICAL_CPU * n,
        f"fallback: {FALLBACK_W_PER_LOGICAL_CPU:g} W x {n} logical CPUs (CodeCarbon's default); {source}; "
        "pass cpu_tdp_w / GREENLM_CPU_TDP_W for a better figure",
        model,
    )


@functools.lru_cache(maxsize=8)
def _table_power(model: str) -> tuple[CpuPower | None, str]:
    """(CpuPower from the shipped table, or None and why). Cached: matching scans ~5,000 names."""
    table = _cpu_table()
    if table is None:
        return None, "greenlm's CPU table (data/cpu_tdp.csv) is missing from this install"
    origin, rows = table
    match = match_cpu(model, [name for name, _ in rows])
    if match is not None:
        return CpuPower(dict(rows)[match], f"{origin}: '{match}'", model), ""
    return None, f"CPU '{model or 'unknown'}' not in {origin}"


@functools.lru_cache(maxsize=1)
def _cpu_table() -> tuple[str, tuple] | None:
    """(where the figures came from, ((name, TDP W), ...)) of the shipped table; None if it is missing."""
    resource = importlib.resources.files("greenlm.measure") / "data" / "cpu_tdp.csv"
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    lines = text.splitlines()
    version = "?"
    if lines and lines[0].startswith("#"):  # "# CPU TDPs (W) from CodeCarbon 3.3.2 (MIT licence) ..."
        words = lines[0].split()
        version = words[words.index("CodeCarbon") + 1] if "CodeCarbon" in words else "?"
        lines = lines[1:]
    rows = []
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        try:
            rows.append((row["name"].strip(), float(row["tdp_w"])))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    if not rows:
        raise GreenlmError("greenlm's data/cpu_tdp.csv has no name,tdp_w rows: is the install damaged?")
    return f"greenlm data/cpu_tdp.csv (CodeCarbon {version} cpu_power.csv)", tuple(rows)


_NOISE = re.compile(r"\((?:r|tm)\)|\bcpu\b|\bprocessor\b|@\s*[\d.]+\s*ghz|\bwith radeon.*$", re.IGNORECASE)


def _normalise(name: str) -> str:
    return " ".join(_NOISE.sub(" ", name).lower().replace(",", " ").split())


def match_cpu(model: str, names: list[str]) -> str | None:
    """The table entry for ``model``: the same name once trademarks, 'CPU', clock are dropped, else the
    single longest entry whose words (with a model number) all appear in the name. None if unsure."""
    if not model:
        return None
    wanted = _normalise(model)
    by_norm = {}
    for name in names:
        by_norm.setdefault(_normalise(name), name)
    if wanted in by_norm:
        return by_norm[wanted]
    words = set(wanted.split())
    candidates = [
        (len(norm.split()), name)
        for norm, name in by_norm.items()
        if any(ch.isdigit() for ch in norm) and set(norm.split()) <= words
    ]
    if not candidates:
        return None
    candidates.sort(reverse=True)
    if len(candidates) > 1 and candidates[0][0] == candidates[1][0]:
        return None  # two equally good entries: refuse to guess
    return candidates[0][1]
