"""Honest selection: the validation split carved from train, every stage choosing on it, and the run's target
checked before training (issue 14)."""

from __future__ import annotations

import collections
import json
import os

import random
import re

import pytest
from conftest import greenlm_in_process
import yaml

from greenlm.common import GreenlmError
from greenlm.data import Task, TaskSplit, carve_validation, selection_record, selection_split_name

TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"


def make_task(labels: list[int], dev: int = 4) -> Task:
    train = TaskSplit([f"row {i}" for i in range(len(labels))], None, list(labels))
    return Task("t", ("a", "b", "c"), ("text",), {"train": train, "dev": TaskSplit(["d"] * dev, None, [0] * dev)},
                credit="test")


def random_cases(n: int = 60):
    """Seeded random tasks (property-style; hypothesis is not a dependency)."""
    rng = random.Random(0)
    for _ in range(n):
        labels = [rng.choice([0, 0, 1, 2]) for _ in range(rng.randint(20, 300))]
        yield labels, rng.uniform(0.05, 0.5), rng.randint(1, 200), rng.randint(0, 5)


@pytest.mark.parametrize("labels,fraction,max_examples,seed", list(random_cases()))
def test_carve_partitions_train_and_keeps_label_shares(labels, fraction, max_examples, seed):
    task = make_task(labels)
    wanted = min(max_examples, int(fraction * len(labels)))
    if wanted < len(set(labels)) or min(collections.Counter(labels).values()) == 1:
        with pytest.raises(GreenlmError, match=r"a label would have no validation row|has a single training row"):
            carve_validation(task, fraction=fraction, max_examples=max_examples, seed=seed)
        return  # a label would be missing from one side: refused (test_carve_refuses_... below)
    carved = carve_validation(task, fraction=fraction, max_examples=max_examples, seed=seed)
    train, val = carved.splits["train"], carved.splits["validation"]
    assert len(val) == wanted and len(train) + len(val) == len(labels)
    # a partition: every training row is in exactly one of the two splits
    assert sorted(train.text_a + val.text_a, key=lambda t: int(t.split()[1])) == task.splits["train"].text_a
    # stratified: each label's count is its share, rounded (largest remainders)
    counts, total = collections.Counter(val.labels), collections.Counter(labels)
    for label, n in total.items():
        assert abs(counts[label] - wanted * n / len(labels)) < 2  # its share, rounded (1 more for a tiny label)
        assert counts[label] >= 1 and total[label] - counts[label] >= 1  # every label on both sides
    assert carved.splits["dev"] is task.splits["dev"]  # reported splits untouched
    assert carve_validation(task, fraction=fraction, max_examples=max_examples, seed=seed).fingerprint() == \
        carved.fingerprint()  # the same draw every time
    assert carved.validation_carve == {"fraction": fraction, "max_examples": max_examples, "seed": seed}


def test_carve_is_a_no_op_at_zero_and_when_a_validation_split_exists():
    task = make_task([0, 1] * 20)
    assert carve_validation(task, fraction=0.0, max_examples=10) is task
    carved = carve_validation(task, fraction=0.25, max_examples=10)
    assert carve_validation(carved, fraction=0.5, max_examples=100) is carved
    assert len(carved.splits["validation"]) == 10


def test_too_small_a_training_split_is_left_whole_and_choices_fall_back_to_dev():
    task = make_task([0, 1, 0])
    assert carve_validation(task, fraction=0.1, max_examples=10) is task
    assert selection_split_name(task) == "dev"


def test_a_rare_label_still_gets_a_validation_row():
    carved = carve_validation(make_task([0] * 95 + [1] * 5), fraction=0.1, max_examples=10)
    assert collections.Counter(carved.splits["validation"].labels) == {0: 9, 1: 1}


def test_a_bad_fraction_is_one_line():
    with pytest.raises(GreenlmError, match=r"validation fraction must be in \[0, 1\)"):
        carve_validation(make_task([0, 1] * 20), fraction=1.5, max_examples=10)


