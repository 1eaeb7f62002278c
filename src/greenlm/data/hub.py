"""Tasks from the Hugging Face Hub through ``datasets.load_dataset`` (optional: ``pip install 'greenlm[hub]'``).

Spec forms: ``hf:<name>`` or ``hf:<owner>/<name>``, with an optional config after a colon
(``hf:nyu-mll/glue:sst2``); ``glue/<config>`` (with or without ``hf:``) is shorthand for the GLUE
config. Splits: ``train``; ``validation`` (or ``validation_matched``) becomes ``dev``; a labelled ``test`` is
kept. A dataset without a validation split keeps its test split as ``test`` (figures are then reported on it, and
choices made on a validation split carved from train).
Unlabelled splits (GLUE test, IMDB's "unsupervised") are dropped. ``trust_remote_code`` is never set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from greenlm.common import GreenlmError
from greenlm.common.optional import require
from greenlm.data.assemble import DEFAULT_LABEL_FIELD, build_task, detect_text_fields
from greenlm.data.readers import Table
from greenlm.data.tasks import Task

HUB_PREFIX = "hf:"
# Benchmarks published as one dataset with a config per task: "glue/sst2" means config sst2 of nyu-mll/glue.
CONFIG_DATASETS = {"glue": "nyu-mll/glue"}
# our split <- hub split names, first present wins
SPLIT_NAMES = {
    "train": ("train",),
    "dev": ("validation", "dev", "validation_matched"),
    "test": ("test", "test_matched"),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_FILE_SUFFIXES = (".tsv", ".csv", ".jsonl", ".gz", ".yaml", ".yml", ".json", ".txt")


def looks_like_hub_name(spec: str) -> bool:
    """``hf:...``, or ``owner/name`` (one slash, no file suffix) that is not a local path."""
    if spec.startswith(HUB_PREFIX):
        return True
    if os.path.splitext(spec)[1].lower() in _FILE_SUFFIXES:
        return False  # "data/train.tsv" is a path that does not exist, not a dataset name
    return spec.count("/") == 1 and bool(_NAME.match(spec)) and not os.path.exists(spec)


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """``hf:glue/sst2`` -> ("nyu-mll/glue", "sst2"); ``hf:owner/name:config`` -> ("owner/name", "config")."""
    body = spec[len(HUB_PREFIX):] if spec.startswith(HUB_PREFIX) else spec
    path, _, config = body.partition(":")
    config = config or None
    if not _NAME.match(path) or (config is not None and not re.match(r"^[A-Za-z0-9_.\-]+$", config)):
        raise GreenlmError(
            f"{spec!r} is not a Hugging Face dataset name; "
            "write hf:<name>, hf:<owner>/<name> or hf:<owner>/<name>:<config>"
        )
    owner, _, rest = path.partition("/")
    if config is None and rest and owner in CONFIG_DATASETS:
        return CONFIG_DATASETS[owner], rest
    return path, config


def _load_dataset_function(spec: str):
    local = "" if spec.startswith(HUB_PREFIX) else ", as there is no local folder or file by that name"
    return require("datasets", f"loading {spec!r} from the Hugging Face Hub{local}").load_dataset


def _offline() -> bool:
    return any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on") for var in _OFFLINE_VARS)


def _explain(err: Exception, spec: str) -> str:
    detail = (str(err).strip().splitlines() or [""])[0][:200]
    what = f"could not load Hugging Face dataset {spec!r} ({type(err).__name__}{': ' + detail if detail else ''})"
    if not spec.startswith(HUB_PREFIX):
        what += f"; there is no local folder or file {spec!r} either"
    if _offline():
        hint = (
            "offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and it is not in the local cache: "
            "load it once with network access, or use a bundled task or local files"
        )
    else:
        hint = (
            "check the name (and config, as hf:<name>:<config>) and the network connection, "
            "or use a bundled task or local files"
        )
    return f"{what}; {hint}"


def load_hub(
    spec: str,
    *,
    text_fields: Sequence[str] | None = None,
    label_field: str | None = None,
    labels: Sequence[str] | None = None,
    on_empty: str = "skip",
) -> Task:
    path, config = parse_hub_spec(spec)
    load_dataset = _load_dataset_function(spec)
    try:
        dataset = load_dataset(path, config) if config else load_dataset(path)
    except Exception as err:  # anything from fetching (network, offline cache, unknown name, missing config)
        raise GreenlmError(_explain(err, spec)) from err
    label_field = label_field or DEFAULT_LABEL_FIELD
    shown = f"{HUB_PREFIX}{path}{':' + config if config else ''}"

    chosen: dict[str, str] = {}  # our split -> hub split
    for ours, theirs in SPLIT_NAMES.items():
        for hub_split in theirs:
            if hub_split in dataset:
                chosen[ours] = hub_split
                break
    if "train" not in chosen:
        raise GreenlmError(f"{shown} has no train split (it has: {', '.join(dataset)}); a task needs train, and dev or test")

    fields = tuple(text_fields) if text_fields is not None else detect_text_fields(
        list(dataset[chosen["train"]].column_names), f"{shown} [{chosen['train']}]"
    )
    tables: dict[str, Table] = {}
    class_names: list[str] | None = None
    for ours, hub_split in chosen.items():
        table, names = _split_table(dataset[hub_split], f"{shown} [{hub_split}]", fields, label_field)
        if table is None:
            continue  # unlabelled split
        tables[ours] = table
        class_names = class_names or names
    if "train" not in tables:
        raise GreenlmError(
            f"{shown}: the train split has no labels in {label_field!r}; name the label column with label_field"
        )
    if "dev" not in tables and "test" not in tables:
        raise GreenlmError(
            f"{shown} has no labelled validation or test split (it has: {', '.join(dataset)}); "
            "split off a dev or test set into local files"
        )
    return build_task(
        re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{path}{'_' + config if config else ''}"),
        tables,
        text_fields=fields,
        label_field=label_field,
        labels=labels if labels is not None else class_names,
        on_empty=on_empty,
        credit=f"Hugging Face datasets: {path}{' config ' + config if config else ''}",
        source=shown,
    )


def _split_table(split, source: str, fields: Sequence[str], label_field: str) -> tuple[Table | None, list[str] | None]:
    """One hub split as a Table holding only the needed columns; (None, None) when it has no labels at all."""
    columns = list(split.column_names)
    data = {c: list(split[c]) for c in (*fields, label_field) if c in columns}
    names = None
    feature = getattr(split, "features", {}).get(label_field)
    if label_field in data and isinstance(getattr(feature, "names", None), (list, tuple)):
        names = [str(n) for n in feature.names]
        # class ids -> class names; -1 (GLUE's "no label") -> None
        data[label_field] = [
            names[v] if isinstance(v, int) and 0 <= v < len(names) else None for v in data[label_field]
        ]
    if label_field in data and data[label_field] and all(v is None for v in data[label_field]):
        return None, None
    return Table(source, columns, data, None), names
