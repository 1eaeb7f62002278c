"""Data-map measures against a hand computation, the jsonl format, regions, and bad dynamics files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from greenlm.common import GreenlmError
from greenlm.data import Task, TaskSplit
from greenlm.datamap import (check_against_task, compute_map, read_dynamics, region_labels, write_point,
                             written_points)

# Gold-label probabilities per row at 3 record points (2 labels, logits [0, log(p1 / p0)]):
P_GOLD = {0: (0.5, 0.75, 0.9), 1: (0.2, 0.2, 0.2), 2: (0.6, 0.3, 0.8)}
GOLD = {0: 1, 1: 0, 2: 0}


def logits_for(p_gold: float, gold: int) -> list[float]:
    p1 = p_gold if gold == 1 else 1 - p_gold
    return [0.0, math.log(p1 / (1 - p1))]


def write_fixture(folder, points: int = 3, shuffle: bool = True, guids=(0, 1, 2)) -> None:
    """cartography's layout: training_dynamics/dynamics_epoch_<k>.jsonl, rows in a different order in each file
    (the reference code writes them in the training order of the epoch)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(points):
        order = list(guids)[::-1] if shuffle and k % 2 else list(guids)
        lines = [json.dumps({"guid": g, f"logits_epoch_{k}": logits_for(P_GOLD[g % 3][k], GOLD[g % 3]),
                             "gold": GOLD[g % 3]}) for g in order]
        (folder / f"dynamics_epoch_{k}.jsonl").write_text("\n".join(lines) + "\n")


def test_measures_equal_a_hand_computation(tmp_path):
    write_fixture(tmp_path / "training_dynamics")
    dynamics = read_dynamics(tmp_path)  # a model folder holding training_dynamics/
    assert dynamics.points == 3 and dynamics.guids == [0, 1, 2]
    data_map = compute_map(dynamics)
    # row 0: p = 0.5, 0.75, 0.9
    c0 = (0.5 + 0.75 + 0.9) / 3
    v0 = math.sqrt(((0.5 - c0) ** 2 + (0.75 - c0) ** 2 + (0.9 - c0) ** 2) / 3)  # population std: divide by K
    # row 2: p = 0.6, 0.3, 0.8
    c2 = (0.6 + 0.3 + 0.8) / 3
    v2 = math.sqrt(((0.6 - c2) ** 2 + (0.3 - c2) ** 2 + (0.8 - c2) ** 2) / 3)
    assert data_map.confidence == pytest.approx([c0, 0.2, c2], abs=1e-6)
    assert data_map.variability == pytest.approx([v0, 0.0, v2], abs=1e-6)
    assert v0 == pytest.approx(0.1649916, abs=1e-6) and v2 == pytest.approx(0.2054805, abs=1e-6)
    assert v0 != pytest.approx(float(np.std([0.5, 0.75, 0.9], ddof=1)), abs=1e-3)  # not the sample std
    # correctness, a fraction of the 3 points: row 0 ties at p=0.5 (argmax takes label 0, wrong), then right twice;
    # row 1 never right (p=0.2); row 2 right at 0.6 and 0.8, wrong at 0.3
    assert data_map.correctness == pytest.approx([2 / 3, 0.0, 2 / 3])
    assert data_map.train_accuracy() == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    # regions: round(0.33 * 3) = 1 row each; ambiguous = highest variability, then lowest / highest confidence
    assert region_labels(data_map) == ["easy-to-learn", "hard-to-learn", "ambiguous"]


def test_the_writer_round_trips_and_the_folder_holds_only_point_files(tmp_path):
    folder = tmp_path / "training_dynamics"
    for k in range(2):
        write_point(folder, k, [5, 3], [[0.25, -1.5], [2.0, 0.125]], [0, 1])
    assert sorted(p.name for p in folder.iterdir()) == ["dynamics_epoch_0.jsonl", "dynamics_epoch_1.jsonl"]
    line = json.loads((folder / "dynamics_epoch_1.jsonl").read_text().splitlines()[0])
    assert line == {"guid": 5, "logits_epoch_1": [0.25, -1.5], "gold": 0}  # cartography's keys
    dynamics = read_dynamics(folder)  # the training_dynamics folder itself
    assert dynamics.guids == [3, 5] and dynamics.gold.tolist() == [1, 0]  # sorted by guid
    assert dynamics.logits[1].tolist() == [[2.0, 0.125], [0.25, -1.5]]
    assert written_points(folder) == [0, 1]


