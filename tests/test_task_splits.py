"""Issue 21: any split layout (train+test carves validation from train and reports on test), --eval-split,
truncation counted, --max-length auto, and ``greenlm tasks check``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import greenlm_in_process

from greenlm.common import GreenlmError
from greenlm.data import (Task, TaskSplit, carve_validation, choose_eval_split, covering_length, describe_validation,
                          encode_split, load_task, token_lengths)

from conftest import one_error_line

TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def greenlm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``greenlm ARGS`` through its entry point, in this process (a process of its own adds seconds of imports and
    nothing these tests look at), run from ``cwd``."""
    env = {**ENV, "GREENLM_HOME": str((cwd or Path.cwd()) / "home")}
    return greenlm_in_process(*args, env=env, cwd=cwd)


def write_split(path: Path, split: TaskSplit, labels=("neg", "pos")) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["text\tlabel"] + [f"{t}\t{labels[y]}" for t, y in zip(split.text_a, split.labels)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.fixture
def train_test_dir(tmp_path):
    """The toy task as a user's train.tsv + test.tsv (no dev file)."""
    from conftest import toy_split

    folder = tmp_path / "tt"
    write_split(folder / "train.tsv", toy_split(200, 0))
    write_split(folder / "test.tsv", toy_split(48, 1))
    return folder


# --- loading: every layout ---------------------------------------------------------------------------------


def test_folder_with_train_and_test_reports_on_test(train_test_dir):
    task = load_task(str(train_test_dir))
    assert sorted(task.splits) == ["test", "train"] and task.eval_split == "test"
    carved = carve_validation(task, fraction=0.1, seed=0)
    assert sorted(carved.splits) == ["test", "train", "validation"]
    assert len(carved.splits["validation"]) == 20 and len(carved.splits["train"]) == 180
    assert carved.eval_split == "test"  # carving keeps where figures are reported
    note = describe_validation(carved)
    assert "20 rows carved from train" in note and "stratified" in note and "reported on 'test'" in note


def test_all_three_splits_report_on_dev_unless_told(train_test_dir):
    (train_test_dir / "dev.tsv").write_text((train_test_dir / "test.tsv").read_text())
    task = load_task(str(train_test_dir))
    assert task.eval_split == "dev"
    assert choose_eval_split(task, "test").eval_split == "test"


def test_task_file_with_train_and_test_only(train_test_dir):
    spec = train_test_dir / "task.yaml"
    spec.write_text("name: news\ntrain: train.tsv\ntest: test.tsv\n")
    task = load_task(str(spec))
    assert task.name == "news" and task.eval_split == "test" and len(task.split("test")) == 48


def test_task_file_without_dev_or_test_is_refused(train_test_dir):
    spec = train_test_dir / "task.yaml"
    spec.write_text("train: train.tsv\n")
    with pytest.raises(GreenlmError, match=r"no 'dev' or 'test' key; give the path of a dev file, a test file or"):
        load_task(str(spec))


def test_eval_split_the_task_lacks_lists_the_ones_it_has(train_test_dir):
    task = carve_validation(load_task(str(train_test_dir)), fraction=0.1)
    with pytest.raises(GreenlmError, match=r"--eval-split dev: .*no 'dev' split.*it can be evaluated on: test$"):
        choose_eval_split(task, "dev")
    for chooser in ("train", "validation"):
        with pytest.raises(GreenlmError, match=rf"'{chooser}' is where the model learns or makes its choices"):
            choose_eval_split(task, chooser)


def test_test_label_train_never_had_is_one_line(train_test_dir):
    with open(train_test_dir / "test.tsv", "a", encoding="utf-8") as f:
        f.write("so so\tneutral\n")
    with pytest.raises(GreenlmError, match=r"test\.tsv:50: label 'neutral' does not occur in train") as err:
        load_task(str(train_test_dir))
    assert "\n" not in str(err.value)


# --- the validation carve: refused when a label would be left out ----------------------------------------


def test_fraction_leaving_a_label_without_validation_rows_is_refused():
    labels = [0] * 40 + [1] * 40 + [2] * 40  # 120 rows, 3 labels
    train = TaskSplit([f"r{i}" for i in range(120)], None, labels)
    task = Task("t", ("a", "b", "c"), ("text",), {"train": train, "test": TaskSplit(["x"], None, [0])}, credit="")
    with pytest.raises(GreenlmError, match=r"carves 2 row\(s\) from 120 training rows, fewer than its 3 labels.*"
                                           r"at least 0\.03"):
        carve_validation(task, fraction=0.02)
    carved = carve_validation(task, fraction=0.03)  # the suggested fraction works
    assert sorted(set(carved.splits["validation"].labels)) == [0, 1, 2]


def test_a_label_with_one_training_row_is_refused():
    train = TaskSplit([f"r{i}" for i in range(50)], None, [0] * 25 + [1] * 24 + [2])
    task = Task("t", ("a", "b", "c"), ("text",), {"train": train, "dev": TaskSplit(["x"], None, [2])}, credit="")
    with pytest.raises(GreenlmError, match=r"label 'c' has a single training row"):
        carve_validation(task, fraction=0.1)


# --- truncation ----------------------------------------------------------------------------------------------


def test_encode_split_counts_the_rows_it_cut():
    from greenlm.models.tiny import build_tiny_tokenizer

    texts = ["a b", "a b c d e f g h", "a b c d", "a " * 30]
    split = TaskSplit(texts, None, [0, 1, 0, 1])
    tokenizer = build_tiny_tokenizer(texts, 99, 128)
    lengths = token_lengths(split, tokenizer)
    assert lengths == [4, 10, 6, 32]  # [CLS] + words + [SEP]
    encoded = encode_split(split, tokenizer, 6)
    assert encoded.truncated == 2 and encoded.max_length == 6  # 10 and 32 tokens cut; 6 fits exactly
    assert encode_split(split, tokenizer, 32).truncated == 0
    assert covering_length(lengths, 0.75) == 10 and covering_length(lengths, 1.0) == 32


def test_max_length_auto_and_numbers_in_the_finetune_settings():
    from greenlm.pipeline.finetune_config import FinetuneStageConfig

    assert FinetuneStageConfig(max_length="auto").max_length == "auto"
    assert FinetuneStageConfig(max_length="64").max_length == 64  # the command line gives text
    with pytest.raises(GreenlmError, match="max_length must be a number of tokens or 'auto', got 'lots'"):
        FinetuneStageConfig(max_length="lots")


# --- through the command line ------------------------------------------------------------------------------


def test_train_on_train_and_test_reports_test_everywhere(train_test_dir, tmp_path):
    out = tmp_path / "model"
    result = greenlm("train", "--task", str(train_test_dir), "--model", TINY, "--epochs", "1", "--batch-size", "16",
                     "--max-length", "auto", "--out", str(out), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "validation split: 20 rows carved from train" in result.stderr
    assert "figures are reported on 'test'" in result.stderr
    assert "max_length auto:" in result.stderr and "covers" in result.stderr
    for split in ("train", "validation", "test"):
        assert f"note: truncation: {split}: 0 of" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_split"] == "test" and metrics["selection"]["split"] == "validation"
    assert set(metrics["truncation"]) == {"train", "validation", "test"}
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["model-index"][0]["results"][0]["dataset"]["split"] == "test"
    assert "On the `tt` test split (48 examples)" in card
    assert json.loads((out / "config.json").read_text())["greenlm"]["max_length"] < 32  # chosen from the rows

    evaluated = greenlm("eval", str(out), "--task", str(train_test_dir), "--json", "--no-progress", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    figures = json.loads(evaluated.stdout)
    assert figures["split"] == "test" and figures["examples"] == 48 and figures["truncation"]["truncated"] == 0
    assert "note: truncation: test: 0 of 48 rows" in evaluated.stderr

    timed = greenlm("bench", str(out), "--task", str(train_test_dir), "--runtimes", "torch-fp32", "--batch-sizes", "1,8",
                    "--rounds", "1", "--repeats", "1", "--latency-examples", "2", "--max-examples", "8", "--threads",
                    "1", "--no-energy", "--json", "-", cwd=tmp_path)
    assert timed.returncode == 0, timed.stderr
    assert json.loads(timed.stdout)["split"] == "test"  # no dev split: bench times the split the task reports on


def test_train_with_an_eval_split_the_task_lacks_writes_nothing(train_test_dir, tmp_path):
    out = tmp_path / "model"
    result = greenlm("train", "--task", str(train_test_dir), "--model", TINY, "--eval-split", "dev", "--out", str(out),
                     "--no-progress", cwd=tmp_path)
    line = one_error_line(result)
    assert "--eval-split dev" in line and "it can be evaluated on: test" in line
    assert not out.exists() and not (tmp_path / ".model.work").exists()


def test_train_with_too_small_a_validation_fraction_is_one_line(train_test_dir, tmp_path):
    result = greenlm("train", "--task", str(train_test_dir), "--model", TINY, "--validation-fraction", "0.005",
                     "--out", str(tmp_path / "m"), "--no-progress", cwd=tmp_path)
    assert "a label would have no validation row" in one_error_line(result)
    assert not (tmp_path / "m").exists()


def test_tasks_check_prints_what_greenlm_understood(train_test_dir, tmp_path):
    result = greenlm("tasks", "check", str(train_test_dir), "--model", TINY, "--max-length", "8", "--json",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["text_fields"] == ["text"] and summary["labels"] == ["neg", "pos"]
    assert summary["eval_split"] == "test"
    assert {name: s["rows"] for name, s in summary["splits"].items()} == {"train": 180, "validation": 20, "test": 48}
    assert sum(summary["splits"]["test"]["labels"].values()) == 48
    cut = summary["lengths"]["splits"]["train"]
    assert cut["max_length"] == 8 and 0 < cut["truncated"] < 180  # the toy rows have 5 to 15 tokens
    assert cut["covering_length"] > 8
    table = greenlm("tasks", "check", str(train_test_dir), "--model", TINY, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "figures are reported on: test" in table.stdout and "validation" in table.stdout
    bad = greenlm("tasks", "check", str(tmp_path / "missing"), cwd=tmp_path)
    assert "not found" in one_error_line(bad)


def test_tasks_still_lists_the_bundled_tasks(tmp_path):
    listed = greenlm("tasks", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "sst2" in [info["name"] for info in json.loads(listed.stdout)]
    table = greenlm("tasks", cwd=tmp_path)
    assert table.returncode == 0 and "Bundled tasks" in table.stdout


def test_run_on_train_and_test_names_test_in_log_and_report(train_test_dir, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "tt", "task": str(train_test_dir), "teacher": TINY, "measure": {"region": "USA"},
        "evaluation": {"speed_examples": 16, "latency_examples": 2, "repeats": 1},
        "stages": {"finetune": {"epochs": 1, "batch_size": 16, "max_length": 32}}}))
    bad = greenlm("run", str(recipe), "--eval-split", "dev", "--no-progress", cwd=tmp_path)
    assert "it can be evaluated on: test" in one_error_line(bad)
    assert not (tmp_path / "runs" / "tt").exists()  # refused before the run folder is made
    result = greenlm("run", str(recipe), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "tt"
    log = (run / "run.log").read_text()
    assert "figures are reported on 'test'" in log and "stage finetune: done" in log and "test accuracy" in log
    assert "note: truncation: test: 0 of 48 rows" in log
    report = json.loads((run / "report.json").read_text())
    assert report["eval_split"] == "test"
    assert json.loads((run / "measurements.json").read_text())["models"]["finetune"]["test"]["examples"] == 48
    markdown = (run / "report.md").read_text()
    assert "Accuracy on the tt test set" in markdown
    assert "**Truncation:** rows longer than 32 tokens, cut when read: train 0 of 180 rows (0.0%)" in markdown
    assert report["truncation"]["test"] == {"rows": 48, "truncated": 0, "share": 0.0, "max_length": 32}
    card = yaml.safe_load((run / "finetune" / "README.md").read_text().split("---")[1])
    assert card["model-index"][0]["results"][0]["dataset"]["split"] == "test"


# --- a test split costs one evaluation per model: the measuring pass's --------------------------------------


def test_stages_of_a_run_never_see_the_test_split(train_test_dir):
    from greenlm.data import measuring_pass_splits, stage_task
    from greenlm.pipeline.finetune_config import FinetuneStageConfig
    from greenlm.stage import stage_identity

    from conftest import toy_split

    write_split(train_test_dir / "dev.tsv", toy_split(40, 2))
    task = carve_validation(load_task(str(train_test_dir)), fraction=0.1)
    on_test = choose_eval_split(task, "test")
    seen = stage_task(task)
    assert sorted(seen.splits) == ["dev", "train", "validation"] and seen.eval_split == "dev"
    assert stage_task(on_test).fingerprint() == seen.fingerprint() and stage_task(on_test).eval_split == "dev"
    assert measuring_pass_splits(task) == ["dev", "test"] and measuring_pass_splits(on_test) == ["test"]
    (train_test_dir / "dev.tsv").unlink()  # train and test only: a stage's own figures are on validation
    no_dev = carve_validation(load_task(str(train_test_dir)), fraction=0.1)
    assert stage_task(no_dev).eval_split == "validation" and sorted(stage_task(no_dev).splits) == ["train", "validation"]

    # a stage's key holds the split it reports on only when that is not the task's default: stages of a run (which
    # see one task whatever it reports on) share their keys; a command on its own with --eval-split test does not
    config = FinetuneStageConfig(epochs=1)
    keys = {name: stage_identity("finetune", config, t, TINY) for name, t in
            (("dev", task), ("test", on_test), ("seen", seen), ("seen_test", stage_task(on_test)))}
    assert "eval_split" not in keys["dev"] and keys["test"]["eval_split"] == "test"
    assert keys["seen"] == keys["seen_test"]


def test_run_measures_test_once_per_model_and_reuses_stages_across_eval_splits(train_test_dir, tmp_path):
    from conftest import toy_split

    write_split(train_test_dir / "dev.tsv", toy_split(40, 2))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "tt", "task": str(train_test_dir), "teacher": TINY, "measure": {"region": "USA"},
        "evaluation": {"speed_examples": 16, "latency_examples": 2, "repeats": 1},
        "stages": {"finetune": {"epochs": 1, "batch_size": 16, "max_length": 32},
                   "early_exit": {"epochs": 1, "batch_size": 16, "measure_speed": False}}}, sort_keys=False))
    result = greenlm("run", str(recipe), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "tt"
    for stage in ("finetune", "early_exit"):  # the stages evaluated validation and dev, never test
        metrics = json.loads((run / stage / "metrics.json").read_text())
        assert metrics["eval_split"] == "dev" and sorted(metrics["splits"]) == ["dev", "validation"]
    measured = json.loads((run / "measurements.json").read_text())
    assert measured["eval_split"] == "dev" and measured["other_splits"] == ["test"]
    log = (run / "run.log").read_text()
    assert "inputs (and their accuracy on test)" in log and log.count(", test accuracy ") == 2
    assert "note: truncation: test: 0 of 48 rows" in log
    report = json.loads((run / "report.json").read_text())
    for row in report["rows"]:
        test = measured["models"][row["model"]]["test"]
        assert test["examples"] == 48 and row["other_splits"]["test"]["accuracy"] == test["accuracy"]
        assert row["examples"] == 40
    exits = next(r for r in report["rows"] if r["model"] == "early_exit")
    assert exits["flops_basis"] == "expected" and "exits" in measured["models"]["early_exit"]
    assert report["truncation"]["test"]["rows"] == 48
    assert "## Also measured: test" in (run / "report.md").read_text()
    assert 'id="other-splits"' in (run / "report.html").read_text()
    card = yaml.safe_load((run / "early_exit" / "README.md").read_text().split("---")[1])
    results = card["model-index"][0]["results"]
    assert [r["dataset"]["split"] for r in results] == ["validation", "test"]  # the Hub calls dev "validation"
    assert results[1]["metrics"][0]["value"] == round(measured["models"]["early_exit"]["test"]["accuracy"], 6)

    again = greenlm("run", str(recipe), "--eval-split", "test", "--resume", "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    log = (run / "run.log").read_text()
    assert "stage finetune: reused" in log and "stage early_exit: reused" in log
    measured = json.loads((run / "measurements.json").read_text())
    assert measured["eval_split"] == "test" and measured["other_splits"] == []
    report = json.loads((run / "report.json").read_text())
    assert report["eval_split"] == "test" and all(r["examples"] == 48 and not r["other_splits"] for r in report["rows"])
    assert "Accuracy on the tt test set" in (run / "report.md").read_text()
    card = (run / "finetune" / "README.md").read_text()
    assert yaml.safe_load(card.split("---")[1])["model-index"][0]["results"][0]["dataset"]["split"] == "test"
    assert "On the `" in card and "test split (48 examples)" in card


def test_a_command_on_its_own_reports_on_test_and_is_not_reused_for_another_split(train_test_dir, tmp_path):
    from conftest import toy_split

    write_split(train_test_dir / "dev.tsv", toy_split(40, 2))
    out = tmp_path / "model"
    args = ("train", "--task", str(train_test_dir), "--model", TINY, "--epochs", "1", "--batch-size", "16",
            "--max-length", "32", "--out", str(out), "--no-progress")
    result = greenlm(*args, "--eval-split", "test", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_split"] == "test" and sorted(metrics["splits"]) == ["dev", "test", "validation"]
    line = one_error_line(greenlm(*args, cwd=tmp_path))  # the same folder, reporting on dev: not the same stage
    assert "already holds a different run" in line and "eval_split" in line


def test_an_unmeasured_run_on_test_shows_no_dev_figure_as_test(tmp_path):
    """A run reporting on test that stopped before its measuring pass: its stages never saw test, so the rows have
    no accuracy (not the stages' dev accuracy under a test heading)."""
    from _report_runs import make_run

    from greenlm.report.rundata import load_run

    run = make_run(tmp_path, measured=False)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert load_run(run).report["eval_split"] == "dev" and load_run(run).rows[0]["accuracy"] is not None
    recipe["evaluation"]["split"] = "test"
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    data = load_run(run)
    assert data.report["eval_split"] == "test"
    assert all(row["report_status"] == "not measured" and row["accuracy"] is None for row in data.rows)
