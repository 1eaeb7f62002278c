r"""The comparison table as LaTeX (``booktabs``, scaled with ``graphicx``), ready to ``\input`` into a paper.

The columns follow the field's compression tables (Rogers et al. 2020, "A Primer in BERTology",
Table 1: compression x, performance retained %, speedup x) plus the cost columns of Green AI
(Schwartz et al. 2020): parameters, FLOPs, latency, throughput, size, energy, CO2e, cost. The best
value of each comparable column is in bold; a figure that was not measured is ``--``.
"""

from __future__ import annotations

import re
import time

import greenlm
from greenlm.report.provenance import eval_split_of

_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """Text safe in a LaTeX paragraph or cell."""
    return "".join(_SPECIALS.get(c, c) for c in str(text))


def _fixed(digits: int):
    return lambda v: f"{v:,.{digits}f}".replace(",", "{,}")


def _small(value: float) -> str:
    """Two decimals, or three significant digits below 1 (0.0437 MB, not 0.0)."""
    return f"{value:,.2f}".replace(",", "{,}") if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def _si(value: float) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f}{prefix}"
    return f"{value:.0f}"


def _sig(value: float) -> str:
    """Three significant digits, no exponent for the ranges a scaled column holds."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}".replace(",", "{,}")


_ENERGY_UNITS = ((1.0, "kWh"), (1e3, "Wh"), (1e6, "mWh"), (1e9, r"$\mu$Wh"))
_MASS_UNITS = ((1.0, "kg"), (1e3, "g"), (1e6, "mg"), (1e9, r"$\mu$g"))


def _scale(values, units) -> tuple[float, str]:
    """(factor, unit) that puts the column's largest value between 1 and 1000 (kWh -> Wh -> mWh...)."""
    present = [abs(v) for v in values if v]
    top = max(present, default=1.0)
    for factor, unit in units:
        if top * factor >= 1.0:
            return factor, unit
    return units[-1]


# (row key, name, unit or units to scale into, format, best: "max" | "min" | None)
COLUMNS = [
    ("accuracy", "Acc.", r"(\%)", lambda v: f"{100 * v:.2f}", "max"),
    ("macro_f1", "F1", r"macro (\%)", lambda v: f"{100 * v:.2f}", "max"),
    ("mcc", "MCC", "", lambda v: f"{v:.3f}", "max"),
    ("performance_retained_pct", "Ret.", r"(\%)", _fixed(1), "max"),
    ("params", "Params", "", _si, "min"),
    ("compression_x", "Compr.", r"($\times$)", _fixed(2), "max"),
    ("flops_per_example", "FLOPs", "per ex.", _si, "min"),
    ("latency_ms_p50", "Latency", "p50 (ms)", _small, "min"),
    ("throughput_examples_per_s", "Thr.", "(ex/s)", _fixed(0), "max"),
    ("speedup_x", "Speedup", r"($\times$)", _fixed(2), "max"),
    ("size_mb", "Size", "(MB)", _small, "min"),
    ("stage_energy_kwh", "Energy", _ENERGY_UNITS, _sig, None),
    ("stage_co2e_kg", r"CO$_2$e", _MASS_UNITS, _sig, None),
    ("stage_cost_usd", "Cost", "(USD)", _sig, None),
]


def _extra(row: dict, key: str, scale: float) -> str:
    """What follows a cell's figure: the accuracy's 95% interval, ``='' on a retained % within noise of the teacher,
    the range over the timing rounds, ``exp.'' on expected FLOPs (a model with exits)."""
    def small(text: str) -> str:
        return rf" {{\scriptsize {text}}}"

    if key == "accuracy" and row.get("accuracy_ci95_low") is not None:
        return small(f"[{100 * row['accuracy_ci95_low']:.1f}, {100 * row['accuracy_ci95_high']:.1f}]")
    if key == "performance_retained_pct" and row.get("within_noise_of_teacher"):
        return "$^{=}$"
    if key == "flops_per_example" and row.get("flops_basis") == "expected":
        return small("exp.")
    if key in ("latency_ms_p50", "throughput_examples_per_s") and (row.get("speed_rounds") or 0) > 1:
        low, high = row.get(f"{key}_min"), row.get(f"{key}_max")
        if low is not None and high is not None:
            fmt = _small if key == "latency_ms_p50" else _fixed(0)
            return small(f"({fmt(low * scale)}--{fmt(high * scale)})")
    return ""


