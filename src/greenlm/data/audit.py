"""A task's data audit (``greenlm data audit``): what is in the splits before a model is trained on them.

Per split:
- rows, and the rows with an empty text the loader skipped;
- non-text rows: a text field with no letter at all (no character of Unicode category L*), e.g. "...", "123";
- exact duplicates: rows whose text (both fields for pairs) equals an earlier row's, character for character;
- near duplicates: rows whose *normalised* text equals an earlier row's although the raw text differs.
  Normalised: Unicode NFKC, case-folded, every punctuation character (category P*) replaced by a space,
  runs of whitespace folded to one space, ends trimmed ("It's GREAT!" and "it s great" are one text);
- conflicting labels: normalised texts that occur with more than one label;
- scripts: the writing system of each row is the Unicode script of the majority of its letters, read from
  the first word of each letter's Unicode name after NFKC (LATIN, CYRILLIC, GREEK, ARABIC, CJK -> Han, ...;
  Python's unicodedata has no script property, so this is the usual name-based approximation; no language
  model). The task's main script is the most common one among train rows; rows in another are listed;
- label balance: rows per label, the majority label's share, largest / smallest count;
- with a tokenizer: tokens per row (special tokens included) and the rows longer than ``max_length``, which
  training and evaluation truncate.
Across splits, contamination: rows of each evaluation split (dev, test) whose text occurs in train, exactly or
after normalisation, and how many of them carry another label there.

The audit reports; it changes nothing. ``greenlm.data.filters`` (``--drop``) removes what it finds from train.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence

from greenlm.common import GreenlmError
from greenlm.data.encode import encode_split
from greenlm.data.tasks import UNLABELED, Task, TaskSplit

DEFAULT_AUDIT_MAX_LENGTH = 128  # greenlm's default max_length
_NO_LIMIT = 10**9
_UNBOUNDED_TOKENS = 100_000  # tokenizers without a maximum are asked for up to this many tokens per row
_SCRIPT_ALIASES = {"CJK": "Han", "HANGUL": "Hangul", "HIRAGANA": "Hiragana", "KATAKANA": "Katakana",
                   "KANGXI": "Han", "IDEOGRAPHIC": "Han"}
_NOT_A_SCRIPT = {"MODIFIER", "SMALL", "CAPITAL", "LETTER", "MATHEMATICAL", "SUPERSCRIPT", "SUBSCRIPT", "COMBINING",
                 "FULLWIDTH", "HALFWIDTH", "CIRCLED", "PARENTHESIZED", "SQUARED", "NEGATIVE"}
RULES = {
    "near_duplicate": "same text after Unicode NFKC, case folding, punctuation (category P*) replaced by spaces and"
                      " whitespace runs folded to one space",
    "non_text": "a text field without any letter (Unicode category L*)",
    "script": "majority Unicode script of a row's letters (first word of each letter's Unicode name, after NFKC);"
              " 'other script' = not the most common script among train rows",
    "contamination": "an evaluation row whose text occurs in train (exactly, or after the near-duplicate"
                     " normalisation); 'different label' = none of the train rows with that text has its label",
    "tokens": "tokens per row with special tokens, from the given model's tokenizer (greenlm.data.encode_split)",
}


class _PunctuationToSpace(dict):
    """A ``str.translate`` table built as characters are met: punctuation -> space, the rest unchanged."""

    def __missing__(self, code: int):
        value = " " if unicodedata.category(chr(code)).startswith("P") else None
        self[code] = value if value is not None else code
        return self[code]


_TABLE = _PunctuationToSpace()


def normalise(text: str) -> str:
    """The near-duplicate key of a text (see the module doc)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().translate(_TABLE).split())


_SCRIPT_CACHE: dict[str, str | None] = {}


def char_script(ch: str) -> str | None:
    """The Unicode script of a letter, from its Unicode name; None for anything that is not a letter."""
    cached = _SCRIPT_CACHE.get(ch, ...)
    if cached is not ...:
        return cached
    script = None
    if ch.isalpha():
        if ch.isascii():
            script = "Latin"
        else:
            first = unicodedata.name(ch, "").split(" ")[0]
            if first and first not in _NOT_A_SCRIPT:
                script = _SCRIPT_ALIASES.get(first, first.title())
    _SCRIPT_CACHE[ch] = script
    return script


