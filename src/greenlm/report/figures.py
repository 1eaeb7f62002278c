"""The report's figures (matplotlib, no pyplot state): PNG and SVG, each with its data as CSV beside it.

    accuracy_vs_<axis>   one point per model against throughput, FLOPs, inference energy, size;
                         the Pareto front drawn as a staircase and its models named (Green AI's
                         "efficiency vs accuracy" plots, Schwartz et al. 2020)
    early_exit_<stage>   the speed/accuracy curve of an early-exit model over its thresholds
    breakdown            where each model's parameters and FLOPs go: embeddings / attention / FFN / head
    pricetag             what producing each model cost: energy, CO2e, money per stage
    budget_curve         expected best accuracy vs trials and vs energy of a sweep (Dodge et al. 2019)

Every function takes plain data (report rows, curve.json, dicts) and returns a ``FigureData`` or
None when there is nothing to draw. Colours are the Okabe-Ito palette (safe for colour-blind
readers and in greyscale print, helped by a distinct marker per method).
"""

from __future__ import annotations

import csv
import io
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_bytes, atomic_write_text
from greenlm.common.optional import is_available, missing_message
from greenlm.report.pareto import TRADEOFF_AXES, Axis, front_of_rows

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


# ---- accuracy vs one axis, with the Pareto front ----------------------------------------------------


def _place_labels(ax, fig, points: list[tuple[float, float, str, bool]]) -> None:
    """Name every point, moving a label to another side of its point when it would cover another label."""
    fig.draw_without_rendering()  # runs the layout: limits and transforms as they will be drawn
    dpi = fig.dpi
    placed: list[tuple[float, float, float, float]] = []
    dots = [ax.transData.transform((x, y)) * 72.0 / dpi for x, y, _, _ in points]
    frame = ax.get_window_extent()
    x0, y0, x1, y1 = (v * 72.0 / dpi for v in (frame.x0, frame.y0, frame.x1, frame.y1))
    offsets = ((6, 5, "left"), (6, -13, "left"), (-6, 5, "right"), (-6, -13, "right"), (6, 16, "left"),
               (6, -24, "left"), (-6, 16, "right"), (-6, -24, "right"))
    order = sorted(range(len(points)), key=lambda i: (not points[i][3], -points[i][1]))  # front first
    for i in order:
        x, y, name, on_front = points[i]
        px, py = dots[i]
        width, height = 5.2 * len(name) + 2, 10.0  # points, at font size 8
        choice = offsets[0]
        for dx, dy, ha in offsets:
            left = px + dx if ha == "left" else px + dx - width
            box = (left, py + dy, left + width, py + dy + height)
            hits_label = any(not (box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3]) for b in placed)
            hits_dot = any(box[0] - 3 <= d[0] <= box[2] + 3 and box[1] - 3 <= d[1] <= box[3] + 3
                           for j, d in enumerate(dots) if j != i)
            inside = box[0] >= x0 and box[2] <= x1 and box[1] >= y0 and box[3] <= y1
            if not hits_label and not hits_dot and inside:
                choice = (dx, dy, ha)
                placed.append(box)
                break
        else:
            dx, dy, ha = choice
            left = px + dx if ha == "left" else px + dx - width
            placed.append((left, py + dy, left + width, py + dy + height))
        dx, dy, ha = choice
        ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va="bottom", fontsize=8,
                    fontweight="bold" if on_front else "normal", color="#111111" if on_front else "#444444")


def _accuracy_limits(ax, values_pct: list[float]) -> None:
    """A y range around the data, at least 2 points tall, never far above 100%."""
    low, high = min(values_pct), max(values_pct)
    low = min(low, high - 2.0)
    pad = 0.15 * (high - low)
    ax.set_ylim(max(0.0, low - pad), min(high + pad, 100.0 + 0.25 * pad))


