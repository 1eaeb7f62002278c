"""Knowledge distillation: train a small student to imitate a fine-tuned teacher on a task.

    config = DistillConfig(student="4x312", intermediate_epochs=2, epochs=3)
    result = greenlm.stage.run_stage("distill", teacher_dir, task, config, out_dir)

Two phases, as in TinyBERT's task distillation (Jiao et al. 2020):
  1. intermediate (``intermediate_epochs`` > 0): the student's embeddings, hidden states and attention
     scores imitate the teacher's mapped layers (``losses.TinyBertLayerLoss``);
  2. prediction (``epochs``): soft targets of the teacher's logits (Hinton et al. 2015), optionally
     mixed with the gold labels (``hard_label_weight``) and DistilBERT's cosine loss on the last hidden
     states (``cosine_weight``).
Optionally the training text is augmented first (``augment.py``), and the student's vocabulary is
trimmed to the tokens the training text uses (``trim_vocab``). Each part runs under a price tag phase,
so the cost of distillation itself (augmentation included) is reported next to its accuracy.

Resuming: everything expensive is kept in ``work_dir`` (augmented text, the chosen shape, the
teacher's logits, each phase's checkpoints); running the same stage again continues where it stopped.

Beside this module: ``distill_teacher`` (checking and loading the teacher, a pre-trained student),
``student_search`` (the student's shape by budget), ``distill_data`` (augmented text, the teacher's logits)
and ``score_attention`` (attention scores for TinyBERT's attention loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from greenlm.compress.distill_config import DistillConfig, INIT_CHOICES, DEFAULT_STUDENT  # noqa: F401 (re-exported)
from greenlm.compress.distill_data import (_augmented_train, _data_fingerprint,  # noqa: F401 (re-exported)
                                          _mean_length, _row_id_split, _teacher_inputs, teacher_logits)
from greenlm.compress.distill_teacher import (_load_teacher, _pretrained_student,  # noqa: F401 (re-exported)
                                             check_teacher, teacher_tuning_problem)
from greenlm.compress.losses import TinyBertLayerLoss, cosine_loss, kd_loss
from greenlm.compress.score_attention import (SCORE_ATTENTION, _register_score_attention,  # noqa: F401
                                              _ScoreAttention)
from greenlm.compress.student_search import _choose_shape
from greenlm.common import GreenlmError, atomic_write_json, read_json
from greenlm.data import EncodedSplit, TaskSplit, collate, encode_split, length_grouped_batches, truncation_records
from greenlm.models import save_classifier
from greenlm.models import students as st
from greenlm.models.linear_attention import kept_metadata, swap_attention
from greenlm.measure import count_params
from greenlm.runtime import predict_logits
from greenlm.stage import StageContext, StageOutput
from greenlm.train import classification_metrics, train

METHOD = "distill"
METRICS_FILE = "metrics.json"


# ---- distill: the method on models and encoded data -------------------------------------------------


@dataclass
class DistillResult:
    phases: dict = field(default_factory=dict)  # phase -> what training did (steps, seconds, losses, best)
    dev: dict | None = None  # best dev metrics of the prediction phase


class _LossMeter:
    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, parts: dict[str, float]) -> None:
        self.count += 1
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)

    def means(self) -> dict[str, float]:
        return {k: round(v / self.count, 6) for k, v in self.sums.items()} if self.count else {}


def distill(teacher, student, train_data: EncodedSplit, dev_data: EncodedSplit | None, config: DistillConfig, *,
            pad_token_id: int, work_dir: str | Path, layer_map: list[int], token_map: torch.Tensor | None = None,
            progress: bool = True, on_note=print, phase_tag=None) -> DistillResult:
    """Distil ``teacher`` into ``student`` (both Hugging Face classifiers) on ``train_data`` in place.

    ``train_data``: student token ids; labels are gold label ids, or -1 for rows without one
    (augmented text). ``token_map`` [V_student] maps student token ids to the teacher's (vocabulary
    trimming); None when they share the vocabulary. ``dev_data`` (student ids) picks the best epoch.
    ``phase_tag(name)`` returns a context manager (a price tag phase) around each part.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    phase_tag = phase_tag or (lambda name: _NullTag())
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    result = DistillResult()
    if config.intermediate_epochs > 0:
        result.phases["intermediate"] = _intermediate_phase(
            teacher, student, train_data, config, pad_token_id=pad_token_id, work_dir=work_dir, layer_map=layer_map,
            token_map=token_map, progress=progress, phase_tag=phase_tag)
    logits = _cached_teacher_logits(teacher, train_data, pad_token_id=pad_token_id, token_map=token_map,
                                    work_dir=work_dir, phase_tag=phase_tag)
    result.phases["prediction"], result.dev = _prediction_phase(
        teacher, student, train_data, dev_data, logits, config, pad_token_id=pad_token_id, work_dir=work_dir,
        token_map=token_map, progress=progress, phase_tag=phase_tag)
    return result