def row_script(text: str) -> str | None:
    """The script of most of the row's letters (the first met on a tie); None when it has no letter."""
    counts: Counter = Counter()
    for ch in unicodedata.normalize("NFKC", text):
        script = char_script(ch)
        if script is not None:
            counts[script] += 1
    return counts.most_common(1)[0][0] if counts else None


def _row_texts(split: TaskSplit, i: int) -> tuple[str, ...]:
    return (split.text_a[i],) if split.text_b is None else (split.text_a[i], split.text_b[i])


def _show(texts: tuple[str, ...], limit: int = 160) -> str:
    joined = " ||| ".join(t.strip() for t in texts)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def _percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of sorted values (q in [0, 100])."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(min(rank, len(sorted_values))) - 1]


def _label_name(task: Task, label: int) -> str:
    return "(unlabelled)" if label == UNLABELED else task.display_label(label)


def _duplicates(task: Task, split: TaskSplit, keys: list, examples: int) -> dict:
    groups: dict = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    repeated = [rows for rows in groups.values() if len(rows) > 1]
    repeated.sort(key=lambda rows: (-len(rows), rows[0]))
    return {
        "rows": sum(len(rows) - 1 for rows in repeated),
        "groups": len(repeated),
        "examples": [{"text": _show(_row_texts(split, rows[0])), "rows": rows[:10], "count": len(rows),
                      "labels": sorted({_label_name(task, split.labels[i]) for i in rows})}
                     for rows in repeated[:examples]],
    }


def _audit_split(task: Task, name: str, split: TaskSplit, main_script: str | None, examples: int) -> dict:
    n = len(split)
    raw = [_row_texts(split, i) for i in range(n)]
    norm = [tuple(normalise(t) for t in texts) for texts in raw]
    exact = _duplicates(task, split, raw, examples)
    # near duplicates: rows that normalisation adds to the exact ones
    first_raw_by_norm: dict = defaultdict(set)
    near_rows, near_groups, near_examples = 0, set(), []
    for i, (r, k) in enumerate(zip(raw, norm)):
        seen = first_raw_by_norm[k]
        if seen and r not in seen:
            near_rows += 1
            near_groups.add(k)
            if len(near_examples) < examples:
                near_examples.append({"text": _show(r), "like": _show(next(iter(seen))), "row": i})
        seen.add(r)
    labels_by_key: dict = defaultdict(Counter)
    for k, label in zip(norm, split.labels):
        if label != UNLABELED:
            labels_by_key[k][label] += 1
    conflicts = [(k, c) for k, c in labels_by_key.items() if len(c) > 1]
    conflicts.sort(key=lambda kc: -sum(kc[1].values()))
    non_text = [i for i, texts in enumerate(raw) if any(not any(ch.isalpha() for ch in t) for t in texts)]
    scripts = [row_script(" ".join(texts)) for texts in raw]
    script_counts = Counter(s for s in scripts if s is not None)
    other = [i for i, s in enumerate(scripts) if s is not None and main_script is not None and s != main_script]
    label_counts = Counter(split.labels)
    labelled = {lab: c for lab, c in label_counts.items() if lab != UNLABELED}
    out = {
        "rows": n,
        "empty_rows_skipped": task.skipped_rows.get(name, 0),
        "non_text_rows": {"rows": len(non_text),
                          "examples": [{"row": i, "text": _show(raw[i])} for i in non_text[:examples]]},
        "exact_duplicates": exact,
        "near_duplicates": {"rows": near_rows, "groups": len(near_groups), "examples": near_examples},
        "conflicting_labels": {
            "groups": len(conflicts),
            "rows": sum(sum(c.values()) for _, c in conflicts),
            "examples": [{"text": _show(k), "labels": {_label_name(task, lab): cnt for lab, cnt in sorted(c.items())}}
                         for k, c in conflicts[:examples]],
        },
        "scripts": {
            "counts": dict(script_counts.most_common()),
            "main": main_script,
            "other_script_rows": len(other),
            "examples": [{"row": i, "script": scripts[i], "text": _show(raw[i])} for i in other[:examples]],
        },
        "labels": {
            "counts": {_label_name(task, lab): labelled.get(lab, 0) for lab in range(task.num_labels)},
            "unlabelled": label_counts.get(UNLABELED, 0),
            "majority_share": round(max(labelled.values()) / sum(labelled.values()), 4) if labelled else None,
            "imbalance_ratio": (round(max(labelled.values()) / min(labelled.get(lab, 0) for lab in range(task.num_labels)), 3)
                                if labelled and all(labelled.get(lab, 0) for lab in range(task.num_labels)) else None),
        },
    }
    return out


