"""The run directory: layout, stage identities, the cache of finished stages, atomic stage hand-over.

    runs/<name>/
      recipe.yaml            the resolved recipe (every default filled in)
      run.log                what happened, with times
      <stage>/               one finished model folder per stage: HF format + safetensors,
                             metrics.json, pricetag.json, stage.json (identity and artifact hash)
      .work/<stage>/         a stage in progress: its checkpoints; removed when the stage is done
      measurements.json      the one measuring pass over every model (cached by the models' hashes)
      report.json, report.md

A stage folder appears only when the stage is complete (it is built under .work and renamed into
place), so a crash never leaves a stage that looks finished.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_text, read_json
from greenlm.stage.folders import STAGE_FILE, artifact_hash, identity_key, install_folder  # noqa: F401 (re-exported)

RECIPE_FILE = "recipe.yaml"
WORK = ".work"


@dataclass(frozen=True)
class FinishedStage:
    folder: Path
    record: dict  # stage.json

    @property
    def key(self) -> str:
        return self.record["key"]

    @property
    def artifact_sha256(self) -> str:
        return self.record["artifact_sha256"]


def read_finished(folder: Path) -> FinishedStage | None:
    try:
        return FinishedStage(folder, read_json(folder / STAGE_FILE))
    except (OSError, ValueError, KeyError):
        return None


def find_cached(runs_root: Path, key: str, exclude: Path) -> FinishedStage | None:
    """A finished stage with this key in any run under ``runs_root`` (sharing beats retraining)."""
    if not runs_root.is_dir():
        return None
    for run in sorted(runs_root.iterdir()):
        if not run.is_dir() or run.name.startswith("."):
            continue
        for stage in sorted(run.iterdir()):
            if stage == exclude or not stage.is_dir() or stage.name.startswith("."):
                continue
            finished = read_finished(stage)
            if finished is not None and finished.record.get("key") == key:
                return finished
    return None


def copy_stage(source: Path, destination: Path, tmp_parent: Path) -> None:
    """Copy a cached stage from another run (hard links where the file system allows)."""
    tmp = tmp_parent / f"{destination.name}.copy"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, tmp, copy_function=link_or_copy)
    install_folder(tmp, destination)


class RunLog:
    """Append-only log of a run (``run.log``) that also echoes to the terminal."""

    def __init__(self, path: Path, echo):
        self.path = path
        self.echo = echo

    def __call__(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"{stamp} {message}\n")
        except OSError as err:
            raise GreenlmError(f"cannot write the run log {self.path}: {err.strerror}") from None
        self.echo(message)


def write_recipe(run_dir: Path, text: str) -> None:
    atomic_write_text(run_dir / RECIPE_FILE, text)
