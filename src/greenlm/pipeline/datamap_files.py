"""``greenlm datamap``: a data map's files from a model folder's training dynamics.

    OUT/datamap.json         the summary: task, record points, regions and their edges, means, train accuracy
    OUT/datamap.csv          one row per training row: guid, label, region, confidence, variability, correctness, text
    OUT/most_ambiguous.csv   the TOP rows of highest variability, with text and label
    OUT/hardest.csv          the TOP rows of lowest confidence, with text and label
    OUT/datamap.html         one self-contained page: the figures, the tables, how the map was made
    OUT/datamap_scatter.{png,svg,csv}, OUT/datamap_histograms.{png,svg,csv}   the figures (with matplotlib)

The measures come from ``greenlm.datamap``, the page and figures from ``greenlm.report.datamap_report`` (given
plain lists and dicts). OUT defaults to ``<MODEL>-datamap`` beside the model folder: writing into the model
folder would change its artifact hash, which later stages' cache keys depend on.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import greenlm
from greenlm.common import GreenlmError, atomic_dir, atomic_write_json, atomic_write_text
from greenlm.data import Task, carve_validation, filter_train, load_task
from greenlm.datamap.cartography import REGION_LABELS, REGION_SHARE, compute_map, region_labels, region_thresholds
from greenlm.datamap.dynamics_io import DYNAMICS_DIR, check_against_task, read_dynamics

SUMMARY_FILE = "datamap.json"
DEFAULT_TOP = 50


def default_out(source: Path) -> Path:
    source = Path(source)
    model = source.parent if source.name == DYNAMICS_DIR else source
    return model.with_name(f"{model.name}-datamap")


def task_of(dynamics_meta: dict | None) -> Task:
    """The task the dynamics were recorded on, from what ``metrics.json`` says of it."""
    source = (dynamics_meta or {}).get("task_source") or ""
    if not source:
        raise GreenlmError("the dynamics do not say which task they were recorded on; give --task")
    name = source.split(":", 1)[1] if source.startswith("bundled:") else source
    return with_recorded_carve(load_task(name), dynamics_meta)


def with_recorded_carve(task: Task, dynamics_meta: dict | None) -> Task:
    """``task`` with its train rows filtered and its validation split carved as they were when the dynamics were
    recorded (their row ids are rows of that train split)."""
    meta = dynamics_meta or {}
    if task.validation_carve is None and task.train_filter is None:
        task = filter_train(task, (meta.get("train_filter") or {}).get("drop"))
    carve = meta.get("validation_carve")
    return carve_validation(task, **carve) if carve and task.validation_carve is None else task


def _csv(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_datamap(source: str | Path, out: str | Path | None = None, *, task: Task | None = None,
                  top: int = DEFAULT_TOP) -> dict:
    """Compute the map of the dynamics under ``source`` and write its files into ``out``; returns the summary."""
    from greenlm.report.datamap_report import datamap_figures, datamap_html
    from greenlm.report.figures import MISSING_MATPLOTLIB

    if top < 1:
        raise GreenlmError(f"--top must be at least 1, got {top}")
    source = Path(source)
    dynamics = read_dynamics(source)
    task = with_recorded_carve(task, dynamics.meta) if task is not None else task_of(dynamics.meta)
    check_against_task(dynamics, task)
    data_map = compute_map(dynamics)
    out = Path(out) if out is not None else default_out(source)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / SUMMARY_FILE).is_file())):
        raise GreenlmError(f"output '{out}' exists and is not a data map folder; choose another --out")

    train = task.split("train")
    regions = region_labels(data_map)
    thresholds = region_thresholds(data_map)
    guids = [int(g) for g in data_map.guids]

    def row(i: int) -> dict:
        g = guids[i]
        return {"guid": g, "label": task.display_label(train.labels[g]), "region": regions[i],
                "confidence": float(data_map.confidence[i]), "variability": float(data_map.variability[i]),
                "correctness": float(data_map.correctness[i]), "text": train.text_a[g],
                "text_b": train.text_b[g] if train.text_b is not None else None}

    columns = ["guid", "label", "region", "confidence", "variability", "correctness", "text"] + \
              (["text_b"] if train.is_pair else [])

    def table(indices) -> str:
        return _csv(columns, [[row(i)[c] for c in columns] for i in indices])

    ambiguous = [row(int(i)) for i in data_map.ranking("ambiguous")[:top]]
    hardest = [row(int(i)) for i in data_map.ranking("hard")[:top]]
    points = (dynamics.meta or {}).get("points") or []
    notes = []
    if len(guids) < len(train):
        notes.append(f"the dynamics cover {len(guids)} of the task's {len(train)} training rows (a subset or"
                     " selection was trained on)")
    summary = {
        "greenlm_version": greenlm.__version__,
        "task": task.name,
        "source": str(dynamics.folder),
        "rows": len(guids),
        "train_rows": len(train),
        "points": data_map.points,
        "record_points": points,
        "regions": {name: regions.count(name) for name in REGION_LABELS},
        "thresholds": thresholds,
        "means": {"confidence": float(data_map.confidence.mean()), "variability": float(data_map.variability.mean()),
                  "correctness": float(data_map.correctness.mean())},
        "train_accuracy": data_map.train_accuracy(),
        "formulas": {
            "confidence": "mean over record points of softmax(logits)[gold]",
            "variability": "population standard deviation (ddof=0) of softmax(logits)[gold] over record points",
            "correctness": "fraction of record points with argmax(logits) == gold",
            "regions": f"{REGION_SHARE:.0%} of the rows each: highest variability = ambiguous; then lowest confidence"
                       " = hard-to-learn, highest confidence = easy-to-learn; the rest = other",
        },
        "notes": notes,
    }
    measures = {"confidence": data_map.confidence.tolist(), "variability": data_map.variability.tolist(),
                "correctness": data_map.correctness.tolist(), "points": data_map.points, "thresholds": thresholds,
                "guids": guids}
    figures = datamap_figures(measures, title=f"Data map: {task.name}")
    figure_note = None if figures else MISSING_MATPLOTLIB
    with atomic_dir(out) as folder:
        atomic_write_json(folder / SUMMARY_FILE, summary)
        atomic_write_text(folder / "datamap.csv", table(range(len(guids))))
        atomic_write_text(folder / "most_ambiguous.csv", table(data_map.ranking("ambiguous")[:top]))
        atomic_write_text(folder / "hardest.csv", table(data_map.ranking("hard")[:top]))
        for figure in figures:
            figure.save(folder)
        atomic_write_text(folder / "datamap.html", datamap_html(summary, ambiguous, hardest, figures,
                                                                figure_note=figure_note))
    summary["out"] = str(out)
    return summary
