"""Model folders as the runtimes see them: what a folder holds (a classifier, its saved max_length, its
weight files) and the ONNX folder format, written by ``greenlm export`` / ``greenlm quantize`` and loaded
through ``load_classifier`` (``"format": "onnx"``: model.onnx, config.json, the tokenizer)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from greenlm.common import GreenlmError, atomic_write_json
from greenlm.data import encode_split
from greenlm.models.loading import (LoadedModel, is_sequence_classifier, load_classifier, load_tokenizer,
                                    model_max_length)
from greenlm.runtime.onnx import export_onnx
from greenlm.runtime.packing import pack
from greenlm.runtime.runtimes import OnnxClassifier, OrtRuntime

ONNX_FORMAT = "onnx"  # config.json "greenlm": {"format": "onnx", "onnx": {...}}
ONNX_FILE = "model.onnx"


def require_classifier(loaded: LoadedModel, spec: str) -> None:
    """Runtimes, export and quantization take fine-tuned sequence classifiers; say so for anything else."""
    if not is_sequence_classifier(loaded.model.config):
        archs = getattr(loaded.model.config, "architectures", None)
        raise GreenlmError(f"model '{spec}' is not a supported architecture: greenlm exports, quantizes and serves"
                           f" fine-tuned sequence classifiers (...ForSequenceClassification), this is"
                           f" {archs or 'unknown'}; fine-tune it first (greenlm train)")


def saved_max_length(config) -> int:
    saved = (getattr(config, "greenlm", None) or {}).get("max_length")
    return int(saved) if saved else min(128, model_max_length(config))


def weight_files(loaded: LoadedModel) -> list[Path]:
    """The weight files of a local model folder, sub-folders included (an early-exit folder keeps its
    backbone in ``backbone/``), hidden folders (work files, checkpoints) excluded."""
    if loaded.source.kind != "local":
        return []
    folder = Path(loaded.source.location)
    return sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def onnx_settings(config) -> dict:
    return ((getattr(config, "greenlm", None) or {}).get("onnx") or {})


def load_onnx_folder(source, labels=None, threads: int | None = None) -> LoadedModel:
    """The loader of ``"format": "onnx"`` folders (``_FORMAT_LOADERS``): model.onnx + config + tokenizer."""
    from transformers import AutoConfig

    folder = Path(source.location)
    onnx_file = folder / ONNX_FILE
    if not onnx_file.is_file():
        raise GreenlmError(f"model folder '{folder}' is an ONNX model but has no {ONNX_FILE}; was it saved completely?")
    config = AutoConfig.from_pretrained(str(folder))
    own = [config.id2label[i] for i in sorted(config.id2label)]
    if labels is not None and list(labels) != own:
        raise GreenlmError(
            f"model folder '{folder}' is an exported ONNX model for labels {own}; it cannot be given new labels"
            " or trained: start from the PyTorch model it was made from"
        )
    runtime = OrtRuntime(onnx_file, precision=onnx_settings(config).get("precision", "fp32"), threads=threads)
    model = OnnxClassifier(runtime, config)
    return LoadedModel(model, load_tokenizer(str(folder)), source, own,
                       [f"ONNX Runtime model ({runtime.precision}); runs, cannot be trained"])


def write_onnx_folder(folder: str | os.PathLike, onnx_file: str | os.PathLike, config, tokenizer, settings: dict,
                      extra_json: dict[str, dict] | None = None) -> Path:
    """Fill ``folder`` (usually the temporary folder of ``atomic_dir``) with a loadable ONNX model folder:
    ``model.onnx``, ``config.json`` (``"greenlm": {"format": "onnx", "onnx": settings}``), the tokenizer."""
    import copy
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, folder / ONNX_FILE)
    config = copy.deepcopy(config)
    config.greenlm = {**(getattr(config, "greenlm", None) or {}), "format": ONNX_FORMAT, "onnx": settings}
    config.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    for name, payload in (extra_json or {}).items():
        atomic_write_json(folder / name, payload)
    return folder


def export_folder(spec: str, out_dir: str | os.PathLike, *, task=None, optimize: bool | None = None,
                  opset: int = 17, max_length: int | None = None, allow_pickle: bool = False) -> dict:
    """``greenlm export``: write the classifier ``spec`` as an fp32 ONNX model folder at ``out_dir``
    (atomically), checked against PyTorch on rows of ``task``'s dev split (else random ids)."""
    from greenlm.common import atomic_dir

    loaded = load_classifier(spec, allow_pickle=allow_pickle)
    model, tokenizer = loaded.model, loaded.tokenizer
    if isinstance(model, OnnxClassifier):
        raise GreenlmError(f"model '{spec}' is already an ONNX model folder")
    require_classifier(loaded, spec)
    check_batches = None
    if task is not None:
        split = task.splits.get(task.eval_split) or next(iter(task.splits.values()))
        encoded = encode_split(split, tokenizer, max_length if max_length is not None else saved_max_length(model.config))
        packed = pack(encoded, tokenizer.pad_token_id)
        order = np.argsort(packed.lengths, kind="stable")
        picks = [order[-1:], order[:4], order[np.linspace(0, len(order) - 1, num=min(16, len(order))).astype(int)]]
        check_batches = [packed.batch(p) for p in picks if len(p)]
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        report = export_onnx(model, tmp / "build" / ONNX_FILE, check_batches=check_batches, optimize=optimize,
                             opset=opset).to_dict()
        report["checked_on"] = f"{task.name} dev rows" if task is not None else "random token ids"
        settings = {"precision": "fp32", "opset": opset, "fused_ops": report["fused_ops"], "fp32_nodes": []}
        write_onnx_folder(tmp, tmp / "build" / ONNX_FILE, model.config, tokenizer, settings)
        import shutil

        shutil.rmtree(tmp / "build")
        report["path"] = str(out_dir / ONNX_FILE)
        report["disk_bytes"] = (tmp / ONNX_FILE).stat().st_size
        atomic_write_json(tmp / "export.json", report)
    return report
