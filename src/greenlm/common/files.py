"""Atomic writes: a reader (or a crash) never sees a half-written file or folder.

Each writer writes to a temporary sibling and renames it into place; ``os.replace`` is atomic on
POSIX and Windows for paths on the same file system.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from greenlm.common.errors import GreenlmError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def named_path(path: str | os.PathLike, what: str = "output") -> Path:
    """``path`` when its last part names a file or folder; ``''``, ``.``, ``..`` and ``/`` name none (writing there
    would replace or fill the folder above): a one-line ``GreenlmError``."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise GreenlmError(f"{what} path {str(path)!r} names no file or folder; give one, e.g. results/my-model")
    return path


def writable_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """``path``, checked before long work that ends by writing it (so the work is not lost at the end): it names a
    file, not a folder, and the nearest existing folder above it can be written; else a one-line ``GreenlmError``."""
    path = named_path(path, what)
    if path.is_dir():
        raise GreenlmError(f"{what} {path} is a folder; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise GreenlmError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise GreenlmError(f"{what} {path}: cannot write in {parent} (read-only or permission denied); choose a folder"
                           " you can write")
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = named_path(path)
    if path.is_dir():
        raise GreenlmError(f"{path} is a folder; a file goes there: choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` as a whole, on failure it is removed.

    A folder that exists at ``path`` is kept until the new one is complete.
    """
    path = recover_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))  # 0700 until in place
    try:
        yield tmp
        move_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_into_place(built: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the complete folder ``built`` to ``path``, replacing a folder there only once the new one is whole.

    Two renames: the old folder to ``.NAME.old``, then the new one into place; a kill in between leaves the
    old folder at ``.NAME.old``, which ``recover_dir`` puts back.
    """
    built, path = Path(built), named_path(path)
    if path.exists() and not path.is_dir():
        raise GreenlmError(f"{path} is a file; a folder goes there: move the file away or choose another path")
    usual_permissions(built)
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(built, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, path)


def usual_permissions(folder: str | os.PathLike) -> None:
    """Give the files and folders under ``folder`` that were made private by their writer (0600 / 0700: mkstemp,
    mkdtemp, safetensors' ``save_file``) the permissions the user's umask gives new files, so that a model folder
    can be read by the group or the serving user the way a ``save_pretrained`` folder of transformers 4 could."""
    mask = _umask()
    _widen(Path(folder), 0o700, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            _widen(Path(root) / name, 0o700, 0o777 & ~mask)
        for name in files:
            _widen(Path(root) / name, 0o600, 0o666 & ~mask)


def _widen(path: Path, private: int, usual: int) -> None:
    try:
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) == private and usual != private:
            os.chmod(path, usual)
    except OSError:
        pass  # a file another process removed, or one we may not change: leave it


def recover_dir(path: str | os.PathLike) -> Path:
    """Put back the previous folder if a kill struck between ``atomic_dir``'s two renames.

    ``atomic_dir`` moves the old folder to ``.NAME.old`` and then the new one into place; a process
    killed in between leaves no folder at ``path`` but a complete one at ``.NAME.old``.
    """
    path = named_path(path)
    if path.exists() and not path.is_dir():
        raise GreenlmError(f"{path} is a file; a folder goes there: move the file away or choose another path")
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and old.is_dir():
        os.replace(old, path)
    return path


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


class DamagedFileError(GreenlmError, ValueError):
    """A file greenlm wrote (or reads) that is not what it should be: one line naming it and what to do.

    It is also a ``ValueError``, so code that already treats an unreadable cache as absent (``except ValueError``)
    keeps doing so.
    """


def read_json(path: str | os.PathLike, *, expect: type | None = dict, hint: str | None = None):
    """Parse the JSON file ``path``; a file that is not JSON (or not a ``expect``) raises ``DamagedFileError``.

    A missing or unreadable file raises ``OSError`` as before: callers decide whether absence is normal.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig", errors="strict")  # -sig: a byte-order mark first is no damage
    try:
        value = json.loads(text)
    except ValueError as err:
        problem = f"not valid JSON ({str(err)[:80]})"
    else:
        if expect is None or isinstance(value, expect):
            return value
        problem = f"holds a JSON {type(value).__name__} where a {expect.__name__} belongs"
    raise DamagedFileError(f"{path} is damaged: {problem}; "
                           f"{hint or 'delete it (or the folder it belongs to) and run the command again'}")


def read_json_cache(path: str | os.PathLike, *, expect: type = dict):
    """A JSON file that can be rebuilt (a cache, a snapshot): its value, or None when it is missing or damaged."""
    try:
        return read_json(path, expect=expect)
    except (OSError, ValueError):
        return None


# torch.save writes through a zip stream whose failures are RuntimeErrors: "PytorchStreamWriter failed writing
# file" (older torch) or "[enforce fail at inline_container.cc:...] unexpected pos N vs M" (torch 2.13 on a full disk).
_WRITE_FAILURE_TEXT = ("PytorchStreamWriter", "inline_container.cc", "No space left", "Permission denied",
                       "Read-only file system", "file write failed", "Disk quota exceeded", "Error while serializing",
                       "StorageFull")


def write_error(err: BaseException) -> str | None:
    """What went wrong, if ``err`` is a failed write (disk full, permission denied, read-only); else None.

    Besides OSError: safetensors raises its own SafetensorError, and torch.save a RuntimeError from its stream
    writer, when the disk is full.
    """
    if isinstance(err, OSError):
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror or err}{where}"
    text = str(err)
    if isinstance(err, RuntimeError) or type(err).__name__ == "SafetensorError":
        if any(part in text for part in _WRITE_FAILURE_TEXT):
            first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
            return f"{first} (is the disk full?)" if "unexpected pos" in text else first
    return None
