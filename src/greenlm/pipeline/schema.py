"""Recipes: the typed, validated description of a ``greenlm run``.

A recipe is YAML:

    name: quick                 # run folder: runs/<name>
    task: sst2                  # bundled name, folder, task file or hf:NAME
    teacher: minilm             # what the finetune stage starts from
    measure: {region: USA, pue: 1.0, usd_per_hour: null, intensity_csv: null}
    evaluation: {split: test, speed_examples: 256, batch_size: 32}  # split: where every figure comes from
    validation: {fraction: 0.1, max_examples: 1000, seed: 0}   # carved from train: every choice is made on it
    target: {speedup: 10, min_retained_pct: 97}                # optional: what the report checks models against
    data: {drop: [duplicates, conflicting]}                    # optional: train rows dropped first (data/filters.py)
    stages:
      finetune: {epochs: 1, train_subset: 4000}
      distill: {from: finetune, student: 4x312}
      quantize: {from: distill}

Stages run in the order written. Each is ``name: settings``; the method is the name unless
``type:`` says otherwise (two distillation stages: ``distill_small: {type: distill, ...}``), and
``from:`` names the stage whose model it starts from (default: ``finetune``, the teacher). The
settings of a method are the fields of its config dataclass: defaults live there, in one place,
and ``greenlm recipes show`` prints them.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from greenlm.common import GreenlmError

STAGE_KEYS = ("type", "from")  # keys every stage accepts besides its method's settings


@dataclass(frozen=True)
class MeasureSettings:
    region: str | None = None  # carbon intensity region: country (USA), US grid region (CISO), cloud region...
    pue: float | None = 1.0  # power usage effectiveness of the facility (data centres: ~1.1-1.6)
    usd_per_hour: float | None = None  # price of the machine per hour, for the cost column
    intensity_csv: str | None = None  # hourly carbon intensity CSV: timestamp_utc,region,gco2_per_kwh
    intensity_g_per_kwh: float | None = None  # a fixed carbon intensity instead of a region


@dataclass(frozen=True)
class EvaluationSettings:
    speed_examples: int = 256  # real dev inputs used for throughput (same for every model)
    latency_examples: int = 64  # of those, timed one at a time (batch 1)
    batch_size: int = 32  # throughput batch size
    repeats: int = 3  # timed passes per figure (after one warm-up)
    threads: int | None = None  # torch intra-op threads while measuring (None: torch's default)
    split: str | None = None  # the split every reported figure comes from (None: dev when the task has one, else test)


@dataclass(frozen=True)
class ValidationSettings:
    fraction: float = 0.1  # share of train carved off as 'validation' (0: choices fall back to dev, and say so)
    max_examples: int = 1000  # at most this many rows (greenlm.data.validation)
    seed: int = 0  # the stratified draw

    def __post_init__(self):
        if not 0 <= self.fraction < 1:
            raise GreenlmError(f"fraction must be in [0, 1), got {self.fraction}")
        if self.max_examples < 1:
            raise GreenlmError(f"max_examples must be >= 1, got {self.max_examples}")


@dataclass(frozen=True)
class DataSettings:
    # train rows to drop before any stage (greenlm.data.filters; dev/test untouched): non_text, other_script,
    # eval_overlap, conflicting, duplicates, near_duplicates
    drop: tuple[str, ...] = ()

    def __post_init__(self):
        from greenlm.data import filters

        object.__setattr__(self, "drop", filters.parse_drop(self.drop))


@dataclass(frozen=True)
class TargetSettings:
    speedup: float | None = None  # throughput at batch 32 vs the teacher's, as measured by the run (e.g. 10)
    min_retained_pct: float | None = None  # dev accuracy as a % of the teacher's (e.g. 97)
    max_latency_ms: float | None = None  # p50 latency at batch 1
    max_flops: float | None = None  # forward FLOPs per example at the dev median length

    def __post_init__(self):
        for name in ("speedup", "min_retained_pct", "max_latency_ms", "max_flops"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise GreenlmError(f"{name} must be > 0, got {value}")
        if self.speedup is not None and self.speedup <= 1:
            raise GreenlmError(f"speedup must be > 1, got {self.speedup}")
        if self.min_retained_pct is not None and self.min_retained_pct > 100:
            raise GreenlmError(f"min_retained_pct must be <= 100, got {self.min_retained_pct}")

    @property
    def is_set(self) -> bool:
        return any(v is not None for v in dataclasses.astuple(self))

    def describe(self) -> str:
        from greenlm.report.target import describe_target

        return describe_target(dataclasses.asdict(self))


@dataclass(frozen=True)
class StageSpec:
    name: str
    method: str
    upstream: str | None  # stage whose model this one starts from; None for finetune
    settings: Any  # the method's config dataclass instance


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str = "sst2"
    teacher: str = "minilm"
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    stages: tuple[StageSpec, ...] = ()
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    target: TargetSettings = field(default_factory=TargetSettings)
    data: DataSettings = field(default_factory=DataSettings)

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)

    def to_dict(self) -> dict:
        """The resolved recipe (every default filled in): what ``recipe.yaml`` of a run holds."""
        out = {
            "name": self.name,
            "task": self.task,
            "teacher": self.teacher,
            "measure": dataclasses.asdict(self.measure),
            "evaluation": dataclasses.asdict(self.evaluation),
            "validation": dataclasses.asdict(self.validation),
            "target": dataclasses.asdict(self.target),
            "stages": {},
        }
        if self.data.drop:  # written only when set, so runs recorded before data filters existed still match
            out["data"] = {"drop": list(self.data.drop)}
        for stage in self.stages:
            body = {"type": stage.method}
            if stage.upstream is not None:
                body["from"] = stage.upstream
            body.update(_settings_dict(stage.settings))
            out["stages"][stage.name] = body
        return out


def _settings_dict(settings) -> dict:
    """A stage's settings as recipe.yaml holds them: a setting added later (``KEY_OMITS_DEFAULT``) only when set, so
    run folders recorded before it existed still match."""
    from greenlm.stage.shell import omit_marked_defaults

    return omit_marked_defaults(settings, settings.to_dict() if hasattr(settings, "to_dict")
                                else dataclasses.asdict(settings))


def suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value, tp, where: str):
    """Check ``value`` against the annotation ``tp`` (int/float/str/bool/None/list/Literal and unions)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, where)
            except GreenlmError as err:
                errors.append(str(err))
        raise GreenlmError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise GreenlmError(f"{where}: {value!r} is not allowed; use one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        if isinstance(value, str) and item is not str:
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise GreenlmError(f"{where}: expected a list, got {value!r}")
        items = [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise GreenlmError(f"{where}: expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise GreenlmError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise GreenlmError(f"{where}: expected a whole number, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise GreenlmError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise GreenlmError(f"{where}: expected text, got {value!r}")
    return value


def build_dataclass(cls, data: dict | None, where: str):
    """An instance of the config dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    data = data or {}
    if not isinstance(data, dict):
        raise GreenlmError(f"{where}: expected a mapping of settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    values = {}
    for key, value in data.items():
        if key not in known:
            raise GreenlmError(f"{where}: unknown key '{key}'{suggest(str(key), known)}; known keys: {', '.join(known)}")
        values[key] = coerce(value, hints[key], f"{where}.{key}")
    try:
        return cls(**values)
    except GreenlmError as err:
        raise GreenlmError(f"{where}: {err}") from None
    except (TypeError, ValueError) as err:
        raise GreenlmError(f"{where}: {err}") from None


RECIPE_KEYS = ("name", "task", "teacher", "measure", "evaluation", "validation", "target", "data", "stages")


def parse_recipe(data: dict, *, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping (parsed YAML) completely before any work starts."""
    from greenlm.stage import get_method, known_methods

    if not isinstance(data, dict):
        raise GreenlmError(f"{source}: a recipe is a mapping with keys {', '.join(RECIPE_KEYS)}")
    for key in data:
        if key not in RECIPE_KEYS:
            raise GreenlmError(f"{source}: unknown key '{key}'{suggest(str(key), RECIPE_KEYS)}; known keys: {', '.join(RECIPE_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name or name.startswith("."):
        raise GreenlmError(f"{source}: 'name' must be a plain folder name (it becomes runs/<name>), got {name!r}")
    stages_data = data.get("stages")
    if not isinstance(stages_data, dict) or not stages_data:
        raise GreenlmError(f"{source}: 'stages' must map stage names to their settings, e.g. 'finetune: {{epochs: 1}}'")
    stages: list[StageSpec] = []
    seen: list[str] = []
    for stage_name, body in stages_data.items():
        if body is not None and not isinstance(body, dict):
            raise GreenlmError(f"{source}: stages.{stage_name} must be a mapping of settings"
                               f" (e.g. '{stage_name}: {{epochs: 1}}'), got {body!r}")
        body = dict(body or {})
        if not isinstance(stage_name, str) or not stage_name.replace("_", "").replace("-", "").isalnum():
            raise GreenlmError(f"{source}: stage name {stage_name!r} must be letters, digits, '_' or '-'")
        method = body.pop("type", stage_name)
        if method not in known_methods():
            raise GreenlmError(
                f"{source}: unknown stage '{method}'{suggest(str(method), known_methods())};"
                f" known stages: {', '.join(known_methods())}"
            )
        upstream = body.pop("from", None if method == "finetune" else "finetune")
        if method == "finetune":
            if upstream is not None:
                raise GreenlmError(f"{source}: stage '{stage_name}' (finetune) starts from the teacher; remove 'from'")
        elif upstream not in seen:
            where = "is not in the recipe" if upstream not in stages_data else "comes after it"
            raise GreenlmError(
                f"{source}: stage '{stage_name}' starts from '{upstream}', which {where};"
                f" a stage can start from an earlier stage: {', '.join(seen) or '(none)'}"
            )
        settings = build_dataclass(get_method(method).config_type(), body, f"{source}: stages.{stage_name}")
        stages.append(StageSpec(stage_name, method, upstream, settings))
        seen.append(stage_name)
    _check_chains(stages, source)
    _check_stage_maps(stages, source)
    if not any(s.method == "finetune" for s in stages):
        raise GreenlmError(f"{source}: the recipe needs a 'finetune' stage (the teacher every other stage starts from)")
    task = data.get("task", Recipe.task)
    teacher = data.get("teacher", Recipe.teacher)
    for key, value in (("task", task), ("teacher", teacher)):
        if not isinstance(value, str) or not value:
            raise GreenlmError(f"{source}: '{key}' must be text, got {value!r}")
    return Recipe(
        name=name,
        task=task,
        teacher=teacher,
        measure=build_dataclass(MeasureSettings, data.get("measure"), f"{source}: measure"),
        evaluation=build_dataclass(EvaluationSettings, data.get("evaluation"), f"{source}: evaluation"),
        stages=tuple(stages),
        validation=build_dataclass(ValidationSettings, data.get("validation"), f"{source}: validation"),
        target=build_dataclass(TargetSettings, data.get("target"), f"{source}: target"),
        data=build_dataclass(DataSettings, data.get("data"), f"{source}: data"),
    )


def _composition_problem(stage: StageSpec, upstream: StageSpec) -> str | None:
    """Why ``stage`` cannot start from ``upstream``'s model, or None when the two compose."""
    if upstream.method == "quantize" and stage.method in ("prune", "early_exit", "quantize"):
        return ("a quantized model is final (its weights are int8 or bf16): put quantize last, after"
                f" {stage.method}")
    if upstream.method == "early_exit":
        if stage.method == "early_exit":
            return "the model already has exits"
        if stage.method == "prune":
            return "pruning does not know the exit heads: prune first, then add exits"
        if stage.method == "quantize":
            settings = stage.settings
            if settings.scheme == "int8-static" or settings.runtime == "onnx":
                return ("exits are data-dependent control flow, which an ONNX graph cannot hold: quantize a model"
                        " with exits with scheme int8-dynamic and runtime null or torch")
    return None


def _check_chains(stages: list[StageSpec], source: str) -> None:
    """Refuse, before any work, a stage that starts from a model it cannot take (naming both stages)."""
    by_name = {s.name: s for s in stages}
    for stage in stages:
        upstream = by_name.get(stage.upstream) if stage.upstream else None
        problem = _composition_problem(stage, upstream) if upstream is not None else None
        if problem:
            raise GreenlmError(f"{source}: stage '{stage.name}' ({stage.method}) cannot start from '{upstream.name}'"
                               f" ({upstream.method}): {problem}")


def map_stage_name(stage: StageSpec, stages: tuple[StageSpec, ...] | list[StageSpec]) -> str | None:
    """The earlier stage whose data map ``stage``'s ``selection_map`` names, or None when it names a folder.

    In a recipe, ``selection_map`` may name a stage of the same run trained with ``record_dynamics``
    (``selection_map: finetune``); ``teacher`` names the first finetune stage (the teacher). A distill stage
    resolves ``teacher`` itself (it is given the teacher's folder), so it is left to it.
    """
    value = getattr(stage.settings, "selection_map", None)
    if not value:
        return None
    if value == "teacher":
        if stage.method == "distill":
            return None
        return next((s.name for s in stages if s.method == "finetune"), None)
    return value if any(s.name == value for s in stages) else None


def _check_stage_maps(stages: list[StageSpec], source: str) -> None:
    """A ``selection_map`` naming a stage must name an earlier one that records training dynamics."""
    names = [s.name for s in stages]
    for i, stage in enumerate(stages):
        named = map_stage_name(stage, stages)
        if named is None:
            continue
        if named == stage.name or named not in names[:i]:
            where = "is the stage itself" if named == stage.name else "comes after it"
            raise GreenlmError(f"{source}: stage '{stage.name}' takes its data map from stage '{named}', which {where};"
                               " a map comes from an earlier stage trained with record_dynamics: true")
        mapped = stages[names.index(named)]
        if not getattr(mapped.settings, "record_dynamics", False):
            raise GreenlmError(f"{source}: stage '{stage.name}' takes its data map from stage '{named}', which does not"
                               f" record training dynamics; set record_dynamics: true on '{named}'")


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``--set stages.distill.epochs=3``: values are parsed as YAML scalars (3, 0.5, true, null, text)."""
    import copy

    import yaml

    data = copy.deepcopy(data)
    for item in overrides:
        path, eq, raw = item.partition("=")
        if not eq or not path:
            raise GreenlmError(f"--set '{item}': write it as key.path=value, e.g. stages.distill.epochs=3")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        keys = path.split(".")
        node = data
        for i, key in enumerate(keys[:-1]):
            child = node.get(key) if isinstance(node, dict) else None
            if child is None:
                if keys[0] == "stages" and i == 1:
                    known = list((data.get("stages") or {}).keys())
                    raise GreenlmError(f"--set '{item}': the recipe has no stage '{key}'{suggest(key, known)}")
                child = {}
                node[key] = child
            if not isinstance(child, dict):
                raise GreenlmError(f"--set '{item}': '{'.'.join(keys[: i + 1])}' is a value, not a section")
            node = child
        node[keys[-1]] = value
    return data
