"""The data distillation trains on: the training split augmented (and cached, it can take long), rows keyed
by their row number, and the teacher's logits over them with the fingerprint that keys their cache."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from greenlm.common import atomic_write_json, read_json_cache
from greenlm.compress import augment as aug
from greenlm.compress.distill_config import DistillConfig
from greenlm.data import EncodedSplit, TaskSplit, collate, length_grouped_batches


def _teacher_inputs(batch: dict, token_map: torch.Tensor | None) -> dict:
    out = {k: v for k, v in batch.items() if k != "labels"}
    if token_map is not None:
        out["input_ids"] = token_map.to(out["input_ids"].device)[out["input_ids"]]
    return out


@torch.no_grad()
def teacher_logits(teacher, data: EncodedSplit, *, pad_token_id: int, token_map: torch.Tensor | None = None,
                   batch_size: int = 128) -> torch.Tensor:
    """The teacher's logits [N, C] for every row of ``data`` (student token ids mapped to the teacher's)."""
    teacher.eval()
    out = torch.empty(len(data), teacher.config.num_labels)
    for indices in length_grouped_batches(data.lengths(), batch_size, shuffle=False):
        batch = _teacher_inputs(collate(data, indices, pad_token_id), token_map)
        out[torch.as_tensor(indices)] = teacher(**batch).logits.float()
    return out


def _data_fingerprint(data: EncodedSplit) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([data.input_ids, data.token_type_ids]).encode())
    return digest.hexdigest()


def _row_id_split(data: EncodedSplit) -> EncodedSplit:
    """The same rows with their row number as "label": the loss looks up gold label and teacher logits by it."""
    return EncodedSplit(input_ids=data.input_ids, token_type_ids=data.token_type_ids, labels=list(range(len(data))))


def _mean_length(data: EncodedSplit) -> int:
    return max(1, round(sum(data.lengths()) / max(1, len(data))))


def _augmented_train(split: TaskSplit, teacher, tokenizer, config: DistillConfig, work_dir: Path,
                     on_note) -> tuple[TaskSplit, dict]:
    """The training split, augmented per the config; cached in work_dir (it can take long)."""
    if config.augment == "none":
        return split, {"method": "none", "original_rows": len(split), "augmented_rows": 0}
    key = {
        "method": config.augment, "copies": config.augment_copies, "prob": config.augment_prob,
        "candidates": config.augment_candidates, "mlm_model": config.augment_mlm_model, "seed": config.seed,
        "rows": split.fingerprint(),
    }
    cache = work_dir / "augmented.json"
    saved = read_json_cache(cache)
    if saved is not None:
        if saved.get("key") == key:
            data = saved["split"]
            return TaskSplit(text_a=data["text_a"], text_b=data["text_b"], labels=data["labels"]), saved["stats"]
    if config.augment == "embedding":
        candidates = aug.EmbeddingCandidates(tokenizer, teacher.get_input_embeddings().weight, config.augment_candidates)
    else:
        mlm = aug.load_masked_lm(config.augment_mlm_model, tokenizer)
        candidates = aug.MaskedLMCandidates(tokenizer, mlm, config.augment_candidates)
    texts = list(split.text_a) + (list(split.text_b) if split.text_b is not None else [])
    candidates.prepare(texts)
    augmented, stats = aug.augment_split(split, tokenizer, candidates, copies=config.augment_copies,
                                         prob=config.augment_prob, seed=config.seed)
    stats = {"method": config.augment, **stats}
    on_note(f"augmented {stats['original_rows']} training rows with {stats['augmented_rows']} new ones ({config.augment})")
    atomic_write_json(cache, {"key": key, "stats": stats, "split": asdict(augmented)})
    return augmented, stats
