"""Load and save sequence classifiers as Hugging Face folders (safetensors only, no remote code)."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from greenlm.common import GreenlmError, atomic_dir, atomic_write_json, read_json
from greenlm.models.quantized import apply_saved_quantization
from greenlm.models.sources import ModelSource, resolve_model_source
from greenlm.models.tiny import TinySpec, build_tiny_classifier

_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "model.onnx")  # ONNX: protobuf data, no code
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# BERT-family positions: RoBERTa-style models offset positions by padding_idx + 1.
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}


# Folders whose config.json has ``"greenlm": {"format": NAME, ...}`` are loaded by the function named
# here ("module:function", called as ``f(source, labels=...) -> LoadedModel``). Plain fine-tuned
# classifiers have no format and load through transformers.
_FORMAT_LOADERS: dict[str, str] = {
    "pruned": "greenlm.models.pruned:load_pruned",
    "early_exit": "greenlm.models.early_exit:load_early_exit",
    "linear_attention": "greenlm.models.linear_attention:load_linear_attention",
    "onnx": "greenlm.runtime.engine:load_onnx_folder",
}


# Folders in these formats cannot be loaded right by plain transformers (weights reshaped, exit heads beside a
# backbone, another attention): their config.json gets a model type transformers does not know, so that
# ``AutoModelForSequenceClassification.from_pretrained`` fails with its "does not recognize this architecture"
# message instead of building a random or different model. The real type is kept in "greenlm"/"base_model_type".
_OWN_MODEL_TYPES = {"pruned": "greenlm_pruned", "early_exit": "greenlm_early_exit",
                    "linear_attention": "greenlm_linear_attention"}
LOAD_HINT = ("load it with greenlm (greenlm predict / eval / bench, or greenlm.models.load_classifier), or export it"
             " to ONNX with greenlm export")


def mark_format(config: dict) -> dict:
    """``config`` (a config.json as a dict) with the model type of its greenlm format, when it has one of them."""
    meta = config.get("greenlm") or {}
    own = _OWN_MODEL_TYPES.get(meta.get("format"))
    if own is None or config.get("model_type") == own:
        return config
    return {**config, "model_type": own, "architectures": [f"{own} (not a transformers class: {LOAD_HINT})"],
            "greenlm": {**meta, "base_model_type": config.get("model_type"),
                        "base_architectures": config.get("architectures")}}


def _base_architectures(raw: dict, base: str) -> list[str] | None:
    """The architectures a marked folder had before ``mark_format`` hid them. Folders marked before they were
    kept: pruned and early-exit folders are always classifiers, and so is a linear-attention one with labels."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    meta = raw.get("greenlm") or {}
    if "base_architectures" in meta:
        return meta["base_architectures"]
    if meta.get("format") in ("pruned", "early_exit") or meta.get("labels"):
        name = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.get(base)
        return [name] if name else None
    return None


def mark_format_file(folder: Path) -> None:
    """Rewrite ``folder/config.json`` with ``mark_format`` (after a transformers ``save_pretrained``)."""
    path = Path(folder) / "config.json"
    config = read_json(path)
    marked = mark_format(config)
    if marked is not config:
        atomic_write_json(path, marked)


def model_config(folder: str | Path):
    """The transformers config of a model folder, greenlm formats included (their real model type restored)."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    folder = Path(folder)
    raw = read_json(folder / "config.json", hint="re-save the model, or point at another folder")
    base = (raw.get("greenlm") or {}).get("base_model_type")
    with _quiet_transformers():
        if base is None:
            return AutoConfig.from_pretrained(str(folder))
        if base not in CONFIG_MAPPING:
            raise GreenlmError(f"model folder '{folder}' is a {base!r} model, which this transformers version lacks")
        config = CONFIG_MAPPING[base].from_dict({**raw, "model_type": base,
                                                 "architectures": _base_architectures(raw, base)})
    return config


def _special_format(folder: Path) -> str | None:
    try:
        config = read_json(folder / "config.json", hint="re-save the model, or point at another folder")
    except OSError:
        return None
    fmt = (config.get("greenlm") or {}).get("format")
    if fmt is None:
        return None
    if fmt not in _FORMAT_LOADERS:
        raise GreenlmError(f"model folder '{folder}' is in greenlm format '{fmt}', which this greenlm version cannot load")
    return fmt


@dataclass
class LoadedModel:
    model: object  # transformers PreTrainedModel (sequence classification)
    tokenizer: object
    source: ModelSource
    labels: list[str]
    notes: list[str] = field(default_factory=list)  # things the user should know (head initialised, ...)


@contextlib.contextmanager
def _quiet_transformers():
    """transformers prints load reports at warning level; greenlm reports what matters itself."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()


def _pickled_shards(folder: Path) -> list[str]:
    """Shards named by a safetensors index that are not safetensors files (a renamed pickle loads as one)."""
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return []
    try:
        weight_map = read_json(index).get("weight_map") or {}
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, AttributeError, TypeError):
        raise GreenlmError(f"{index} is not a valid index (JSON with a 'weight_map'); re-save the model") from None
    return [shard for shard in shards if not str(shard).endswith(".safetensors")]


