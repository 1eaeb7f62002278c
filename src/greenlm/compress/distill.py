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
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from greenlm.compress.distill_config import DistillConfig, INIT_CHOICES, DEFAULT_STUDENT  # noqa: F401 (re-exported)
from greenlm.common import GreenlmError, atomic_write_json
from greenlm.compress import augment as aug
from greenlm.compress.losses import TinyBertLayerLoss, cosine_loss, kd_loss
from greenlm.data import EncodedSplit, Task, TaskSplit, collate, encode_split, length_grouped_batches
from greenlm.models import load_classifier, save_classifier
from greenlm.models import students as st
from greenlm.measure import count_params
from greenlm.runtime import predict_logits
from greenlm.stage import StageContext, StageOutput
from greenlm.train import classification_metrics, train

METHOD = "distill"
METRICS_FILE = "metrics.json"
SCORE_ATTENTION = "greenlm_scores"


def _register_score_attention() -> None:
    """An attention implementation that returns the pre-softmax scores Q K^T / sqrt(d) as its weights.

    TinyBERT's attention loss compares scores, not probabilities; Hugging Face models return
    probabilities (and only with eager attention). This is eager attention with the raw scores handed
    out instead; outputs are identical to eager's.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    if SCORE_ATTENTION in AttentionInterface._global_mapping:
        return

    def score_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        # query/key/value [B, A, T, d]; attention_mask additive [B, 1, T, T] or None
        scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # [B, A, T, T]
        weights = scores if attention_mask is None else scores + attention_mask
        weights = torch.nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
        weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
        out = torch.matmul(weights, value).transpose(1, 2).contiguous()  # [B, T, A, d]
        return out, scores

    AttentionInterface.register(SCORE_ATTENTION, score_attention)
    AttentionMaskInterface.register(SCORE_ATTENTION, eager_mask)


class _ScoreAttention:
    """Within the block, the given models use ``score_attention``; their own implementation after."""

    def __init__(self, *models):
        self.models = models

    def __enter__(self):
        _register_score_attention()
        self.before = [m.config._attn_implementation for m in self.models]
        for m in self.models:
            m.set_attn_implementation(SCORE_ATTENTION)

    def __exit__(self, *exc):
        for m, impl in zip(self.models, self.before):
            m.set_attn_implementation(impl or "sdpa")
        return False


# ---- distill: the method on models and encoded data -------------------------------------------------


@dataclass
class DistillResult:
    phases: dict = field(default_factory=dict)  # phase -> what training did (steps, seconds, losses, best)
    dev: dict | None = None  # best dev metrics of the prediction phase


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
    gold = torch.tensor(train_data.labels, dtype=torch.long)
    rows = _row_id_split(train_data)
    result = DistillResult()

    # Phase 1: intermediate layers.
    done_weights, done_info = work_dir / "intermediate.safetensors", work_dir / "intermediate.json"
    if config.intermediate_epochs > 0:
        from safetensors.torch import load_model, save_model

        if done_info.is_file():
            load_model(student, str(done_weights))
            result.phases["intermediate"] = json.loads(done_info.read_text())
        else:
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
            result.phases["intermediate"] = info

    # Phase 2: prediction layer. The teacher's logits are computed once and cached.
    logits_file, logits_key = work_dir / "teacher_logits.safetensors", work_dir / "teacher_logits.json"
    fingerprint = _data_fingerprint(train_data)
    cached = None
    if logits_file.is_file() and logits_key.is_file() and json.loads(logits_key.read_text()).get("data") == fingerprint:
        from safetensors.torch import load_file

        cached = load_file(str(logits_file))["logits"]
    if cached is None:
        from safetensors.torch import save_file

        with phase_tag("teacher_logits") as tag:
            cached = teacher_logits(teacher, train_data, pad_token_id=pad_token_id, token_map=token_map)
            _add_flops(tag, teacher.config, train_data, len(train_data), train=False)
        save_file({"logits": cached.contiguous()}, str(logits_file))
        atomic_write_json(logits_key, {"data": fingerprint})
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
    result.phases["prediction"] = _phase_info(outcome, meter)
    result.dev = outcome.best_metrics
    return result


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


def _mean_length(data: EncodedSplit) -> int:
    return max(1, round(sum(data.lengths()) / max(1, len(data))))


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


def teacher_tuning_problem(config, task: Task) -> str | None:
    """Why a teacher folder's model is not fine-tuned for ``task`` (None when it is)."""
    archs = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        return f"it is a {archs[0] if archs else 'model'} without a classification head fine-tuned on '{task.name}'"
    labels = [config.id2label[i] for i in sorted(config.id2label)]
    if sorted(labels) != sorted(task.labels):
        return f"its labels {labels} are not the task's {list(task.labels)}"
    return None


