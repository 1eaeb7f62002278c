"""What a finished stage folder holds, and how it is handed over whole.

    NAME/
      config.json, model.safetensors, tokenizer files...   the model (Hugging Face format), written by the method
      metrics.json     accuracy per split and the method's details (the shell adds task, method, notes, costs)
      pricetag.json    what the stage cost (greenlm.measure.PriceTagRecord)
      stage.json       identity, key, artifact hash: what makes the folder reusable and cacheable
      README.md        the model card
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from greenlm.common import move_into_place, read_json_cache

METRICS_FILE = "metrics.json"
PRICETAG_FILE = "pricetag.json"
STAGE_FILE = "stage.json"
CARD_FILE = "README.md"

# Files that make up a model artifact (what downstream stages and the cache key depend on).
_ARTIFACT_SUFFIXES = (".safetensors", ".onnx", ".json", ".txt", ".model", ".data")
_NOT_ARTIFACT = {METRICS_FILE, PRICETAG_FILE, STAGE_FILE, "greenlm_run.json", CARD_FILE}


def artifact_hash(folder: Path, suffixes: tuple[str, ...] = _ARTIFACT_SUFFIXES) -> str:
    """sha256 over the names and contents of a model folder's weight, config and tokenizer files (or of the files
    with other ``suffixes``: a training_dynamics folder's ``.jsonl``)."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in suffixes and path.name not in _NOT_ARTIFACT \
                and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            digest.update(str(path.relative_to(folder)).encode() + b"\x00")
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def identity_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def identity_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the entries that differ between two identities (or recipes)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(identity_differences(a, b, path + "."))
        elif a != b:
            out.append(path)
    return out


def read_stage_file(folder: Path) -> dict | None:
    """A finished stage's stage.json (None when the folder holds no finished stage)."""
    record = read_json_cache(Path(folder) / STAGE_FILE)
    return record if record is not None and "key" in record else None


def install_folder(built: Path, destination: Path) -> None:
    """Move a complete folder into place (``greenlm.common.move_into_place``: never a half-replaced folder)."""
    move_into_place(built, destination)