def _intermediate_phase(teacher, student, train_data: EncodedSplit, config: DistillConfig, *, pad_token_id: int,
                        work_dir: Path, layer_map: list[int], token_map: torch.Tensor | None, progress: bool,
                        phase_tag) -> dict:
    """Phase 1, intermediate layers: the student's embeddings, hidden states and attention scores imitate the
    teacher's mapped layers. Its weights are kept in ``work_dir`` once done, so a re-run loads them."""
    from safetensors.torch import load_model, save_model

    done_weights, done_info = work_dir / "intermediate.safetensors", work_dir / "intermediate.json"
    if done_info.is_file():
        load_model(student, str(done_weights))
        return read_json(done_info)
    rows = _row_id_split(train_data)
    with torch.random.fork_rng():  # projections W_h, W_e: seeded, so a resumed run builds the same ones
        torch.manual_seed(config.seed)
        layer_loss = TinyBertLayerLoss(
            student.config.hidden_size, teacher.config.hidden_size, layer_map,
            attention_weight=config.attention_weight, hidden_weight=config.hidden_weight,
            embedding_weight=config.embedding_weight,
        )
    meter = _LossMeter()

    def intermediate_loss(model, batch):
        batch.pop("labels")
        teacher.to(batch["input_ids"].device)
        with torch.no_grad():
            t_out = teacher(**_teacher_inputs(batch, token_map), output_hidden_states=True,
                            output_attentions=True)
        s_out = model(**batch, output_hidden_states=True, output_attentions=True)
        loss, parts = layer_loss(s_out, t_out, batch["attention_mask"])
        meter.add(parts)
        return loss

    with phase_tag("intermediate") as tag, _ScoreAttention(student, teacher):
        outcome = train(student, rows, None, config.train_config(phase="intermediate"),
                        pad_token_id=pad_token_id, work_dir=work_dir / "intermediate",
                        loss_fn=intermediate_loss, extra_module=layer_loss, progress=progress,
                        description="distill: intermediate layers")
        _add_train_flops(tag, student, teacher, outcome.state.examples_seen * outcome.num_processes,
                         train_data, online_teacher=True)
    info = _phase_info(outcome, meter)
    save_model(student, str(done_weights))
    atomic_write_json(done_info, info)
    return info


def _cached_teacher_logits(teacher, train_data: EncodedSplit, *, pad_token_id: int, token_map: torch.Tensor | None,
                           work_dir: Path, phase_tag) -> torch.Tensor:
    """The teacher's logits on the training rows, computed once and cached in ``work_dir`` (keyed by the rows)."""
    logits_file, logits_key = work_dir / "teacher_logits.safetensors", work_dir / "teacher_logits.json"
    fingerprint = _data_fingerprint(train_data)
    cached = None
    if logits_file.is_file() and logits_key.is_file() and read_json(logits_key).get("data") == fingerprint:
        from safetensors.torch import load_file

        cached = load_file(str(logits_file))["logits"]
    if cached is None:
        from safetensors.torch import save_file

        with phase_tag("teacher_logits") as tag:
            cached = teacher_logits(teacher, train_data, pad_token_id=pad_token_id, token_map=token_map)
            _add_flops(tag, teacher.config, train_data, len(train_data), train=False)
        save_file({"logits": cached.contiguous()}, str(logits_file))
        atomic_write_json(logits_key, {"data": fingerprint})
    return cached