def check_teacher(path: Path, task: Task, allow_untuned: bool) -> str | None:
    """Refuse a teacher folder that is missing or not fine-tuned for ``task`` (unless allowed); returns the problem."""
    from transformers import AutoConfig

    from greenlm.models.loading import _check_local_weights

    if not path.is_dir():
        raise GreenlmError(f"teacher '{path}' is not a model folder; give the folder `greenlm train` wrote")
    _check_local_weights(path, allow_pickle=False)
    problem = teacher_tuning_problem(AutoConfig.from_pretrained(str(path)), task)
    if problem and not allow_untuned:
        raise GreenlmError(
            f"teacher '{path}' is not fine-tuned for task '{task.name}': {problem}. Fine-tune it first"
            f" (greenlm train --task {task.name} --model {path} --out DIR), or pass --allow-untuned-teacher"
            " (distilling from an untuned teacher gives a useless student)"
        )
    return problem


def _load_teacher(path: Path, task: Task, config: DistillConfig, on_note):
    problem = check_teacher(path, task, config.allow_untuned_teacher)
    if problem:
        on_note(f"teacher is not fine-tuned for '{task.name}' ({problem}); distilling anyway, as asked")
        loaded = load_classifier(str(path), labels=list(task.labels))
    else:
        loaded = load_classifier(str(path))
    saved = getattr(loaded.model.config, "greenlm", None) or {}
    if not problem and saved.get("task") not in (None, task.name):
        on_note(f"teacher was fine-tuned on '{saved['task']}', not '{task.name}' (same labels); using it")
    st.check_bert_style(loaded.model.config, f"teacher '{path}'")
    return loaded


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
    if cache.is_file():
        saved = json.loads(cache.read_text())
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


