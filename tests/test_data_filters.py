"""Data filters (greenlm/data/filters.py): each rule removes exactly the train rows the audit's definition names, in
order, dev untouched; properties over seeded random tasks; recipes, the API's path and bad input."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import defaultdict

import pytest

from greenlm.common import GreenlmError
from greenlm.data import Task, TaskSplit, carve_validation, filter_train
from greenlm.data.audit import normalise
from greenlm.data.filters import DROP_RULES, describe_filter, parse_drop


def _task(train: list[tuple[str, int]], dev: list[tuple[str, int]]) -> Task:
    split = lambda rows: TaskSplit([t for t, _ in rows], None, [y for _, y in rows])  # noqa: E731
    return Task("toy", ("neg", "pos"), ("text",), {"train": split(train), "dev": split(dev)}, credit="test")


TRAIN = [
    ("a fine film", 1),            # 0 kept
    ("a fine film", 1),            # 1 exact duplicate of 0
    ("A fine film!", 1),           # 2 near duplicate of 0
    ("dull , dull", 0),            # 3 conflicting with 4
    ("Dull dull", 1),              # 4 conflicting with 3
    ("...", 0),                    # 5 non-text
    ("очень плохо", 0),            # 6 other script (Cyrillic)
    ("seen in dev", 1),            # 7 overlaps dev (after normalisation)
    ("a bad film", 0),             # 8 kept
    ("a fine film", 0),            # 9 same text as 0, other label: conflicting
]
DEV = [("Seen in dev.", 1), ("a new one", 0)]


def test_each_rule_removes_what_it_names_and_counts_it_once():
    task = _task(TRAIN, DEV)
    out = filter_train(task, list(DROP_RULES))
    rec = out.train_filter
    assert rec["removed"] == {"non_text": 1, "other_script": 1, "eval_overlap": 1, "conflicting": 6,
                              "duplicates": 0, "near_duplicates": 0}
    assert out.split("train").text_a == ["a bad film"]
    assert rec["rows_before"] == 10 and rec["rows_after"] == 1
    assert out.split("dev").text_a == task.split("dev").text_a  # evaluation rows untouched
    assert "dropped 9 of 10 train rows" in describe_filter(rec)


def test_duplicates_keep_the_first_and_near_duplicates_include_them():
    task = _task(TRAIN[:3] + TRAIN[8:9], DEV)
    assert filter_train(task, "duplicates").split("train").text_a == ["a fine film", "A fine film!", "a bad film"]
    near = filter_train(task, "near_duplicates")
    assert near.split("train").text_a == ["a fine film", "a bad film"]
    assert near.train_filter["removed"] == {"near_duplicates": 2}
    both = filter_train(task, "near_duplicates,duplicates")  # order is the rules' order, not the user's
    assert both.train_filter["drop"] == ["duplicates", "near_duplicates"]
    assert both.train_filter["removed"] == {"duplicates": 1, "near_duplicates": 1}


def test_no_rule_returns_the_task_itself():
    task = _task(TRAIN, DEV)
    assert filter_train(task, None) is task and filter_train(task, "") is task


@pytest.mark.parametrize("seed", range(12))
def test_properties_on_random_tasks(seed):
    rng = random.Random(seed)
    words = ["good", "bad", "Good", "film", "film!", "plot", "..", "сюжет"]
    rows = [(" ".join(rng.choice(words) for _ in range(rng.randint(1, 3))), rng.randint(0, 1)) for _ in range(60)]
    task = _task(rows, rows[:5])
    rules = [r for r in DROP_RULES if rng.random() < 0.6] or ["duplicates"]
    out = filter_train(task, rules)
    kept = list(zip(out.split("train").text_a, out.split("train").labels))
    rec = out.train_filter
    assert rec["rows_before"] - rec["rows_after"] == sum(rec["removed"].values()) == len(rows) - len(kept)
    assert all(row in rows for row in kept)
    if "duplicates" in rules:
        assert len(set(kept)) == len(kept)
    if "conflicting" in rules:
        labels = defaultdict(set)
        for text, label in kept:
            labels[normalise(text)].add(label)
        assert all(len(v) == 1 for v in labels.values())
    if "eval_overlap" in rules:
        assert not {normalise(t) for t, _ in kept} & {normalise(t) for t, _ in rows[:5]}
    again = filter_train(_task(kept, rows[:5]), rules)  # idempotent
    assert sum(again.train_filter["removed"].values()) == 0


def test_bad_input():
    task = _task(TRAIN, DEV)
    with pytest.raises(GreenlmError, match="unknown data filter 'dupes'.*known: non_text"):
        parse_drop("dupes")
    with pytest.raises(GreenlmError, match="remove every train row"):
        filter_train(_task([("...", 0), ("!!", 1)], DEV), "non_text")
    with pytest.raises(GreenlmError, match="before carving"):
        filter_train(carve_validation(task, fraction=0.2), "duplicates")


def test_recipe_data_drop_filters_before_the_carve(tmp_path):
    from greenlm.pipeline.runner import recipe_task
    from greenlm.pipeline.schema import parse_recipe

    recipe = parse_recipe({"name": "r", "task": "rte", "data": {"drop": ["near-duplicates", "conflicting"]},
                           "stages": {"finetune": {}}})
    assert recipe.data.drop == ("conflicting", "near_duplicates")
    assert recipe.to_dict()["data"] == {"drop": ["conflicting", "near_duplicates"]}
    assert "data" not in parse_recipe({"name": "r", "stages": {"finetune": {}}}).to_dict()
    task = recipe_task(recipe)
    assert task.train_filter["drop"] == ["conflicting", "near_duplicates"] and task.validation_carve is not None
    assert len(task.split("train")) + len(task.split("validation")) == task.train_filter["rows_after"]
    with pytest.raises(GreenlmError, match="recipe: data: unknown data filter .typo."):
        parse_recipe({"name": "r", "data": {"drop": ["typo"]}, "stages": {"finetune": {}}})


def test_cli_refuses_an_unknown_rule_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "greenlm", "train", "--task", "rte", "--drop", "dupes", "--out",
                          str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "unknown data filter 'dupes'" in run.stderr and not (tmp_path / "m").exists()


def test_a_stage_records_the_filter_and_the_report_says_it(tmp_path):
    """Through the stage shell (as `greenlm train --drop` runs it): metrics.json keeps the filter's record, and the
    run report's checks carry its one-line summary."""
    from conftest import make_toy_task, stage_runner

    from greenlm.pipeline.finetune_config import FinetuneStageConfig
    from greenlm.report.rundata import checks

    toy = make_toy_task(64, 16)
    train = toy.split("train")
    doubled = TaskSplit(train.text_a * 2, None, train.labels * 2)  # every row twice
    task = filter_train(Task("toy", toy.labels, toy.text_fields, {"train": doubled, "dev": toy.split("dev")},
                             credit="test"), ["duplicates"])
    assert task.train_filter["removed"]["duplicates"] >= 64
    config = FinetuneStageConfig(epochs=1, learning_rate=3e-3, batch_size=16, max_length=32)
    metrics = stage_runner("finetune")("tiny:layers=1,hidden=16,heads=2,ffn=16,vocab=60", task, config,
                                       tmp_path / "m")
    recorded = metrics["train_filter"]
    assert recorded["drop"] == ["duplicates"] and recorded["rows_before"] == 128
    assert recorded["summary"].startswith("data filters dropped")
    report = checks({}, [], {"finetune": metrics}, reported="dev")
    assert report["train_filter"]["summary"] == recorded["summary"]