def check_local_weights(folder: Path, allow_pickle: bool) -> bool:
    """True when the folder holds safetensors weights; refuses pickle-only and weight-less folders."""
    if not (folder / "config.json").is_file():
        raise GreenlmError(f"model folder '{folder}' has no config.json; is it a Hugging Face model folder?")
    if any((folder / name).is_file() for name in _SAFE_WEIGHTS):
        pickled = _pickled_shards(folder)
        if not pickled:
            return True
        if not allow_pickle:
            raise GreenlmError(
                f"model folder '{folder}': model.safetensors.index.json lists pickle shards ({pickled[0]}), which can"
                " run code when loaded; convert them to safetensors, or pass --allow-pickle if you trust the source")
        return False
    if any((folder / name).is_file() for name in _PICKLE_WEIGHTS):
        if not allow_pickle:
            raise GreenlmError(
                f"model folder '{folder}' has only pickle weights (pytorch_model.bin), which can run code when"
                " loaded; convert them to safetensors, or pass --allow-pickle if you trust the source"
            )
        return False
    raise GreenlmError(f"model folder '{folder}' has no weights (model.safetensors); was it saved completely?")


def load_tokenizer(location: str, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    with _quiet_transformers():
        return AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)


def load_classifier(
    spec: str,
    *,
    labels: Sequence[str] | None = None,
    train_texts: Iterable[str] | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    seed: int = 0,
    trainable: bool = False,
) -> LoadedModel:
    """Load ``spec`` (see ``greenlm.models.sources``) as a sequence classifier.

    With ``labels``, the classifier head is made for them: a model already fine-tuned on exactly these
    labels keeps its head; otherwise a new head is initialised (and a note says so). Without ``labels``,
    the model's own labels are used (evaluation, prediction). ``trainable``: the caller trains, distils or
    rewrites the model, so it must be a PyTorch module (an exported ONNX folder only runs): else one line.
    """
    loaded = _load_classifier(spec, labels=labels, train_texts=train_texts, allow_pickle=allow_pickle,
                              trust_remote_code=trust_remote_code, seed=seed)
    if trainable:
        import torch

        if not isinstance(loaded.model, torch.nn.Module):
            raise GreenlmError(f"model '{spec}' is an exported ONNX model: it runs (greenlm eval, predict, bench) but"
                               " cannot be trained, distilled or compressed; start from the PyTorch folder it was"
                               " exported from")
    return loaded


def _load_classifier(spec: str, *, labels, train_texts, allow_pickle: bool, trust_remote_code: bool,
                     seed: int) -> LoadedModel:
    source = resolve_model_source(spec)
    if source.kind == "tiny":
        if labels is None or train_texts is None:
            raise GreenlmError("a 'tiny' model is built for a task: give --task so it knows labels and vocabulary")
        model, tokenizer = build_tiny_classifier(TinySpec.parse(source.location), list(labels), train_texts, seed)
        return LoadedModel(model, tokenizer, source, list(labels), ["tiny model built from scratch"])

    from transformers import AutoConfig, AutoModelForSequenceClassification

    use_safetensors = True
    if source.kind == "local":
        use_safetensors = check_local_weights(Path(source.location), allow_pickle)
        special = _special_format(Path(source.location))
        if special is not None:
            # Models greenlm rewrote (pruned, with exits, quantized) have their own loader.
            module_name, _, function_name = _FORMAT_LOADERS[special].partition(":")
            loader = getattr(importlib.import_module(module_name), function_name)
            try:
                return apply_saved_quantization(loader(source, labels=labels))
            except GreenlmError:
                raise
            except Exception as err:  # a damaged weights or graph file: many error types, one line for the user
                raise GreenlmError(f"could not load {special} model folder '{spec}': {_first_line(err)};"
                                   " its files may be damaged: rebuild it with the command that made it") from None
    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(source.location, trust_remote_code=trust_remote_code)
            notes: list[str] = []
            kwargs: dict = {}
            if labels is not None:
                labels = list(labels)
                own = [config.id2label[i] for i in sorted(config.id2label)] if is_sequence_classifier(config) else None
                if own != labels:
                    kwargs = dict(
                        num_labels=len(labels),
                        id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)},
                        ignore_mismatched_sizes=True,
                    )
                    notes.append(f"new classification head for labels {labels} (initialised randomly)")
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source.location,
                use_safetensors=use_safetensors,
                trust_remote_code=trust_remote_code,
                output_loading_info=True,
                **kwargs,
            )
            _check_backbone_loaded(spec, model, info)
            tokenizer = load_tokenizer(source.location, trust_remote_code=trust_remote_code)
    except GreenlmError:
        raise
    except Exception as err:  # hub and file errors come in many types; the user needs one line
        first_line = _first_line(err)
        if source.kind == "hub":
            raise GreenlmError(
                f"could not load '{spec}' from the Hugging Face Hub (no internet, or no such model?): {first_line}."
                " Use a local folder or the offline default 'minilm'"
            ) from None
        raise GreenlmError(f"could not load model '{spec}': {first_line}") from None
    model_labels = [model.config.id2label[i] for i in sorted(model.config.id2label)]
    # a folder saved as PyTorch int8 holds fp32 weights and the settings to quantize them: done here
    return apply_saved_quantization(LoadedModel(model, tokenizer, source, model_labels, notes))


