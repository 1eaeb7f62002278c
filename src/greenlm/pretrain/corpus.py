"""The pre-training corpus: find it, refuse what is not text, cut it into full blocks of tokens.

``--corpus FILE``: a UTF-8 text file, one paragraph (or sentence) per line; blank lines are skipped.
``--corpus wikitext2``: WikiText-2 (Merity et al. 2016, the tokenized v1 files ``wiki.train.tokens`` and
``wiki.valid.tokens``), found in ``$GREENLM_WIKITEXT2`` or in ``shared/data/wikitext2`` beside the repository.

Blocks (as BERT's and ELECTRA's pre-training data): the corpus's tokens in order, cut into pieces of
``max_length - 2`` tokens, each framed as ``[CLS] piece [SEP]``, so every block is exactly ``max_length`` tokens
(no padding: tokens/s and FLOPs per block are exact). The tail that fills no block is dropped and counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from greenlm.common.inputs import decode_utf8, read_input
from greenlm.common import GreenlmError, sha256_file
from greenlm.models.loading import _quiet_transformers as quiet_transformers

WIKITEXT2 = "wikitext2"
WIKITEXT2_ENV = "GREENLM_WIKITEXT2"
_WIKITEXT2_FILES = ("wiki.train.tokens", "wiki.valid.tokens")


@dataclass(frozen=True)
class CorpusFiles:
    name: str  # "wikitext2" or the file as given
    train: Path
    valid: Path | None  # None: a share of the train blocks is held out

    def fingerprint(self) -> str:
        """sha256 of the files' bytes (part of a run's identity)."""
        return ":".join(sha256_file(p) for p in (self.train, self.valid) if p is not None)


@dataclass
class Blocks:
    """Fixed-length token blocks. ``input_ids``, ``word_ids`` (-1 at [CLS]/[SEP]) and ``content`` are [N, T]."""

    input_ids: "object"  # torch.LongTensor [N, T]
    word_ids: "object"  # torch.LongTensor [N, T]
    content: "object"  # torch.BoolTensor [N, T]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def lengths(self) -> list[int]:
        """Tokens per block (all equal); what the training loop's batching reads."""
        return [int(self.input_ids.shape[1])] * len(self)

    def take(self, rows) -> "Blocks":
        return Blocks(self.input_ids[rows], self.word_ids[rows], self.content[rows])


def locate(spec: str) -> CorpusFiles:
    """The files ``--corpus`` names; one line of error when they are not there."""
    spec = spec.strip()
    if not spec:
        raise GreenlmError("--corpus is empty: give a UTF-8 text file or 'wikitext2'")
    if spec.lower() == WIKITEXT2:
        folder = _wikitext2_folder()
        return CorpusFiles(WIKITEXT2, folder / _WIKITEXT2_FILES[0], folder / _WIKITEXT2_FILES[1])
    path = Path(spec).expanduser()
    if not path.exists():
        raise GreenlmError(f"corpus file '{spec}' does not exist; give a UTF-8 text file or 'wikitext2'")
    if path.is_dir():
        raise GreenlmError(f"corpus '{spec}' is a folder; give one UTF-8 text file (one paragraph per line)")
    return CorpusFiles(spec, path, None)


def _wikitext2_folder() -> Path:
    given = os.environ.get(WIKITEXT2_ENV)
    candidates = [Path(given).expanduser()] if given else []
    here = Path(__file__).resolve()
    candidates += [parent / "shared" / "data" / "wikitext2" for parent in here.parents[3:6]]
    candidates.append(Path.cwd().parent / "shared" / "data" / "wikitext2")
    for folder in candidates:
        if all((folder / name).is_file() for name in _WIKITEXT2_FILES):
            return folder
    where = f"${WIKITEXT2_ENV}={given}" if given else "shared/data/wikitext2 beside the repository"
    raise GreenlmError(f"WikiText-2 not found ({where}): set {WIKITEXT2_ENV} to a folder with "
                       f"{' and '.join(_WIKITEXT2_FILES)}, or give --corpus FILE")


def read_lines(path: Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file; refuses empty, binary and non-UTF-8 files with the position."""
    data = read_input(path, what="corpus")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise GreenlmError(f"corpus '{path}' looks binary (a NUL byte at line {line}, byte {nul}); give a UTF-8 text file")
    text = decode_utf8(data, f"corpus '{path}'")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise GreenlmError(f"corpus '{path}' is empty (no line with text); give a text file with one paragraph per line")
    return lines


def encode_blocks(lines: list[str], tokenizer, max_length: int, *, chunk_lines: int = 2000) -> tuple[Blocks, dict]:
    """Tokenize ``lines`` and cut them into blocks of ``max_length`` tokens; returns (blocks, statistics).

    With a fast tokenizer every token knows its word (``word_ids``) and whether that word is a content word;
    with a slow one each token is its own word and none is marked content (whole-word and content-word masking
    refuse slow tokenizers earlier, in run.py).
    """
    import torch

    from greenlm.pretrain.content_words import content_flags

    body = max_length - 2
    ids: list[int] = []
    words: list[int] = []
    content: list[bool] = []
    next_word = 0
    fast = bool(getattr(tokenizer, "is_fast", False))
    with quiet_transformers():  # transformers warns of lines longer than the model; blocks are cut after
        for start in range(0, len(lines), chunk_lines):
            chunk = lines[start : start + chunk_lines]
            if not fast:
                for line in chunk:
                    line_ids = tokenizer(line, add_special_tokens=False)["input_ids"]
                    ids += line_ids
                    words += range(next_word, next_word + len(line_ids))
                    content += [False] * len(line_ids)
                    next_word += len(line_ids)
                continue
            encoded = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=True)
            for row, line in enumerate(chunk):
                line_ids, offsets = encoded["input_ids"][row], encoded["offset_mapping"][row]
                word_of = encoded.word_ids(row)
                spans: dict[int, list[int]] = {}
                for (begin, end), word in zip(offsets, word_of):
                    span = spans.setdefault(word, [begin, end])
                    span[0], span[1] = min(span[0], begin), max(span[1], end)
                order = list(spans)
                flags = dict(zip(order, content_flags(line, [tuple(spans[w]) for w in order])))
                ids += line_ids
                words += [next_word + w for w in word_of]
                content += [flags[w] for w in word_of]
                next_word += len(order)
    n_blocks = len(ids) // body
    stats = {"lines": len(lines), "tokens": len(ids), "blocks": n_blocks, "tokens_dropped": len(ids) - n_blocks * body,
             "content_token_share": round(sum(content) / len(content), 4) if content else 0.0}
    if n_blocks == 0:
        return Blocks(torch.zeros(0, max_length, dtype=torch.long), torch.zeros(0, max_length, dtype=torch.long),
                      torch.zeros(0, max_length, dtype=torch.bool)), stats
    n = n_blocks * body
    frame = lambda values, first, last, dtype: torch.cat([  # noqa: E731
        torch.full((n_blocks, 1), first, dtype=dtype),
        torch.tensor(values[:n], dtype=dtype).view(n_blocks, body),
        torch.full((n_blocks, 1), last, dtype=dtype)], dim=1)
    blocks = Blocks(frame(ids, tokenizer.cls_token_id, tokenizer.sep_token_id, torch.long),
                    frame(words, -1, -1, torch.long), frame(content, False, False, torch.bool))
    return blocks, stats
