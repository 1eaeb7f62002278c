"""How a task's rows fit a model's input length: rows per split cut at ``max_length``, and the length that
covers most rows. ``greenlm tasks check --model`` prints it before anything is trained.

    lengths = task_lengths(task, "minilm")            # max_length: the model folder's own, else 128
    lengths["splits"]["train"]  # {"rows", "truncated", "share", "max_length", "covering_length"}

Only the tokenizer is loaded (a ``tiny:`` model builds its vocabulary from the training texts, as training does).
"""

from __future__ import annotations

import json
from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.data import Task, covering_length, token_lengths
from greenlm.data.encode import AUTO_LENGTH_SHARE
from greenlm.models.loading import DEFAULT_MAX_LENGTH, load_tokenizer
from greenlm.models.sources import resolve_model_source
from greenlm.models.tiny import TinySpec, build_tiny_tokenizer

def task_lengths(task: Task, model_spec: str, max_length: int | None = None) -> dict:
    """Per split: rows, rows longer than ``max_length`` (cut when the model reads them) and the length covering
    ``AUTO_LENGTH_SHARE`` of the rows; ``max_length`` None: what the model folder was fine-tuned with, else 128."""
    tokenizer, saved = tokenizer_for(model_spec, task)
    limit = max_length if max_length is not None else saved or DEFAULT_MAX_LENGTH
    splits = {}
    for name, split in task.splits.items():
        lengths = token_lengths(split, tokenizer)
        cut = sum(1 for n in lengths if n > limit)
        splits[name] = {"rows": len(lengths), "truncated": cut, "share": round(cut / len(lengths), 6),
                        "max_length": limit, "covering_length": covering_length(lengths, AUTO_LENGTH_SHARE)}
    return {"model": model_spec, "max_length": limit, "covering_share": AUTO_LENGTH_SHARE, "splits": splits}


def tokenizer_for(model_spec: str, task: Task):
    """(the tokenizer of ``model_spec``, the max_length a greenlm model folder was fine-tuned with, or None); a
    ``tiny:`` model's is built from the task's training texts, as training builds it."""
    source = resolve_model_source(model_spec)
    if source.kind == "tiny":
        spec = TinySpec.parse(source.location)
        return build_tiny_tokenizer(task.split("train").joined_texts(), spec.vocab, spec.positions), None
    try:
        tokenizer = load_tokenizer(source.location)
    except Exception as err:  # hub and file errors come in many types; the user needs one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise GreenlmError(f"could not load the tokenizer of '{model_spec}': {first}") from None
    saved = None
    config = Path(source.location) / "config.json"
    if source.kind == "local" and config.is_file():
        try:
            saved = (json.loads(config.read_text(encoding="utf-8")).get("greenlm") or {}).get("max_length")
        except (OSError, ValueError):
            saved = None
    return tokenizer, saved if isinstance(saved, int) else None