def _prediction_phase(teacher, student, train_data: EncodedSplit, dev_data: EncodedSplit | None,
                      cached: torch.Tensor, config: DistillConfig, *, pad_token_id: int, work_dir: Path,
                      token_map: torch.Tensor | None, progress: bool, phase_tag) -> tuple[dict, dict | None]:
    """Phase 2, prediction layer: soft targets of the teacher's logits ``cached`` (with gold labels and the cosine
    loss as configured). Returns what training did and the best dev metrics."""
    gold = torch.tensor(train_data.labels, dtype=torch.long)
    rows = _row_id_split(train_data)
    needs_hidden = config.cosine_weight > 0
    projection = None
    if needs_hidden and student.config.hidden_size != teacher.config.hidden_size:
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            projection = torch.nn.Linear(student.config.hidden_size, teacher.config.hidden_size)
    meter = _LossMeter()

    def prediction_loss(model, batch):
        row_ids = batch.pop("labels")
        out = model(**batch, output_hidden_states=needs_hidden)
        t_logits = cached.to(row_ids.device)[row_ids]
        labels = gold.to(row_ids.device)[row_ids]
        loss = kd_loss(out.logits, t_logits, labels, temperature=config.temperature,
                       hard_weight=config.hard_label_weight)
        parts = {"kd": float(loss.detach())}
        if needs_hidden:
            teacher.to(row_ids.device)
            with torch.no_grad():
                t_out = teacher(**_teacher_inputs(batch, token_map), output_hidden_states=True)
            cos = cosine_loss(out.hidden_states[-1], t_out.hidden_states[-1], batch["attention_mask"], projection)
            loss = loss + config.cosine_weight * cos
            parts["cosine"] = float(cos.detach())
        meter.add(parts)
        return loss

    with phase_tag("prediction") as tag:
        outcome = train(student, rows, dev_data, config.train_config(phase="prediction"), pad_token_id=pad_token_id,
                        work_dir=work_dir / "prediction", loss_fn=prediction_loss, extra_module=projection,
                        progress=progress, description="distill: prediction layer")
        _add_train_flops(tag, student, teacher, outcome.state.examples_seen * outcome.num_processes, train_data,
                         online_teacher=needs_hidden)
    return _phase_info(outcome, meter), outcome.best_metrics


def _phase_info(outcome, meter: _LossMeter) -> dict:
    state = outcome.state
    return {
        "steps": state.step,
        "examples_seen": state.examples_seen * outcome.num_processes,
        "train_seconds": round(state.train_seconds, 3),
        "train_examples_per_s": round(outcome.train_examples_per_s, 2),
        "precision": outcome.precision,
        "loss_parts_mean": meter.means(),  # this process's steps (a resumed run: since the resume)
        "best_step": state.best_step,
        "history": state.history,
    }


class _NullTag:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_flops(self, flops):
        pass


def _add_flops(tag, config, data: EncodedSplit, examples: int, *, train: bool) -> float:
    """FLOPs of ``examples`` passes at the data's mean length (matmul convention); 0 when unknown."""
    from greenlm.measure import count_flops

    try:
        report = count_flops(config, _mean_length(data), train_steps=1 if train else None,
                             batch_size=1 if train else None)
    except GreenlmError:
        return 0.0
    per_example = report.train_flops_per_example if train else report.infer_flops_per_example
    tag.add_flops(per_example * examples)
    return per_example * examples


def _add_train_flops(tag, student, teacher, examples: int, data: EncodedSplit, *, online_teacher: bool) -> None:
    _add_flops(tag, student.config, data, examples, train=True)
    if online_teacher:
        _add_flops(tag, teacher.config, data, examples, train=False)


# ---- the stage ----------------------------------------------------------------------------------------


def _unk_rate(data: EncodedSplit, unk_id: int | None) -> float | None:
    if unk_id is None:
        return None
    total = sum(len(r) for r in data.input_ids)
    return round(sum(r.count(unk_id) for r in data.input_ids) / max(1, total), 5)


def uses_teacher(config: DistillConfig) -> bool:
    return True  # the teacher is what the student learns from


@dataclass
class _Student:
    """The student before distillation: the model, its tokenizer and training rows, and how it was made."""

    model: object
    tokenizer: object
    shape: st.StudentShape
    teacher_shape: st.StudentShape
    layer_map: list[int]
    pretrained: bool
    train_data: EncodedSplit  # the training split in the student's tokens
    kept_ids: list[int] | None = None  # teacher token ids the trimmed vocabulary keeps, in order (None: not trimmed)
    shape_info: dict | None = None  # how the shape was chosen by budget (None: given)
    init_plan: dict | None = None  # what was copied from the teacher (init "teacher")

    @property
    def token_map(self) -> torch.Tensor | None:
        """[V_student] -> the teacher's token ids (None when they share the vocabulary)."""
        return torch.tensor(self.kept_ids) if self.kept_ids is not None else None


