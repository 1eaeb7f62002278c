"""The Python API: every method in one call, as short as the CLI (docs/python-api.md).

    import greenlm

    teacher = greenlm.finetune("minilm", task="sst2", epochs=1, train_subset=4000)  # -> runs/sst2-minilm
    student = greenlm.distill(teacher, task="sst2", student="3x256", epochs=1)   # -> runs/sst2-minilm-distill
    small = greenlm.quantize(student, task="sst2")                  # -> runs/sst2-minilm-distill-quantize
    fast = greenlm.early_exit(teacher, task="sst2", max_drop=1.0)   # -> runs/sst2-minilm-early_exit
    print(student.accuracy, student.pricetag["co2e_kg"], student.folder)
    student                                   # in a notebook: a table (folder, status, accuracy, energy, CO2e)
    outcome = greenlm.run("quick", set={"stages.finetune.epochs": 2})   # the whole pipeline, as `greenlm run`
    # The same call again reuses the finished folder (status "reused"); an interrupted one resumes.

Each method function is ``run_stage`` (greenlm.stage.shell) with the CLI's defaults: settings are the
fields of the method's config dataclass, checked as a recipe's are; ``run`` is ``greenlm run``. Like the CLI,
each carves a validation split from train (``validation_fraction=0.1``, at most 1,000 rows) and makes every
choice on it; ``validation_fraction=0`` chooses on dev instead (and the metrics say so). ``drop=["duplicates",
"conflicting"]`` removes the train rows the data audit finds first (greenlm.data.filters; dev and test untouched).
``eval_split="test"`` (as ``--eval-split``) names the split the stage reports its figures on (default: dev when the
task has one, else test; docs/tasks.md).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path

from greenlm.common import GreenlmError


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _folder(model) -> str:
    """A model given as a StageResult (also each of a RunResult's stages), a Path or a string -> a string."""
    return str(getattr(model, "folder", model))


def _config(method: str, config, settings: dict):
    """The method's config dataclass, from ``config=`` (an instance or a dict) or from ``**settings``."""
    from greenlm.pipeline.schema import build_dataclass, suggest
    from greenlm.stage import get_method

    cls = get_method(method).config_type()
    if config is not None and settings:
        raise GreenlmError(f"greenlm.{method}(): give config= or settings ({', '.join(settings)}), not both")
    if isinstance(config, cls):  # checked again below, so that epochs=1 and epochs=1.0 give one identity
        config = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if f.init}
    if config is not None and not isinstance(config, dict):
        raise GreenlmError(f"greenlm.{method}(): config= takes a {cls.__name__} or a dict, got {type(config).__name__}")
    settings = dict(config or settings)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in settings:
        if key not in known:
            raise GreenlmError(f"greenlm.{method}(): unknown setting '{key}'{suggest(str(key), known)};"
                               f" the settings are the fields of {cls.__name__}: {', '.join(known)}")
    settings = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in settings.items()}
    return build_dataclass(cls, settings, f"greenlm.{method}()")


def _task(task):
    from greenlm.data import Task, load_task

    return task if isinstance(task, Task) else load_task(task)