def _tokens(split: TaskSplit, tokenizer, max_length: int) -> dict:
    model_max = getattr(tokenizer, "model_max_length", None)
    limit = model_max if isinstance(model_max, int) and model_max < _NO_LIMIT else _UNBOUNDED_TOKENS
    if max_length > limit:
        raise GreenlmError(f"--max-length {max_length} is longer than the tokenizer accepts ({limit}); use at most {limit}")
    lengths = sorted(encode_split(split, tokenizer, limit).lengths())
    exact = max_length < limit
    over = sum(1 for v in lengths if (v > max_length if exact else v >= limit))
    return {
        "max_length": max_length,
        "truncated_rows": over,
        "truncated_share": round(over / len(lengths), 4),
        "truncated_count_is_exact": exact,
        "capped_at": limit,
        "capped_rows": sum(1 for v in lengths if v >= limit),
        "min": lengths[0], "mean": round(sum(lengths) / len(lengths), 2), "p50": _percentile(lengths, 50),
        "p90": _percentile(lengths, 90), "p95": _percentile(lengths, 95), "p99": _percentile(lengths, 99),
        "max": lengths[-1],
    }


def _contamination(task: Task, train: TaskSplit, name: str, split: TaskSplit, examples: int) -> dict:
    train_raw = {_row_texts(train, i) for i in range(len(train))}
    train_labels: dict = defaultdict(set)
    for i in range(len(train)):
        train_labels[tuple(normalise(t) for t in _row_texts(train, i))].add(train.labels[i])
    exact_rows, near_rows, other_label, shown = 0, 0, 0, []
    for i in range(len(split)):
        raw = _row_texts(split, i)
        key = tuple(normalise(t) for t in raw)
        if key not in train_labels:
            continue
        near_rows += 1
        exact_rows += raw in train_raw
        differs = split.labels[i] != UNLABELED and split.labels[i] not in train_labels[key]
        other_label += differs
        if len(shown) < examples:
            shown.append({"row": i, "text": _show(raw), "label": _label_name(task, split.labels[i]),
                          "train_labels": sorted(_label_name(task, lab) for lab in train_labels[key]),
                          "exact": raw in train_raw})
    return {"rows": len(split), "exact_rows": exact_rows, "near_rows": near_rows,
            "share": round(near_rows / len(split), 4), "different_label_rows": other_label, "examples": shown}


def audit_task(task: Task, *, tokenizer=None, max_length: int = DEFAULT_AUDIT_MAX_LENGTH, model_name: str | None = None,
               examples: int = 3) -> dict:
    """The audit of every split of ``task`` (see the module doc); a dict ready for JSON."""
    if examples < 0:
        raise GreenlmError(f"--examples must be >= 0, got {examples}")
    for name, split in task.splits.items():
        if len(split) == 0:
            raise GreenlmError(f"split '{name}' of task '{task.name}' has no rows; there is nothing to audit (remove"
                               " the empty file or add rows)")
    train = task.split("train")
    train_scripts = Counter(s for s in (row_script(" ".join(_row_texts(train, i))) for i in range(len(train)))
                            if s is not None)
    main_script = train_scripts.most_common(1)[0][0] if train_scripts else None
    splits = {}
    for name, split in task.splits.items():
        splits[name] = _audit_split(task, name, split, main_script, examples)
        if tokenizer is not None:
            splits[name]["tokens"] = _tokens(split, tokenizer, max_length)
    contamination = {name: _contamination(task, train, name, split, examples)
                     for name, split in task.splits.items() if name != "train"}
    return {
        "task": task.name,
        "source": task.source,
        "text_fields": list(task.text_fields),
        "labels": [task.display_label(i) for i in range(task.num_labels)],
        "tokenizer": model_name,
        "rules": RULES,
        "splits": splits,
        "contamination": contamination,
        "filters": "the audit changes nothing; --drop (greenlm.data.filters) removes what it finds from train",
    }


