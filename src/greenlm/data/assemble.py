"""Turn raw tables (one per split) into a ``Task``: pick columns, skip empty texts, map labels to ids.

Every reader (files, bundled data, the hub) ends here, so the checks are the same whatever the source.
"""

from __future__ import annotations

from collections.abc import Sequence

from greenlm.common import GreenlmError
from greenlm.data.readers import MISSING, Table
from greenlm.data.tasks import Task, TaskSplit

# Text columns tried in order when none are named: pairs first, so a file with sentence1/sentence2 is a pair task.
PAIR_CANDIDATES = (
    ("text_a", "text_b"),
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("question", "sentence"),
)
SINGLE_CANDIDATES = ("text", "sentence", "text_a")
DEFAULT_LABEL_FIELD = "label"
ON_EMPTY = ("skip", "error")
SPLIT_ORDER = ("train", "dev", "test")


def detect_text_fields(columns: Sequence[str], source: str) -> tuple[str, ...]:
    present = set(columns)
    for pair in PAIR_CANDIDATES:
        if present.issuperset(pair):
            return pair
    for single in SINGLE_CANDIDATES:
        if single in present:
            return (single,)
    known = ", ".join(SINGLE_CANDIDATES[:2] + tuple("+".join(p) for p in PAIR_CANDIDATES[:2]))
    raise GreenlmError(
        f"{source}: no text column found among the columns {', '.join(columns)}; "
        f"expected one of {known} (or similar), or name them with text_fields"
    )


def build_task(
    name: str,
    tables: dict[str, Table],
    *,
    text_fields: Sequence[str] | None = None,
    label_field: str | None = None,
    labels: Sequence[str] | None = None,
    on_empty: str = "skip",
    credit: str = "",
    label_names: Sequence[str] | None = None,
    description: str = "",
    source: str = "",
) -> Task:
    """Build and check a task from per-split tables; ``tables`` must hold "train" and "dev" or "test" (or both)."""
    if on_empty not in ON_EMPTY:
        raise GreenlmError(f"on_empty must be 'skip' or 'error', got {on_empty!r}")
    if "train" not in tables:
        raise GreenlmError(f"task {name!r} has no train split; a task needs train, and dev or test (or both)")
    if "dev" not in tables and "test" not in tables:
        raise GreenlmError(f"task {name!r} has only a train split; a task needs a dev or a test split beside it")
    train = tables["train"]
    if text_fields is None:
        fields = detect_text_fields(train.columns, train.source)
    else:
        fields = tuple(text_fields)
        if len(fields) not in (1, 2) or len(set(fields)) != len(fields):
            raise GreenlmError(f"text_fields must name one column or two different ones, got {list(fields)}")
    label_field = label_field or DEFAULT_LABEL_FIELD
    if label_field in fields:
        raise GreenlmError(f"column {label_field!r} is named both as a text field and as the label field")

    ordered = [s for s in SPLIT_ORDER if s in tables] + [s for s in tables if s not in SPLIT_ORDER]
    texts: dict[str, list[list[str]]] = {}
    label_strings: dict[str, list[str]] = {}
    kept_rows: dict[str, list[int] | None] = {}
    skipped: dict[str, int] = {}
    for split in ordered:
        table = tables[split]
        for column in (*fields, label_field):
            _require_column(table, column, "text" if column in fields else "label")
        columns = [_text_column(table, f) for f in fields]
        keep = _non_empty_rows(table, columns, on_empty)
        if keep is not None:
            skipped[split] = len(table) - len(keep)
            if not keep:
                raise GreenlmError(f"{table.source}: all {len(table)} rows have an empty text; nothing left to use")
            columns = [[col[i] for i in keep] for col in columns]
        texts[split] = columns
        kept_rows[split] = keep
        label_strings[split] = _label_column(table, label_field, keep)

    if labels is not None:
        label_set = _given_labels(labels)
        fixed = True
    else:
        label_set = infer_labels(label_strings["train"])
        fixed = False
        if len(label_set) < 2:
            raise GreenlmError(
                f"{train.source}: every row has the label {label_set[0]!r}; "
                "a classifier needs at least two labels in train"
            )
    if label_names is not None and len(label_names) != len(label_set):  # names fit only the set they were written for
        raise GreenlmError(f"{name}: label_names gives {len(label_names)} name(s) for {len(label_set)} label(s)"
                           f" {list(label_set)[:20]}; give one name per label, in the labels' order")

    index = {label: i for i, label in enumerate(label_set)}
    splits: dict[str, TaskSplit] = {}
    for split in ordered:
        ids = [index.get(label, -1) for label in label_strings[split]]
        if -1 in ids:
            row = ids.index(-1)
            keep = kept_rows[split]
            where = tables[split].where(keep[row] if keep is not None else row)
            bad = label_strings[split][row]
            if fixed:
                raise GreenlmError(
                    f"{where}: label {bad!r} is not in the task's label set ({', '.join(label_set)}); "
                    "fix the row or the label list"
                )
            raise GreenlmError(
                f"{where}: label {bad!r} does not occur in train (train labels: {', '.join(label_set)}); "
                "fix the row or add examples of it to train"
            )
        columns = texts[split]
        splits[split] = TaskSplit(text_a=columns[0], text_b=columns[1] if len(columns) == 2 else None, labels=ids)

    return Task(
        name=name,
        labels=tuple(label_set),
        text_fields=tuple(fields),
        splits=splits,
        credit=credit,
        skipped_rows={s: n for s, n in skipped.items() if n},
        label_names=tuple(label_names) if label_names is not None else None,
        description=description,
        source=source,
    )