def test_one_record_point_is_refused(tmp_path):
    write_fixture(tmp_path, points=1)
    with pytest.raises(GreenlmError, match="1 record point; a data map needs at least 2 .*variability.* undefined"):
        compute_map(read_dynamics(tmp_path))


@pytest.mark.parametrize("damage, message", [
    ("gap", "lack record point"),
    ("other_guid", "not in dynamics_epoch_0.jsonl"),
    ("missing_row", "lacks 1 of the 3 guids"),
    ("gold_changes", "has gold 1, but 0"),
    ("not_json", "not a training-dynamics line"),
])
def test_inconsistent_files_are_bad_input(tmp_path, damage, message):
    write_fixture(tmp_path)
    path = tmp_path / "dynamics_epoch_1.jsonl"
    lines = path.read_text().splitlines()
    if damage == "gap":
        path.unlink()
    elif damage == "other_guid":
        lines[0] = lines[0].replace('"guid": 2', '"guid": 7')
    elif damage == "missing_row":
        lines = lines[:2]
    elif damage == "gold_changes":
        record = json.loads(lines[1])
        lines[1] = json.dumps({**record, "gold": 1 - record["gold"]})
    else:
        lines[0] = "{oops"
    if path.exists():
        path.write_text("\n".join(lines) + "\n")
    with pytest.raises(GreenlmError, match=message):
        read_dynamics(tmp_path)


def _task(labels: list[int]) -> Task:
    split = TaskSplit(text_a=[f"row {i}" for i in range(len(labels))], text_b=None, labels=labels)
    return Task(name="t", labels=("a", "b"), text_fields=("text",), splits={"train": split, "dev": split}, credit="")


def test_guid_and_label_mismatches(tmp_path):
    write_fixture(tmp_path)
    dynamics = read_dynamics(tmp_path)
    check_against_task(dynamics, _task([1, 0, 0]))  # matches: golds 1, 0, 0
    with pytest.raises(GreenlmError, match="guid 2 is outside its 2 training rows"):
        check_against_task(dynamics, _task([1, 0]))
    with pytest.raises(GreenlmError, match="1 row\\(s\\) have another gold label"):
        check_against_task(dynamics, _task([1, 1, 0]))
    dynamics.meta = {"train_fingerprint": "0" * 64}
    with pytest.raises(GreenlmError, match="recorded on other training rows"):
        check_against_task(dynamics, _task([1, 0, 0]))


@pytest.mark.parametrize("with_matplotlib", [True, False])
def test_map_files_with_and_without_matplotlib(tmp_path, monkeypatch, with_matplotlib):
    from greenlm.pipeline.datamap_files import write_datamap

    if not with_matplotlib:
        monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # how tests hide an optional package
    write_fixture(tmp_path / "model" / "training_dynamics")
    summary = write_datamap(tmp_path / "model", task=_task([1, 0, 0]), top=2)
    out = tmp_path / "model-datamap"  # beside the model folder, not inside it
    assert summary["out"] == str(out) and summary["regions"] == {"ambiguous": 1, "hard-to-learn": 1,
                                                                  "easy-to-learn": 1, "other": 0}
    assert (out / "datamap.csv").read_text().splitlines()[1].startswith("0,b,easy-to-learn,")
    assert len((out / "most_ambiguous.csv").read_text().splitlines()) == 3
    html = (out / "datamap.html").read_text()
    assert (out / "datamap_scatter.png").is_file() == with_matplotlib
    assert ("matplotlib is not installed" in html) != with_matplotlib
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("mine")
    with pytest.raises(GreenlmError, match="is not a data map folder"):
        write_datamap(tmp_path / "model", tmp_path / "elsewhere", task=_task([1, 0, 0]))