def run(ctx: StageContext, config: DistillConfig) -> StageOutput:
    """The ``distill`` method: distil the fine-tuned teacher into a student.

    The teacher is ``ctx.teacher_dir`` (the run's fine-tuned teacher) or, when None, the input model.
    The output folder is a Hugging Face folder (loadable by ``load_classifier``).
    """
    teacher_path = Path(ctx.teacher_dir) if ctx.teacher_dir is not None else ctx.input_dir
    if ctx.teacher_dir is not None and ctx.input_dir.resolve() != teacher_path.resolve():
        ctx.note(f"the student is initialised from the teacher {teacher_path}, not from the upstream model {ctx.source}")
    work_dir = ctx.work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    task, note = ctx.task, ctx.note
    loaded = _load_teacher(teacher_path, task, config, note)
    teacher, tokenizer = loaded.model, loaded.tokenizer
    teacher.eval()
    max_length = ctx.max_length(teacher, config.max_length, tokenizer)
    labels = list(loaded.labels)

    train_split = ctx.align(task.split("train"), labels, "the teacher")
    train_selection = None
    if config.train_selection is not None:  # rows chosen from a data map (greenlm.datamap), before augmentation
        from greenlm.datamap.selection import selection_for_task

        map_path = teacher_path if config.selection_map == "teacher" else config.selection_map  # the teacher's own map
        chosen, train_selection = selection_for_task(config.train_selection, map_path, task, seed=config.seed,
                                                     min_rows=config.batch_size)
        train_split = train_split.select(list(chosen.rows))
        note(f"distilling on {len(chosen.rows)} of {chosen.available} rows chosen by {config.train_selection}")
    elif config.train_subset is not None:
        train_split = train_split.subset(config.train_subset, seed=config.seed)
    _, dev_split, selection = ctx.selection(labels, "the teacher", chose="best prediction epoch")

    with ctx.phase("augment"):
        train_split, augment_stats = _augmented_train(train_split, teacher, tokenizer, config, work_dir, note)

    made = _make_student(ctx, config, loaded, train_split, dev_split, max_length)
    if config.attention != "softmax":  # linear attention in the student (greenlm.models.linear_attention)
        swap_attention(made.model, config.attention)
    student, student_tokenizer, shape, t_shape = made.model, made.tokenizer, made.shape, made.teacher_shape
    train_data, layer_map, kept_ids = made.train_data, made.layer_map, made.kept_ids
    dev_data = encode_split(dev_split, student_tokenizer, max_length) if dev_split is not None else None

    result = distill(teacher, student, train_data, dev_data, config, pad_token_id=student_tokenizer.pad_token_id,
                     work_dir=work_dir, layer_map=layer_map, token_map=made.token_map, progress=ctx.progress,
                     on_note=note, phase_tag=ctx.phase)

    with ctx.phase("evaluate"):
        splits, teacher_splits, agreement, unk_rate, encoded = _evaluate(ctx, labels, student, student_tokenizer,
                                                                         teacher, tokenizer, max_length)
    # rows cut at max_length, as the student reads them: the rows it trained on (augmented ones included), each split
    truncation = truncation_records({"train": train_data, **encoded}, note)

    s_params, t_params = count_params(student), count_params(teacher)
    details = {
        "teacher": {"path": str(teacher_path), "shape": t_shape.to_dict(), "params": t_params["total"],
                    "splits": teacher_splits},
        "student": {
            "spec": config.student_spec, "shape": shape.to_dict(), "params": s_params["total"],
            "params_by_module": s_params["by_module"], "init": "pretrained" if made.pretrained else config.init,
            "init_plan": made.init_plan, "layer_map": layer_map,
            "vocab": {"trimmed": kept_ids is not None, "size": len(student_tokenizer), "teacher_size": len(tokenizer),
                      "unk_rate": unk_rate},
        },
        "params_ratio": round(s_params["total"] / t_params["total"], 4),
        "accuracy_retained": {n: round(splits[n]["accuracy"] / teacher_splits[n]["accuracy"], 4)
                              for n in splits if teacher_splits[n]["accuracy"] > 0},
        "agreement_with_teacher": agreement,
        "shape_choice": made.shape_info,
        "data": {"train_rows": len(train_data), "max_length": max_length, "mean_tokens": _mean_length(train_data),
                 "augmentation": augment_stats},
        "phases": result.phases,
        "selection": selection,
        **({"train_selection": train_selection} if train_selection is not None else {}),
        "config": config.to_dict(),
    }
    student.config.greenlm = {**kept_metadata(student.config), "task": task.name, "labels": labels,
                              "max_length": max_length, "distilled_from": str(teacher_path)}
    return StageOutput(metrics={"splits": splits, "truncation": truncation, METHOD: details},
                       model_name=f"{shape.describe()} student of {teacher_path.name}",
                       write=lambda folder: save_classifier(student, student_tokenizer, folder))


