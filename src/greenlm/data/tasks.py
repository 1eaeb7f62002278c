"""The task types: a labelled text-classification task and its splits.

A ``Task`` is plain Python data (lists of strings and label ids); nothing here tokenizes or touches
torch except ``TaskSplit.subset``, which borrows torch's seeded generator for a stable sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

from greenlm.common import GreenlmError

UNLABELED = -1  # label id of a row with no label (prediction input only)


@dataclass(frozen=True)
class TaskSplit:
    """One split of a task: texts (one or two per row) and label ids into ``Task.labels``."""

    text_a: list[str]
    text_b: list[str] | None  # None for single-sentence tasks
    labels: list[int]  # ids into Task.labels; UNLABELED (-1) only for prediction input

    def __post_init__(self):
        n = len(self.text_a)
        if len(self.labels) != n or (self.text_b is not None and len(self.text_b) != n):
            raise ValueError(
                f"TaskSplit columns differ in length: text_a {n}, "
                f"text_b {None if self.text_b is None else len(self.text_b)}, labels {len(self.labels)}"
            )

    def __len__(self) -> int:
        return len(self.text_a)

    @property
    def is_pair(self) -> bool:
        return self.text_b is not None

    def joined_texts(self) -> list[str]:
        """One string per row: its text, or both texts joined by a space (what a vocabulary is built from)."""
        if self.text_b is None:
            return list(self.text_a)
        return [f"{a} {b}" for a, b in zip(self.text_a, self.text_b)]

    def select(self, indices) -> TaskSplit:
        """The rows at ``indices``, in that order."""
        return TaskSplit(
            text_a=[self.text_a[i] for i in indices],
            text_b=None if self.text_b is None else [self.text_b[i] for i in indices],
            labels=[self.labels[i] for i in indices],
        )

    def subset(self, n: int, seed: int = 0) -> TaskSplit:
        """``n`` rows drawn at random (fixed by ``seed``), kept in their original order; all rows if n >= len."""
        if n < 1:
            raise GreenlmError(f"subset size must be at least 1, got {n}")
        if n >= len(self):
            return self
        import torch  # lazy: keeps `import greenlm.data` light

        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(self), generator=generator)[:n].sort().values.tolist()
        return self.select(chosen)

    def fingerprint(self) -> str:
        """sha256 of the rows (texts and label ids): equal content, equal fingerprint."""
        digest = hashlib.sha256()
        for column in (self.text_a, self.text_b, self.labels):
            digest.update(json.dumps(column, ensure_ascii=False).encode("utf-8"))
            digest.update(b"\x00")
        return digest.hexdigest()


@dataclass(frozen=True)
class Task:
    """A text-classification task: label strings, text fields and its splits (train, dev, maybe test)."""

    name: str
    labels: tuple[str, ...]  # label id -> label string (the strings found in the data)
    text_fields: tuple[str, ...]  # ("text",) or ("text_a", "text_b")
    splits: dict[str, TaskSplit]  # "train", "dev", optionally "test"
    credit: str  # one-line source / citation
    skipped_rows: dict[str, int] = field(default_factory=dict)  # empty-text rows skipped; splits with none absent
    label_names: tuple[str, ...] | None = None  # display names, one per label (e.g. negative/positive)
    description: str = ""
    source: str = ""  # where it was loaded from: "bundled:sst2", a path, or "hf:<name>"
    validation_carve: dict | None = None  # {fraction, max_examples, seed} when greenlm.data.validation carved it
    train_filter: dict | None = None  # {drop, removed, rows_before, rows_after} when greenlm.data.filters filtered train
    # the split every reported figure comes from; None: dev when the task has one, else a labelled test split
    eval_split: str | None = None

    def __post_init__(self):
        if len(self.labels) < 2:
            raise GreenlmError(
                f"task {self.name!r} has {len(self.labels)} label(s); a classification task needs at least two"
            )
        if self.label_names is not None and len(self.label_names) != len(self.labels):
            raise ValueError(f"task {self.name!r}: {len(self.label_names)} label names for {len(self.labels)} labels")
        for split_name, split in self.splits.items():
            if split.is_pair != (len(self.text_fields) == 2):
                raise ValueError(f"task {self.name!r}: split {split_name!r} does not match {self.text_fields}")
            if split.labels and not (UNLABELED <= min(split.labels) and max(split.labels) < len(self.labels)):
                raise ValueError(f"task {self.name!r}: split {split_name!r} has label ids outside the label set")
        if self.eval_split is None:
            object.__setattr__(self, "eval_split", default_eval_split(self.splits))
        elif self.eval_split not in self.splits:
            raise ValueError(f"task {self.name!r}: eval_split {self.eval_split!r} is not one of its splits")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    def split(self, name: str) -> TaskSplit:
        try:
            return self.splits[name]
        except KeyError:
            raise GreenlmError(
                f"task {self.name!r} has no {name!r} split; it has: {', '.join(self.splits)}"
            ) from None

    def display_label(self, label_id: int) -> str:
        """The display name of a label id (the label string when the task has no display names)."""
        return (self.label_names or self.labels)[label_id]

    def fingerprint(self) -> str:
        """sha256 of the content (labels, text fields, every split), for stage caching; the name is not part of it."""
        digest = hashlib.sha256()
        digest.update(json.dumps([list(self.labels), list(self.text_fields)], ensure_ascii=False).encode("utf-8"))
        for split_name in sorted(self.splits):
            digest.update(f"\x00{split_name}\x00{self.splits[split_name].fingerprint()}".encode())
        return digest.hexdigest()


def is_labelled(split: TaskSplit) -> bool:
    """Every row has a label (a split of prediction input, or a hub test split without labels, has none)."""
    return bool(split.labels) and min(split.labels) != UNLABELED


def default_eval_split(splits: dict[str, TaskSplit]) -> str | None:
    """Where figures are reported when nobody says: ``dev`` when there is one, else a labelled ``test``."""
    if "dev" in splits:
        return "dev"
    if "test" in splits and is_labelled(splits["test"]):
        return "test"
    return None


@dataclass(frozen=True)
class TaskInfo:
    """What ``greenlm tasks`` shows about a bundled task, found without tokenizing anything."""

    name: str
    description: str
    text_fields: tuple[str, ...]
    labels: tuple[str, ...]
    rows: dict[str, int]  # split -> rows in the file
    credit: str
    source_url: str | None
    label_names: tuple[str, ...] | None = None
    license: str = ""
    default: bool = False

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("text_fields", "labels", "label_names"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out


def align_labels(split: TaskSplit, task: Task, model_labels: list[str], model_name: str) -> TaskSplit:
    """The split with its label ids renumbered to the model's (labels match by their strings).

    Rows without a label (UNLABELED) stay unlabelled. A task label the model does not know is bad input.
    """
    if list(task.labels) == list(model_labels):
        return split
    unknown = sorted(set(task.labels) - set(model_labels))
    if unknown:
        raise GreenlmError(
            f"task '{task.name}' has labels {unknown} that model '{model_name}' does not know (it knows"
            f" {list(model_labels)}); is this the right model for the task?"
        )
    to_model = [list(model_labels).index(label) for label in task.labels]
    return replace(split, labels=[to_model[i] if i != UNLABELED else UNLABELED for i in split.labels])