def tradeoff_figure(rows: list[dict], axis: Axis, *, teacher: str | None = None) -> FigureData | None:
    """Accuracy (y) against ``axis`` (x), one point per measured model, the Pareto front drawn and named."""
    points = [r for r in rows if r.get(axis.key) is not None and r.get("accuracy") is not None
              and r[axis.key] > 0]
    if not points:
        return None
    front = front_of_rows(points, axis)
    energy = axis.key == "inference_energy_kwh_per_1000"
    factor, unit = energy_scale([r[axis.key] for r in points]) if energy else (1.0, "")
    xlabel = f"inference energy per 1,000 examples ({unit})" if energy else axis.label
    with _style():
        fig = _new_figure(6.4, 4.3)
        ax = fig.add_subplot()
        seen_methods: dict[str, int] = {}
        labelled: set[str] = set()
        xs = [r[axis.key] * factor for r in points]
        if max(xs) / min(xs) >= 20:
            ax.set_xscale("log")
        if teacher is not None:
            ref = next((r for r in points if r["model"] == teacher), None)
            if ref is not None:
                ax.axhline(100 * ref["accuracy"], color="#777777", linestyle=":", linewidth=1, zorder=1,
                           label="teacher accuracy")
        for r, x in zip(points, xs):
            index = seen_methods.setdefault(r["method"], len(seen_methods))
            colour, marker = method_style(r["method"], index)
            on_front = r["model"] in front
            label = None if r["method"] in labelled else r["method"]
            labelled.add(r["method"])
            ax.scatter([x], [100 * r["accuracy"]], s=110 if marker == "*" else 55, marker=marker, color=colour,
                       edgecolors="black" if on_front else "white", linewidths=1.1 if on_front else 0.6, zorder=3,
                       label=label)
        fx = [r[axis.key] * factor for r in points if r["model"] in front]
        fy = [100 * r["accuracy"] for r in points if r["model"] in front]
        order = sorted(range(len(fx)), key=lambda i: fx[i])
        fx, fy = [fx[i] for i in order], [fy[i] for i in order]
        if len(fx) > 1:
            # the boundary of what the front models dominate: for a cost axis each model covers the
            # region to its right, for a speed axis the region to its left
            ax.plot(fx, fy, drawstyle="steps-pre" if axis.higher_is_better else "steps-post", color="#333333",
                    linestyle="--", linewidth=1.2, zorder=2, label="Pareto front")
        if axis.key == "flops_per_example":
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v) if v else "0"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("dev accuracy (%)")
        _accuracy_limits(ax, [100 * r["accuracy"] for r in points])
        better = "higher" if axis.higher_is_better else "lower"
        ax.set_title(f"Accuracy vs {axis.title}")
        ax.margins(x=0.12)
        ax.legend(loc="best")
        names = [(r[axis.key] * factor, 100 * r["accuracy"], r["model"], r["model"] in front) for r in points]
        _place_labels(ax, fig, names)
    caption = (f"Dev accuracy against {axis.title} ({better} is better), one point per model; the dashed staircase"
               f" is the Pareto front: {', '.join(front)} (no other model is both more accurate and"
               f" {'faster' if axis.key == 'throughput_examples_per_s' else 'cheaper'}).")
    table = _csv(["model", "method", axis.key, "accuracy", "on_pareto_front"],
                 [[r["model"], r["method"], r[axis.key], r["accuracy"], int(r["model"] in front)] for r in points])
    return FigureData(f"accuracy_vs_{axis.stem}", f"Accuracy vs {axis.title}", caption, fig, table)


def tradeoff_figures(rows: list[dict], *, teacher: str | None = None) -> list[FigureData]:
    out = [tradeoff_figure(rows, axis, teacher=teacher) for axis in TRADEOFF_AXES]
    return [f for f in out if f is not None]


# ---- early exit: accuracy over thresholds ------------------------------------------------------------


