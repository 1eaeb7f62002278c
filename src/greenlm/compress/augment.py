"""Data augmentation for task distillation (TinyBERT, Jiao et al. 2020, Algorithm 1).

TinyBERT multiplies the task's training text: for each sentence, ``copies`` new sentences in which
every word is replaced, with probability ``prob`` (p_t = 0.4), by one of its ``candidates`` (K = 15)
nearest words. The teacher labels the new sentences (soft targets), so a replacement that flips the
sentiment is not a wrong label: it is more signal about the teacher's function. TinyBERT used
N_a = 20 copies; greenlm's default is lower because CPU time is the cost the price tag reports.

Candidates for a word that is one vocabulary token:
  - ``mlm``: the top-K predictions of a masked language model at that position, the word masked out
    (TinyBERT's method, with the pre-trained BERT-base MLM). A fine-tuned classifier keeps no MLM head,
    so this needs a masked LM that shares the teacher's vocabulary (``mlm_model``), e.g. the pre-trained
    checkpoint the teacher was fine-tuned from.
  - ``embedding``: the K nearest vocabulary words to it by cosine similarity in the teacher's own
    input word-embedding table. This is the documented cheaper replacement: one [V, d] matrix product
    for the whole vocabulary instead of one MLM forward pass per word, and it needs nothing but the
    teacher (MiniLM, greenlm's default teacher, ships without an MLM head). Neighbours are context-free,
    where the MLM's are not. TinyBERT itself falls back to context-free (GloVe) neighbours for words
    the tokenizer splits into several pieces.
Words of several tokens, punctuation, numbers and special tokens are never replaced here (greenlm has
no GloVe table to fall back to).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from greenlm.common import GreenlmError
from greenlm.compress.distill_config import AUGMENT_METHODS  # noqa: F401 (re-exported)
from greenlm.data import UNLABELED, TaskSplit

_WORDLIKE = re.compile(r"^[a-z][a-z'\-]*$", re.IGNORECASE)


def replaceable_token_ids(tokenizer) -> list[int]:
    """Vocabulary tokens that are whole alphabetic words (no ``##`` piece, special or [unusedN] token)."""
    specials = set(tokenizer.all_special_ids)
    vocab = tokenizer.get_vocab()
    return sorted(i for token, i in vocab.items() if i not in specials and _WORDLIKE.match(token) and len(token) > 1)


@torch.no_grad()
def embedding_neighbours(word_embeddings: torch.Tensor, query_ids: Sequence[int], allowed_ids: Sequence[int],
                         k: int, *, chunk: int = 1024) -> dict[int, list[int]]:
    """For each query token, the ``k`` allowed tokens with the highest cosine similarity (itself excluded).

    word_embeddings [V, d] (the teacher's input embedding table).
    """
    if not query_ids:
        return {}
    table = torch.nn.functional.normalize(word_embeddings.detach().float(), dim=-1)
    allowed = torch.as_tensor(list(allowed_ids), dtype=torch.long)
    keys = table[allowed]  # [N_allowed, d]
    out: dict[int, list[int]] = {}
    queries = list(query_ids)
    for start in range(0, len(queries), chunk):
        ids = torch.as_tensor(queries[start : start + chunk], dtype=torch.long)
        sims = table[ids] @ keys.T  # [n, N_allowed]
        same = allowed[None, :] == ids[:, None]
        sims[same] = -2.0  # never propose the word itself
        top = sims.topk(min(k, keys.shape[0] - 1), dim=-1).indices  # [n, k]
        for row, token in enumerate(ids.tolist()):
            out[token] = allowed[top[row]].tolist()
    return out


def _words(tokenizer, text: str) -> list[tuple[int, int, int | None]]:
    """(start, end, token id if the word is one replaceable token else None) for each pre-tokenized word."""
    pieces = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
    if not pieces:
        return []
    encodings = tokenizer.backend_tokenizer.encode_batch([word for word, _ in pieces], add_special_tokens=False)
    return [(start, end, enc.ids[0] if len(enc.ids) == 1 else None) for (_, (start, end)), enc in zip(pieces, encodings)]


def augment_split(split: TaskSplit, tokenizer, candidates: Callable[[str, list], list[list[int] | None]], *,
                  copies: int, prob: float, seed: int) -> tuple[TaskSplit, dict]:
    """The split's rows followed by ``copies`` augmented versions of each (label UNLABELED, -1).

    ``candidates(text, words)`` returns, for each word of ``_words``, its candidate token ids (or None).
    Identical copies and copies equal to the original are dropped. Sentence pairs: both texts are
    augmented independently. Returns (split, stats).
    """
    if split.is_pair:
        text_fields = (split.text_a, split.text_b)
    else:
        text_fields = (split.text_a,)
    rng = random.Random(seed)
    new_a, new_b = [], []
    replaced = words_total = 0
    for i in range(len(split)):
        per_field = []
        for texts in text_fields:
            text = texts[i]
            words = _words(tokenizer, text)
            per_field.append((text, words, candidates(text, words)))
        seen = {tuple(texts[i] for texts in text_fields)}
        for _ in range(copies):
            outs = []
            for text, words, cands in per_field:
                pieces, last = [], 0
                for (start, end, _), options in zip(words, cands):
                    words_total += 1
                    if options and rng.random() < prob:
                        token = tokenizer.convert_ids_to_tokens(rng.choice(options))
                        pieces.append(text[last:start] + token)
                        last = end
                        replaced += 1
                pieces.append(text[last:])
                outs.append("".join(pieces))
            key = tuple(outs)
            if key in seen:
                continue
            seen.add(key)
            new_a.append(outs[0])
            if split.is_pair:
                new_b.append(outs[1])
    augmented = TaskSplit(
        text_a=list(split.text_a) + new_a,
        text_b=(list(split.text_b) + new_b) if split.is_pair else None,
        labels=list(split.labels) + [UNLABELED] * len(new_a),
    )
    stats = {
        "original_rows": len(split),
        "augmented_rows": len(new_a),
        "words_replaced_share": round(replaced / words_total, 4) if words_total else 0.0,
    }
    return augmented, stats


class EmbeddingCandidates:
    """Candidates from the teacher's word-embedding space (nearest neighbours, computed once per token)."""

    def __init__(self, tokenizer, word_embeddings: torch.Tensor, k: int):
        self.tokenizer = tokenizer
        self.embeddings = word_embeddings
        self.k = k
        self.allowed = replaceable_token_ids(tokenizer)
        self._allowed_set = set(self.allowed)
        self.table: dict[int, list[int]] = {}

    def prepare(self, texts: Sequence[str]) -> None:
        """Compute the neighbours of every replaceable token in ``texts`` in one batched pass."""
        needed = set()
        for encoding in self.tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False):
            needed.update(i for i in encoding.ids if i in self._allowed_set)
        needed -= set(self.table)
        self.table.update(embedding_neighbours(self.embeddings, sorted(needed), self.allowed, self.k))

    def __call__(self, text: str, words: list) -> list[list[int] | None]:
        out = []
        for _, _, token in words:
            if token is not None and token in self._allowed_set and token not in self.table:
                self.table.update(embedding_neighbours(self.embeddings, [token], self.allowed, self.k))
            out.append(self.table.get(token) if token is not None else None)
        return out


