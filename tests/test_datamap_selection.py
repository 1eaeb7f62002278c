"""train_selection: the syntax, the sizes, the order of each region, mixes, determinism, and the settings' checks."""

from __future__ import annotations

import numpy as np
import pytest

from greenlm.common import GreenlmError
from greenlm.datamap import map_from_logits, parse_selection, select_rows
from greenlm.datamap.spec import SelectionPart
from greenlm.pipeline.finetune_config import FinetuneStageConfig


def toy_map(n: int = 300, points: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(points, n, 2)) * rng.uniform(0.1, 3, size=(1, n, 1)) + rng.normal(size=(1, n, 2))
    return map_from_logits(list(range(100, 100 + n)), rng.integers(0, 2, size=n), logits)


@pytest.mark.parametrize("spec, parts", [
    ("ambiguous:0.33", [("ambiguous", 0.33)]),
    ("hard:0.25", [("hard", 0.25)]),
    ("easy:0.5", [("easy", 0.5)]),
    ("random:0.33", [("random", 0.33)]),
    ("ambiguous:0.2+easy:0.1", [("ambiguous", 0.2), ("easy", 0.1)]),
    (" Hard:1 ", [("hard", 1.0)]),
])
def test_specs_parse(spec, parts):
    assert [(p.region, p.fraction) for p in parse_selection(spec)] == parts


@pytest.mark.parametrize("spec, message", [
    ("ambiguous:1.5", r"outside \(0, 1\]"),
    ("hard:0", r"outside \(0, 1\]"),
    ("easy:-0.1", r"outside \(0, 1\]"),
    ("easy:nan", r"outside \(0, 1\]"),
    ("ambiguous", "needs REGION:FRACTION"),
    ("medium:0.3", "not one of ambiguous, hard, easy, random"),
    ("easy:lots", "is not a number"),
    ("easy:0.6+hard:0.5", "adds up to 1.1"),
    ("easy:0.1+easy:0.2", "names easy twice"),
    ("", "is empty"),
])
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(GreenlmError, match=message) as err:
        parse_selection(spec)
    assert "\n" not in str(err.value)


def test_each_region_takes_its_end_of_the_ranking():
    data_map = toy_map()
    guid_pos = {g: i for i, g in enumerate(data_map.guids)}
    for region, key, highest in (("ambiguous", data_map.variability, True), ("easy", data_map.confidence, True),
                                 ("hard", data_map.confidence, False)):
        chosen = select_rows((SelectionPart(region, 0.33),), data_map=data_map, n_rows=0, seed=1)
        assert len(chosen.rows) == 99 == chosen.parts[0]["rows"]  # round(0.33 * 300)
        picked = np.array([key[guid_pos[g]] for g in chosen.rows])
        rest = np.delete(key, [guid_pos[g] for g in chosen.rows])
        assert (picked.min() >= rest.max()) if highest else (picked.max() <= rest.min())
        assert chosen.rows == sorted(chosen.rows) and all(g >= 100 for g in chosen.rows)  # guids, in row order


def test_a_mix_takes_its_parts_in_order_without_overlap():
    data_map = toy_map()
    amb = select_rows(parse_selection("ambiguous:0.2"), data_map=data_map, n_rows=0, seed=0).rows
    mix = select_rows(parse_selection("ambiguous:0.2+easy:0.1"), data_map=data_map, n_rows=0, seed=0)
    assert [p["rows"] for p in mix.parts] == [60, 30] and len(mix.rows) == 90
    assert set(amb) <= set(mix.rows)
    easy_first = select_rows(parse_selection("easy:0.1+ambiguous:0.2"), data_map=data_map, n_rows=0, seed=0)
    assert len(easy_first.rows) == 90  # the same sizes whichever part comes first
    whole = select_rows(parse_selection("ambiguous:0.5+hard:0.3+random:0.2"), data_map=data_map, n_rows=0, seed=0)
    assert len(whole.rows) == 300 == len(set(whole.rows))  # the parts add up to every row, none twice


def test_random_is_seeded_and_needs_no_map():
    a = select_rows(parse_selection("random:0.33"), data_map=None, n_rows=1000, seed=7)
    b = select_rows(parse_selection("random:0.33"), data_map=None, n_rows=1000, seed=7)
    c = select_rows(parse_selection("random:0.33"), data_map=None, n_rows=1000, seed=8)
    assert a.rows == b.rows != c.rows and len(a.rows) == 330 and a.available == 1000
    assert a.rows_sha256() == b.rows_sha256()
    with pytest.raises(GreenlmError, match="give selection_map"):
        select_rows(parse_selection("hard:0.3"), data_map=None, n_rows=1000, seed=7)


def test_the_settings_check_the_selection():
    FinetuneStageConfig(train_selection="random:0.5")  # no map needed
    FinetuneStageConfig(train_selection="hard:0.25", selection_map="runs/teacher")
    with pytest.raises(GreenlmError, match=r"outside \(0, 1\]"):
        FinetuneStageConfig(train_selection="hard:2", selection_map="runs/teacher")
    with pytest.raises(GreenlmError, match="set selection_map"):
        FinetuneStageConfig(train_selection="hard:0.25")
    with pytest.raises(GreenlmError, match="selection_map is set but train_selection is not"):
        FinetuneStageConfig(selection_map="runs/teacher")
    with pytest.raises(GreenlmError, match="cannot be combined"):
        FinetuneStageConfig(train_selection="random:0.5", train_subset=100)
