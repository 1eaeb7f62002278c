"""What every figure of the report shares: ``FigureData`` (the figure as PNG and SVG, its data as CSV), the
matplotlib style (no pyplot state) and the Okabe-Ito palette, unit scales and number formats."""

from __future__ import annotations

import csv
import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_bytes, atomic_write_text
from greenlm.common.optional import is_available, missing_message

PNG_DPI = 160
_OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
_METHOD_STYLE = {  # colour, marker
    "finetune": ("#000000", "*"),
    "distill": ("#0072B2", "o"),
    "prune": ("#D55E00", "s"),
    "quantize": ("#009E73", "D"),
    "early_exit": ("#CC79A7", "^"),
}
_OTHER_MARKERS = ("v", "P", "X", "h", "<", ">")
_MODULE_COLOURS = {"embeddings": "#E69F00", "attention": "#0072B2", "ffn": "#009E73", "head": "#CC79A7"}
_RC = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "svg.hashsalt": "greenlm",  # stable ids: the same data gives the same SVG
    "svg.fonttype": "path",  # text as outlines: looks the same without the font installed
}


MISSING_MATPLOTLIB = "figures skipped: " + missing_message("matplotlib")


class FiguresUnavailable(GreenlmError):
    """matplotlib is not installed: the report goes on without figures."""


@dataclass
class FigureData:
    stem: str  # file name without extension
    title: str
    caption: str  # one or two sentences for the HTML and Markdown reports
    figure: object  # matplotlib.figure.Figure
    csv: str
    _png: bytes | None = None
    _svg: bytes | None = None

    def png(self) -> bytes:
        if self._png is None:
            buffer = io.BytesIO()
            with _style():
                self.figure.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
            self._png = buffer.getvalue()
        return self._png

    def svg(self) -> bytes:
        if self._svg is None:
            buffer = io.BytesIO()
            with _style():
                self.figure.savefig(buffer, format="svg", metadata={"Date": None})
            self._svg = buffer.getvalue()
        return self._svg

    def save(self, folder: Path) -> dict[str, Path]:
        """Write ``<stem>.png``, ``<stem>.svg`` and ``<stem>.csv`` into ``folder`` (each atomically)."""
        paths = {ext: folder / f"{self.stem}.{ext}" for ext in ("png", "svg", "csv")}
        atomic_write_bytes(paths["png"], self.png())
        atomic_write_bytes(paths["svg"], self.svg())
        atomic_write_text(paths["csv"], self.csv)
        return paths


def available() -> bool:
    return is_available("matplotlib")


@contextmanager
def _style():
    if not available():
        raise FiguresUnavailable(MISSING_MATPLOTLIB)
    import matplotlib

    with matplotlib.rc_context(_RC):
        yield


def _new_figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def _csv(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row])
    return buffer.getvalue()


def method_style(method: str, index: int = 0) -> tuple[str, str]:
    if method in _METHOD_STYLE:
        return _METHOD_STYLE[method]
    return _OKABE_ITO[(index + 5) % len(_OKABE_ITO)], _OTHER_MARKERS[index % len(_OTHER_MARKERS)]


def _unit_scale(values, unit: str, prefixes) -> tuple[float, str]:
    """(factor, label) so that the largest value reads between 0.1 and 1000: kWh -> Wh -> mWh..."""
    present = [abs(v) for v in values if v]
    if not present:
        return 1.0, unit
    top = max(present)
    for factor, prefix in prefixes:
        if top * factor >= 0.1:
            return factor, f"{prefix}{unit}"
    factor, prefix = prefixes[-1]
    return factor, f"{prefix}{unit}"


_ENERGY_PREFIXES = ((1.0, "k"), (1e3, ""), (1e6, "m"), (1e9, "µ"))  # of kWh
_MASS_PREFIXES = ((1.0, "k"), (1e3, ""), (1e6, "m"), (1e9, "µ"))  # of kg


def energy_scale(values_kwh) -> tuple[float, str]:
    return _unit_scale(values_kwh, "Wh", _ENERGY_PREFIXES)


def co2e_scale(values_kg) -> tuple[float, str]:
    return _unit_scale(values_kg, "g", _MASS_PREFIXES)


def si(value: float) -> str:
    """1.2 G, 340 M: counts readable at a glance."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g}"