def _check_backbone_loaded(spec: str, model, info: dict) -> None:
    """Refuse a folder whose weights do not fill its encoder: transformers would build the missing ones at random and
    only warn (e.g. a config.json of another model type beside a BERT's weights: a random model). Only weights outside
    the encoder (``base_model_prefix``: the classifier head, new for a base model) and its pooler (absent from
    masked-LM checkpoints) may be new."""
    prefix = f"{getattr(model, 'base_model_prefix', '') or ''}."
    missing = sorted(key for key in info.get("missing_keys") or ()
                     if prefix != "." and key.startswith(prefix) and not key.startswith(f"{prefix}pooler."))
    if missing:
        raise GreenlmError(f"model '{spec}': {len(missing)} weight(s) of its encoder are not in its files (e.g."
                           f" {missing[0]}), so they would be random: its config.json does not fit its weights;"
                           " re-save the model, or point at the folder it came from")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def relabel_config(config, labels: Sequence[str] | None) -> list[str]:
    """Give ``config`` the head for ``labels`` when they differ from its own; returns the notes (a new head)."""
    own = [config.id2label[i] for i in sorted(config.id2label)]
    if labels is None or list(labels) == own:
        return []
    labels = list(labels)
    config.num_labels = len(labels)
    config.id2label, config.label2id = dict(enumerate(labels)), {label: i for i, label in enumerate(labels)}
    return [f"new classification head for labels {labels} (initialised randomly)"]


def load_rebuilt_weights(model, state: dict, *, folder, what: str, notes: list[str], source) -> LoadedModel:
    """Load a greenlm-rebuilt folder's ``state`` into ``model`` (built from its config.json) and return it loaded:
    every tensor must match, except a classifier head being replaced (``notes`` from ``relabel_config``: the new
    head keeps its initialisation)."""
    new_head = bool(notes)
    expected = model.state_dict()
    may_miss: set[str] = set()
    if new_head:
        prefix = model.base_model_prefix + "."
        may_miss = {k for k in expected if not k.startswith(prefix)}
        state = {k: v for k, v in state.items()
                 if k.startswith(prefix) or (k in expected and v.shape == expected[k].shape)}
    missing = sorted(set(expected) - set(state) - may_miss)
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        found = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                 else f"shapes of {wrong[:3]}")
        raise GreenlmError(f"{what} folder '{folder}': weights do not match its config.json ({found});"
                           " was it saved completely?")
    model.load_state_dict(state, strict=not new_head)
    model.eval()
    tokenizer = load_tokenizer(str(folder))
    model_labels = [model.config.id2label[i] for i in sorted(model.config.id2label)]
    return LoadedModel(model, tokenizer, source, model_labels, notes)


def is_sequence_classifier(config) -> bool:
    """Whether ``config`` (a transformers config) describes a ...ForSequenceClassification model."""
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith("ForSequenceClassification") for a in archs)


def model_max_length(config) -> int:
    """Longest input (tokens, special tokens included) the model's position table allows."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return 512
    return positions - _POSITION_OFFSET.get(getattr(config, "model_type", ""), 0)


DEFAULT_MAX_LENGTH = 128  # tokens per input when neither the setting nor the model says


def input_max_length(config, tokenizer, setting, rows, on_note=None, *, who: str = "--max-length",
                     rows_name: str = "training rows") -> int:
    """Tokens per input for a loaded model (``config``, ``tokenizer``): ``setting`` when it is a number; ``"auto"``:
    the length that covers most of ``rows`` (a TaskSplit; ``rows_name`` says what they are: the training rows of a
    command that trains, the rows a command reads), at most the model's positions (greenlm.data.auto_max_length,
    said to ``on_note``); None: what the model was fine-tuned with, else 128. Checked against the model's positions
    (``who`` names the setting in the message)."""
    from greenlm.data import auto_max_length

    limit = model_max_length(config)
    if setting == "auto":
        return auto_max_length(rows, tokenizer, limit, on_note, rows_name)
    value = setting or (getattr(config, "greenlm", None) or {}).get("max_length") or min(DEFAULT_MAX_LENGTH, limit)
    if value > limit:
        raise GreenlmError(f"{who} {value} is above what the model's positions allow ({limit}); use <= {limit}")
    return value


def save_classifier(model, tokenizer, out_dir: str | Path, extra_json: dict[str, dict] | None = None) -> Path:
    """Write a complete HF folder (safetensors) atomically; ``extra_json`` adds files like metrics.json.

    The folder appears whole or not at all: a crash leaves any earlier content of ``out_dir`` in place.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        with _quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        mark_format_file(tmp)
        for name, payload in (extra_json or {}).items():
            atomic_write_json(tmp / name, payload)
    return out_dir
