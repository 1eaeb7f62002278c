r"""The comparison table as LaTeX (``booktabs``), ready to ``\input`` into a paper.

The columns follow the field's compression tables (Rogers et al. 2020, "A Primer in BERTology",
Table 1: compression x, performance retained %, speedup x) plus the cost columns of Green AI
(Schwartz et al. 2020): parameters, FLOPs, latency, throughput, size, energy, CO2e, cost. The best
value of each comparable column is in bold; a figure that was not measured is ``--``.
"""

from __future__ import annotations

import math
import re
import time

import greenlm

_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """Text safe in a LaTeX paragraph or cell."""
    return "".join(_SPECIALS.get(c, c) for c in str(text))


def _fixed(digits: int):
    return lambda v: f"{v:,.{digits}f}".replace(",", "{,}")


def _si(value: float) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f}{prefix}"
    return f"{value:.0f}"


def _sci(value: float) -> str:
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    if -2 <= exponent <= 3:
        return f"{value:.3g}"
    return f"${value / 10**exponent:.2f}{{\\times}}10^{{{exponent}}}$"


# (row key, header, format, best: "max" | "min" | None)
COLUMNS = [
    ("accuracy", r"Acc.\ (\%)", lambda v: f"{100 * v:.2f}", "max"),
    ("performance_retained_pct", r"Ret.\ (\%)", _fixed(1), "max"),
    ("params", "Params", _si, "min"),
    ("compression_x", r"Compr.\ ($\times$)", _fixed(2), "max"),
    ("flops_per_example", "FLOPs/ex.", _si, "min"),
    ("latency_ms_p50", r"Lat.\ p50 (ms)", _fixed(2), "min"),
    ("throughput_examples_per_s", r"Thr.\ (ex/s)", _fixed(1), "max"),
    ("speedup_x", r"Speedup ($\times$)", _fixed(2), "max"),
    ("size_mb", "Size (MB)", _fixed(1), "min"),
    ("stage_energy_kwh", "Energy (kWh)", _sci, None),
    ("stage_co2e_kg", r"CO$_2$e (kg)", _sci, None),
    ("stage_cost_usd", "Cost (USD)", _sci, None),
]


def _best(rows: list[dict], key: str, direction: str | None):
    values = [r.get(key) for r in rows if r.get(key) is not None]
    if direction is None or len(values) < 2:
        return None
    return max(values) if direction == "max" else min(values)


def latex_table(report: dict, *, label: str | None = None) -> str:
    """A complete ``table*`` environment with a booktabs ``tabular``; needs ``\\usepackage{booktabs}``."""
    rows = report["rows"]
    machine = report.get("machine") or {}
    protocol = report.get("protocol") or {}
    cols = "ll" + "r" * len(COLUMNS)
    header = ["Model", "Method"] + [h for _, h, _, _ in COLUMNS]
    best = {key: _best([r for r in rows if r.get("report_status", "measured") == "measured"], key, d)
            for key, _, _, d in COLUMNS}
    body = []
    marked = False
    for r in rows:
        name = escape(r["model"])
        if r.get("report_status", "measured") != "measured":
            name += r"$^\dagger$"
            marked = True
        cells = [name, escape(r["method"])]
        for key, _, fmt, _ in COLUMNS:
            value = r.get(key)
            if value is None:
                cells.append("--")
                continue
            text = fmt(value)
            cells.append(rf"\textbf{{{text}}}" if best[key] is not None and value == best[key] else text)
        body.append(" & ".join(cells) + r" \\")
    task = escape(report.get("task") or "")
    where = escape(f"{machine.get('cpu') or 'unknown CPU'}, {machine.get('threads') or '?'} thread(s)")
    sources = escape(", ".join(report.get("energy_sources") or []) or "n/a")
    caption = (f"Models of run \\texttt{{{escape(report.get('run', ''))}}} on the {task} dev set. Retained, compression"
               " and speedup are relative to the fine-tuned teacher (first row). Latency at batch 1, throughput at batch "
               f"32, both on {where}. Energy, CO$_2$e and cost are what producing each model cost (its stage alone);"
               f" energy source: {sources}. Best value of each comparable column in bold.")
    if marked:
        caption += r" $^\dagger$Not measured (the run did not finish): figures from the stage folder only."
    if protocol.get("flops"):
        caption += f" FLOPs: {escape(protocol['flops'])}."
    label = label or f"tab:greenlm-{report.get('run', 'run')}"
    lines = [
        f"% greenlm {greenlm.__version__}: run '{report.get('run')}', written {time.strftime('%Y-%m-%d', time.gmtime())}.",
        "% Needs \\usepackage{booktabs} in the preamble; \\input{report.tex} where the table goes.",
        r"\begin{table*}[t]",
        r"\centering",
        r"\small",
        r"\setlength{\tabcolsep}{3.5pt}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{caption}}}",
        rf"\label{{{re.sub(r'[^A-Za-z0-9:.-]', '-', label)}}}",
        r"\end{table*}",
        "",
    ]
    return "\n".join(lines)
