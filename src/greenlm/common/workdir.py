"""The one resume mechanism: a work folder per stage (or pretraining run), claimed under a lock, keyed by its inputs.

Standard library only (``fcntl``): the stage shell (``greenlm.stage``) and pretraining (``greenlm.pretrain``) share it.

    with claim(work_dir, key, holder="greenlm distill --out runs/s") as claimed:
        claimed.resumed     # True: an interrupted attempt with the same inputs left state here
        ...                 # the method keeps checkpoints in claimed.state_dir

A work folder holds ``key`` (the sha256 of the stage's identity), ``state/`` (the method's checkpoints)
and ``output/`` (the model folder being written). State left by different inputs cannot be resumed and
is removed. The lock (an OS file lock beside the folder, released even when the process is killed)
keeps two processes from writing one folder: the second stops with one line naming the first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from greenlm.common.errors import GreenlmError
from greenlm.common.files import atomic_write_text, named_path

KEY_FILE = "key"
STATE_DIR = "state"
OUTPUT_DIR = "output"


@dataclass(frozen=True)
class ClaimedWork:
    work_dir: Path
    resumed: bool

    @property
    def state_dir(self) -> Path:
        return self.work_dir / STATE_DIR

    @property
    def output_dir(self) -> Path:
        return self.work_dir / OUTPUT_DIR


@contextlib.contextmanager
def folder_lock(target: Path, holder: str):
    """Hold an exclusive lock on ``target`` (a folder, existing or not) for the block; refuse if held."""
    import fcntl

    target = named_path(target)
    lock_path = target.parent / f".{target.name}.lock"
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+", encoding="utf-8")
    except OSError as err:
        raise GreenlmError(f"cannot write beside {target}: {err.strerror or err}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "another greenlm process"
            raise GreenlmError(f"{target} is in use by {other}; wait for it to finish, or choose another folder") \
                from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder} (pid {os.getpid()})")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def holds_key(work_dir: Path, key: str) -> bool:
    """Whether ``work_dir`` holds the state of the stage with this ``key`` (what a resume would keep)."""
    try:
        return (Path(work_dir) / KEY_FILE).read_text() == key
    except OSError:
        return False


def claim(work_dir: Path, key: str) -> ClaimedWork:
    """Use ``work_dir`` for the stage with this ``key``: keep its state if the key matches, else start afresh.

    Call it while holding ``folder_lock`` on the stage's output.
    """
    work_dir = Path(work_dir)
    if work_dir.exists() and not holds_key(work_dir, key):
        shutil.rmtree(work_dir)  # a checkpoint of different inputs cannot be resumed
    resumed = work_dir.exists()
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work_dir / KEY_FILE, key)
    return ClaimedWork(work_dir, resumed)
