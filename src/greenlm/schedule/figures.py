"""The simulation at a glance: mean saving against job length, per region, forecast (solid) vs oracle (dashed).

Two panels: Flexible Start within the longest window, Pause & Resume within the largest budget. matplotlib is
optional (``pip install 'greenlm[report]'``); without it no figure is drawn and the caller says so.
"""

from __future__ import annotations

from pathlib import Path

from greenlm.common import atomic_write_bytes
from greenlm.common.optional import is_available, missing_message

# Okabe-Ito: safe for colour-blind readers (the report's figures use it too)
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def figure_unavailable_reason() -> str | None:
    return None if is_available("matplotlib") else missing_message("matplotlib", "the simulation's figure")


def savings_figure(result: dict, path: str | Path) -> Path | None:
    """Write the PNG at ``path``; None when matplotlib is missing."""
    if not is_available("matplotlib"):
        return None
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    meta, rows = result["meta"], result["rows"]
    panels = []
    if meta["windows_h"]:
        w = max(meta["windows_h"])
        panels.append(("flexible_start", "window", w, f"Flexible Start, start within {w:g} h"))
    if meta["budgets"]:
        b = max(meta["budgets"])
        panels.append(("pause_resume", "budget", b, f"Pause & Resume, up to {b:.0%} longer"))
    fig = Figure(figsize=(5.2 * len(panels), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    durations = meta["durations_h"]
    for ax, (method, kind, slack, title) in zip(axes, panels):
        for i, region in enumerate(meta["regions"]):
            colour = COLOURS[i % len(COLOURS)]
            for decision, style in (("forecast", "-"), ("oracle", "--")):
                pick = {r["duration_h"]: r["mean_saving_pct"] for r in rows
                        if r["region"] == region and r["method"] == method and r["slack_kind"] == kind
                        and r["slack"] == slack and r["decision"] == decision}
                ax.plot(range(len(durations)), [pick.get(d) for d in durations], style, color=colour, marker="o",
                        markersize=3, label=region if decision == "forecast" else None)
        ax.set_xticks(range(len(durations)), [f"{d:g}" for d in durations])
        ax.set_xlabel("job length (h)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.axhline(0, color="grey", linewidth=0.8)
    axes[0].set_ylabel("mean saving vs starting now (%)")
    axes[-1].legend(title="solid: forecast\ndashed: oracle", fontsize=8, title_fontsize=8, loc="best")
    fig.suptitle(f"{Path(meta['series']['path']).name}: {meta['starts']} start hours, "
                 f"{meta['forecaster']['name']} forecast", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
