"""The data side of a budget/performance curve: accuracy against the share of training rows kept, for each way of
choosing them (a data map's regions, or random), each point with what training it cost.

Dodge et al. 2019 ("Show Your Work") plot performance against the compute a result took; Swayamdipta et al. 2020
("Dataset Cartography") show that a share of the rows chosen from a data map can train as well as all of them. A
run whose stages train on selections (``train_selection``, from ``selection_map``) gets one point per such stage;
a stage of the same method that trained on every row (no selection, no ``train_subset``) is the 100% point.

- ``data_budget_points(run)``: the points, from the report rows and each stage's ``metrics.json``.
- ``data_budget_figure(points)``: accuracy against share kept (left) and against the stage's training energy
  (right), one line per selection kind; None without a selection.
- ``data_budget_markdown(points)``: the same as a table for report.md.
"""

from __future__ import annotations

from greenlm.report.figure_style import FigureData, _csv, _new_figure, _style, energy_scale
from greenlm.report.rundata import MEASURED, RunData

SELECTING_METHODS = ("finetune", "distill")
ALL_ROWS = "all rows"
# one colour per selection kind (Okabe-Ito), random in grey so the map's regions stand out against it
_KIND_COLOURS = {"ambiguous": "#0072B2", "hard": "#D55E00", "easy": "#009E73", "random": "#777777", ALL_ROWS: "#000000"}
_OTHER_COLOURS = ("#CC79A7", "#E69F00", "#56B4E9", "#F0E442")


def _selection_record(metrics: dict, method: str) -> dict | None:
    """The ``train_selection`` record a stage's metrics.json holds (distill keeps it under ``distill``)."""
    record = metrics.get("train_selection")
    if record is None and method == "distill":
        record = (metrics.get("distill") or {}).get("train_selection")
    return record if isinstance(record, dict) else None


def selection_kind(record: dict) -> str:
    """``ambiguous`` for ``ambiguous:0.33``; a mix's regions joined in order (``ambiguous+easy``)."""
    parts = record.get("parts") or []
    regions = [str(p.get("region")) for p in parts if isinstance(p, dict) and p.get("region")]
    if regions:
        return "+".join(regions)
    return "+".join(part.split(":")[0] for part in str(record.get("spec", "?")).split("+"))


def data_budget_points(run: RunData) -> list[dict]:
    """One point per measured finetune/distill stage that trained on a selection, plus the stages of those methods
    that trained on every row (the 100% points); [] when no stage trained on a selection."""
    points = []
    for row in run.rows:
        method = row.get("method")
        if row.get("report_status") != MEASURED or method not in SELECTING_METHODS:
            continue
        metrics = run.stage_file(row["model"], "metrics.json") or {}
        body = run.stages().get(row["model"]) or {}
        record = _selection_record(metrics, method)
        if record is not None and record.get("rows_available"):
            kind, spec = selection_kind(record), record.get("spec")
            rows, share = int(record["rows_used"]), record["rows_used"] / record["rows_available"]
        elif record is None and body.get("train_subset") is None:
            kind, spec, share = ALL_ROWS, None, 1.0
            rows = (metrics.get("train") or {}).get("examples") or (metrics.get("data") or {}).get("train_rows")
        else:
            continue
        points.append({
            "model": row["model"], "method": method, "selection": kind, "spec": spec, "share_kept": share,
            "train_rows": rows, "accuracy": row.get("accuracy"),
            "accuracy_ci95_low": row.get("accuracy_ci95_low"), "accuracy_ci95_high": row.get("accuracy_ci95_high"),
            "within_noise_of_teacher": row.get("within_noise_of_teacher"),
            "stage_energy_kwh": row.get("stage_energy_kwh"), "stage_co2e_kg": row.get("stage_co2e_kg"),
            "stage_wall_s": row.get("stage_wall_s"), "status": row.get("status"),
        })
    if not any(p["selection"] != ALL_ROWS for p in points):
        return []
    return sorted(points, key=lambda p: (p["method"], p["selection"], p["share_kept"]))


def _colour(kind: str, others: dict[str, str]) -> str:
    if kind in _KIND_COLOURS:
        return _KIND_COLOURS[kind]
    return others.setdefault(kind, _OTHER_COLOURS[len(others) % len(_OTHER_COLOURS)])


