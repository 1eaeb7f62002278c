"""Bundled recipes (``quick``, ``full``) and loading a recipe from a name or a YAML file."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import yaml

from greenlm.common.inputs import SETTINGS_MAX_BYTES, decode_utf8, read_input
from greenlm.data.safe_yaml import load_yaml
from greenlm.common import GreenlmError
from greenlm.pipeline.schema import Recipe, apply_overrides, parse_recipe, suggest

DEFAULT_RECIPE = "quick"


def _folder():
    return importlib.resources.files("greenlm.pipeline") / "recipes"


def bundled_recipe_names() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in _folder().iterdir() if p.name.endswith(".yaml"))


def bundled_recipe_text(name: str) -> str:
    if name not in bundled_recipe_names():
        raise GreenlmError(f"no bundled recipe '{name}'{suggest(name, bundled_recipe_names())};"
                           f" bundled: {', '.join(bundled_recipe_names())}")
    return (_folder() / f"{name}.yaml").read_text(encoding="utf-8")


def describe_bundled_recipes() -> list[tuple[str, str]]:
    """(name, first comment line) of each bundled recipe."""
    out = []
    for name in bundled_recipe_names():
        first = bundled_recipe_text(name).splitlines()[0].lstrip("# ").strip()
        out.append((name, first))
    return out


def load_recipe(spec: str | None = None, overrides: list[str] | None = None, name: str | None = None, *,
                machine: bool = True) -> Recipe:
    """A bundled recipe name or a YAML file path, with ``--set`` overrides, validated. With ``machine``, this
    machine's settings (environment, settings file: ``greenlm.measure.settings``) replace the recipe's ``measure``
    values, and ``--set`` beats both."""
    spec = spec or DEFAULT_RECIPE
    path = Path(spec)
    if spec in bundled_recipe_names() and not path.is_file():
        text, source = bundled_recipe_text(spec), f"recipe '{spec}'"
    elif path.suffix in (".yaml", ".yml") or path.exists() or "/" in spec:
        if not path.is_file():
            raise GreenlmError(f"recipe file '{spec}' does not exist")
        text = decode_utf8(read_input(path, what="recipe file", max_bytes=SETTINGS_MAX_BYTES), f"recipe file '{spec}'")
        source = str(path)
    else:
        raise GreenlmError(f"no recipe '{spec}'{suggest(spec, bundled_recipe_names())}: give a YAML file or one of"
                           f" {', '.join(bundled_recipe_names())}")
    try:
        data = load_yaml(text, source)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise GreenlmError(f"{source} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise GreenlmError(f"{source}: a recipe is a YAML mapping (name, task, teacher, measure, evaluation, stages)")
    if machine:
        data = _leave_to_machine_settings(data)
    if overrides:
        data = apply_overrides(data, overrides)
    if name is not None:  # --name "" is a name to check (and refuse), not the recipe's own
        data["name"] = name
    return parse_recipe(data, source=source)


def _leave_to_machine_settings(data: dict) -> dict:
    """The recipe's measure values that this machine's settings give, unset: the price tag then takes them from the
    environment or the settings file, and says so in its record (a region only when the recipe names no intensity
    file or figure, which need the recipe's own region)."""
    from greenlm.measure.settings import machine_settings

    found = machine_settings()
    measure = data.get("measure")
    measure = dict(measure) if isinstance(measure, dict) else {}
    for key in ("pue", "usd_per_hour"):
        if key in found:
            measure[key] = None
    if "region" in found and measure.get("intensity_csv") is None and measure.get("intensity_g_per_kwh") is None:
        measure["region"] = None
    return {**data, "measure": measure} if measure else data
