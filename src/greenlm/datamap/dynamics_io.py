"""Training dynamics on disk, in the format of allenai/cartography (the reference code of the paper).

    MODEL/training_dynamics/dynamics_epoch_0.jsonl      one JSON object per line, one line per training example:
    MODEL/training_dynamics/dynamics_epoch_1.jsonl        {"guid": 17, "logits_epoch_1": [-1.2, 0.8], "gold": 1}
    ...                                                 (K files: record points k = 0 .. K-1, in time order)

- ``guid``: the row's id. greenlm writes the row index in the task's ``train`` split as loaded (after rows
  with an empty text are skipped), so a map can be matched back to the task's rows;
- ``logits_epoch_<k>``: the model's logits for the row at record point k (one float per label);
- ``gold``: the index of the row's label in those logits.

cartography's reader (``read_training_dynamics``) counts the files in ``training_dynamics/`` and reads
``dynamics_epoch_0.jsonl`` up to that count, so the folder holds these files and nothing else; k is a record
point, not necessarily an epoch (greenlm records several points per epoch in short trainings). What each
point is (step, epoch as a fraction, seconds it took) is in the model folder's ``metrics.json`` under
``"dynamics"``, which also names the task and the fingerprint of its train split.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from greenlm.common import GreenlmError, atomic_write_text, read_json
from greenlm.data import Task

DYNAMICS_DIR = "training_dynamics"
_FILE = re.compile(r"^dynamics_epoch_(\d+)\.jsonl$")
LOGIT_DECIMALS = 6  # logits are written rounded to this many decimals (a probability moves by < 1e-6)


def point_file(folder: Path, k: int) -> Path:
    return Path(folder) / f"dynamics_epoch_{k}.jsonl"


def write_point(folder: Path, k: int, guids: Sequence, logits: Sequence[Sequence[float]], golds: Sequence[int]) -> Path:
    """Write record point ``k`` (one line per row) atomically: the file is whole or absent."""
    if not (len(guids) == len(logits) == len(golds)):
        raise ValueError("write_point: guids, logits and golds differ in length")
    key = f"logits_epoch_{k}"
    lines = [json.dumps({"guid": guid, key: [round(float(v), LOGIT_DECIMALS) for v in row], "gold": int(gold)},
                        separators=(",", ":"))
             for guid, row, gold in zip(guids, logits, golds)]
    path = point_file(folder, k)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def written_points(folder: Path) -> list[int]:
    """The record points with a file in ``folder``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if p.is_file() and (m := _FILE.match(p.name)))


@dataclass
class Dynamics:
    """Every record point of a training run: logits[k, i] belongs to the row ``guids[i]``."""

    guids: list  # row ids (greenlm: ints, row indices of the task's train split)
    gold: np.ndarray  # [N] label index per row
    logits: np.ndarray  # [K, N, L] float64
    folder: Path  # the training_dynamics folder read
    meta: dict | None = None  # metrics.json's "dynamics" section, when read from a greenlm model folder

    @property
    def points(self) -> int:
        return int(self.logits.shape[0])

    def __len__(self) -> int:
        return len(self.guids)


def find_dynamics_dir(path: str | Path) -> Path:
    """``path`` is a model folder holding ``training_dynamics/``, or that folder itself."""
    path = Path(path)
    if (path / DYNAMICS_DIR).is_dir():
        return path / DYNAMICS_DIR
    if path.is_dir() and written_points(path):
        return path
    if not path.exists():
        raise GreenlmError(f"'{path}' does not exist; give a model folder trained with --record-dynamics"
                           " (or its training_dynamics folder)")
    raise GreenlmError(f"'{path}' holds no training dynamics (training_dynamics/dynamics_epoch_<k>.jsonl);"
                       " train the model with --record-dynamics")


def _read_meta(dynamics_dir: Path) -> dict | None:
    metrics = dynamics_dir.parent / "metrics.json"
    try:
        section = read_json(metrics).get("dynamics")
    except (OSError, ValueError, AttributeError):
        return None
    return section if isinstance(section, dict) else None


