"""Training checkpoints: weights, optimizer, scheduler, RNG and position in the data, written atomically.

Layout of a checkpoint folder:
  model.safetensors   model weights (safetensors: data, never code)
  extras.safetensors  weights of extra trainable modules (e.g. distillation projections), if any
  optimizer.pt        optimizer + scheduler state (tensors and numbers only; loaded with weights_only=True)
  rng.pt              torch / python / numpy RNG states, one entry per process
  state.json          epoch, batch position, optimizer step, best metric, history
The folder is built under a temporary name and renamed, so a ``kill -9`` leaves either the previous
complete checkpoint or the new complete one.
"""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from greenlm.common import GreenlmError, atomic_dir, read_json, recover_dir

STATE_FILE = "state.json"


def rng_state() -> dict:
    """This process's RNG states, as tensors and numbers only (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, *, model, optimizer, scheduler, extras, state: dict, rng_states: list[dict]) -> None:
    """Write one complete checkpoint (call on the main process; ``rng_states`` holds one entry per process)."""
    with atomic_dir(folder) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        if extras is not None:
            save_model(extras, str(tmp / "extras.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        torch.save(rng_states, tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))


def load_checkpoint(folder: Path, *, model, optimizer, scheduler, extras, rank: int) -> dict:
    """Restore everything ``save_checkpoint`` wrote; returns the saved state dict.

    A checkpoint damaged outside greenlm (its files are written whole, then renamed) is refused in one line
    that names it, never resumed from in part.
    """
    hint = f"delete {folder} to start this training over"
    state = read_json(folder / STATE_FILE, hint=hint)
    try:
        load_model(model, str(folder / "model.safetensors"))
        if extras is not None:
            load_model(extras, str(folder / "extras.safetensors"))
        saved = torch.load(folder / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        rng_states = torch.load(folder / "rng.pt", weights_only=True)
        restore_rng_state(rng_states[min(rank, len(rng_states) - 1)])
    except (OSError, RuntimeError, ValueError, KeyError, IndexError, TypeError, EOFError, pickle.UnpicklingError,
            SafetensorError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise GreenlmError(f"the checkpoint in {folder} is damaged ({first}); {hint}") from None
    return state


def has_checkpoint(folder: Path) -> bool:
    return (recover_dir(folder) / STATE_FILE).is_file()