class MaskedLMCandidates:
    """Candidates from a masked language model: the word masked out, its top-K predicted words.

    One forward pass per sentence, with every replaceable word masked in its own row ([n_words, T]).
    """

    def __init__(self, tokenizer, mlm_model, k: int, batch_rows: int = 64):
        self.tokenizer = tokenizer
        self.model = mlm_model.eval()
        self.k = k
        self.batch_rows = batch_rows
        allowed = replaceable_token_ids(tokenizer)
        self.allowed_mask = torch.zeros(len(tokenizer), dtype=torch.bool)
        self.allowed_mask[allowed] = True
        self._allowed_set = set(allowed)

    def prepare(self, texts: Sequence[str]) -> None:  # candidates depend on context: nothing to precompute
        pass

    @torch.no_grad()
    def __call__(self, text: str, words: list) -> list[list[int] | None]:
        tok = self.tokenizer
        encoding = tok(text, return_offsets_mapping=True, truncation=True, max_length=tok.model_max_length)
        ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
        targets = []  # (word index, token position)
        for w, (start, end, token) in enumerate(words):
            if token is None or token not in self._allowed_set:
                continue
            position = next((p for p, (s, e) in enumerate(offsets) if s == start and e == end and ids[p] == token), None)
            if position is not None:
                targets.append((w, position))
        out: list[list[int] | None] = [None] * len(words)
        for start in range(0, len(targets), self.batch_rows):
            chunk = targets[start : start + self.batch_rows]
            rows = torch.tensor([ids] * len(chunk))
            for r, (_, position) in enumerate(chunk):
                rows[r, position] = tok.mask_token_id
            logits = self.model(input_ids=rows, attention_mask=torch.ones_like(rows)).logits  # [n, T, V]
            positions = torch.tensor([p for _, p in chunk])
            picked = logits[torch.arange(len(chunk)), positions].float()  # [n, V]
            picked[:, ~self.allowed_mask[: picked.shape[1]]] = float("-inf")
            picked[torch.arange(len(chunk)), rows.new_tensor([ids[p] for _, p in chunk])] = float("-inf")
            top = picked.topk(self.k, dim=-1).indices
            for r, (w, _) in enumerate(chunk):
                out[w] = top[r].tolist()
        return out


def load_masked_lm(spec: str, teacher_tokenizer):
    """A masked LM sharing the teacher's vocabulary, with its MLM head weights present (else a clear error)."""
    from transformers import AutoModelForMaskedLM

    from greenlm.models import load_tokenizer, resolve_model_source
    from greenlm.models.loading import _quiet_transformers, check_local_weights

    source = resolve_model_source(spec)
    if source.kind == "tiny":
        raise GreenlmError("--augment-mlm-model must be a masked language model folder or hub id, not 'tiny'")
    if source.kind == "local":
        check_local_weights(Path(source.location), allow_pickle=False)  # safetensors only, shards included
    try:
        with _quiet_transformers():
            model, info = AutoModelForMaskedLM.from_pretrained(source.location, output_loading_info=True,
                                                               use_safetensors=True)
            tokenizer = load_tokenizer(source.location)
    except Exception as err:  # many error types from hub and files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GreenlmError(f"could not load masked LM '{spec}' for augmentation: {first}") from None
    missing = [k for k in info.get("missing_keys", []) if any(p in k for p in ("cls.", "lm_head", "generator_lm_head", "predictions"))]
    if missing:
        raise GreenlmError(
            f"'{spec}' has no masked-LM head (missing {missing[0]}, ...); give a masked language model"
            " (e.g. the pre-trained checkpoint the teacher was fine-tuned from) or use --augment embedding"
        )
    if tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        raise GreenlmError(
            f"masked LM '{spec}' has a different vocabulary from the teacher's; augmentation needs the teacher's tokenizer"
        )
    return model
