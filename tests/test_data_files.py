"""Local tasks: folders and task files in TSV, CSV and JSON lines, and every kind of bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from greenlm.common import GreenlmError
from greenlm.data import load_task


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def tsv_task(folder: Path, train: str, dev: str, test: str | None = None) -> Path:
    write(folder / "train.tsv", train)
    write(folder / "dev.tsv", dev)
    if test is not None:
        write(folder / "test.tsv", test)
    return folder


GOOD_TRAIN = "text\tlabel\ngood film\tpos\nbad film\tneg\nfine film\tpos\n"
GOOD_DEV = "text\tlabel\nlovely\tpos\nawful\tneg\n"


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# --- formats ---------------------------------------------------------------------------------


def test_tsv_folder_with_test_split(tmp_path):
    folder = tsv_task(tmp_path / "mine", GOOD_TRAIN, GOOD_DEV, "text\tlabel\nmeh\tneg\n")
    task = load_task(str(folder))
    assert task.name == "mine"
    assert task.labels == ("neg", "pos")  # inferred from train, sorted
    assert task.text_fields == ("text",)
    assert task.split("train").text_a == ["good film", "bad film", "fine film"]
    assert task.split("train").labels == [1, 0, 1]
    assert task.split("dev").labels == [1, 0]
    assert task.split("test").labels == [0]
    assert task.source == str(folder)


def test_tsv_keeps_quotes_as_data(tmp_path):
    folder = tsv_task(tmp_path / "q", 'text\tlabel\n"so-called" hit, sadly\t0\nok\t1\n', "text\tlabel\nx\t1\n")
    assert load_task(str(folder)).split("train").text_a[0] == '"so-called" hit, sadly'


def test_csv_with_quoted_commas_and_newlines(tmp_path):
    write(tmp_path / "c" / "train.csv", 'text,label\n"good, really good",pos\n"bad\nvery bad",neg\nplain,pos\n')
    write(tmp_path / "c" / "dev.csv", 'text,label\n"fine, fine",pos\n')
    task = load_task(str(tmp_path / "c"))
    assert task.split("train").text_a == ["good, really good", "bad\nvery bad", "plain"]
    assert task.split("train").labels == [1, 0, 1]
    assert task.split("dev").text_a == ["fine, fine"]


def test_csv_line_numbers_count_physical_lines(tmp_path):
    write(tmp_path / "c" / "train.csv", 'text,label\n"two\nlines",pos\nok,neg\n"",pos\n')
    write(tmp_path / "c" / "dev.csv", "text,label\nx,pos\n")
    with pytest.raises(GreenlmError, match=r"train\.csv:5: empty text"):
        load_task(str(tmp_path / "c"), on_empty="error")


def test_jsonl_with_numeric_labels(tmp_path):
    rows = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}, {"text": "fine", "label": 1}]
    write(tmp_path / "j" / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    write(tmp_path / "j" / "dev.jsonl", json.dumps({"text": "meh", "label": 0, "extra": [1, 2]}) + "\n")
    task = load_task(str(tmp_path / "j"))
    assert task.labels == ("0", "1")
    assert task.split("train").labels == [1, 0, 1]
    assert task.split("dev").text_a == ["meh"]


def test_gzip_files_and_validation_name(tmp_path):
    write(tmp_path / "g" / "train.tsv.gz", gzip.compress(GOOD_TRAIN.encode()))
    write(tmp_path / "g" / "validation.tsv", GOOD_DEV)
    task = load_task(str(tmp_path / "g"))
    assert len(task.split("train")) == 3 and len(task.split("dev")) == 2


def test_windows_line_endings_and_bom(tmp_path):
    folder = tsv_task(tmp_path / "w", "\ufefftext\tlabel\r\ngood\tpos\r\nbad\tneg\r\n", "text\tlabel\r\nok\tpos\r\n")
    task = load_task(str(folder))
    assert task.split("train").text_a == ["good", "bad"]
    assert task.labels == ("neg", "pos")


# --- columns and labels ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, expected",
    [
        ("text_a\ttext_b", ("text_a", "text_b")),
        ("sentence1\tsentence2", ("sentence1", "sentence2")),
        ("sentence", ("sentence",)),
    ],
)
def test_text_columns_are_detected(tmp_path, header, expected):
    width = len(expected)
    row = "\t".join(["w"] * width)
    folder = tsv_task(tmp_path / "d", f"{header}\tlabel\n{row}\t0\n{row}\t1\n", f"{header}\tlabel\n{row}\t1\n")
    task = load_task(str(folder))
    assert task.text_fields == expected
    assert (task.split("train").text_b is not None) == (width == 2)


def test_pair_task_from_folder(tmp_path):
    folder = tsv_task(
        tmp_path / "p",
        "idx\tsentence1\tsentence2\tlabel\n0\tA man sleeps.\tA person rests.\tentailment\n"
        "1\tIt rains.\tIt is dry.\tnot_entailment\n",
        "idx\tsentence1\tsentence2\tlabel\n0\tx\ty\tentailment\n",
    )
    task = load_task(str(folder))
    train = task.split("train")
    assert train.text_a == ["A man sleeps.", "It rains."]
    assert train.text_b == ["A person rests.", "It is dry."]
    assert task.labels == ("entailment", "not_entailment")


def test_named_columns_and_given_labels(tmp_path):
    folder = tsv_task(
        tmp_path / "n",
        "review\tstars\tid\nnice\tgood\t1\nugly\tbad\t2\n",
        "review\tstars\tid\nok\tgood\t3\n",
    )
    task = load_task(str(folder), text_fields=["review"], label_field="stars", labels=["good", "bad"])
    assert task.labels == ("good", "bad")  # the given order is kept
    assert task.split("train").labels == [0, 1]


def test_numeric_labels_sort_numerically(tmp_path):
    train = "text\tlabel\n" + "".join(f"t{i}\t{label}\n" for i, label in enumerate(["10", "2", "1", "2"]))
    folder = tsv_task(tmp_path / "n", train, "text\tlabel\nx\t10\n")
    task = load_task(str(folder))
    assert task.labels == ("1", "2", "10")
    assert task.split("train").labels == [2, 1, 0, 1]


def test_given_labels_may_include_labels_missing_from_train(tmp_path):
    folder = tsv_task(tmp_path / "m", GOOD_TRAIN, "text\tlabel\nso so\tneutral\n")
    task = load_task(str(folder), labels=["neg", "neutral", "pos"])
    assert task.split("dev").labels == [1]


def test_task_file_yaml_with_relative_paths(tmp_path):
    write(tmp_path / "data" / "tr.csv", "premise,hypothesis,gold\na,b,yes\nc,d,no\n")
    write(tmp_path / "data" / "dv.csv", "premise,hypothesis,gold\ne,f,yes\n")
    write(
        tmp_path / "task.yaml",
        "name: nli\ntrain: data/tr.csv\ndev: data/dv.csv\ntext_fields: [premise, hypothesis]\n"
        "label_field: gold\nlabels: [no, yes]\ncredit: made up\n",
    )
    task = load_task(str(tmp_path / "task.yaml"))
    assert task.name == "nli"
    assert task.text_fields == ("premise", "hypothesis")
    assert task.labels == ("no", "yes")  # plain YAML scalars stay strings (not booleans)
    assert task.split("train").labels == [1, 0]
    assert task.credit == "made up"


def test_task_file_labels_keep_leading_zeros(tmp_path):
    write(tmp_path / "train.tsv", "text\tlabel\na\t01\nb\t02\n")
    write(tmp_path / "dev.tsv", "text\tlabel\nc\t02\n")
    write(tmp_path / "t.yml", "train: train.tsv\ndev: dev.tsv\nlabels: [01, 02]\ntest: ~\n")
    task = load_task(str(tmp_path / "t.yml"))
    assert task.labels == ("01", "02") and sorted(task.splits) == ["dev", "train"]


def test_task_file_json_and_argument_override(tmp_path):
    write(tmp_path / "d" / "train.tsv", "a\tb\tlabel\nx\ty\t0\nz\tw\t1\n")
    write(tmp_path / "d" / "dev.tsv", "a\tb\tlabel\nq\tr\t1\n")
    write(tmp_path / "t.json", json.dumps({"train": "d/train.tsv", "dev": "d/dev.tsv", "text_fields": ["a", "b"]}))
    assert load_task(str(tmp_path / "t.json")).text_fields == ("a", "b")
    assert load_task(str(tmp_path / "t.json"), text_fields=["b"]).split("train").text_a == ["y", "w"]


# --- bad input: each a GreenlmError with one clear line --------------------------------------


def test_missing_folder_or_file(tmp_path):
    with pytest.raises(GreenlmError, match="not found") as err:
        load_task(str(tmp_path / "nope" / "task.yaml"))
    assert str(tmp_path / "nope" / "task.yaml") in one_line(err)
    with pytest.raises(GreenlmError, match=r"file or folder not found: data/train\.tsv"):
        load_task("data/train.tsv")


def test_folder_with_train_only(tmp_path):
    write(tmp_path / "f" / "train.tsv", GOOD_TRAIN)
    with pytest.raises(GreenlmError, match=r"no dev or test file beside train\.tsv; add dev\.tsv .* or test\.tsv"
                       r".*docs/tasks\.md") as err:
        load_task(str(tmp_path / "f"))
    assert str(tmp_path / "f") in one_line(err)


def test_task_file_naming_a_missing_data_file(tmp_path):
    write(tmp_path / "t.yaml", "train: train.tsv\ndev: missing.tsv\n")
    write(tmp_path / "train.tsv", GOOD_TRAIN)
    with pytest.raises(GreenlmError, match=r"file not found: .*missing\.tsv"):
        load_task(str(tmp_path / "t.yaml"))


def test_task_file_unknown_key_suggests_closest(tmp_path):
    write(tmp_path / "t.yaml", "train: a.tsv\ndev: b.tsv\nlabel_feild: x\n")
    with pytest.raises(GreenlmError, match=r"unknown key 'label_feild'; did you mean 'label_field'\?"):
        load_task(str(tmp_path / "t.yaml"))


def test_two_files_for_one_split(tmp_path):
    folder = tsv_task(tmp_path / "two", GOOD_TRAIN, GOOD_DEV)
    write(folder / "train.csv", "text,label\na,pos\n")
    with pytest.raises(GreenlmError, match=r"more than one train file \(train\.tsv, train\.csv\)"):
        load_task(str(folder))


def test_missing_text_column_names_found_columns(tmp_path):
    folder = tsv_task(tmp_path / "c", "review\tlabel\nx\t0\n", "review\tlabel\ny\t1\n")
    with pytest.raises(GreenlmError, match=r"no text column found among the columns review, label") as err:
        load_task(str(folder))
    one_line(err)
    with pytest.raises(GreenlmError, match=r"train\.tsv: no text column 'body'; columns found: review, label"):
        load_task(str(folder), text_fields=["body"])


def test_missing_label_column(tmp_path):
    folder = tsv_task(tmp_path / "c", "text\tstars\nx\t0\ny\t1\n", "text\tstars\nz\t1\n")
    with pytest.raises(GreenlmError, match=r"no label column 'label'; columns found: text, stars"):
        load_task(str(folder))
    assert load_task(str(folder), label_field="stars").labels == ("0", "1")


def test_dev_lacking_a_column_train_has(tmp_path):
    folder = tsv_task(tmp_path / "c", GOOD_TRAIN, "sentence\tlabel\nx\tpos\n")
    with pytest.raises(GreenlmError, match=r"dev\.tsv: no text column 'text'; columns found: sentence, label"):
        load_task(str(folder))


def test_wrong_number_of_fields_in_a_row(tmp_path):
    folder = tsv_task(tmp_path / "c", "text\tlabel\nok\t1\nhas\ta tab\t0\n", GOOD_DEV)
    with pytest.raises(GreenlmError, match=r"train\.tsv:3: 3 tab-separated fields but the header has 2"):
        load_task(str(folder))


def test_empty_file(tmp_path):
    folder = tsv_task(tmp_path / "e", "", GOOD_DEV)
    with pytest.raises(GreenlmError, match=r"train\.tsv is empty"):
        load_task(str(folder))


def test_header_only_file(tmp_path):
    folder = tsv_task(tmp_path / "e", GOOD_TRAIN, "text\tlabel\n")
    with pytest.raises(GreenlmError, match=r"dev\.tsv has no rows"):
        load_task(str(folder))


def test_empty_text_rows_are_skipped_and_counted(tmp_path):
    folder = tsv_task(tmp_path / "s", "text\tlabel\ngood\tpos\n \tneg\nbad\tneg\n\tpos\n", "text\tlabel\nok\tpos\n")
    task = load_task(str(folder))
    assert task.split("train").text_a == ["good", "bad"]
    assert task.split("train").labels == [1, 0]
    assert task.skipped_rows == {"train": 2}


def test_empty_text_rows_refused_with_line_number(tmp_path):
    folder = tsv_task(tmp_path / "s", "text\tlabel\ngood\tpos\nbad\tneg\n  \tneg\n", GOOD_DEV)
    with pytest.raises(GreenlmError, match=r"train\.tsv:4: empty text") as err:
        load_task(str(folder), on_empty="error")
    one_line(err)


def test_empty_second_text_of_a_pair_counts_as_empty(tmp_path):
    folder = tsv_task(tmp_path / "s", "text_a\ttext_b\tlabel\na\tb\t0\nc\t\t1\nd\te\t1\n", "text_a\ttext_b\tlabel\nx\ty\t0\n")
    assert load_task(str(folder)).skipped_rows == {"train": 1}


def test_all_rows_empty(tmp_path):
    folder = tsv_task(tmp_path / "s", "text\tlabel\n \t0\n\t1\n", GOOD_DEV)
    with pytest.raises(GreenlmError, match="all 2 rows have an empty text"):
        load_task(str(folder))


def test_bad_on_empty_value(tmp_path):
    folder = tsv_task(tmp_path / "s", GOOD_TRAIN, GOOD_DEV)
    with pytest.raises(GreenlmError, match="on_empty must be 'skip' or 'error'"):
        load_task(str(folder), on_empty="drop")


def test_dev_label_unknown_to_train(tmp_path):
    folder = tsv_task(tmp_path / "u", GOOD_TRAIN, "text\tlabel\nok\tpos\nhm\tneutral\n")
    with pytest.raises(GreenlmError, match=r"dev\.tsv:3: label 'neutral' does not occur in train \(train labels: neg, pos\)") as err:
        load_task(str(folder))
    one_line(err)


def test_train_label_outside_given_labels(tmp_path):
    folder = tsv_task(tmp_path / "u", GOOD_TRAIN, GOOD_DEV)
    with pytest.raises(GreenlmError, match=r"train\.tsv:3: label 'neg' is not in the task's label set \(pos, other\)"):
        load_task(str(folder), labels=["pos", "other"])


def test_empty_label(tmp_path):
    folder = tsv_task(tmp_path / "u", "text\tlabel\na\tpos\nb\t \nc\tneg\n", GOOD_DEV)
    with pytest.raises(GreenlmError, match=r"train\.tsv:3: empty label"):
        load_task(str(folder))


def test_single_label_train(tmp_path):
    folder = tsv_task(tmp_path / "u", "text\tlabel\na\tpos\nb\tpos\n", GOOD_DEV)
    with pytest.raises(GreenlmError, match="every row has the label 'pos'"):
        load_task(str(folder))


def test_non_utf8_bytes_name_file_and_line(tmp_path):
    folder = tsv_task(tmp_path / "b", GOOD_TRAIN, GOOD_DEV)
    write(folder / "dev.tsv", b"text\tlabel\nfine\tpos\ncaf\xe9 cr\xe8me\tneg\n")
    with pytest.raises(GreenlmError, match=r"dev\.tsv:3: not valid UTF-8 \(byte 0xe9\)") as err:
        load_task(str(folder))
    one_line(err)


def test_malformed_json_line(tmp_path):
    write(tmp_path / "j" / "train.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n{"text": "c", label: 1}\n')
    write(tmp_path / "j" / "dev.jsonl", '{"text": "d", "label": 0}\n')
    with pytest.raises(GreenlmError, match=r"train\.jsonl:3: not valid JSON") as err:
        load_task(str(tmp_path / "j"))
    one_line(err)


def test_json_line_that_is_not_an_object(tmp_path):
    write(tmp_path / "j" / "train.jsonl", '{"text": "a", "label": 0}\n["b", 1]\n')
    write(tmp_path / "j" / "dev.jsonl", '{"text": "d", "label": 0}\n')
    with pytest.raises(GreenlmError, match=r"train\.jsonl:2: expected a JSON object"):
        load_task(str(tmp_path / "j"))


def test_json_row_missing_a_key(tmp_path):
    write(tmp_path / "j" / "train.jsonl", '{"text": "a", "label": 0}\n{"label": 1}\n')
    write(tmp_path / "j" / "dev.jsonl", '{"text": "d", "label": 0}\n')
    with pytest.raises(GreenlmError, match=r"train\.jsonl:2: no 'text' field"):
        load_task(str(tmp_path / "j"))


def test_malformed_csv(tmp_path):
    write(tmp_path / "c" / "train.csv", 'text,label\n"open quote,pos\n')
    write(tmp_path / "c" / "dev.csv", "text,label\nx,pos\n")
    with pytest.raises(GreenlmError, match=r"train\.csv:\d+: malformed CSV"):
        load_task(str(tmp_path / "c"))


def test_unknown_task_name_suggests_closest():
    with pytest.raises(GreenlmError, match=r"unknown task 'sst-2'; did you mean 'sst2'\?") as err:
        load_task("sst-2")
    message = one_line(err)
    assert "hf:" in message and "folder" in message
    with pytest.raises(GreenlmError, match=r"unknown task 'zzzz'; bundled tasks: rt_polarity, rte, sst2"):
        load_task("zzzz")


def test_data_file_given_instead_of_folder(tmp_path):
    path = write(tmp_path / "train.tsv", GOOD_TRAIN)
    with pytest.raises(GreenlmError, match="is a file .*give a folder holding train and dev/test files"):
        load_task(str(path))