def test_the_selection_split_and_its_record():
    task = make_task([0, 1] * 20)
    assert selection_split_name(task) == "dev"
    record = selection_record(task, "best epoch")
    assert record["split"] == "dev" and "also reported" in record["warning"]
    carved = carve_validation(task, fraction=0.1, max_examples=100)
    assert selection_split_name(carved) == "validation"
    assert selection_record(carved, "best epoch") == {"split": "validation", "examples": 4, "chose": "best epoch",
                                                       "from": "train"}


def test_finetune_chooses_its_epoch_on_validation_and_reports_dev(tmp_path):
    from conftest import stage_runner, write_toy_task_files

    from greenlm.pipeline.finetune_config import FinetuneStageConfig

    from greenlm.data import load_task

    write_toy_task_files(tmp_path / "toy", n_train=128, n_dev=32)
    task = carve_validation(load_task(str(tmp_path / "toy")), fraction=0.25, max_examples=24)
    config = FinetuneStageConfig(epochs=2, batch_size=16, max_length=32, learning_rate=3e-3)
    metrics = stage_runner("finetune")(TINY, task, config, tmp_path / "out")
    assert metrics["selection"] == {"split": "validation", "examples": 24, "chose": "best epoch", "from": "train"}
    assert metrics["train"]["examples"] == 104
    assert {"validation", "dev"} <= set(metrics["splits"])
    assert metrics["splits"]["dev"]["examples"] == 32 and metrics["splits"]["validation"]["examples"] == 24
    history_best = max(h["accuracy"] for h in metrics["train"]["history"] if "accuracy" in h)
    assert metrics["splits"]["validation"]["accuracy"] == pytest.approx(history_best)


# ---- the target, before any training -------------------------------------------------------------------------------


def test_check_target_refuses_an_unreachable_speedup_naming_the_best():
    from greenlm.pipeline.preflight import check_target
    from greenlm.pipeline.schema import parse_recipe

    recipe = parse_recipe({"name": "r", "target": {"speedup": 10}, "stages": {"finetune": {}, "distill": {}}})
    estimates = {"finetune": {"speedup": 1.0, "latency_ms_p50": 10.0, "how": "measured"},
                 "distill": {"speedup": 4.0, "latency_ms_p50": 3.0, "how": "measured"}}
    with pytest.raises(GreenlmError, match=r"target speedup 10x is out of reach .* about 4.0x \(distill, measured\)"):
        check_target(recipe, estimates, print)
    notes = []
    estimates["distill"]["speedup"] = 9.0  # within the margin: the run goes on, saying it may miss
    check_target(recipe, estimates, notes.append)
    assert len(notes) == 1 and "may be missed" in notes[0]
    estimates["distill"]["speedup"] = 12.0
    notes.clear()
    check_target(recipe, estimates, notes.append)
    assert notes == []


def test_greenlm_run_refuses_an_impossible_target_before_training(tmp_path):
    from conftest import write_toy_task_files

    write_toy_task_files(tmp_path / "toy", n_train=64, n_dev=16)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "r", "task": str(tmp_path / "toy"), "teacher": TINY,
        "evaluation": {"speed_examples": 16, "latency_examples": 2, "repeats": 1},
        "stages": {"finetune": {"epochs": 1, "batch_size": 16, "max_length": 32},
                   "distill": {"student": "1x16", "epochs": 1, "batch_size": 16}}}, sort_keys=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GREENLM_HOME": str(tmp_path / "home"), "PYTHONWARNINGS": "ignore"}
    result = greenlm_in_process("run", str(recipe), "--target-speedup", "1000", "--no-progress", env=env, cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("greenlm: error")]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1 and "target speedup 1000x is out of reach" in errors[0] and "distill" in errors[0]
    assert not (tmp_path / "runs" / "r" / "finetune").exists()  # nothing was trained
    cache = json.loads((tmp_path / "runs" / ".preflight.json").read_text())
    (estimates,) = cache.values()
    assert estimates["finetune"]["speedup"] == 1.0 and estimates["distill"]["speedup"] > 0


# ---- chains that cannot compose are refused before any work --------------------------------------------------------