def early_exit_figure(stage: str, curve: dict) -> FigureData | None:
    """The speed/accuracy curve of an early-exit model (its ``curve.json``): accuracy against expected FLOPs
    speedup, and both against the threshold (or patience), held-out rows and dev, the chosen point marked."""
    curves = {split: pts for split, pts in (curve.get("curves") or {}).items() if pts}
    if not curves:
        return None
    knob = curve.get("knob", "threshold")
    chosen = curve.get("chosen")
    styles = {"heldout": ("#E69F00", "--", "held-out rows (threshold chosen here)"), "dev": ("#0072B2", "-", "dev")}
    knob_values = [p[knob] for pts in curves.values() for p in pts]
    # max-prob confidences crowd just below 1: there, plot 1 - threshold on a log axis (reversed, so the
    # threshold still grows to the right); a threshold of 1.0 (never exit early) sits at speedup 1 on the left
    gaps = sorted(1.0 - v for v in knob_values if 0 < v < 1)
    near_one = knob == "threshold" and len(gaps) >= 3 and gaps[len(gaps) // 2] < 0.1 * gaps[-1]

    def knob_x(value):
        return 1.0 - value if near_one else value

    with _style():
        fig = _new_figure(7.6, 4.0)
        axes = fig.subplot_mosaic([["curve", "acc"], ["curve", "speed"]], width_ratios=[1.35, 1.0])
        for i, (split, pts) in enumerate(curves.items()):
            colour, line, label = styles.get(split, (_OKABE_ITO[(i + 2) % 8], "-.", split))
            pts = sorted(pts, key=lambda p: p[knob])
            by_speed = sorted((p["flops_speedup"], 100 * p["accuracy"]) for p in pts)
            axes["curve"].plot([s for s, _ in by_speed], [a for _, a in by_speed], line, color=colour,
                               linewidth=1.4, marker="o", markersize=2.5, label=label)
            shown = [p for p in pts if knob_x(p[knob]) > 0] if near_one else pts
            axes["acc"].plot([knob_x(p[knob]) for p in shown], [100 * p["accuracy"] for p in shown], line,
                             color=colour, linewidth=1.2, marker="o", markersize=2)
            axes["speed"].plot([knob_x(p[knob]) for p in shown], [p["flops_speedup"] for p in shown], line,
                               color=colour, linewidth=1.2, marker="o", markersize=2)
            point = next((p for p in pts if p[knob] == chosen), None)
            if point is not None:
                axes["curve"].scatter([point["flops_speedup"]], [100 * point["accuracy"]], marker="*", s=150,
                                      color=colour, edgecolors="black", zorder=4,
                                      label=f"chosen {knob} {chosen:g} ({split})")
        if chosen is not None and (not near_one or knob_x(chosen) > 0):
            for name in ("acc", "speed"):
                axes[name].axvline(knob_x(chosen), color="#777777", linestyle=":", linewidth=1)
        axes["curve"].set_xlabel("expected FLOPs speedup vs full depth (x)")
        axes["curve"].set_ylabel("accuracy (%)")
        axes["curve"].set_title(f"Early exit: {stage}")
        axes["curve"].legend(loc="lower left")
        _accuracy_limits(axes["curve"], [100 * p["accuracy"] for pts in curves.values() for p in pts])
        _accuracy_limits(axes["acc"], [100 * p["accuracy"] for pts in curves.values() for p in pts])
        axes["acc"].set_ylabel("accuracy (%)")
        axes["acc"].tick_params(labelbottom=False)
        axes["speed"].set_ylabel("speedup (x)")
        axes["speed"].set_xlabel(f"1 - {knob} (log, reversed)" if near_one else knob)
        if near_one:
            for name in ("acc", "speed"):
                axes[name].set_xscale("log")
                axes[name].invert_xaxis()
        axes["acc"].sharex(axes["speed"])
    caption = (f"Early exit ({stage}, policy {curve.get('policy')}): accuracy against the expected FLOPs speedup over"
               f" every candidate {knob}; right, both against the {knob}. The star is the {knob} the stage chose on"
               " held-out training rows; the dev curve shows how that choice carries over.")
    rows = []
    for split, pts in curves.items():
        for p in sorted(pts, key=lambda q: q[knob]):
            rows.append([split, p[knob], p["accuracy"], p["flops_speedup"], p.get("flops_per_example"),
                         p.get("mean_exit_layer"), int(p[knob] == chosen)])
    table = _csv(["split", knob, "accuracy", "flops_speedup", "flops_per_example", "mean_exit_layer", "chosen"], rows)
    return FigureData(f"early_exit_{stage}", f"Early exit curve: {stage}", caption, fig, table)


# ---- where parameters and FLOPs go -----------------------------------------------------------------


def breakdown_figure(models: list[dict]) -> FigureData | None:
    """Stacked bars per model of parameters and of forward FLOPs by module.

    ``models``: ``[{"model", "params_by_module": {...} | None, "flops_by_module": {...} | None,
    "flops_label": str | None}]`` with modules embeddings / attention / ffn / head.
    """
    models = [m for m in models if m.get("params_by_module") or m.get("flops_by_module")]
    if not models:
        return None
    modules = list(_MODULE_COLOURS)
    rows = []
    with _style():
        height = 1.2 + 0.42 * len(models)
        fig = _new_figure(8.0, max(2.6, height))
        panels = fig.subplots(1, 2, sharey=True)
        names = [m["model"] for m in models][::-1]  # first model on top
        widest_of = {key: max(sum(float(v or 0) for v in (m.get(key) or {}).values()) for m in models) or 1.0
                     for key in ("params_by_module", "flops_by_module")}
        for ax, key, title in ((panels[0], "params_by_module", "parameters"),
                               (panels[1], "flops_by_module", "FLOPs per example (forward)")):
            widest = widest_of[key]
            for y, m in enumerate(models[::-1]):
                parts = m.get(key) or {}
                total = sum(parts.get(mod, 0) for mod in modules)
                left = 0.0
                for mod in modules:
                    value = float(parts.get(mod, 0) or 0)
                    if not parts:
                        break
                    ax.barh(y, value, left=left, color=_MODULE_COLOURS[mod], edgecolor="white", linewidth=0.6,
                            label=mod if y == 0 else None)
                    share = value / total if total else 0.0
                    if share >= 0.12 and value >= 0.08 * widest:  # only where the label fits inside
                        ax.text(left + value / 2, y, f"{100 * share:.0f}%", ha="center", va="center", fontsize=7.5,
                                color="white" if mod != "embeddings" else "black")
                    left += value
                    rows.append([m["model"], title.split()[0].lower(), mod, value,
                                 round(100 * share, 3) if total else None])
                if not parts:
                    ax.text(0, y, "  not available", va="center", fontsize=8, color="#666666")
                elif key == "flops_by_module" and m.get("flops_label"):
                    ax.text(left, y, f"  {m['flops_label']}", va="center", fontsize=7.5, color="#444444")
            ax.set_title(title)
            ax.grid(axis="y", visible=False)
            from matplotlib.ticker import FuncFormatter

            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v) if v else "0"))
        panels[0].set_yticks(range(len(names)), names)
        handles, labels = panels[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=4)
    caption = ("Where each model's parameters (left) and forward-pass FLOPs (right) go. Embedding tables hold"
               " many parameters but cost no FLOPs (a lookup is a gather); the FLOPs are in the linear layers of"
               " attention and the FFN.")
    table = _csv(["model", "quantity", "module", "value", "share_pct"], rows)
    return FigureData("breakdown", "Parameters and FLOPs by module", caption, fig, table)