def _choose_shape(teacher, teacher_tokenizer, dev_split: TaskSplit | None, train_split: TaskSplit, max_length: int,
                  config: DistillConfig, work_dir: Path, on_note) -> tuple[st.StudentShape, dict]:
    """A shape within the budget by FLOPs, confirmed by a measured throughput ratio (batch 32, real inputs)."""
    from greenlm.runtime import measure_speed, speed_inputs, torch_forward

    cache = work_dir / "shape.json"
    key = {"target_speedup": config.target_speedup, "max_flops": config.max_flops}
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return st.StudentShape(**{k: saved["shape"][k] for k in ("layers", "hidden", "heads", "ffn")}), saved
    inputs = speed_inputs(encode_split(dev_split if dev_split is not None else train_split, teacher_tokenizer,
                                       max_length), max_examples=128)
    seq_len = int(statistics.median(inputs.lengths()))
    ranked = st.rank_shapes_by_budget(teacher.config, seq_len, target_speedup=config.target_speedup,
                                      max_flops=config.max_flops)
    pad = teacher_tokenizer.pad_token_id
    measure = lambda model: measure_speed(torch_forward(model), inputs, pad_token_id=pad, batch_size=32,  # noqa: E731
                                          latency_examples=16, repeats=3)
    teacher_speed = measure(teacher)
    tried, chosen = [], None
    step = max(1, len(ranked) // 8)
    for shape, flops in ranked[: 4 * step : step]:  # at most 4 measurements, further down the list each time
        candidate = st.build_student(teacher, shape, init="random", layer_map=[1] * shape.layers)
        speed = measure(candidate)
        ratio = speed.throughput_examples_per_s / teacher_speed.throughput_examples_per_s
        tried.append({"shape": shape.describe(), "flops_per_example": flops,
                      "flop_speedup": None, "measured_speedup": round(ratio, 3),
                      "latency_ms_p50": round(speed.latency_ms_p50, 3)})
        if config.target_speedup is None or ratio >= config.target_speedup:
            chosen = shape
            break
    if chosen is None:
        best = max(tried, key=lambda t: t["measured_speedup"])
        chosen = next(s for s, _ in ranked if s.describe() == best["shape"])
        on_note(f"no shape reached a measured {config.target_speedup}x on this machine; took {chosen.describe()}"
                f" ({best['measured_speedup']}x measured)")
    from greenlm.measure import count_flops

    teacher_flops = count_flops(teacher.config, seq_len).infer_flops_per_example
    for t in tried:
        t["flop_speedup"] = round(teacher_flops / t["flops_per_example"], 3)
    info = {"key": key, "shape": chosen.to_dict(), "seq_len": seq_len, "teacher_flops_per_example": teacher_flops,
            "teacher_throughput_examples_per_s": round(teacher_speed.throughput_examples_per_s, 2),
            "threads": teacher_speed.threads, "tried": tried}
    atomic_write_json(cache, info)
    on_note(f"student shape by budget: {chosen.describe()} ({tried[-1]['measured_speedup']}x measured,"
            f" {tried[-1]['flop_speedup']}x by FLOPs at {seq_len} tokens)")
    return chosen, info


def _unk_rate(data: EncodedSplit, unk_id: int | None) -> float | None:
    if unk_id is None:
        return None
    total = sum(len(r) for r in data.input_ids)
    return round(sum(r.count(unk_id) for r in data.input_ids) / max(1, total), 5)


def uses_teacher(config: DistillConfig) -> bool:
    return True  # the teacher is what the student learns from


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
    max_length = ctx.max_length(teacher, config.max_length)
    labels = list(loaded.labels)

    train_split = ctx.align(task.split("train"), labels, "the teacher")
    if config.train_subset is not None:
        train_split = train_split.subset(config.train_subset, seed=config.seed)
    dev_split = ctx.align(task.splits["dev"], labels, "the teacher") if "dev" in task.splits else None

    with ctx.phase("augment"):
        train_split, augment_stats = _augmented_train(train_split, teacher, tokenizer, config, work_dir, note)

    # The student's shape, tokenizer and initialisation.
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
                                                  work_dir, note)
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
    token_map = torch.tensor(kept_ids) if kept_ids is not None else None

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
    dev_data = encode_split(dev_split, student_tokenizer, max_length) if dev_split is not None else None

    result = distill(teacher, student, train_data, dev_data, config, pad_token_id=student_tokenizer.pad_token_id,
                     work_dir=work_dir, layer_map=layer_map, token_map=token_map, progress=ctx.progress, on_note=note,
                     phase_tag=ctx.phase)

    # Evaluation: the student, the teacher, and how often they agree.
    with ctx.phase("evaluate"):
        splits, teacher_splits, agreement, unk_rate = {}, {}, {}, {}
        for name, split in ctx.labelled_splits(labels, "the teacher").items():
            s_enc = encode_split(split, student_tokenizer, max_length)
            t_enc = encode_split(split, tokenizer, max_length)
            s_pred = predict_logits(student, s_enc, pad_token_id=student_tokenizer.pad_token_id).argmax(-1)
            t_pred = predict_logits(teacher, t_enc, pad_token_id=tokenizer.pad_token_id).argmax(-1)
            splits[name] = classification_metrics(s_enc.labels, s_pred.tolist(), len(labels))
            teacher_splits[name] = classification_metrics(t_enc.labels, t_pred.tolist(), len(labels))
            agreement[name] = round(float((s_pred == t_pred).float().mean()), 5)
            unk_rate[name] = _unk_rate(s_enc, student_tokenizer.unk_token_id)

    s_params, t_params = count_params(student), count_params(teacher)
    details = {
        "teacher": {"path": str(teacher_path), "shape": t_shape.to_dict(), "params": t_params["total"],
                    "splits": teacher_splits},
        "student": {
            "spec": spec, "shape": shape.to_dict(), "params": s_params["total"],
            "params_by_module": s_params["by_module"], "init": "pretrained" if pretrained else config.init,
            "init_plan": init_plan, "layer_map": layer_map,
            "vocab": {"trimmed": kept_ids is not None, "size": len(student_tokenizer), "teacher_size": len(tokenizer),
                      "unk_rate": unk_rate},
        },
        "params_ratio": round(s_params["total"] / t_params["total"], 4),
        "accuracy_retained": {n: round(splits[n]["accuracy"] / teacher_splits[n]["accuracy"], 4)
                              for n in splits if teacher_splits[n]["accuracy"] > 0},
        "agreement_with_teacher": agreement,
        "shape_choice": shape_info,
        "data": {"train_rows": len(train_data), "max_length": max_length, "mean_tokens": _mean_length(train_data),
                 "augmentation": augment_stats},
        "phases": result.phases,
        "config": config.to_dict(),
    }
    student.config.greenlm = {"task": task.name, "labels": labels, "max_length": max_length,
                              "distilled_from": str(teacher_path)}
    return StageOutput(metrics={"splits": splits, METHOD: details},
                       model_name=f"{shape.describe()} student of {teacher_path.name}",
                       write=lambda folder: save_classifier(student, student_tokenizer, folder))


def _pretrained_student(spec: str, teacher_loaded, note):
    """A pre-trained model as the student (e.g. a general-distilled TinyBERT): it must share the teacher's tokens."""
    loaded = load_classifier(spec, labels=list(teacher_loaded.labels))
    for message in loaded.notes:
        note(f"student: {message}")
    if loaded.tokenizer.get_vocab() != teacher_loaded.tokenizer.get_vocab():
        raise GreenlmError(
            f"student '{spec}' has a different tokenizer (vocabulary) from the teacher's; distillation here compares"
            " token by token, so the student must use the teacher's tokenizer (or give a shape such as 4x312)"
        )
    st.check_bert_style(loaded.model.config, f"student '{spec}'")
    return loaded.model, loaded.tokenizer, st.teacher_shape(loaded.model.config)
