"""The data audit on a small task with planted problems: duplicates, near duplicates, conflicting labels,
train/dev overlap, non-text and other-script rows, label balance, token lengths and truncation."""

from __future__ import annotations

import json
import sys

import pytest

from greenlm.common import GreenlmError
from greenlm.data import Task, TaskSplit
from greenlm.data.audit import audit_lines, audit_task, normalise, row_script

TRAIN = [
    ("a fine film", 1),
    ("a fine film", 1),  # exact duplicate of row 0
    ("A fine film!", 1),  # near duplicate of row 0 (case, punctuation)
    ("dull and long", 0),
    ("Dull, and   long.", 1),  # near duplicate of row 3 with the other label: a conflict
    ("...", 0),  # no letter: non-text
    ("очень скучный фильм", 0),  # Cyrillic
    ("great acting", 1),
    ("weak plot", 0),
    ("good story", 1),
]
DEV = [
    ("great acting", 1),  # exactly in train
    ("Weak plot!", 1),  # in train after normalisation, with another label there
    ("a new sentence", 0),
    ("another one", 0),
]


def planted() -> Task:
    def split(rows):
        return TaskSplit(text_a=[t for t, _ in rows], text_b=None, labels=[y for _, y in rows])

    return Task(name="planted", labels=("neg", "pos"), text_fields=("text",), credit="tests",
                splits={"train": split(TRAIN), "dev": split(DEV)}, skipped_rows={"train": 2})


def test_normalisation_and_scripts_follow_the_stated_rules():
    assert normalise("  Dull, and   long. ") == "dull and long"
    assert normalise("It's GREAT!") == normalise("it s great")
    assert normalise("ＦＵＬＬ width") == "full width"  # NFKC
    assert row_script("очень скучный фильм") == "Cyrillic"
    assert row_script("a film, 映画 映画 映画") == "Han"  # the majority of the letters
    assert row_script("καλή ταινία") == "Greek" and row_script("café") == "Latin" and row_script("123 ...") is None


def test_the_audit_finds_what_was_planted():
    report = audit_task(planted(), examples=5)
    train, dev = report["splits"]["train"], report["splits"]["dev"]
    assert train["rows"] == 10 and train["empty_rows_skipped"] == 2
    assert train["exact_duplicates"]["rows"] == 1 and train["exact_duplicates"]["groups"] == 1
    assert train["exact_duplicates"]["examples"][0]["rows"] == [0, 1]
    assert train["near_duplicates"]["rows"] == 2 and train["near_duplicates"]["groups"] == 2  # rows 2 and 4
    assert train["conflicting_labels"]["groups"] == 1 and train["conflicting_labels"]["rows"] == 2
    assert train["conflicting_labels"]["examples"][0]["labels"] == {"neg": 1, "pos": 1}
    assert train["non_text_rows"]["rows"] == 1 and train["non_text_rows"]["examples"][0]["row"] == 5
    assert train["scripts"]["main"] == "Latin" and train["scripts"]["other_script_rows"] == 1
    assert train["scripts"]["examples"][0] == {"row": 6, "script": "Cyrillic", "text": "очень скучный фильм"}
    assert train["labels"]["counts"] == {"neg": 4, "pos": 6} and train["labels"]["majority_share"] == 0.6
    assert train["labels"]["imbalance_ratio"] == 1.5
    contamination = report["contamination"]["dev"]
    assert contamination["exact_rows"] == 1 and contamination["near_rows"] == 2 and contamination["share"] == 0.5
    assert contamination["different_label_rows"] == 1
    assert dev["exact_duplicates"]["rows"] == 0 and "tokens" not in dev
    text = "\n".join(audit_lines(report))
    assert "contamination dev vs train: 2 of 4 rows (50.00%)" in text and "give --model" in text


def test_token_lengths_and_truncation_with_a_tokenizer():
    from conftest import make_toy_task
    from greenlm.models import TinySpec, build_tiny_classifier

    task = make_toy_task(64, 16)
    _, tokenizer = build_tiny_classifier(TinySpec(layers=1, hidden=16, heads=2, ffn=16, vocab=99), list(task.labels),
                                         task.split("train").text_a)
    report = audit_task(task, tokenizer=tokenizer, max_length=8)
    tokens = report["splits"]["train"]["tokens"]
    from greenlm.data import encode_split

    full = encode_split(task.split("train"), tokenizer, 64).lengths()  # the toy rows are at most 15 tokens
    assert tokens["max"] == max(full) and tokens["min"] == min(full)
    assert tokens["truncated_rows"] == sum(1 for n in full if n > 8) and tokens["truncated_count_is_exact"]
    assert tokens["p50"] == sorted(full)[31]  # nearest rank: the 32nd of 64


def test_an_empty_split_is_bad_input():
    task = planted()
    task.splits["dev"] = TaskSplit(text_a=[], text_b=None, labels=[])
    with pytest.raises(GreenlmError, match="split 'dev' of task 'planted' has no rows"):
        audit_task(task)


def test_the_command_prints_json(toy_task_dir, monkeypatch, capsys):
    from greenlm.cli.main import main

    monkeypatch.setattr(sys, "argv", ["greenlm", "data", "audit", "--task", str(toy_task_dir), "--json"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert (exit_.value.code or 0) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["train"]["rows"] == 256 and "contamination" in report and report["rules"]["near_duplicate"]
    monkeypatch.setattr(sys, "argv", ["greenlm", "data", "audit", "--task", str(toy_task_dir), "--max-length", "16"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "needs a tokenizer" in err
