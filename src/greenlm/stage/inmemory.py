"""Any method on models in memory, with one signature: ``apply(method, model, task, config, teacher=None)``.

    from greenlm.models import load_classifier
    teacher = load_classifier("runs/teacher")                        # a LoadedModel (model, tokenizer, labels)
    student = apply("distill", teacher, task, DistillConfig(student="2x128"))
    student.model, student.metrics["splits"]["dev"], student.pricetag["energy_kwh"]   # every labelled split

The models go through the same stage shell as ``greenlm <method>`` (so the same checks, evaluation and
price tag), in a temporary folder that is removed afterwards; the result is loaded back into memory.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from greenlm.data import Task


@dataclass
class Applied:
    loaded: object  # greenlm.models.LoadedModel: .model, .tokenizer, .labels
    metrics: dict
    pricetag: dict | None

    @property
    def model(self):
        return self.loaded.model

    def __repr__(self) -> str:
        from greenlm.report.provenance import eval_metrics, eval_split_of

        accuracy = eval_metrics(self.metrics).get("accuracy")
        return (f"Applied({self.metrics.get('method')}: {type(self.model).__name__}, {eval_split_of(self.metrics)}"
                f" accuracy {accuracy if accuracy is None else round(accuracy, 4)})")


def apply(method: str, model, task: Task, config, *, teacher=None, progress: bool = False,
          on_note=print) -> Applied:
    """Run ``method`` on ``model`` for ``task`` with ``config``; ``teacher`` for methods that learn from a
    fine-tuned teacher. Models are ``LoadedModel``s or ``(model, tokenizer)`` pairs. Nothing goes to the ledger."""
    from greenlm.models import load_classifier, save_classifier
    from greenlm.stage.shell import run_stage

    with tempfile.TemporaryDirectory(prefix="greenlm-apply-") as tmp:
        root = Path(tmp)
        save_classifier(*_pair(model), root / "input")
        teacher_dir = None
        if teacher is not None:
            teacher_dir = root / "teacher"
            save_classifier(*_pair(teacher), teacher_dir)
        result = run_stage(method, root / "input", task, config, root / "output", teacher_dir=teacher_dir,
                           progress=progress, on_note=on_note, ledger=False, command=f"greenlm.stage.apply({method!r})")
        loaded = load_classifier(str(root / "output"))
        return Applied(loaded, result.metrics, result.pricetag)


def _pair(model) -> tuple:
    return (model.model, model.tokenizer) if hasattr(model, "tokenizer") else tuple(model)
