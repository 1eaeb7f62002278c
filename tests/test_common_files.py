"""Atomic folder replacement, including a kill between its two renames."""

from __future__ import annotations

import pytest

from greenlm.common import atomic_dir, recover_dir


def test_atomic_dir_replaces_whole_folder_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("2")
            raise RuntimeError("crash while writing")
    assert (target / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_kill_between_renames_is_recovered(tmp_path):
    target = tmp_path / "ckpt"
    # What a kill after "move old aside" and before "move new in" leaves behind.
    old = tmp_path / ".ckpt.old"
    old.mkdir()
    (old / "state.json").write_text("{}")
    assert recover_dir(target) == target
    assert (target / "state.json").is_file() and not old.exists()
    # With the folder in place nothing moves.
    old.mkdir()
    recover_dir(target)
    assert old.is_dir() and (target / "state.json").is_file()