def _lines(points: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Points grouped by (method, selection kind); the method's 100% point closes every one of its lines."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in points:
        if p["selection"] != ALL_ROWS:
            groups.setdefault((p["method"], p["selection"]), []).append(p)
    for (method, _), members in groups.items():
        members += [p for p in points if p["method"] == method and p["selection"] == ALL_ROWS]
        members.sort(key=lambda p: p["share_kept"])
    return groups


def data_budget_figure(points: list[dict], *, split: str = "dev") -> FigureData | None:
    """Accuracy (95% interval as error bars where known) against the share of rows kept and against energy."""
    if not points:
        return None
    lines = _lines(points)
    methods = sorted({m for m, _ in lines})
    energies = [p["stage_energy_kwh"] for p in points]
    others: dict[str, str] = {}
    with _style():
        fig = _new_figure(8.0, 3.6)
        left, right = fig.subplots(1, 2, sharey=True)
        factor, unit = energy_scale(energies) if any(e is not None for e in energies) else (1.0, "kWh")
        for (method, kind), members in lines.items():
            colour = _colour(kind, others)
            style = "-o" if method == methods[0] else "--s"
            label = kind if len(methods) == 1 else f"{method}: {kind}"
            xs = [100 * p["share_kept"] for p in members]
            ys = [100 * p["accuracy"] for p in members]
            err = [[100 * (p["accuracy"] - p["accuracy_ci95_low"]) if p.get("accuracy_ci95_low") is not None else 0.0
                    for p in members],
                   [100 * (p["accuracy_ci95_high"] - p["accuracy"]) if p.get("accuracy_ci95_high") is not None else 0.0
                    for p in members]]
            left.errorbar(xs, ys, yerr=err, fmt=style, color=colour, markersize=4, capsize=2, linewidth=1.2,
                          elinewidth=0.7, label=label)
            with_energy = [(p["stage_energy_kwh"] * factor, 100 * p["accuracy"]) for p in members
                           if p["stage_energy_kwh"] is not None]
            if with_energy:
                right.plot(*zip(*with_energy), style, color=colour, markersize=4, linewidth=1.2)
        left.set_xlabel("share of the training rows kept (%)")
        left.set_ylabel(f"{split} accuracy (%)")
        left.set_title("vs data kept")
        left.legend(loc="lower right", fontsize=7.5)
        if any(e is not None for e in energies):
            right.set_xlabel(f"training energy of the stage ({unit})")
        else:
            right.text(0.5, 0.5, "energy not measured", ha="center", va="center", transform=right.transAxes,
                       color="#666666")
        right.set_title("vs training energy")
        fig.suptitle("Data budget curve", fontweight="bold")
    caption = (f"Accuracy on the {split} split of models trained on a share of the training rows, chosen from a data"
               " map's regions (Swayamdipta et al. 2020) or at random, with 95% bootstrap intervals; right, against"
               " the energy each training stage used (Dodge et al. 2019's budget curves, on the data axis). The 100%"
               " point is the stage of the same method trained on every row.")
    table = _csv(["model", "method", "selection", "spec", "share_kept", "train_rows", "accuracy", "accuracy_ci95_low",
                  "accuracy_ci95_high", "stage_energy_kwh", "stage_co2e_kg", "stage_wall_s"],
                 [[p[k] for k in ("model", "method", "selection", "spec", "share_kept", "train_rows", "accuracy",
                                  "accuracy_ci95_low", "accuracy_ci95_high", "stage_energy_kwh", "stage_co2e_kg",
                                  "stage_wall_s")] for p in points])
    return FigureData("data_budget", "Data budget curve", caption, fig, table)


def _num(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def data_budget_markdown(points: list[dict], *, split: str = "dev") -> list[str]:
    """report.md's "Data budget" section: one row per point, grouped by method and selection."""
    if not points:
        return []
    lines = ["## Data budget", "",
             f"Models trained on a share of the training rows ({split} accuracy, 95% interval; the training stage's"
             " energy, CO2e and wall time). Selections come from a data map (`train_selection`; see docs/data.md).",
             "", "| model | method | rows chosen by | share kept | rows | accuracy | 95% interval | energy (kWh) |"
             " CO2e (kg) | wall (s) |", "|---|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for p in points:
        low, high = p.get("accuracy_ci95_low"), p.get("accuracy_ci95_high")
        interval = "n/a" if low is None or high is None else f"{100 * low:.2f}-{100 * high:.2f}"
        lines.append(f"| {p['model']} | {p['method']} | {p['spec'] or p['selection']} | {100 * p['share_kept']:.1f}% |"
                     f" {_num(p['train_rows'], ',')} | {_num(None if p['accuracy'] is None else 100 * p['accuracy'], '.2f')} |"
                     f" {interval} | {_num(p['stage_energy_kwh'], '.3g')} | {_num(p['stage_co2e_kg'], '.3g')} |"
                     f" {_num(p['stage_wall_s'], '.0f')} |")
    return lines + [""]
