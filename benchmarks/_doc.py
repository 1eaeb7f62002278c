"""Shared by benchmark scripts: describe the machine, and write one section of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine_line() -> str:
    import torch

    from greenlm.common.hardware import cpu_model

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads),"
            f" Python {platform.python_version()}, load average {load:.1f} at the end")


def write_section(title: str, body: str) -> None:
    """Replace (or append) the block between this section's markers; other sections stay as they are."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    begin, end = f"<!-- {slug}:begin -->", f"<!-- {slug}:end -->"
    block = f"## {title}\n\n{begin}\n{body.strip()}\n{end}\n"
    text = DOC.read_text() if DOC.is_file() else "# Benchmarks\n\n"
    pattern = re.compile(rf"## {re.escape(title)}\n\n{re.escape(begin)}.*?{re.escape(end)}\n", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    DOC.parent.mkdir(parents=True, exist_ok=True)
    tmp = DOC.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(DOC)
