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


def test_a_finished_folder_has_the_umasks_permissions_not_private_ones(tmp_path):
    """safetensors' save_file and mkstemp write 0600 files, mkdtemp 0700 folders: once complete, a folder greenlm
    writes is readable as the umask allows (as transformers' save_pretrained folders used to be); a file its writer
    made private on purpose with another mode keeps it."""
    import os
    import stat

    import torch
    from safetensors.torch import save_file

    old_mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "model") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "x.json").write_text("{}")
            os.chmod(tmp / "sub" / "x.json", 0o600)
            (tmp / "secret").write_text("s")
            os.chmod(tmp / "secret", 0o640)
    finally:
        os.umask(old_mask)

    def mode(name):
        return stat.S_IMODE((tmp_path / "model" / name).stat().st_mode)

    assert mode("model.safetensors") == 0o644
    assert mode("sub") == 0o755 and mode("sub/x.json") == 0o644
    assert mode("secret") == 0o640
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