def check_audit_options(model: str | None, max_length: int | None) -> None:
    if max_length is not None and model is None:
        raise GreenlmError("--max-length counts tokens, which needs a tokenizer: give --model too (e.g. --model minilm)")
    if max_length is not None and max_length < 1:
        raise GreenlmError(f"--max-length must be a positive number of tokens, got {max_length}")


def audit_lines(report: dict) -> list[str]:
    """The audit as lines of text for a terminal."""
    lines = [f"data audit of task {report['task']} ({report.get('source') or 'in memory'}); labels:"
             f" {', '.join(report['labels'])}"]
    for name, s in report["splits"].items():
        labels = s["labels"]
        balance = ", ".join(f"{k} {v}" for k, v in labels["counts"].items())
        lines.append("")
        lines.append(f"{name}: {s['rows']} rows" + (f" ({s['empty_rows_skipped']} empty rows skipped when loading)"
                                                     if s["empty_rows_skipped"] else ""))
        lines.append(f"  labels: {balance}" + (f"; majority share {100 * labels['majority_share']:.1f}%"
                                               if labels["majority_share"] is not None else "")
                     + (f"; {labels['unlabelled']} unlabelled" if labels["unlabelled"] else ""))
        ex, near, conf = s["exact_duplicates"], s["near_duplicates"], s["conflicting_labels"]
        lines.append(f"  exact duplicates: {ex['rows']} rows beyond the first ({ex['groups']} texts)")
        lines += [f"    x{e['count']}: {e['text']}" for e in ex["examples"]]
        lines.append(f"  near duplicates (normalised): {near['rows']} more rows ({near['groups']} texts)")
        lines += [f"    {e['text']}  ~  {e['like']}" for e in near["examples"]]
        lines.append(f"  same text, different labels: {conf['groups']} texts ({conf['rows']} rows)")
        lines += [f"    {e['labels']}: {e['text']}" for e in conf["examples"]]
        lines.append(f"  non-text rows (no letter): {s['non_text_rows']['rows']}")
        lines += [f"    row {e['row']}: {e['text']!r}" for e in s["non_text_rows"]["examples"]]
        sc = s["scripts"]
        lines.append(f"  scripts: {', '.join(f'{k} {v}' for k, v in sc['counts'].items()) or 'no letters'};"
                     f" rows not in {sc['main']}: {sc['other_script_rows']}")
        lines += [f"    row {e['row']} ({e['script']}): {e['text']}" for e in sc["examples"]]
        tok = s.get("tokens")
        if tok:
            exact = "" if tok["truncated_count_is_exact"] else " (at least)"
            lines.append(f"  tokens per row: min {tok['min']}, median {tok['p50']}, p95 {tok['p95']}, p99 {tok['p99']},"
                         f" max {tok['max']}{'+' if tok['capped_rows'] else ''}; longer than --max-length"
                         f" {tok['max_length']}: {tok['truncated_rows']} rows{exact}"
                         f" ({100 * tok['truncated_share']:.2f}%, truncated)")
    for name, c in report["contamination"].items():
        lines.append("")
        lines.append(f"contamination {name} vs train: {c['near_rows']} of {c['rows']} rows ({100 * c['share']:.2f}%) occur in"
                     f" train ({c['exact_rows']} exactly); {c['different_label_rows']} with another label there")
        lines += [f"    {e['label']} here, {'/'.join(e['train_labels'])} in train: {e['text']}" for e in c["examples"]]
    if not report.get("tokenizer"):
        lines.append("")
        lines.append("token lengths and truncation: give --model (and --max-length) to count them")
    return lines
