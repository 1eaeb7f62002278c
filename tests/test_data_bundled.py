"""The bundled tasks load with the row and label counts their READMEs state."""

from __future__ import annotations

import collections
import json
import time
from importlib.resources import files

import pytest

from greenlm.common import GreenlmError
from greenlm.data import (
    DEFAULT_TASK,
    Task,
    TaskSplit,
    bundled_task_names,
    describe_bundled_tasks,
    load_task,
)

# (split -> {label string: rows}) from /work/shared/data/*/README.md
EXPECTED = {
    "sst2": {"train": {"0": 29_780, "1": 37_569}, "dev": {"0": 428, "1": 444}},
    "rt_polarity": {
        "train": {"0": 4_265, "1": 4_265},
        "dev": {"0": 533, "1": 533},
        "test": {"0": 533, "1": 533},
    },
    "rte": {
        "train": {"entailment": 1_249, "not_entailment": 1_241},
        "dev": {"entailment": 146, "not_entailment": 131},
    },
}


def label_counts(task: Task, split: str) -> dict[str, int]:
    return dict(collections.Counter(task.labels[i] for i in task.split(split).labels))


def test_bundled_names_and_default():
    assert bundled_task_names() == ["rt_polarity", "rte", "sst2"]
    assert DEFAULT_TASK == "sst2"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_task_counts(name):
    task = load_task(name)
    expected = EXPECTED[name]
    assert sorted(task.splits) == sorted(expected)
    for split, counts in expected.items():
        assert len(task.split(split)) == sum(counts.values())
        assert label_counts(task, split) == counts
    assert task.skipped_rows == {}
    assert task.source == f"bundled:{name}"
    assert task.credit


def test_sst2_exact_rows_and_first_line():
    task = load_task("sst2")
    assert task.labels == ("0", "1")
    assert task.label_names == ("negative", "positive")
    assert task.text_fields == ("text",)
    assert task.num_labels == 2
    train = task.split("train")
    assert len(train) == 67_349 and len(task.split("dev")) == 872
    assert train.text_b is None
    # GLUE lines are kept byte for byte, trailing space included
    assert train.text_a[0] == "hide new secretions from the parental units "
    assert train.labels[0] == 0


def test_rte_is_a_pair_task_with_string_labels():
    task = load_task("rte")
    assert task.text_fields == ("text_a", "text_b")
    assert task.labels == ("entailment", "not_entailment")
    assert task.label_names is None
    dev = task.split("dev")
    assert dev.text_b is not None and len(dev.text_b) == len(dev.text_a) == 277
    assert all(a.strip() and b.strip() for a, b in zip(dev.text_a, dev.text_b))
    assert task.display_label(1) == "not_entailment"


def test_missing_split_names_the_available_ones():
    with pytest.raises(GreenlmError, match=r"no 'test' split; it has: train, dev"):
        load_task("sst2").split("test")


def test_loading_sst2_is_fast():
    load_task("rte")  # warm the imports
    start = time.perf_counter()
    load_task("sst2")
    assert time.perf_counter() - start < 2.0  # typically ~0.1 s; generous for a shared CI machine


def test_describe_bundled_tasks_matches_loaded_tasks():
    infos = {info.name: info for info in describe_bundled_tasks()}
    assert sorted(infos) == bundled_task_names()
    for name, expected in EXPECTED.items():
        info = infos[name]
        assert info.rows == {split: sum(c.values()) for split, c in expected.items()}
        assert set(info.labels) == set(next(iter(expected.values())))
        assert info.credit and info.description
        assert info.default == (name == "sst2")
    assert infos["rte"].text_fields == ("text_a", "text_b")
    as_dict = infos["sst2"].to_dict()
    assert json.loads(json.dumps(as_dict))["rows"] == {"train": 67_349, "dev": 872}
    assert as_dict["label_names"] == ["negative", "positive"]


def test_every_bundled_folder_has_readme_and_metadata():
    root = files("greenlm.data") / "bundled"
    for name in bundled_task_names():
        readme = (root / name / "README.md").read_text(encoding="utf-8")
        for word in ("License", "sha256", "train"):
            assert word in readme, (name, word)
        meta = json.loads((root / name / "task.json").read_text(encoding="utf-8"))
        assert meta["name"] == name
        assert {"text_fields", "label_field", "labels", "credit", "description"} <= set(meta)


def test_fingerprint_tracks_content():
    task = load_task("rte")
    again = load_task("rte")
    assert task.fingerprint() == again.fingerprint()
    dev = task.split("dev")
    assert dev.fingerprint() == again.split("dev").fingerprint()
    changed = TaskSplit(text_a=dev.text_a, text_b=dev.text_b, labels=[1 - y for y in dev.labels])
    assert changed.fingerprint() != dev.fingerprint()
    swapped = TaskSplit(text_a=dev.text_b, text_b=dev.text_a, labels=dev.labels)
    assert swapped.fingerprint() != dev.fingerprint()
    assert task.split("train").fingerprint() != dev.fingerprint()


def test_subset_is_deterministic_and_ordered():
    train = load_task("rt_polarity").split("train")
    a = train.subset(100, seed=3)
    b = train.subset(100, seed=3)
    c = train.subset(100, seed=4)
    assert len(a) == 100
    assert a.text_a == b.text_a and a.labels == b.labels
    assert a.text_a != c.text_a
    positions = [train.text_a.index(t) for t in a.text_a]
    assert positions == sorted(positions)  # original order kept
    assert [train.labels[p] for p in positions] == a.labels
    assert train.subset(len(train) + 5) is train
    with pytest.raises(GreenlmError, match="at least 1"):
        train.subset(0)


def test_task_split_checks_lengths():
    with pytest.raises(ValueError):
        TaskSplit(text_a=["a", "b"], text_b=None, labels=[0])
    with pytest.raises(ValueError):
        TaskSplit(text_a=["a"], text_b=["x", "y"], labels=[0])
