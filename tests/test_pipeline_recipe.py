"""Recipes: validated before any work starts, with errors that name the field and suggest the fix."""

from __future__ import annotations

import pytest
import yaml

from greenlm.common import GreenlmError
from greenlm.pipeline.recipes import bundled_recipe_names, bundled_recipe_text, load_recipe
from greenlm.pipeline.schema import apply_overrides, parse_recipe


def recipe(**stages):
    return {"name": "r", "task": "sst2", "stages": stages or {"finetune": {}}}


def test_bundled_recipes_parse_and_quick_is_default():
    assert {"quick", "full"} <= set(bundled_recipe_names())
    for name in bundled_recipe_names():
        r = load_recipe(name)
        assert r.name == name
        assert r.stages[0].method == "finetune"
    assert load_recipe(None).name == "quick"


def test_defaults_are_filled_in_from_the_schema():
    r = parse_recipe(recipe(finetune={"epochs": 2}))
    resolved = r.to_dict()
    assert resolved["stages"]["finetune"]["epochs"] == 2.0
    assert resolved["stages"]["finetune"]["batch_size"] == 32  # TrainConfig's default
    assert resolved["measure"]["pue"] == 1.0
    # The resolved recipe parses back to the same thing.
    assert parse_recipe(resolved).to_dict() == resolved


@pytest.mark.parametrize(
    "data, needles",
    [
        (recipe(finetune={"epoch": 1}), ["unknown key 'epoch'", "did you mean 'epochs'"]),
        (recipe(finetune={"epochs": "three"}), ["stages.finetune.epochs", "number"]),
        (recipe(finetune={"precision": "fp8"}), ["precision", "auto, bf16, fp32"]),
        (recipe(finetune={}, distil={}), ["unknown stage 'distil'", "did you mean 'distill'"]),
        ({"name": "r", "stagse": {}}, ["unknown key 'stagse'", "did you mean 'stages'"]),
        ({"name": "r", "stages": {"finetune": {}}, "measure": {"pue": "high"}}, ["measure.pue", "expected float or null", "high"]),
        ({"name": "r/x", "stages": {"finetune": {}}}, ["name"]),
        ({"name": "r", "stages": {}}, ["stages"]),
        ({"name": "r", "stages": {"finetune": 5}}, ["stages.finetune must be a mapping", "got 5"]),
        ({"name": "r", "stages": {"finetune": "x"}}, ["stages.finetune must be a mapping"]),
    ],
)
def test_bad_recipes_name_the_problem(data, needles):
    with pytest.raises(GreenlmError) as err:
        parse_recipe(data)
    for needle in needles:
        assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_stage_dependency_must_exist_and_come_first():
    pytest.importorskip("greenlm.compress.distill")
    with pytest.raises(GreenlmError, match="starts from 'prune', which is not in the recipe"):
        parse_recipe(recipe(finetune={}, distill={"from": "prune"}))
    with pytest.raises(GreenlmError, match="comes after it"):
        parse_recipe({"name": "r", "stages": {"finetune": {}, "distill": {"from": "d2"}, "d2": {"type": "distill"}}})


def test_recipe_needs_a_finetune_stage():
    pytest.importorskip("greenlm.compress.distill")
    with pytest.raises(GreenlmError):
        parse_recipe({"name": "r", "stages": {"distill": {"from": None}}})


def test_set_overrides_parse_values_as_yaml():
    data = apply_overrides(recipe(finetune={"epochs": 1}), ["stages.finetune.epochs=3", "measure.region=FRA",
                                                          "stages.finetune.max_steps=null"])
    r = parse_recipe(data)
    assert r.stage("finetune").settings.epochs == 3.0
    assert r.stage("finetune").settings.max_steps is None
    assert r.measure.region == "FRA"
    with pytest.raises(GreenlmError, match="no stage 'finetun'"):
        apply_overrides(recipe(finetune={}), ["stages.finetun.epochs=3"])
    with pytest.raises(GreenlmError, match="key.path=value"):
        apply_overrides(recipe(), ["stages.finetune.epochs"])


def test_recipe_files_missing_or_unparsable(tmp_path):
    with pytest.raises(GreenlmError, match="does not exist"):
        load_recipe(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages:\n  finetune: {epochs: 1\n")
    with pytest.raises(GreenlmError, match=r"not valid YAML at line \d+"):
        load_recipe(str(bad))
    with pytest.raises(GreenlmError, match="did you mean 'quick'"):
        load_recipe("quik")


def test_show_prints_an_editable_recipe(tmp_path):
    text = bundled_recipe_text("quick")
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    assert load_recipe(str(path)).to_dict() == load_recipe("quick").to_dict()
    assert yaml.safe_load(text)["name"] == "quick"
