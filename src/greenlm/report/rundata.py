"""Read a run folder (``runs/<name>``) into what every report format needs, whatever state it is in.

A run folder holds ``recipe.yaml`` (what marks it as a run), one folder per finished stage (model,
``metrics.json``, ``pricetag.json``, ``stage.json``), ``measurements.json`` and ``report.json`` once the
measuring pass ran. A run can stop anywhere: a stage interrupted (its checkpoint under
``.work/<stage>``), a stage never started, stages finished but never measured. Every stage of the
recipe gets a row; the rows that could not be measured say so in ``report_status`` and carry what
their folder holds (the stage's own dev evaluation, parameters, size, price tag), with ``None`` for
the rest. This module reads files only: it imports nothing of the pipeline.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from greenlm.common import GreenlmError, read_json
from greenlm.report.provenance import eval_split_of, selections
from greenlm.report.target import mark_rows, target_record, target_settings
from greenlm.report.uncertainty import FIELDS as UNCERTAINTY_FIELDS

RECIPE_FILE = "recipe.yaml"
RUN_LOG = "run.log"
REPORT_FILE = "report.json"
MEASUREMENTS_FILE = "measurements.json"
STAGE_FILE = "stage.json"
WORK = ".work"
_WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".bin", ".data", ".pt")

_GIVE = "give a folder made by `greenlm run`, e.g. runs/quick"

# report_status of a row
MEASURED = "measured"
NOT_MEASURED = "not measured"
INTERRUPTED = "interrupted"
NOT_RUN = "not run"


@dataclass
class RunData:
    run_dir: Path
    name: str
    recipe: dict  # recipe.yaml as written by the run (every default filled in)
    report: dict  # report.json's form; ``rows`` holds one row per recipe stage, in recipe order
    measurements: dict | None
    notes: list[str] = field(default_factory=list)  # what is missing and what to do about it
    folders: dict[str, Path] = field(default_factory=dict)  # a stage's folder when it is not run_dir/<stage>

    @property
    def rows(self) -> list[dict]:
        return self.report["rows"]

    def measured_rows(self) -> list[dict]:
        return [r for r in self.rows if r["report_status"] == MEASURED]

    def stage_dir(self, stage: str) -> Path:
        return self.folders.get(stage) or self.run_dir / stage

    def stage_file(self, stage: str, name: str) -> dict | None:
        """A JSON file of a stage folder, or None when it is missing or unreadable."""
        return read_json_dict(self.stage_dir(stage) / name)

    def measured_model(self, stage: str) -> dict | None:
        return ((self.measurements or {}).get("models") or {}).get(stage)

    @property
    def teacher_stage(self) -> str | None:
        return next((name for name, body in self.stages().items() if stage_method(name, body) == "finetune"), None)

    def stages(self) -> dict[str, dict]:
        return self.recipe.get("stages") or {}

    def chain(self, stage: str) -> list[str]:
        """``stage`` and the stages it was built from, newest first (quantize, distill, finetune)."""
        out, seen = [], set()
        while stage is not None and stage not in seen:
            seen.add(stage)
            out.append(stage)
            stage = (self.stages().get(stage) or {}).get("from")
        return out


def stage_method(name: str, body: dict | None) -> str:
    """The method of a recipe stage: its ``type`` (``method`` in older recipe.yaml files), else its name."""
    body = body or {}
    return str(body.get("type") or body.get("method") or name)


def read_json_dict(path: Path) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, unreadable or not an object."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_run_dir(run_dir: Path) -> None:
    """A clear error for a folder that is not a run: say what is missing and what to give instead."""
    if not run_dir.exists():
        raise GreenlmError(f"run folder '{run_dir}' does not exist; {_GIVE}")
    if not run_dir.is_dir():
        raise GreenlmError(f"'{run_dir}' is a file, not a run folder; {_GIVE}")
    if (run_dir / RECIPE_FILE).is_file():
        if (run_dir / RUN_LOG).is_file() or any((p / STAGE_FILE).is_file() for p in run_dir.iterdir() if p.is_dir()):
            return
        raise GreenlmError(f"'{run_dir}' has a {RECIPE_FILE} but is not a run folder (no {RUN_LOG}, no finished stage);"
                           f" run it with `greenlm run {run_dir / RECIPE_FILE}` and give the folder it makes, e.g."
                           " runs/NAME")
    if (run_dir / STAGE_FILE).is_file():
        raise GreenlmError(f"'{run_dir}' is one stage of a run (it has {STAGE_FILE}, no {RECIPE_FILE});"
                           f" give the run folder above it: {run_dir.parent}")
    runs = sorted(p.name for p in run_dir.iterdir() if p.is_dir() and (p / RECIPE_FILE).is_file())
    if runs:
        raise GreenlmError(f"'{run_dir}' holds runs, it is not one ({RECIPE_FILE} missing);"
                           f" give one of them, e.g. {run_dir / runs[0]}")
    raise GreenlmError(f"'{run_dir}' is not a greenlm run folder: it has no {RECIPE_FILE} (a run folder holds"
                       f" {RECIPE_FILE}, run.log, {REPORT_FILE} and one folder per stage); give a folder made by"
                       " `greenlm run`, e.g. runs/quick")


def _utc_seconds(stamp) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None


def load_run(run_dir: str | Path) -> RunData:
    """Read and validate a run folder; raise ``GreenlmError`` when it is not one."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    try:
        recipe = yaml.safe_load((run_dir / RECIPE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise GreenlmError(f"{run_dir / RECIPE_FILE} cannot be read as YAML ({type(err).__name__});"
                           " it is written by `greenlm run`: run it again to rewrite it") from None
    if not isinstance(recipe, dict) or not isinstance(recipe.get("stages"), dict) or not recipe["stages"]:
        raise GreenlmError(f"{run_dir / RECIPE_FILE} is not a greenlm recipe (no 'stages' mapping);"
                           " it is written by `greenlm run`: run it again to rewrite it")
    notes: list[str] = []
    saved = read_json_dict(run_dir / REPORT_FILE)
    if saved is None and (run_dir / REPORT_FILE).exists():
        notes.append(f"{REPORT_FILE} could not be read; rows rebuilt from the stage folders")
    measurements = read_json_dict(run_dir / MEASUREMENTS_FILE)
    saved_rows = {r.get("model"): r for r in (saved or {}).get("rows", []) if isinstance(r, dict)}
    written = _utc_seconds((saved or {}).get("written_at_utc"))
    data = RunData(run_dir, str(recipe.get("name") or run_dir.name), recipe, {}, measurements, notes)

    stages = data.stages()
    split = _reported_split(data, saved, measurements)  # unmeasured rows show their stage's figures on it
    rows, not_measured, interrupted, not_run = [], [], [], []
    for name, body in stages.items():
        body = body or {}
        folder = run_dir / name
        record = read_json_dict(folder / STAGE_FILE)
        row = saved_rows.get(name)
        if record is not None and row is not None and row.get("report_status", MEASURED) == MEASURED:
            finished = record.get("finished_at_unix")
            if written is None or not isinstance(finished, (int, float)) or finished <= written + 1:
                rows.append({**row, "report_status": MEASURED})
                continue
        if record is not None:
            rows.append(_row_from_folder(data, name, body, NOT_MEASURED, split))
            not_measured.append(name)
        elif (run_dir / WORK / name).exists():
            rows.append(_empty_row(name, body, INTERRUPTED))
            interrupted.append(name)
        else:
            rows.append(_empty_row(name, body, NOT_RUN))
            not_run.append(name)
    if len(not_run) + len(interrupted) == len(stages):
        raise GreenlmError(f"run '{data.name}' in {run_dir} has no finished stage yet (none of"
                           f" {', '.join(stages)} has a {STAGE_FILE}); run `greenlm run` to produce one")
    _fill_relative(rows, data.teacher_stage)
    for name in interrupted:
        notes.append(f"stage '{name}' did not finish (interrupted; its checkpoint is in {WORK}/{name}):"
                     " `greenlm run` with the same recipe resumes it")
    if not_run:
        notes.append(f"stage(s) {', '.join(not_run)} did not run (the run stopped before them or failed in them);"
                     " see run.log")
    if not_measured:
        notes.append(f"stage(s) {', '.join(not_measured)} finished but were not measured (the run stopped before"
                     " the measuring pass, or re-ran after it): their accuracy is the stage's own evaluation;"
                     " speed, FLOPs and inference energy are missing until `greenlm run` measures them")
    dropped = sorted(set(saved_rows) - set(stages) - {None})
    if dropped:
        notes.append(f"{REPORT_FILE} had rows for stages no longer in the recipe, left out: {', '.join(dropped)}")

    header = {k: v for k, v in (saved or {}).items() if k != "rows"}
    header.setdefault("run", data.name)
    header.setdefault("task", recipe.get("task"))
    header.setdefault("teacher", recipe.get("teacher"))
    header.setdefault("eval_split", split)
    header.setdefault("machine", (measurements or {}).get("machine") or _machine_from_tags(data, rows))
    header.setdefault("protocol", (measurements or {}).get("protocol") or {})
    header["energy_sources"] = sorted({r["energy_source"] for r in rows if r.get("energy_source")})
    data.report = {**header, **checks(recipe, rows, {r["model"]: data.stage_file(r["model"], "metrics.json")
                                                     for r in rows if r["report_status"] in (MEASURED, NOT_MEASURED)},
                                      reported=header["eval_split"], measurements=measurements),
                   "rows": rows}
    return data


def _reported_split(data: RunData, saved: dict | None, measurements: dict | None) -> str:
    """The split the run's figures come from: as report.json or the measuring pass says, else as the recipe names
    it, else as the teacher's metrics.json says (a run that stopped before measuring)."""
    teacher = data.stage_file(data.teacher_stage, "metrics.json") if data.teacher_stage else None
    named = {"eval_split": (data.recipe.get("evaluation") or {}).get("split")}
    for record in (saved, measurements, named, teacher):
        if isinstance(record, dict) and record.get("eval_split"):
            return eval_split_of(record)
    return eval_split_of(None)


def checks(recipe: dict, rows: list[dict], metrics_by_stage: dict[str, dict | None], *, reported: str,
           measurements: dict | None = None) -> dict:
    """What report.json adds to the rows, the same for ``greenlm run`` and ``greenlm report``: each row's
    ``on_front`` and ``meets_target`` (set in place), ``target`` (None without one), ``selection`` (choices, and
    whether one was made on ``reported``, the split the figures come from), ``train_filter`` (the data
    filters' record, None without) and ``truncation`` (rows per split the teacher's fine-tuning cut, None without;
    a split the run's stages never saw, test, as the measuring pass read it for the teacher)."""
    settings = target_settings(recipe)
    mark_rows(rows, settings)
    filters = [m["train_filter"] for m in metrics_by_stage.values() if isinstance(m, dict) and m.get("train_filter")]
    teacher = next((stage for stage, m in metrics_by_stage.items()
                    if isinstance(m, dict) and m.get("method") == "finetune" and isinstance(m.get("truncation"), dict)),
                   None)
    truncation = None
    if teacher is not None:
        truncation = dict(metrics_by_stage[teacher]["truncation"])
        measured = ((measurements or {}).get("models") or {}).get(teacher) or {}
        for split in [(measurements or {}).get("eval_split"), *((measurements or {}).get("other_splits") or ())]:
            record = (measured.get(split) or {}).get("truncation") if split else None
            if isinstance(record, dict) and split not in truncation:
                truncation[split] = record
    return {"target": target_record(rows, settings), "selection": selections(metrics_by_stage, reported),
            "train_filter": filters[0] if filters else None, "truncation": truncation}


def _machine_from_tags(data: RunData, rows: list[dict]) -> dict:
    for row in rows:
        tag = data.stage_file(row["model"], "pricetag.json")
        if tag and tag.get("machine"):
            m = tag["machine"]
            return {"cpu": m.get("cpu_model"), "threads": m.get("logical_cpus"), "torch": None}
    return {}


def _empty_row(name: str, body: dict, status: str) -> dict:
    return {
        "model": name, "method": stage_method(name, body), "from": body.get("from"), "status": status,
        "report_status": status, "accuracy": None, "macro_f1": None, "mcc": None,
        "performance_retained_pct": None, "params": None, "compression_x": None, "flops_per_example": None,
        "latency_ms_p50": None, "latency_ms_p90": None, "throughput_examples_per_s": None, "speedup_x": None,
        "size_mb": None, "size_compression_x": None, "stage_energy_kwh": None, "stage_co2e_kg": None,
        "stage_cost_usd": None, "stage_wall_s": None, "cumulative_energy_kwh": None, "cumulative_co2e_kg": None,
        "cumulative_cost_usd": None, "energy_source": None, "inference_energy_kwh_per_1000": None,
        "inference_co2e_kg_per_1000": None, "folder": None, "on_front": False, "meets_target": None,
        **dict.fromkeys(UNCERTAINTY_FIELDS),
    }


def weights_bytes(folder: Path) -> int:
    """Bytes of a model folder's weight files (what ``greenlm run``'s report calls size on disk)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
               and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _row_from_folder(data: RunData, name: str, body: dict, status: str, split: str) -> dict:
    """What a finished but unmeasured stage's folder says: its own metrics on ``split`` (the run's reported split;
    none when the stage never saw it, as a run's stages never see test), params, size, price tag."""
    folder = data.stage_dir(name)
    row = _empty_row(name, body, status)
    row["status"] = "finished"
    row["folder"] = str(folder)
    reported = ((data.stage_file(name, "metrics.json") or {}).get("splits") or {}).get(split) or {}
    for key in ("accuracy", "macro_f1", "mcc"):
        row[key] = reported.get(key)
    row["params"] = _params_from_config(folder)
    size = weights_bytes(folder)
    row["size_mb"] = size / 1e6 if size else None
    tag = data.stage_file(name, "pricetag.json") or {}
    row["stage_energy_kwh"], row["stage_co2e_kg"] = tag.get("energy_kwh"), tag.get("co2e_kg")
    row["stage_cost_usd"], row["stage_wall_s"] = tag.get("cost_usd"), tag.get("wall_s")
    row["energy_source"] = tag.get("energy_source")
    tags = [data.stage_file(s, "pricetag.json") or {} for s in data.chain(name)]
    for key in ("energy_kwh", "co2e_kg", "cost_usd"):
        values = [t.get(key) for t in tags]
        row[f"cumulative_{key}"] = sum(values) if values and all(v is not None for v in values) else None
    return row


def _params_from_config(folder: Path) -> int | None:
    if not (folder / "config.json").is_file():
        return None
    try:
        from greenlm.measure import count_params

        return int(count_params(str(folder / "config.json"))["total"])
    except Exception:  # an architecture the formula does not know: leave the figure out
        return None


def _fill_relative(rows: list[dict], teacher: str | None) -> None:
    """Retained %, compression x and size compression x of unmeasured rows, against the teacher row."""
    ref = next((r for r in rows if r["model"] == teacher), None)
    if ref is None:
        return
    for row in rows:
        if row["report_status"] != NOT_MEASURED:
            continue
        if row["accuracy"] is not None and ref.get("accuracy"):
            row["performance_retained_pct"] = 100.0 * row["accuracy"] / ref["accuracy"]
        if row["params"] and ref.get("params"):
            row["compression_x"] = ref["params"] / row["params"]
        if row["size_mb"] and ref.get("size_mb"):
            row["size_compression_x"] = ref["size_mb"] / row["size_mb"]
