"""The sweep's search-space grammar: what parses, and errors that name the bad token."""

from __future__ import annotations

import pytest
import yaml

from greenlm.common import GreenlmError
from greenlm.pipeline.recipes import load_recipe
from greenlm.pipeline.sweep import check_search, parse_search, run_sweep, yaml_scalar


def test_distributions_parse():
    p = parse_search(" stages.distill.learning_rate = loguniform(1e-5, 1e-3) ")
    assert (p.path, p.kind, p.low, p.high) == ("stages.distill.learning_rate", "loguniform", 1e-5, 1e-3)
    assert parse_search("stages.distill.epochs=int(1,4)").low == 1
    assert isinstance(parse_search("stages.distill.epochs=int(1,4)").high, int)
    assert parse_search("stages.prune.heads=logint(1,64)").kind == "logint"
    assert parse_search("stages.distill.temperature=uniform(0.5,4)").high == 4.0
    choice = parse_search("stages.distill.student=choice(4x312, 2x256, 'null', null, true, 3, 1e-4)")
    assert choice.choices == ("4x312", "2x256", "null", None, True, 3, 1e-4)


@pytest.mark.parametrize("text, needle", [
    ("stages.distill.learning_rate", "write it as key.path=distribution(args)"),
    ("=loguniform(1,2)", "write it as key.path=distribution(args)"),
    ("stages..lr=uniform(0,1)", "'(empty)' is not a key"),
    ("stages.distill.lr=logunifrom(1e-5,1e-3)", "unknown distribution 'logunifrom' (did you mean 'loguniform'?)"),
    ("stages.distill.lr=(1e-5,1e-3)", "the distribution is missing before '(1e-5,1e-3)'"),
    ("stages.distill.lr=", "'(nothing)' is not a distribution"),
    ("stages.distill.lr=0.001", "'0.001' is not a distribution"),
    ("stages.distill.lr=loguniform 1e-5,1e-3", "'1e-5,1e-3' after 'loguniform': expected '('"),
    ("stages.distill.lr=loguniform(1e-5,1e-3", "missing ')' after '1e-3'"),
    ("stages.distill.lr=loguniform(1e-5,abc)", "'abc' is not a number"),
    ("stages.distill.lr=loguniform(1e-5,1e-3,1)", "loguniform takes 2 arguments (low, high), got 3"),
    ("stages.distill.lr=loguniform(1e-5,)", "argument 2 of loguniform(...) is empty"),
    ("stages.distill.lr=loguniform(0,1e-3)", "loguniform needs low > 0, got '0'"),
    ("stages.distill.lr=uniform(0.5,0.1)", "low (0.5) must be below high (0.1)"),
    ("stages.distill.epochs=int(1,2.5)", "'2.5' is not a whole number"),
    ("stages.distill.epochs=logint(0,4)", "logint needs low >= 1"),
    ("stages.distill.t=choice(1,2,1)", "lists a value twice"),
    ("stages.distill.t=uniform(nan,1)", "'nan' is not a number"),
    ("name=choice(a,b)", "the run name is set by the sweep"),
])
def test_bad_search_names_the_token(text, needle):
    with pytest.raises(GreenlmError) as info:
        parse_search(text)
    message = str(info.value)
    assert message.startswith(f"--search '{text.strip()}':") and needle in message, message


@pytest.mark.parametrize("value", [1e-05, 0.001, 3e-4, 1.5, 2, True, False, None, "4x312", "1", "a b"])
def test_values_round_trip_through_set(value):
    assert yaml.safe_load(yaml_scalar(value)) == value
    assert type(yaml.safe_load(yaml_scalar(value))) is type(value)


def _recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "task": "sst2", "teacher": "tiny",
                                    "stages": {"finetune": {"epochs": 1}, "distill": {"student": "1x32"}}},
                                   sort_keys=False))
    return str(path)


def test_search_is_checked_against_the_recipe(tmp_path):
    recipe = _recipe(tmp_path)
    check_search(recipe, [], [parse_search("stages.distill.learning_rate=loguniform(1e-5,1e-3)")])
    loaded = load_recipe(recipe, [f"stages.distill.learning_rate={yaml_scalar(1e-05)}"])
    assert loaded.stage("distill").settings.learning_rate == 1e-05
    cases = [
        ("stages.distill.learnin_rate=loguniform(1e-5,1e-3)", "did you mean 'learning_rate'"),
        ("stages.prune.amount=uniform(0.1,0.5)", "the recipe has no stage 'prune'"),
        ("stages.distill.epochs=choice(1,abc)", "stages.distill.epochs"),
    ]
    for text, needle in cases:
        with pytest.raises(GreenlmError) as info:
            check_search(recipe, [], [parse_search(text)])
        assert str(info.value).startswith(f"--search '{text}':") and needle in str(info.value), str(info.value)
    twice = [parse_search("stages.distill.learning_rate=loguniform(1e-5,1e-3)"),
             parse_search("stages.distill.learning_rate=uniform(1e-5,1e-3)")]
    with pytest.raises(GreenlmError, match="searched twice"):
        check_search(recipe, [], twice)


def test_sweep_bad_input_before_any_work(tmp_path):
    recipe = _recipe(tmp_path)
    search = ["stages.distill.learning_rate=loguniform(1e-5,1e-3)"]
    cases = [
        (dict(trials=1), "--trials must be at least 2 for a budget/performance curve, got 1"),
        (dict(trials=4, metric="acc"), "unknown --metric 'acc'"),
        (dict(trials=4, sampler="tpe2"), "did you mean 'tpe'"),
        (dict(trials=4, stage="distil"), "--stage 'distil' is not a stage of the recipe (did you mean 'distill'?)"),
        (dict(trials=4, search=[]), "give at least one --search"),
    ]
    for kwargs, needle in cases:
        args = {"search": search, **kwargs}
        with pytest.raises(GreenlmError) as info:
            run_sweep(recipe, args.pop("search"), args.pop("trials"), runs_root=tmp_path / "runs", **args)
        assert needle in str(info.value), str(info.value)
    assert not (tmp_path / "runs").exists()  # nothing written