def read_dynamics(path: str | Path) -> Dynamics:
    """Every record point under ``path`` (a model folder or its ``training_dynamics`` folder), rows aligned by guid.

    Files are read as cartography's reader does (``dynamics_epoch_0.jsonl`` .. K-1); every file must hold the
    same guids, once each, with the same gold label, or this is bad input (files from different runs).
    """
    folder = find_dynamics_dir(path)
    ks = written_points(folder)
    if not ks:
        raise GreenlmError(f"'{folder}' holds no record points (dynamics_epoch_0.jsonl, ...); train the model with"
                           " --record-dynamics")
    if ks != list(range(len(ks))):
        have = set(ks)
        missing = [k for k in range(len(ks) + 5) if k not in have]  # the first gaps; max(ks) may be huge
        raise GreenlmError(f"training dynamics in '{folder}' lack record point(s) {missing[:5]}: the files must be"
                           f" dynamics_epoch_0.jsonl .. dynamics_epoch_{max(ks)}.jsonl without gaps")
    index: dict = {}
    gold: list[int] = []
    guids: list = []
    blocks: list[np.ndarray] = []
    for k in ks:
        path_k = point_file(folder, k)
        key = f"logits_epoch_{k}"
        rows: list | None = [None] * len(guids) if k else None
        first: list[list[float]] = []
        with open(path_k, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    guid, logits, label = record["guid"], record[key], int(record["gold"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    raise GreenlmError(f"{path_k}:{line_no}: not a training-dynamics line (want guid, {key}, gold)") from None
                if isinstance(guid, list):
                    guid = tuple(guid)
                if k == 0:
                    if guid in index:
                        raise GreenlmError(f"{path_k}:{line_no}: guid {guid!r} appears twice")
                    index[guid] = len(guids)
                    guids.append(guid)
                    gold.append(label)
                    first.append(logits)
                    continue
                i = index.get(guid)
                if i is None:
                    raise GreenlmError(f"{path_k}:{line_no}: guid {guid!r} is not in dynamics_epoch_0.jsonl; the files"
                                       " come from different runs")
                if rows[i] is not None:
                    raise GreenlmError(f"{path_k}:{line_no}: guid {guid!r} appears twice")
                if label != gold[i]:
                    raise GreenlmError(f"{path_k}:{line_no}: guid {guid!r} has gold {label}, but {gold[i]} in"
                                       " dynamics_epoch_0.jsonl")
                rows[i] = logits
        if k == 0:
            if not guids:
                raise GreenlmError(f"{path_k} holds no rows")
            rows = first
        elif any(r is None for r in rows):
            absent = sum(r is None for r in rows)
            raise GreenlmError(f"{path_k} lacks {absent} of the {len(guids)} guids of dynamics_epoch_0.jsonl; the files"
                               " come from different runs")
        try:
            block = np.asarray(rows, dtype=np.float64)
        except ValueError:
            raise GreenlmError(f"{path_k}: rows have logits of different lengths") from None
        if block.ndim != 2 or (blocks and block.shape[1] != blocks[0].shape[1]):
            raise GreenlmError(f"{path_k}: logits must be one list of floats per row, as long in every file")
        blocks.append(block)
    logits = np.stack(blocks)
    gold_array = np.asarray(gold, dtype=np.int64)
    if gold_array.min() < 0 or gold_array.max() >= logits.shape[2]:
        raise GreenlmError(f"training dynamics in '{folder}': a gold label is outside the {logits.shape[2]} logits")
    if all(isinstance(g, int) for g in guids):  # greenlm's guids: in row order
        order = np.argsort(np.asarray(guids, dtype=np.int64), kind="stable")
        guids = [guids[i] for i in order]
        gold_array, logits = gold_array[order], logits[:, order]
    return Dynamics(guids=guids, gold=gold_array, logits=logits, folder=folder, meta=_read_meta(folder))


def _carve_text(carve: dict | None) -> str:
    if not carve:
        return "no validation split"
    return f"a validation split of {carve['fraction']:g} (at most {carve['max_examples']} rows, seed {carve['seed']})"


def check_against_task(dynamics: Dynamics, task: Task) -> None:
    """The dynamics belong to ``task``'s training rows: every guid is a row index of its ``train`` split and
    every gold label that row's label; when greenlm wrote them, the train split's fingerprint matches too."""
    train = task.split("train")
    where = f"training dynamics in '{dynamics.folder}'"
    fix = "were they recorded on another task, or on another version of this one?"
    recorded = (dynamics.meta or {}).get("train_fingerprint")
    if recorded and recorded != train.fingerprint():
        filtered_then, filtered_now = (dynamics.meta or {}).get("train_filter"), task.train_filter
        if (filtered_then or {}).get("drop") != (filtered_now or {}).get("drop"):
            raise GreenlmError(f"{where} were recorded on train rows filtered by {(filtered_then or {}).get('drop') or 'nothing'}"
                               f" and task '{task.name}' is now filtered by {(filtered_now or {}).get('drop') or 'nothing'};"
                               " use the same data filters (--drop) as the recording")
        then, now = (dynamics.meta or {}).get("validation_carve"), task.validation_carve
        if then != now:  # the same task, another validation split carved from train: other row numbers
            raise GreenlmError(f"{where} were recorded with {_carve_text(then)} carved from train, and task"
                               f" '{task.name}' now has {_carve_text(now)}: its training rows differ; use the same"
                               f" validation fraction ({(then or {}).get('fraction', 0)}) as the recording")
        raise GreenlmError(f"{where} were recorded on other training rows than task '{task.name}' has; {fix}")
    bad = next((g for g in dynamics.guids if not isinstance(g, int) or isinstance(g, bool)), None)
    if bad is not None:
        raise GreenlmError(f"{where} do not match task '{task.name}': guid {bad!r} is not a row number of its train"
                           " split")
    guids = np.asarray(dynamics.guids, dtype=np.int64)
    outside = guids[(guids < 0) | (guids >= len(train))]
    if outside.size:
        raise GreenlmError(f"{where} do not match task '{task.name}': guid {int(outside[0])} is outside its"
                           f" {len(train)} training rows; {fix}")
    labels = np.asarray(train.labels, dtype=np.int64)[guids]
    differ = np.flatnonzero(labels != dynamics.gold)
    if differ.size:
        i = int(differ[0])
        raise GreenlmError(f"{where} do not match task '{task.name}': {differ.size} row(s) have another gold label"
                           f" (guid {int(guids[i])}: gold {int(dynamics.gold[i])}, task label {int(labels[i])}); {fix}")
