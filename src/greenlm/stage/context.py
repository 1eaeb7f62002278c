"""What a method receives from the stage shell, and what it gives back.

    def run(ctx: StageContext, config: DistillConfig) -> StageOutput:
        loaded = ctx.load_input()                       # the upstream model, checked
        max_length = ctx.max_length(loaded.model, config.max_length, loaded.tokenizer)
        with ctx.phase("train") as tag:                 # a price-tag phase, kept across resumes
            ...                                         # checkpoints go to ctx.work_dir
        ctx.note("something the user should know")     # printed now, kept in metrics.json
        return StageOutput(metrics={"splits": ..., "distill": details}, write=lambda folder: save(model, folder))

The shell (``greenlm.stage.shell``) does the rest: identity and reuse, the lock, the work folder, the
stage's price tag, and writing the folder (the method's files, ``metrics.json``, ``pricetag.json``,
``stage.json``, the model card) atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.data import Task, TaskSplit, align_labels, is_labelled, selection_record, selection_split_name
from greenlm.stage.costs import PhaseCosts


@dataclass
class StageOutput:
    metrics: dict  # at least "splits" (split -> classification metrics) and the method's details under its name
    write: Callable[[Path], None]  # writes the model's files into an empty folder
    model_name: str | None = None  # what the model is, for tables ("4x312 student of teacher"); default: the input


@dataclass
class StageContext:
    method: str
    task: Task
    source: str  # the model the stage starts from: a folder (or, for "spec" methods, any model spec)
    work_dir: Path  # the method's resumable state; kept until the stage is done
    teacher_dir: Path | None = None  # the fine-tuned teacher, for methods that learn from it
    progress: bool = True
    on_note: Callable[[str], None] = print
    notes: list[str] = field(default_factory=list)
    costs: PhaseCosts | None = None

    def __post_init__(self):
        self.work_dir = Path(self.work_dir)
        if self.costs is None:
            self.costs = PhaseCosts(self.work_dir / "costs.json", prefix=self.method)

    # ---- telling the user ----
    def note(self, message: str) -> None:
        """Say something now and keep it in the stage's metrics.json."""
        self.notes.append(message)
        self.on_note(message)

    def phase(self, name: str):
        """A price-tag phase of this stage (a context manager yielding the PriceTag)."""
        return self.costs.phase(name)

    # ---- the input model ----
    @property
    def input_dir(self) -> Path:
        return Path(self.source)

    def load_input(self, **kwargs):
        """The upstream model folder, loaded as a PyTorch model (safetensors only; an ONNX export is refused: every
        method trains or rewrites it); ``kwargs`` go to ``load_classifier``."""
        from greenlm.models import load_classifier

        if not (self.input_dir / "config.json").is_file():
            raise GreenlmError(f"{self.method}: input model folder '{self.input_dir}' has no config.json; give a"
                               " folder written by greenlm train or a stage")
        return load_classifier(str(self.input_dir), **{"trainable": True, **kwargs})

    def max_length(self, model, configured: int | str | None, tokenizer=None) -> int:
        """Tokens per input: the setting; "auto": the length that covers most training rows (said in a note; needs
        ``tokenizer``); None: what the model was fine-tuned with, else 128. Checked against the model's positions."""
        from greenlm.models import input_max_length

        return input_max_length(model.config, tokenizer, configured, self.task.splits.get("train"), self.note,
                                who=f"{self.method}: max_length")

    # ---- the task's data, in the model's label ids ----
    def align(self, split: TaskSplit, labels: list[str], who: str = "the input model") -> TaskSplit:
        return align_labels(split, self.task, list(labels), who)

    def labelled_splits(self, labels: list[str], who: str = "the input model", *,
                        exclude: tuple[str, ...] = ("train",)) -> dict[str, TaskSplit]:
        """Every split with labels (bar ``exclude``), renumbered to the model's labels, in the task's order."""
        return {name: self.align(split, labels, who) for name, split in self.task.splits.items()
                if name not in exclude and is_labelled(split)}

    # ---- honest selection (greenlm.data.validation) ----
    def selection(self, labels: list[str], who: str = "the input model", *,
                  chose: str) -> tuple[str | None, TaskSplit | None, dict]:
        """The split choices are made on (``validation`` carved from train, else ``dev``), in the model's labels,
        and the record saying so for ``metrics.json`` (``chose``: what it decides, e.g. "best epoch")."""
        name = selection_split_name(self.task)
        record = selection_record(self.task, chose)
        if name is None:
            return None, None, record
        if "warning" in record:
            self.note(f"{self.method}: the {chose} is chosen on '{name}', which is also reported: set a validation"
                      " fraction above 0 to choose on rows carved from train")
        return name, self.align(self.task.splits[name], labels, who), record