def _make_student(ctx: StageContext, config: DistillConfig, loaded, train_split: TaskSplit,
                  dev_split: TaskSplit | None, max_length: int) -> _Student:
    """The student's shape, tokenizer and initialisation, and its training rows (checked against the teacher's
    tokens when the vocabulary is trimmed)."""
    teacher, tokenizer, task, note = loaded.model, loaded.tokenizer, ctx.task, ctx.note
    shape_info = None
    spec = config.student_spec
    pretrained = spec is not None and not st.is_shape_spec(spec)
    if pretrained:
        student, student_tokenizer, shape = _pretrained_student(spec, loaded, note)
    else:
        if spec is not None:
            shape = st.parse_student_shape(spec, teacher.config)
        else:
            with ctx.phase("choose_shape"):
                shape, shape_info = _choose_shape(teacher, tokenizer, dev_split, train_split, max_length, config,
                                                  ctx.work_dir, note)
        student_tokenizer = tokenizer
    t_shape = st.teacher_shape(teacher.config)
    if shape.layers > t_shape.layers or shape.hidden > t_shape.hidden or shape.ffn > t_shape.ffn:
        note(f"student {shape.describe()} is deeper or wider than the teacher {t_shape.describe()}: this is not compression")
    layer_map = st.resolve_layer_map(config.layer_map, shape.layers, t_shape.layers)

    kept_ids = None
    if config.trim_vocab:
        # the task's whole training text (even when distilling on a subset) plus the augmented rows
        texts = [t for split in (task.split("train"), train_split) for column in (split.text_a, split.text_b or [])
                 for t in column]
        student_tokenizer, kept_ids = st.trim_vocabulary(student_tokenizer, texts)
    teacher_train = encode_split(train_split, tokenizer, max_length)
    init_plan = None
    if pretrained:
        if kept_ids is not None:
            st.trim_embeddings(student, kept_ids)
    else:
        dim_scores = None
        if config.init == "teacher" and shape.hidden < t_shape.hidden:
            sample = EncodedSplit(teacher_train.input_ids[:512],
                                  None if teacher_train.token_type_ids is None else teacher_train.token_type_ids[:512],
                                  teacher_train.labels[:512])
            batches = [collate(sample, idx, tokenizer.pad_token_id)
                       for idx in length_grouped_batches(sample.lengths(), 64, shuffle=False)]
            dim_scores = st.residual_dim_scores(teacher, batches)
        student = st.build_student(teacher, shape, init=config.init, layer_map=layer_map, keep_token_ids=kept_ids,
                                   dim_scores=dim_scores, seed=config.seed)
        if config.init == "teacher":
            init_plan = {"layers_copied": layer_map, "width": "selected" if shape.hidden < t_shape.hidden else "copied"}

    train_data = encode_split(train_split, student_tokenizer, max_length)
    if kept_ids is not None and [[kept_ids[i] for i in r] for r in train_data.input_ids[:2000]] != teacher_train.input_ids[:2000]:
        raise AssertionError("trimmed tokenizer does not reproduce the teacher's tokens on the training text")
    return _Student(student, student_tokenizer, shape, t_shape, layer_map, pretrained, train_data, kept_ids,
                    shape_info, init_plan)


def _evaluate(ctx: StageContext, labels: list[str], student, student_tokenizer, teacher, tokenizer,
              max_length: int) -> tuple[dict, dict, dict, dict, dict]:
    """The student's and the teacher's metrics on every labelled split, how often they agree, the student's
    unknown-token rate, and the student's encoding of each split."""
    splits, teacher_splits, agreement, unk_rate, encoded = {}, {}, {}, {}, {}
    for name, split in ctx.labelled_splits(labels, "the teacher").items():
        s_enc = encoded[name] = encode_split(split, student_tokenizer, max_length)
        t_enc = encode_split(split, tokenizer, max_length)
        s_pred = predict_logits(student, s_enc, pad_token_id=student_tokenizer.pad_token_id).argmax(-1)
        t_pred = predict_logits(teacher, t_enc, pad_token_id=tokenizer.pad_token_id).argmax(-1)
        splits[name] = classification_metrics(s_enc.labels, s_pred.tolist(), len(labels))
        teacher_splits[name] = classification_metrics(t_enc.labels, t_pred.tolist(), len(labels))
        agreement[name] = round(float((s_pred == t_pred).float().mean()), 5)
        unk_rate[name] = _unk_rate(s_enc, student_tokenizer.unk_token_id)
    return splits, teacher_splits, agreement, unk_rate, encoded