def _best(rows: list[dict], key: str, direction: str | None):
    values = [r.get(key) for r in rows if r.get(key) is not None]
    if direction is None or len(values) < 2 or min(values) == max(values):
        return None  # nothing to single out
    return max(values) if direction == "max" else min(values)


def latex_table(report: dict, *, label: str | None = None) -> str:
    """A complete ``table*`` with a booktabs ``tabular``; needs ``\\usepackage{booktabs}`` and ``{graphicx}``."""
    rows = report["rows"]
    machine = report.get("machine") or {}
    protocol = report.get("protocol") or {}
    cols = "lll" + "r" * len(COLUMNS)
    scales = {}
    units = []
    for key, _, unit, _, _ in COLUMNS:
        if isinstance(unit, tuple):  # energy and CO2e: one unit for the column, chosen from its values
            factor, name = _scale([r.get(key) for r in rows], unit)
            scales[key] = factor
            units.append(f"({name})")
        else:
            units.append(unit)
    header = ["Model", "Method", "Runtime"] + [name for _, name, _, _, _ in COLUMNS]
    unit_row = ["", "", ""] + units
    best = {key: _best([r for r in rows if r.get("report_status", "measured") == "measured"], key, d)
            for key, _, _, _, d in COLUMNS}
    body = []
    marked = False
    for r in rows:
        name = escape(r["model"])
        if r.get("report_status", "measured") != "measured":
            name += r"$^\dagger$"
            marked = True
        runtime = " ".join(str(r[k]) for k in ("runtime", "precision") if r.get(k)) or "--"
        cells = [name, escape(r["method"]), escape(runtime)]
        for key, _, _, fmt, _ in COLUMNS:
            value = r.get(key)
            if value is None:
                cells.append("--")
                continue
            text = fmt(value * scales.get(key, 1.0))
            text = rf"\textbf{{{text}}}" if best[key] is not None and value == best[key] else text
            cells.append(text + _extra(r, key, scales.get(key, 1.0)))
        body.append(" & ".join(cells) + r" \\")
    task = escape(report.get("task") or "")
    where = escape(f"{machine.get('cpu') or 'unknown CPU'}, {machine.get('threads') or '?'} thread(s)")
    sources = escape(", ".join(report.get("energy_sources") or []) or "n/a")
    split = escape(eval_split_of(report))
    caption = (f"Models of run \\texttt{{{escape(report.get('run', ''))}}} on the {task} {split} set. Retained, compression"
               " and speedup are relative to the fine-tuned teacher (first row). Latency at batch 1, throughput at"
               f" batch 32, both on {where}. Energy, CO$_2$e and cost are what producing each model cost (its stage"
               f" alone); energy source: {sources}. Best value of each comparable column in bold.")
    if marked:
        caption += r" $^\dagger$Not measured (the run did not finish): figures from the stage folder only."
    if any(r.get("accuracy_ci95_low") is not None for r in rows):
        caption += (f" Accuracy with its 95\\% percentile bootstrap interval over the {split} examples (1{{,}}000"
                    " resamples, seed 0).")
    if any(r.get("within_noise_of_teacher") for r in rows):
        caption += (" $^{=}$The difference from the teacher is within noise: the 95\\% interval of the paired"
                    f" difference (the same {split} examples resampled for both models) holds 0.")
    if any((r.get("speed_rounds") or 0) > 1 for r in rows):
        caption += " Latency and throughput: the best interleaved timing round, the range over the rounds beside it."
    if any(r.get("flops_basis") == "expected" for r in rows):
        caption += f" FLOPs marked exp.: expected from the exits taken on {split}."
    if protocol.get("flops"):
        caption += f" FLOPs: {escape(protocol['flops'])}."
    label = label or f"tab:greenlm-{report.get('run', 'run')}"
    lines = [
        f"% greenlm {greenlm.__version__}: run '{report.get('run')}', written {time.strftime('%Y-%m-%d')}.",
        "% Needs \\usepackage{booktabs} and \\usepackage{graphicx} in the preamble; \\input{report.tex} where the"
        " table goes.",
        r"\begin{table*}[t]",
        r"\centering",
        r"\small",
        r"\setlength{\tabcolsep}{4pt}",
        r"\resizebox{\textwidth}{!}{%  17 columns: scaled to the text width (two-column papers: about 85%)",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(header) + r" \\",
        " & ".join(unit_row) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}%",
        "}",
        rf"\caption{{{caption}}}",
        rf"\label{{{re.sub(r'[^A-Za-z0-9:.-]', '-', label)}}}",
        r"\end{table*}",
        "",
    ]
    return "\n".join(lines)
