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

The shared pieces (``FigureData``, style, palette, scales) are in ``figure_style``; the breakdown, price-tag
and budget figures in ``cost_figures``; all are importable from here.
"""

from __future__ import annotations

from greenlm.report.cost_figures import breakdown_figure, budget_figure, pricetag_figure  # noqa: F401 (re-exported)
from greenlm.report.figure_style import (MISSING_MATPLOTLIB, PNG_DPI, FigureData,  # noqa: F401 (re-exported)
                                         FiguresUnavailable, available, co2e_scale, energy_scale, method_style, si)
from greenlm.report.figure_style import _OKABE_ITO, _csv, _new_figure, _style
from greenlm.report.pareto import TRADEOFF_AXES, Axis, front_of_rows


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


def _draw_target(ax, region: dict, factor: float) -> None:
    """Shade where the target lies: throughput at least ``region["throughput"]`` and accuracy at least
    ``region["accuracy"]`` (either may be None: no bound on that axis), widening the x axis to show it."""
    from matplotlib.patches import Rectangle

    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    tx = None if region.get("throughput") is None else region["throughput"] * factor
    ty = None if region.get("accuracy") is None else 100 * region["accuracy"]
    if tx is not None and tx >= x1 * 0.97:
        x1 = tx * 1.3 if ax.get_xscale() == "log" else tx + 0.15 * (tx - x0)
    left, bottom = (x0 if tx is None else tx), (y0 if ty is None else ty)
    ax.add_patch(Rectangle((left, bottom), x1 - left, y1 - bottom, facecolor="#009E73", alpha=0.12,
                           edgecolor="#009E73", linewidth=0.9, zorder=0, label="target region"))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def tradeoff_figure(rows: list[dict], axis: Axis, *, teacher: str | None = None,
                    target: dict | None = None, split: str = "dev") -> FigureData | None:
    """Accuracy (y) against ``axis`` (x), one point per measured model, the Pareto front drawn and named.

    ``target``: ``{"throughput": x or None, "accuracy": y or None}`` (``greenlm.report.target.target_region``),
    shaded on the throughput figure: the models inside it meet the target's speedup and retained criteria."""
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
        ax.set_ylabel(f"{split} accuracy (%)")
        target = target if axis.key == "throughput_examples_per_s" and target else None
        bound = [100 * target["accuracy"]] if target and target.get("accuracy") is not None else []
        _accuracy_limits(ax, [100 * r["accuracy"] for r in points] + bound)
        better = "higher" if axis.higher_is_better else "lower"
        ax.set_title(f"Accuracy vs {axis.title}")
        ax.margins(x=0.12)
        if target:
            _draw_target(ax, target, factor)
        ax.legend(loc="best")
        names = [(r[axis.key] * factor, 100 * r["accuracy"], r["model"], r["model"] in front) for r in points]
        _place_labels(ax, fig, names)
    caption = (f"Dev accuracy against {axis.title} ({better} is better), one point per model; the dashed staircase"
               f" is the Pareto front: {', '.join(front)} (no other model is both more accurate and"
               f" {'faster' if axis.key == 'throughput_examples_per_s' else 'cheaper'}).")
    header = ["model", "method", axis.key, "accuracy", "on_pareto_front"]
    data = [[r["model"], r["method"], r[axis.key], r["accuracy"], int(r["model"] in front)] for r in points]
    if target:
        parts = []
        if target.get("throughput") is not None:
            parts.append(f"throughput >= {target['throughput']:.4g} examples/s")
        if target.get("accuracy") is not None:
            parts.append(f"accuracy >= {100 * target['accuracy']:.2f}%")
        caption += f" The shaded region is the target ({', '.join(parts)})."
        header.append("meets_target")
        data = [row + [_flag(r.get("meets_target"))] for row, r in zip(data, points)]
    table = _csv(header, data)
    return FigureData(f"accuracy_vs_{axis.stem}", f"Accuracy vs {axis.title}", caption, fig, table)


def _flag(value) -> str:
    return "" if value is None else str(int(bool(value)))


def tradeoff_figures(rows: list[dict], *, teacher: str | None = None, target: dict | None = None,
                     split: str = "dev") -> list[FigureData]:
    """Accuracy (on ``split``, the reported one) against every trade-off axis; ``target`` (a region) is shaded on
    the throughput figure."""
    out = [tradeoff_figure(rows, axis, teacher=teacher, target=target, split=split) for axis in TRADEOFF_AXES]
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