@pytest.mark.parametrize("stages,needle", [
    ({"quantize": {}, "prune": {"from": "quantize"}}, "'prune' (prune) cannot start from 'quantize' (quantize)"),
    ({"quantize": {}, "q2": {"type": "quantize", "from": "quantize"}}, "put quantize last"),
    ({"early_exit": {}, "e2": {"type": "early_exit", "from": "early_exit"}}, "already has exits"),
    ({"early_exit": {}, "prune": {"from": "early_exit"}}, "prune first, then add exits"),
    ({"early_exit": {}, "quantize": {"from": "early_exit", "scheme": "int8-static"}}, "an ONNX graph cannot hold"),
])
def test_a_chain_that_cannot_compose_names_both_stages(stages, needle):
    from greenlm.pipeline.schema import parse_recipe

    with pytest.raises(GreenlmError, match=re.escape(needle)):
        parse_recipe({"name": "r", "stages": {"finetune": {}, **stages}})


def test_chains_that_compose_are_accepted():
    from greenlm.pipeline.schema import parse_recipe

    recipe = parse_recipe({"name": "r", "stages": {
        "finetune": {}, "distill": {"student": "2x64"}, "prune": {"from": "distill"},
        "early_exit": {"from": "prune"}, "quantize": {"from": "early_exit"}}})
    assert [s.upstream for s in recipe.stages] == [None, "finetune", "distill", "prune", "early_exit"]


def test_preflight_bounds_propagate_and_unknown_stages_stay_unknown(tmp_path, monkeypatch):
    """Stand-ins are timed (faked here: 100, 300 and 600 examples/s); bounds multiply down the chain; a student
    picked by a budget, and what is built on it, are not estimated, and then no target is refused."""
    from conftest import write_toy_task_files

    import greenlm.runtime
    from greenlm.data import load_task
    from greenlm.pipeline import preflight
    from greenlm.pipeline.schema import parse_recipe

    write_toy_task_files(tmp_path / "toy", n_train=32, n_dev=16)
    recipe = parse_recipe({"name": "r", "task": str(tmp_path / "toy"), "teacher": TINY,
                           "evaluation": {"speed_examples": 8, "latency_examples": 2}, "target": {"speedup": 100},
                           "stages": {"finetune": {"max_length": 32}, "distill": {"student": "1x16"},
                                      "prune": {"from": "distill", "head_sparsity": 0.5},
                                      "early_exit": {"from": "prune"}, "quantize": {"from": "early_exit"},
                                      "budget": {"type": "distill", "target_speedup": 3},
                                      "quantize_budget": {"type": "quantize", "from": "budget"}}})
    speeds = {"finetune": 100.0, "distill": 300.0, "quantize": 600.0}

    def fake_side_by_side(forwards, inputs, **_):
        assert set(forwards) == set(speeds)  # only stand-ins are timed: no bound or unknown stage
        return {name: {"throughput_examples_per_s": speeds[name], "latency_ms_p50": 1000 / speeds[name]}
                for name in forwards} | {"protocol": "fake"}

    monkeypatch.setattr(greenlm.runtime, "side_by_side", fake_side_by_side)
    estimates = preflight.estimate_speeds(recipe, load_task(str(tmp_path / "toy")), tmp_path / "runs", print)
    got = {name: e["speedup"] for name, e in estimates.items()}
    # prune keeps half the heads of a 1-layer student: x2; early exit on a 1-layer model: x1; int8 of that: 6 x 2
    assert got == {"finetune": 1.0, "distill": 3.0, "prune": 6.0, "early_exit": 6.0, "quantize": 12.0,
                   "budget": None, "quantize_budget": None}
    assert estimates["distill"]["how"].startswith("measured")
    assert "structured pruning" in estimates["quantize"]["how"] and "early exit" in estimates["quantize"]["how"]
    notes = []
    preflight.check_target(recipe, estimates, notes.append)  # 100x is far off, but 'budget' might reach it
    assert len(notes) == 1 and "budget, quantize_budget cannot be estimated" in notes[0]
