"""The ListOps-style long-input task: seeded, labels are the expressions' values, lengths in range, bad settings."""

from __future__ import annotations

import pytest

from greenlm.common import GreenlmError
from greenlm.data.listops import ListOpsSpec, evaluate, generate, listops_task, parse_value


def test_operators():
    assert evaluate("MAX", [3, 9, 1]) == 9 and evaluate("MIN", [3, 9, 1]) == 1
    assert evaluate("MED", [3, 9, 1, 7]) == 3 and evaluate("MED", [3, 9, 1]) == 3
    assert evaluate("SM", [3, 9, 1]) == 3
    assert parse_value("[MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]") == 5


def test_generated_rows_are_seeded_in_range_and_correctly_labelled():
    spec = ListOpsSpec(min_length=60, max_length=200, max_depth=4, max_args=5)
    texts, labels = generate(40, spec, seed=3)
    assert (texts, labels) == generate(40, spec, seed=3)
    assert texts != generate(40, spec, seed=4)[0]
    assert all(60 <= len(t.split()) <= 200 for t in texts)
    assert [parse_value(t) for t in texts] == labels and set(labels) <= set(range(10))
    assert len(set(labels)) >= 4
    depth = max(max(t[:i].count("[") - t[:i].count("]") for i in range(len(t))) for t in texts)
    assert depth <= 4


def test_load_task_takes_the_spec():
    from greenlm.data.load import load_task

    task = load_task("listops:train=8,dev=4,min_length=20,max_length=40,seed=1")
    assert task.labels == tuple(str(d) for d in range(10)) and len(task.split("train")) == 8
    assert task.split("dev").text_a == listops_task(ListOpsSpec(train=8, dev=4, min_length=20, max_length=40,
                                                                seed=1)).split("dev").text_a


@pytest.mark.parametrize("text,message", [
    ("listops:train=0", "train must be a whole number >= 1"),
    ("listops:min_length=50,max_length=10", "min_length 50 is above max_length 10"),
    ("listops:size=3", "is not key=value with a key"),
])
def test_bad_settings(text, message):
    with pytest.raises(GreenlmError) as caught:
        ListOpsSpec.parse(text)
    assert message in str(caught.value)