def infer_labels(values: Sequence[str]) -> tuple[str, ...]:
    """The distinct labels, sorted: numerically when every label is a number ("2" before "10"), else as text."""
    distinct = set(values)
    try:
        return tuple(sorted(distinct, key=lambda s: (float(s), s)))
    except ValueError:
        return tuple(sorted(distinct))


def _given_labels(labels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(labels, str):
        raise GreenlmError(f"labels must be a list of label strings, got the single string {labels!r}")
    out = tuple(_label_string(v) for v in labels)
    if len(out) < 2:
        raise GreenlmError(f"a classification task needs at least two labels, got {list(out)}")
    if "" in out:
        raise GreenlmError(f"the label list {list(out)} holds an empty label; remove it")
    if len(set(out)) != len(out):
        dup = next(label for label in out if out.count(label) > 1)
        raise GreenlmError(f"label {dup!r} appears twice in the label list {list(out)}")
    return out


def _require_column(table: Table, column: str, role: str) -> None:
    if column not in table.data:
        raise GreenlmError(
            f"{table.source}: no {role} column {column!r}; columns found: {', '.join(table.columns) or '(none)'}"
            f"; name the {role} column with {'text_fields' if role == 'text' else 'label_field'}"
        )


def _text_column(table: Table, column: str) -> list[str]:
    values = table.data[column]
    if all(type(v) is str for v in values):
        return values
    out = []
    for row, value in enumerate(values):
        if type(value) is str:
            out.append(value)
        elif value is None:
            out.append("")  # counted as an empty text
        elif value is MISSING:
            raise GreenlmError(f"{table.where(row)}: no {column!r} field in this row; give every row a {column!r}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(str(value))
        else:
            raise GreenlmError(f"{table.where(row)}: {column!r} holds a {type(value).__name__}; expected text")
    return out


def _non_empty_rows(table: Table, columns: list[list[str]], on_empty: str) -> list[int] | None:
    """Indices of rows whose texts are all non-blank; None when every row is fine (the common, fast case)."""
    empty = set()
    for col in columns:
        empty.update(i for i, t in enumerate(col) if not t or t.isspace())
    if not empty:
        return None
    if on_empty == "error":
        first = min(empty)
        raise GreenlmError(
            f"{table.where(first)}: empty text; remove the row, or load with on_empty='skip' to drop such rows"
        )
    return [i for i in range(len(columns[0])) if i not in empty]


def _label_column(table: Table, column: str, keep: list[int] | None) -> list[str]:
    values = table.data[column]
    rows = range(len(values)) if keep is None else keep
    if all(type(v) is str for v in values):
        out = [values[i].strip() for i in rows]
    else:
        out = []
        for i in rows:
            value = values[i]
            if value is None or value is MISSING:
                raise GreenlmError(f"{table.where(i)}: no label in {column!r}; give every row a label")
            if not isinstance(value, (str, int, float)):
                raise GreenlmError(
                    f"{table.where(i)}: label {column!r} holds a {type(value).__name__}; expected a string or a number"
                )
            out.append(_label_string(value))
    if "" in out:
        i = out.index("")
        where = table.where(i if keep is None else keep[i])
        raise GreenlmError(f"{where}: empty label in {column!r}; give every row a label")
    return out


def _label_string(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.strip() if isinstance(value, str) else str(value)
