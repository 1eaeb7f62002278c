"""Tasks from local files: a folder of split files, or a small YAML/JSON task file pointing at them.

Folder: ``train.<fmt>`` with ``dev.<fmt>`` (``validation.<fmt>`` is also accepted for dev), ``test.<fmt>``
or both, where ``<fmt>`` is tsv, csv or jsonl, optionally gzip-compressed (``train.tsv.gz``).

Task file (``.yaml``, ``.yml`` or ``.json``), paths relative to the task file (docs/tasks.md)::

    name: my_task
    train: data/train.csv
    dev: data/dev.csv          # dev, test or both
    test: data/test.csv
    text_fields: [premise, hypothesis]   # optional: detected when absent
    label_field: gold          # optional: "label" when absent
    labels: [neg, pos]         # optional: inferred from train when absent
    description: ...           # optional
    credit: ...                # optional
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.data.assemble import build_task
from greenlm.data.readers import FORMATS, read_table
from greenlm.data.tasks import Task
from greenlm.common.inputs import SETTINGS_MAX_BYTES, decode_utf8, read_input
from greenlm.data.safe_yaml import load_yaml

TASK_FILE_SUFFIXES = (".yaml", ".yml", ".json")
TASK_FILE_KEYS = (
    "name", "train", "dev", "test", "text_fields", "label_field", "labels", "label_names", "description", "credit",
)
_SPLIT_FILE_STEMS = {"train": ("train",), "dev": ("dev", "validation"), "test": ("test",)}


def find_split_files(folder: Path) -> dict[str, Path]:
    """split -> file in ``folder``; errors when train, or both dev and test, are missing, or a split has two
    candidate files."""
    found: dict[str, Path] = {}
    for split, stems in _SPLIT_FILE_STEMS.items():
        candidates = [
            folder / f"{stem}.{fmt}{gz}" for stem in stems for fmt in FORMATS for gz in ("", ".gz")
        ]
        present = [p for p in candidates if p.is_file()]
        if len(present) > 1:
            raise GreenlmError(
                f"{folder}: more than one {split} file ({', '.join(p.name for p in present)}); keep only one"
            )
        if present:
            found[split] = present[0]
    if "train" not in found:
        raise GreenlmError(f"{folder}: no train file; expected train.tsv, .csv or .jsonl (optionally .gz) in that"
                           " folder, or a task file naming the files (docs/tasks.md)")
    if "dev" not in found and "test" not in found:
        raise GreenlmError(f"{folder}: no dev or test file beside {found['train'].name}; add dev.tsv (or"
                           " validation.tsv) or test.tsv (.csv, .jsonl, optionally .gz), or a task file naming the"
                           " files (docs/tasks.md)")
    return found


def load_folder(
    folder: Path,
    *,
    text_fields: Sequence[str] | None,
    label_field: str | None,
    labels: Sequence[str] | None,
    on_empty: str,
) -> Task:
    files = find_split_files(folder)
    tables = {split: read_table(path) for split, path in files.items()}
    return build_task(
        folder.resolve().name,
        tables,
        text_fields=text_fields,
        label_field=label_field,
        labels=labels,
        on_empty=on_empty,
        credit=f"local files: {folder}",
        source=str(folder),
    )


def load_task_file(
    path: Path,
    *,
    text_fields: Sequence[str] | None,
    label_field: str | None,
    labels: Sequence[str] | None,
    on_empty: str,
) -> Task:
    """Arguments given here win over the same keys in the file."""
    spec = _read_task_file(path)
    tables = {}
    for split in ("train", "dev", "test"):
        if spec.get(split) is not None:
            if not isinstance(spec[split], str) or not spec[split].strip():
                raise GreenlmError(f"{path}: {split!r} must be a file path (relative to the task file)")
    if spec.get("train") is None:
        raise GreenlmError(f"{path}: no 'train' key; give the train file's path, relative to the task file")
    if spec.get("dev") is None and spec.get("test") is None:
        raise GreenlmError(f"{path}: no 'dev' or 'test' key; give the path of a dev file, a test file or both,"
                           " relative to the task file (docs/tasks.md)")
    for split in ("train", "dev", "test"):
        if spec.get(split) is not None:
            tables[split] = read_table(path.parent / spec[split])
    file_labels = spec.get("labels")
    return build_task(
        str(spec.get("name") or path.stem),
        tables,
        text_fields=text_fields if text_fields is not None else _str_list(spec, "text_fields", path),
        label_field=label_field or _optional_str(spec, "label_field", path),
        labels=labels if labels is not None else (_str_list(spec, "labels", path) if file_labels is not None else None),
        on_empty=on_empty,
        credit=_optional_str(spec, "credit", path) or f"local task file: {path}",
        label_names=_str_list(spec, "label_names", path) if labels is None else None,
        description=_optional_str(spec, "description", path) or "",
        source=str(path),
    )


def _read_task_file(path: Path) -> dict:
    text = decode_utf8(read_input(path, what="task file", max_bytes=SETTINGS_MAX_BYTES), str(path))
    if path.suffix.lower() == ".json":
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as err:
            raise GreenlmError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    else:
        import yaml  # lazy: only task files need it

        try:
            spec = load_yaml(text, str(path), loader=_string_loader())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise GreenlmError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(spec, dict):
        raise GreenlmError(f"{path}: a task file must be a mapping with a 'train' key and a 'dev' or 'test' key"
                           " (docs/tasks.md)")
    for key in spec:
        if key not in TASK_FILE_KEYS:
            close = difflib.get_close_matches(str(key), TASK_FILE_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise GreenlmError(f"{path}: unknown key {key!r}; {hint}known keys: {', '.join(TASK_FILE_KEYS)}")
    return spec


def _string_loader():
    """A safe YAML loader that reads every plain scalar as a string (only ``null``/``~`` stay None).

    Task files hold names, paths and labels: ``labels: [no, yes]`` must not become booleans, nor
    ``[01, 02]`` the numbers 1 and 2.
    """
    import yaml

    class StringLoader(yaml.SafeLoader):
        pass

    null = "tag:yaml.org,2002:null"
    StringLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag == null]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return StringLoader


def _str_list(spec: dict, key: str, path: Path) -> list[str] | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise GreenlmError(f"{path}: {key!r} must be a list of strings")
    return [str(v) for v in value]


def _optional_str(spec: dict, key: str, path: Path) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise GreenlmError(f"{path}: {key!r} must be a string")
    return value
