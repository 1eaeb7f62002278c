"""An early-exit model as a folder: saving it whole and loading it back.

Saved layout (greenlm format ``early_exit``, loaded back by ``greenlm.models.load_classifier``):
  config.json        the backbone's config; "greenlm": {"format": "early_exit", exit_layers, temperatures,
                     policy, threshold, patience, exit_pooling, ...}
  model.safetensors  the exit heads (``exits.<layer>.dense`` / ``exits.<layer>.classifier``)
  tokenizer files
  backbone/          the backbone as a complete model folder (plain or pruned), loadable on its own
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from greenlm.common import GreenlmError, atomic_dir, atomic_write_json, atomic_write_text, read_json

if TYPE_CHECKING:
    from greenlm.models.early_exit import EarlyExitClassifier

FORMAT = "early_exit"
BACKBONE_DIR = "backbone"
WEIGHTS_FILE = "model.safetensors"


def save_early_exit(model: EarlyExitClassifier, tokenizer, out_dir: str | Path,
                    extra_json: dict[str, object] | None = None, extra_text: dict[str, str] | None = None) -> Path:
    """Write the complete folder atomically: it appears whole or not at all (any older content stays until then)."""
    from greenlm.models.loading import _quiet_transformers

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        with _quiet_transformers():
            model.save_pretrained(tmp, tokenizer=tokenizer)
            tokenizer.save_pretrained(tmp)
        for name, payload in (extra_json or {}).items():
            atomic_write_json(tmp / name, payload)
        for name, text in (extra_text or {}).items():
            atomic_write_text(tmp / name, text)
    return out_dir


def load_early_exit(source, labels: Sequence[str] | None = None):
    """The ``_FORMAT_LOADERS`` entry for ``early_exit`` folders: backbone, exits, calibration and policy."""
    from safetensors.torch import load_file

    from greenlm.models.early_exit import EarlyExitClassifier
    from greenlm.models.loading import LoadedModel, load_classifier, load_tokenizer

    folder = Path(source.location)
    settings = read_json(folder / "config.json").get("greenlm") or {}
    try:
        exit_layers = [int(x) for x in settings["exit_layers"]]
        temperatures = [float(t) for t in settings["temperatures"]]
        policy, threshold, patience = settings["policy"], settings.get("threshold"), settings.get("patience")
        pooling = str(settings.get("exit_pooling", "mean"))
        backbone_dir = folder / str(settings.get("backbone", BACKBONE_DIR))
    except (KeyError, TypeError, ValueError) as err:
        raise GreenlmError(f"early-exit model '{folder}' has a damaged config.json (greenlm section: {err});"
                           " save it again") from None
    if not backbone_dir.is_dir():
        raise GreenlmError(f"early-exit model '{folder}' has no {backbone_dir.name}/ folder; was it saved completely?")
    inner = load_classifier(str(backbone_dir))
    if labels is not None and list(labels) != list(inner.labels):
        raise GreenlmError(
            f"early-exit model '{folder}' classifies {inner.labels}; its exits cannot be given other labels"
            f" ({list(labels)}): add exits to a model fine-tuned on them"
        )
    model = EarlyExitClassifier(inner.model, exit_layers, policy=policy, threshold=threshold, patience=patience,
                                temperatures=temperatures, pooling=pooling, tokenizer=inner.tokenizer,
                                init_from_final=False)
    if list(model.exit_layers) != exit_layers:
        raise GreenlmError(f"early-exit model '{folder}' lists exit layers {exit_layers} its backbone cannot have")
    state = load_file(str(folder / WEIGHTS_FILE))
    heads = {k.removeprefix("exits."): v for k, v in state.items() if k.startswith("exits.")}
    missing, unexpected = model.exits.load_state_dict(heads, strict=False)
    if missing or unexpected or len(heads) != len(state):
        raise GreenlmError(f"early-exit model '{folder}' has exit weights that do not match its config"
                           f" (missing {len(missing)}, unexpected {len(unexpected)}); was it saved completely?")
    model.set_backbone_info(**{k: v for k, v in settings.items() if k not in model.settings()})
    model.eval()
    notes = list(inner.notes) + [
        f"early exit after layers {exit_layers} ({policy}, "
        + (f"patience {patience})" if policy == "patience" else f"threshold {threshold})")
    ]
    return LoadedModel(model, load_tokenizer(str(folder)), source, list(inner.labels), notes)
