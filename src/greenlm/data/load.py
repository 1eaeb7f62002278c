"""``load_task``: one entry point for bundled tasks, local folders and task files, and Hub datasets."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.data.assemble import ON_EMPTY
from greenlm.data.bundled import bundled_task_names, load_bundled
from greenlm.data.hub import HUB_PREFIX, load_hub, looks_like_hub_name
from greenlm.data.local import TASK_FILE_SUFFIXES, load_folder, load_task_file
from greenlm.data.readers import file_format
from greenlm.data.tasks import Task


def load_task(
    spec: str,
    *,
    text_fields: Sequence[str] | None = None,
    label_field: str | None = None,
    labels: Sequence[str] | None = None,
    on_empty: str = "skip",
) -> Task:
    """Load a task from ``spec``, tried in this order:

    1. a bundled name (``sst2``, ``rt_polarity``, ``rte``); write ``./sst2`` for a local folder of that name;
    2. ``hf:<name>`` (Hugging Face datasets);
    3. an existing folder with ``train`` and ``dev`` or ``test`` (or both) ``.tsv``/``.csv``/``.jsonl`` files,
       or a ``.yaml``/``.yml``/``.json`` task file;
    4. ``<owner>/<name>`` that is no local path: Hugging Face datasets.

    ``text_fields``, ``label_field`` and ``labels`` override detection (and a task file's keys).
    ``on_empty``: "skip" drops rows with an empty text and counts them in ``Task.skipped_rows``;
    "error" refuses the first one.
    """
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise GreenlmError("no task given; name a bundled task (e.g. sst2), a folder, a task file or hf:<dataset>")
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    spec = spec.strip()
    if on_empty not in ON_EMPTY:
        raise GreenlmError(f"on_empty must be 'skip' or 'error', got {on_empty!r}")
    options = dict(text_fields=text_fields, label_field=label_field, labels=labels, on_empty=on_empty)
    if spec in bundled_task_names():
        return load_bundled(spec, **options)
    if spec == "listops" or spec.startswith("listops:"):  # generated from a seed (greenlm.data.listops)
        from greenlm.data.listops import listops_task

        return listops_task(spec)
    if spec.startswith(HUB_PREFIX):
        return load_hub(spec, **options)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_folder(path, **options)
    if path.is_file():
        if path.suffix.lower() in TASK_FILE_SUFFIXES:
            return load_task_file(path, **options)
        hint = " (a single data file)" if file_format(path) else ""
        raise GreenlmError(
            f"{spec} is a file{hint}; give a folder holding train and dev/test files, or a .yaml/.json task file naming them"
            " (docs/tasks.md)"
        )
    if looks_like_hub_name(spec):
        return load_hub(spec, **options)
    if _looks_like_path(spec):
        raise GreenlmError(f"file or folder not found: {spec}")
    names = bundled_task_names()
    close = difflib.get_close_matches(spec.lower(), names, n=1, cutoff=0.5)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    raise GreenlmError(
        f"unknown task {spec!r}; {suggestion}bundled tasks: {', '.join(names)}; "
        "a folder, a task file (.yaml/.json) or hf:<dataset> is also accepted"
    )


def _looks_like_path(spec: str) -> bool:
    return (
        os.sep in spec
        or "/" in spec
        or spec.startswith((".", "~"))
        or Path(spec).suffix.lower() in (*TASK_FILE_SUFFIXES, ".tsv", ".csv", ".jsonl", ".gz")
    )
