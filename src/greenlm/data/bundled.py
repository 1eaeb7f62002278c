"""The datasets shipped inside the package: ``greenlm/data/bundled/<task>/`` with gzip-compressed TSV
splits, a ``task.json`` (fields, labels, credit) and a README (source, paper, license, counts)."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from importlib.resources import files
from typing import TYPE_CHECKING

from greenlm.common import GreenlmError, read_json
from greenlm.data.assemble import build_task
from greenlm.data.readers import read_table
from greenlm.data.tasks import Task, TaskInfo

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DEFAULT_TASK = "sst2"
SPLITS = ("train", "dev", "test")


def _root() -> Traversable:
    return files("greenlm.data") / "bundled"


def bundled_task_names() -> list[str]:
    """Names of the bundled tasks, sorted."""
    return sorted(entry.name for entry in _root().iterdir() if entry.is_dir() and (entry / "task.json").is_file())


def _folder(name: str) -> Traversable:
    folder = _root() / name
    if not (folder / "task.json").is_file():
        raise GreenlmError(f"no bundled task {name!r}; bundled tasks: {', '.join(bundled_task_names())}")
    return folder


def _metadata(folder: Traversable) -> dict:
    return read_json(folder / "task.json")


def _split_files(folder: Traversable) -> dict[str, Traversable]:
    return {s: folder / f"{s}.tsv.gz" for s in SPLITS if (folder / f"{s}.tsv.gz").is_file()}


def load_bundled(
    name: str,
    *,
    text_fields: Sequence[str] | None = None,
    label_field: str | None = None,
    labels: Sequence[str] | None = None,
    on_empty: str = "skip",
) -> Task:
    folder = _folder(name)
    meta = _metadata(folder)
    tables = {
        split: read_table(f"{split}.tsv.gz", data=entry.read_bytes(), display=f"bundled:{name}/{split}.tsv.gz")
        for split, entry in _split_files(folder).items()
    }
    custom_labels = labels is not None
    return build_task(
        name,
        tables,
        text_fields=text_fields if text_fields is not None else meta["text_fields"],
        label_field=label_field or meta["label_field"],
        labels=labels if custom_labels else meta["labels"],
        on_empty=on_empty,
        credit=meta["credit"],
        label_names=None if custom_labels else meta.get("label_names"),
        description=meta.get("description", ""),
        source=f"bundled:{name}",
    )


def _count_rows(data: bytes) -> int:
    """Data rows of a TSV (header and blank lines not counted), without decoding it."""
    lines = gzip.decompress(data).split(b"\n")
    return sum(1 for line in lines[1:] if line.strip(b"\r"))


def describe_bundled_tasks() -> list[TaskInfo]:
    """One ``TaskInfo`` per bundled task; cheap (counts lines, tokenizes nothing)."""
    infos = []
    for name in bundled_task_names():
        folder = _folder(name)
        meta = _metadata(folder)
        label_names = meta.get("label_names")
        infos.append(
            TaskInfo(
                name=name,
                description=meta.get("description", ""),
                text_fields=tuple(meta["text_fields"]),
                labels=tuple(meta["labels"]),
                rows={split: _count_rows(entry.read_bytes()) for split, entry in _split_files(folder).items()},
                credit=meta["credit"],
                source_url=meta.get("source_url"),
                label_names=tuple(label_names) if label_names else None,
                license=meta.get("license", ""),
                default=name == DEFAULT_TASK,
            )
        )
    return infos