def _plain(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def _stage(method: str, source, task, out, *, teacher_dir=None, region=None, pue=None, progress=False, config=None,
           settings: dict):
    """What all five method functions do: settings -> config, task, output folder, price settings, run_stage."""
    from greenlm.stage import PriceSettings, run_stage

    from greenlm.data import DEFAULT_VALIDATION_FRACTION, carve_validation, choose_eval_split, filter_train

    fraction = settings.pop("validation_fraction", DEFAULT_VALIDATION_FRACTION)  # as the CLI's --validation-fraction
    drop = settings.pop("drop", None)  # as the CLI's --drop: train rows the audit finds, dropped first
    eval_split = settings.pop("eval_split", None)  # as the CLI's --eval-split
    cfg = _config(method, config, settings)
    loaded = choose_eval_split(filter_train(_task(task), drop), eval_split)
    loaded = carve_validation(loaded, fraction=fraction) if fraction else loaded
    source = _folder(source)
    if out is None:
        if method == "finetune":
            name = Path(source).name if Path(source).expanduser().is_dir() else source
            out = Path("runs") / f"{_plain(loaded.name)}-{_plain(name)}"
        else:
            out = Path("runs") / f"{Path(source).resolve().name}-{method}"
    price = PriceSettings(region=region, pue=pue)
    price.price_tag("check", ledger=False)  # a bad region or PUE fails here, before any work
    task_name = os.fspath(task) if isinstance(task, (str, os.PathLike)) else loaded.name
    shown = ", ".join([repr(source), f"task={task_name!r}", *(f"{k}={v!r}" for k, v in settings.items())])
    return run_stage(method, source, loaded, cfg, out,
                     teacher_dir=_folder(teacher_dir) if teacher_dir is not None else None, price=price,
                     progress=progress, on_note=_note, command=f"greenlm.{method}({shown})")


def finetune(model="minilm", *, task="sst2", out=None, region=None, pue=None, progress=False, config=None,
             **settings):
    """Fine-tune ``model`` (minilm, a folder, a hub id, tiny:...) on ``task``; settings: FinetuneStageConfig."""
    return _stage("finetune", model, task, out, region=region, pue=pue, progress=progress, config=config,
                  settings=settings)


def distill(teacher, *, task="sst2", out=None, region=None, pue=None, progress=False, config=None, **settings):
    """Distil the fine-tuned ``teacher`` into a smaller student; settings: DistillConfig (student="4x312", ...)."""
    return _stage("distill", teacher, task, out, region=region, pue=pue, progress=progress, config=config,
                  settings=settings)


def prune(model, *, task="sst2", out=None, teacher_dir=None, region=None, pue=None, progress=False, config=None,
          **settings):
    """Prune a fine-tuned model; settings: PruneConfig. ``teacher_dir``: for teacher="teacher" recovery."""
    return _stage("prune", model, task, out, teacher_dir=teacher_dir, region=region, pue=pue, progress=progress,
                  config=config, settings=settings)


def quantize(model, *, task="sst2", out=None, region=None, pue=None, progress=False, config=None, **settings):
    """Quantize a fine-tuned model (int8 ONNX or bf16); settings: QuantizeConfig."""
    return _stage("quantize", model, task, out, region=region, pue=pue, progress=progress, config=config,
                  settings=settings)


def early_exit(model, *, task="sst2", out=None, region=None, pue=None, progress=False, config=None, **settings):
    """Add exits after intermediate layers of a fine-tuned model; settings: EarlyExitConfig."""
    return _stage("early_exit", model, task, out, region=region, pue=pue, progress=progress, config=config,
                  settings=settings)


def convert_attention(model, *, task="sst2", out=None, region=None, pue=None, progress=False, config=None,
                      **settings):
    """Swap a fine-tuned model's attention for a linear one (rfa, performer, abc) and recover it by distillation;
    settings: ConvertAttentionConfig (docs/attention.md)."""
    return _stage("convert_attention", model, task, out, region=region, pue=pue, progress=progress, config=config,
                  settings=settings)


# ---- the whole pipeline -------------------------------------------------------------------------------


def run(recipe="quick", *, set=None, name=None, runs_dir="runs", resume=False, force=False, progress=False,
        remeasure=False):
    """``greenlm run``: a bundled recipe or a YAML file; ``set`` = ``{"stages.finetune.epochs": 2}`` (--set);
    ``remeasure``: take the measuring pass again even when no model changed (--remeasure)."""
    from greenlm.pipeline.recipes import load_recipe
    from greenlm.pipeline.runner import run_recipe

    if isinstance(set, dict):  # each value written as YAML, so --set's YAML parsing gives it back unchanged
        overrides = [f"{key}={_yaml(value)}" for key, value in set.items()]
    else:
        overrides = list(set or [])  # or the CLI's own "key=value" strings
    loaded = load_recipe(recipe, overrides, name)
    outcome = run_recipe(loaded, runs_dir, resume=resume, force=force, progress=progress,
                         echo=lambda message: print(message, file=sys.stderr), remeasure=remeasure)
    return RunResult(outcome)


def _yaml(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=1 << 20).removesuffix("...\n").strip()


class RunResult:
    """What ``greenlm.run`` returns: the run folder, one StageResult per stage, the report (report.json)."""

    def __init__(self, outcome):
        self.outcome = outcome  # the pipeline's RunOutcome, as it is
        self.run_dir: Path = outcome.run_dir
        self.report: dict | None = outcome.report
        self.seconds: float = outcome.seconds
        self.stages = list(outcome.stages)  # StageResults

    def __getitem__(self, stage: str):
        for s in self.stages:
            if s.name == stage:
                return s
        raise KeyError(f"no stage '{stage}' in this run; stages: {', '.join(s.name for s in self.stages)}")

    def rows(self) -> list[tuple[str, ...]]:
        """(stage, method, status, dev accuracy, energy, CO2e) per stage, as text."""
        measured = {r["model"]: r.get("accuracy") for r in (self.report or {}).get("rows", [])}
        out = []
        for s in self.stages:
            tag = s.pricetag or {}
            accuracy = measured.get(s.name, s.accuracy)
            out.append((s.name, s.method, s.status, f"{accuracy:.4f}" if isinstance(accuracy, float) else "n/a",
                        f"{tag['energy_kwh']:.3g} kWh" if tag.get("energy_kwh") is not None else "n/a",
                        f"{tag['co2e_kg'] * 1000:.3g} g" if tag.get("co2e_kg") is not None else "n/a"))
        return out

    HEADER = ("stage", "method", "status", "dev accuracy", "energy", "CO2e")

    def __repr__(self) -> str:
        table = [self.HEADER, *self.rows()]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.HEADER))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
        return f"RunResult({self.run_dir}, {self.seconds:.1f} s)\n" + "\n".join("  " + line for line in lines)

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{escape(h)}</th>" for h in self.HEADER)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self.rows())
        return f"<table><caption>{escape(str(self.run_dir))}</caption><tr>{head}</tr>{body}</table>"