# ---- the price tag of each stage ------------------------------------------------------------------


def pricetag_figure(rows: list[dict]) -> FigureData | None:
    """Energy, CO2e and cost of producing each model (its stage alone), teacher first."""
    stages = [r for r in rows if r.get("stage_energy_kwh") is not None or r.get("stage_co2e_kg") is not None]
    if not stages:
        return None
    e_factor, e_unit = energy_scale([r.get("stage_energy_kwh") for r in stages])
    c_factor, c_unit = co2e_scale([r.get("stage_co2e_kg") for r in stages])
    panels_spec = [("stage_energy_kwh", f"energy ({e_unit})", e_factor),
                   ("stage_co2e_kg", f"CO2e ({c_unit})", c_factor),
                   ("stage_cost_usd", "cost (USD)", 1.0)]
    with _style():
        fig = _new_figure(8.0, 1.4 + 0.38 * len(stages) * 1.0 + 0.8)
        axes = fig.subplots(1, 3, sharey=True)
        names = [r["model"] for r in stages][::-1]
        for ax, (key, title, factor) in zip(axes, panels_spec):
            values = [r.get(key) for r in stages][::-1]
            if all(v is None for v in values):
                reason = "no price per hour set\n(measure.usd_per_hour)" if key == "stage_cost_usd" else "not measured"
                ax.text(0.5, 0.5, reason, ha="center", va="center", transform=ax.transAxes, fontsize=8.5,
                        color="#666666")
                ax.set_xticks([])
            for y, (r, v) in enumerate(zip(stages[::-1], values)):
                if v is None:
                    continue
                colour, _ = method_style(r["method"])
                reused = str(r.get("status", "")).startswith("reused")
                ax.barh(y, v * factor, color=colour, alpha=0.45 if reused else 0.9, hatch="///" if reused else None,
                        edgecolor=colour, linewidth=0.8)
                ax.text(v * factor, y, f" {v * factor:.3g}", va="center", fontsize=7.5)
            ax.set_title(title)
            ax.grid(axis="y", visible=False)
            ax.margins(x=0.25)
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(nbins=3, min_n_ticks=2))
        axes[0].set_yticks(range(len(names)), names)
        if any(str(r.get("status", "")).startswith("reused") for r in stages):
            from matplotlib.patches import Patch

            fig.legend([Patch(facecolor="#999999", alpha=0.45, hatch="///", edgecolor="#999999")],
                       ["reused: produced in an earlier run, its original cost shown (not paid again here)"],
                       loc="outside lower center")
    total_e = sum(r["stage_energy_kwh"] for r in stages if r.get("stage_energy_kwh") is not None)
    total_c = sum(r["stage_co2e_kg"] for r in stages if r.get("stage_co2e_kg") is not None)
    caption = (f"What producing each model cost, its stage alone (teacher fine-tuning, then each compression stage):"
               f" {total_e * e_factor:.3g} {e_unit} and {total_c * c_factor:.3g} {c_unit} CO2e in all."
               f" Energy sources: {', '.join(sorted({r['energy_source'] for r in stages if r.get('energy_source')}))}."
               if any(r.get("energy_source") for r in stages) else "")
    table = _csv(["stage", "method", "status", "energy_kwh", "co2e_kg", "cost_usd", "wall_s", "energy_source"],
                 [[r["model"], r["method"], r.get("status"), r.get("stage_energy_kwh"), r.get("stage_co2e_kg"),
                   r.get("stage_cost_usd"), r.get("stage_wall_s"), r.get("energy_source")] for r in stages])
    return FigureData("pricetag", "Price tag by stage", caption, fig, table)


