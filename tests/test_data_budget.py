"""Data budget curves from one ``greenlm run``: a teacher that records its data map, stages trained on selections
named by that stage (``selection_map: finetune``), and the report's points, table and figure (issue 16)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import write_toy_task_files
from greenlm.common import GreenlmError
from greenlm.pipeline.schema import parse_recipe

TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"
TRAIN = dict(epochs=2, learning_rate=3e-3, batch_size=16, max_length=32, precision="fp32")


def recipe_data(task_dir, **stages) -> dict:
    return {
        "name": "budget", "task": str(task_dir), "teacher": TINY,
        "measure": {"region": "USA", "pue": 1.0},
        "evaluation": {"speed_examples": 16, "latency_examples": 2, "repeats": 1},
        "stages": {"finetune": {**TRAIN, "record_dynamics": True}, **stages},
    }


def selected(spec: str, source: str = "finetune") -> dict:
    return {"type": "finetune", **TRAIN, "train_selection": spec, "selection_map": source}


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory):
    from greenlm.pipeline.runner import run_recipe

    root = tmp_path_factory.mktemp("budget")
    write_toy_task_files(root / "toy", n_train=160, n_dev=32)
    recipe = parse_recipe(recipe_data(root / "toy", amb_50=selected("ambiguous:0.5"),
                                      rand_50=selected("random:0.5", "teacher")))
    outcome = run_recipe(recipe, root / "runs", progress=False, echo=lambda _: None)
    return root, recipe, outcome


def test_a_stage_takes_its_map_from_an_earlier_stage_of_the_run(budget_run):
    from greenlm.datamap.selection import selection_for_task
    from greenlm.pipeline.runner import recipe_task

    root, recipe, outcome = budget_run
    folder = outcome.run_dir / "finetune"
    task = recipe_task(recipe)
    train_rows = len(task.split("train"))  # after the validation carve
    for stage, spec in (("amb_50", "ambiguous:0.5"), ("rand_50", "random:0.5")):
        metrics = json.loads((outcome.run_dir / stage / "metrics.json").read_text())
        record = metrics["train_selection"]
        assert record["map"] == str(folder) and record["rows_available"] == train_rows
        assert record["rows_used"] == round(0.5 * train_rows)
        # the same rows as choosing by hand from the teacher's map
        expected, _ = selection_for_task(spec, folder, task, seed=recipe.stage(stage).settings.seed)
        rows = json.loads((outcome.run_dir / stage / "selection.json").read_text())["rows"]
        assert rows == expected.rows
    amb = json.loads((outcome.run_dir / "amb_50" / "selection.json").read_text())["rows"]
    rand = json.loads((outcome.run_dir / "rand_50" / "selection.json").read_text())["rows"]
    assert amb != rand


def test_the_report_puts_accuracy_against_the_share_kept_with_its_cost(budget_run):
    _, _, outcome = budget_run
    report = json.loads((outcome.run_dir / "report.json").read_text())
    points = {p["model"]: p for p in report["data_budget"]}
    assert set(points) == {"finetune", "amb_50", "rand_50"}
    assert points["finetune"]["selection"] == "all rows" and points["finetune"]["share_kept"] == 1.0
    assert (points["amb_50"]["selection"], points["rand_50"]["selection"]) == ("ambiguous", "random")
    assert points["amb_50"]["share_kept"] == pytest.approx(0.5, abs=0.01)
    rows = {r["model"]: r for r in report["rows"]}
    for name, point in points.items():
        assert point["accuracy"] == rows[name]["accuracy"]
        assert point["stage_energy_kwh"] == rows[name]["stage_energy_kwh"] and point["stage_energy_kwh"] > 0
    markdown = (outcome.run_dir / "report.md").read_text()
    assert "## Data budget" in markdown and "| amb_50 | finetune | ambiguous:0.5 |" in markdown
    table = list(csv.DictReader(io.StringIO((outcome.run_dir / "figures" / "data_budget.csv").read_text())))
    assert sorted(r["model"] for r in table) == ["amb_50", "finetune", "rand_50"]
    assert (outcome.run_dir / "figures" / "data_budget.png").stat().st_size > 1000


def test_a_run_without_selections_has_no_data_budget(tmp_path):
    from greenlm.report.data_budget import data_budget_points
    from greenlm.report.rundata import RunData

    rows = [{"model": "finetune", "method": "finetune", "report_status": "measured", "accuracy": 0.9}]
    run = RunData(tmp_path, "r", {"stages": {"finetune": {"type": "finetune"}}}, {"rows": rows}, None)
    assert data_budget_points(run) == []


def test_a_map_from_a_stage_is_checked_before_any_work(tmp_path):
    write_toy_task_files(tmp_path / "toy", n_train=64, n_dev=16)
    cases = [
        ({"later": selected("ambiguous:0.5", "amb")} | {"amb": {"type": "finetune", **TRAIN, "record_dynamics": True}},
         "which comes after it"),
        ({"amb": selected("ambiguous:0.5", "amb")}, "which is the stage itself"),
        ({"plain": {"type": "finetune", **TRAIN}, "amb": selected("ambiguous:0.5", "plain")},
         "does not record training dynamics; set record_dynamics: true on 'plain'"),
    ]
    for stages, message in cases:
        with pytest.raises(GreenlmError, match=message):
            parse_recipe(recipe_data(tmp_path / "toy", **stages))
    data = recipe_data(tmp_path / "toy", amb=selected("ambiguous:0.5", "teacher"))
    data["stages"]["finetune"].pop("record_dynamics")
    with pytest.raises(GreenlmError, match="set record_dynamics: true on 'finetune'"):
        parse_recipe(data)


def test_the_shipped_recipe_maps_once_and_selects_from_it():
    from greenlm.pipeline.recipes import load_recipe

    recipe = load_recipe("data-budget")
    teacher, *selections = recipe.stages
    assert teacher.settings.record_dynamics and teacher.settings.train_selection is None
    assert {s.settings.selection_map for s in selections} == {"finetune"}
    kinds = {s.settings.train_selection.split(":")[0] for s in selections}
    assert kinds == {"ambiguous", "random", "easy", "hard"}
