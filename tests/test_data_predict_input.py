"""Input for ``greenlm predict``: one text, or a tab-separated pair, per line."""

from __future__ import annotations

import io

import pytest

from greenlm.common import GreenlmError
from greenlm.data import UNLABELED, read_prediction_file, read_prediction_lines


def test_single_texts_skip_blank_lines():
    split = read_prediction_lines(io.StringIO("good film\n\n  \nbad film\r\n"))
    assert split.text_a == ["good film", "bad film"]
    assert split.text_b is None
    assert split.labels == [UNLABELED, UNLABELED]


def test_pairs_detected_and_forced():
    split = read_prediction_lines(["a cat sleeps\ta cat rests\n", "it rains\tit is dry\n"])
    assert split.text_a == ["a cat sleeps", "it rains"]
    assert split.text_b == ["a cat rests", "it is dry"]
    forced = read_prediction_lines(["x\ty\n"], pair=False)
    assert forced.text_a == ["x\ty"] and forced.text_b is None


def test_mixed_lines_are_refused():
    with pytest.raises(GreenlmError, match="line 2 holds a tab-separated pair but line 1 a single text"):
        read_prediction_lines(["one\n", "two\tthree\n"], source="stdin")


def test_pair_required_but_missing():
    with pytest.raises(GreenlmError, match=r"in\.txt:2: expected two non-empty texts"):
        read_prediction_lines(["a\tb\n", "no tab here\n"], pair=True, source="in.txt")
    with pytest.raises(GreenlmError, match=r":1: expected two non-empty texts"):
        read_prediction_lines(["a\t \n"], pair=True)


def test_no_input():
    with pytest.raises(GreenlmError, match="no text to predict on"):
        read_prediction_lines(io.StringIO("\n \n"), source="stdin")


def test_bytes_lines_and_bad_utf8():
    split = read_prediction_lines(io.BytesIO("caf\u00e9\n".encode()))
    assert split.text_a == ["caf\u00e9"]
    with pytest.raises(GreenlmError, match=r"stdin:2: not valid UTF-8"):
        read_prediction_lines(io.BytesIO(b"fine\ncaf\xe9\n"), source="stdin")


def test_prediction_file(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"one\ntwo\n")
    assert read_prediction_file(path).text_a == ["one", "two"]
    path.write_bytes(b"one\n\xff\n")
    with pytest.raises(GreenlmError, match=r"in\.txt:2: not valid UTF-8"):
        read_prediction_file(path)
    with pytest.raises(GreenlmError, match="file not found"):
        read_prediction_file(tmp_path / "missing.txt")