# ---- a sweep's budget/performance curve ----------------------------------------------------------


def budget_figure(curve: list[dict], *, metric: str = "accuracy",
                  title: str = "Budget/performance curve") -> FigureData:
    """Expected best ``metric`` (±1 std) against the number of trials and against cumulative energy.

    ``curve``: ``[{"n", "expected_max", "std", "best_so_far", "cumulative_energy_kwh"}]`` (from
    ``greenlm.pipeline.sweep``); n = 1 .. trials.
    """
    if len(curve) < 2:
        raise GreenlmError(f"a budget/performance curve needs at least 2 finished trials, got {len(curve)}")
    n = [c["n"] for c in curve]
    mean = [100 * c["expected_max"] for c in curve]
    best = [None if c.get("best_so_far") is None else 100 * c["best_so_far"] for c in curve]
    # the expected max of n draws never exceeds the best score: clip the band there (as Dodge et al. plot it)
    top = max((b for b in best if b is not None), default=math.inf)
    low = [100 * (c["expected_max"] - c["std"]) for c in curve]
    high = [min(100 * (c["expected_max"] + c["std"]), top) for c in curve]
    energies = [c.get("cumulative_energy_kwh") for c in curve]
    with _style():
        fig = _new_figure(8.0, 3.6)
        left, right = fig.subplots(1, 2, sharey=True)
        left.fill_between(n, low, high, color="#0072B2", alpha=0.18, linewidth=0, label="±1 std")
        left.plot(n, mean, "-o", color="#0072B2", markersize=3.5, label="expected best (Dodge et al. 2019)")
        if any(b is not None for b in best):
            left.step(n, [b if b is not None else math.nan for b in best], where="post", color="#D55E00",
                      linewidth=1.1, linestyle="--", label="best so far (trial order)")
        from matplotlib.ticker import MaxNLocator

        left.xaxis.set_major_locator(MaxNLocator(integer=True))
        left.set_xlabel("trials (hyperparameter assignments)")
        left.set_ylabel(f"expected best dev {metric} (%)")
        left.set_title("vs number of trials")
        left.legend(loc="lower right")
        if all(e is not None for e in energies):
            factor, unit = energy_scale(energies)
            xs = [e * factor for e in energies]
            right.fill_between(xs, low, high, color="#009E73", alpha=0.18, linewidth=0)
            right.plot(xs, mean, "-o", color="#009E73", markersize=3.5)
            right.set_xlabel(f"cumulative energy of the sweep ({unit})")
        else:
            right.text(0.5, 0.5, "energy not measured for every trial", ha="center", va="center",
                       transform=right.transAxes, color="#666666")
        right.set_title("vs energy spent")
        fig.suptitle(title, fontweight="bold")
    caption = (f"Expected best dev {metric} among n trials drawn from this sweep's finished trials (with replacement;"
               " Dodge et al. 2019), ±1 standard deviation; right, against the energy the sweep had spent after n"
               " trials (stages reused from earlier trials cost nothing again).")
    table = _csv(["n", "expected_max", "std", "best_so_far", "cumulative_energy_kwh"],
                 [[c["n"], c["expected_max"], c["std"], c.get("best_so_far"), c.get("cumulative_energy_kwh")]
                  for c in curve])
    return FigureData("budget_curve", title, caption, fig, table)
