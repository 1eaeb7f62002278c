"""Figures of what models cost: where each model's parameters and FLOPs go (``breakdown``), what producing each
model cost per stage (``pricetag``), and a sweep's expected best score against trials and energy
(``budget_curve``, Dodge et al. 2019)."""

from __future__ import annotations

import math

from greenlm.common import GreenlmError
from greenlm.report.figure_style import (_MODULE_COLOURS, FigureData, _csv, _new_figure, _style, co2e_scale,
                                         energy_scale, method_style, si)


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
