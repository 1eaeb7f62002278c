"""Reading what a user points at, bounded: only regular files, of a size that fits the purpose.

``open()`` on a FIFO waits for a writer forever, and ``/dev/zero`` or ``/dev/urandom`` never end; a symlink
named ``train.tsv`` can point at either. Every reader of user-given files goes through ``read_input``, which
refuses anything but a regular file (after following links) before opening it, and refuses a file larger than
its ``max_bytes`` (settings files and recipes are small; datasets may be large) instead of filling memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from greenlm.common.errors import GreenlmError

SETTINGS_MAX_BYTES = 16 * 2**20  # recipes, task files, settings files: text a person writes
DATA_MAX_BYTES = 8 * 2**30  # one dataset file read whole into memory


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a pipe (FIFO)"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular_file(path: str | os.PathLike, *, what: str = "file") -> int:
    """The size in bytes of ``path`` when it is a regular file (links followed); else one-line ``GreenlmError``."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise GreenlmError(f"{what} not found: {path}") from None
    except OSError as err:
        raise GreenlmError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise GreenlmError(f"{what} {path} is {_kind(info.st_mode)}; give a regular file")
    return info.st_size


def read_input(path: str | os.PathLike, *, what: str = "file", max_bytes: int = DATA_MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them (else one-line ``GreenlmError``)."""
    size = check_regular_file(path, what=what)
    if size > max_bytes:
        raise GreenlmError(f"{what} {path} is {size / 2**20:,.1f} MiB; at most {max_bytes / 2**20:,.0f} MiB is read")
    with open(Path(path), "rb") as f:
        data = f.read(max_bytes + 1)  # a file that grows while read is still bounded
    if len(data) > max_bytes:
        raise GreenlmError(f"{what} {path} grew past {max_bytes / 2**20:,.0f} MiB while it was read")
    return data


def decode_utf8(data: bytes, display: str) -> str:
    """Strict UTF-8 text, without the byte-order mark editors on Windows put first; the error names the line of the
    first bad byte (``display``: the file's name in messages)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise GreenlmError(
            f"{display}:{line}: not valid UTF-8 (byte 0x{data[err.start]:02x}); save the file as UTF-8"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text
