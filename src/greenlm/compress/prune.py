"""Pruning a fine-tuned classifier: structured (heads, FFN neurons, layers removed) or unstructured.

Structured (the default, real speed): Michel et al. 2019's gate-gradient importance
(``compress.importance``) ranks heads, FFN neurons and layers; the least important are removed
physically (``models.pruned``), so the saved model has fewer parameters and FLOPs. Schedules:
  - one_shot: one importance pass, prune to the targets, then recover;
  - iterative (Michel et al. 2019, section 4): ``iterations`` rounds; round k prunes to k/K of the
    targets with importance recomputed on the model as it is, then recovers. With ``max_drop`` the
    rounds stop before dev accuracy falls more than ``max_drop`` points below the input model's,
    and the last model within that tolerance is kept.
Recovery: ``finetune`` (cross-entropy) or ``distill`` (Hinton et al. 2015 soft targets from the
unpruned model, or from the pipeline's teacher), short, on the task's training data.

Unstructured (``method`` magnitude or movement, ``compress.sparsity``): weights are zeroed, shapes
are kept; the report gives the sparsity, a CSR checkpoint's size and latency measured dense, with
zeros, and with a sparse kernel.

Stage entry point: ``run(ctx, config)`` (through ``greenlm.stage.run_stage("prune", ...)``); library entry
point: ``prune(model, tokenizer, task, config, work_dir=...)``.
"""

from __future__ import annotations

import copy
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import torch

from greenlm.compress.prune_config import PruneConfig, METHODS, SCHEDULES, RECOVERIES, RANKINGS, TEACHERS  # noqa: F401 (re-exported)
from greenlm.common import GreenlmError, atomic_write_json, read_json
from greenlm.compress import sparsity as sp
from greenlm.compress.importance import Importance, gate_importance
from greenlm.compress.losses import kd_loss
from greenlm.data import (EncodedSplit, Task, align_labels, encode_split, selection_record, selection_split_name,
                          truncation_records)
from greenlm.models import input_max_length, load_classifier, pruned, save_classifier
from greenlm.runtime import side_by_side, speed_inputs, torch_forward
from greenlm.stage import StageContext, StageOutput
from greenlm.train import TrainConfig, evaluate, train

SPARSE_CHECKPOINT = "model.sparse.safetensors"


def _distill_loss_fn(teacher, permutation: list[int], alpha: float, temperature: float):
    teacher.eval()

    def loss_fn(model, batch):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            teacher_logits = teacher(**inputs).logits.float()[:, permutation]
        # alpha * T^2 * KL(soft targets) + (1 - alpha) * CE(gold): hard-label weight 1 - alpha
        return kd_loss(model(**inputs).logits.float(), teacher_logits, batch["labels"],
                       temperature=temperature, hard_weight=1.0 - alpha)

    return loss_fn


# ---- structured planning ---------------------------------------------------------------------------


@dataclass
class PrunePlan:
    """What one round removes, in the model's current numbering."""

    layers: list[int] = field(default_factory=list)
    heads: dict[int, list[int]] = field(default_factory=dict)
    neurons: dict[int, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"layers": self.layers, "heads": {str(k): v for k, v in sorted(self.heads.items())},
                "neurons": {str(k): len(v) for k, v in sorted(self.neurons.items())}}


def select_lowest(scores: list[torch.Tensor], remove: int, *, minimum: int, ranking: str, skip: set[int] = frozenset(),
                  what: str = "heads") -> dict[int, list[int]]:
    """Pick ``remove`` units of lowest score, each layer keeping at least ``minimum``; layers in ``skip`` untouched.

    global: lowest scores over all layers (scores normalised per layer); per_layer: each layer gives
    the same share of its units (largest-remainder rounding), its lowest-scored ones.
    """
    if remove <= 0:
        return {}
    counts = {i: len(s) for i, s in enumerate(scores) if i not in skip}
    room = {i: max(0, c - minimum) for i, c in counts.items()}
    if remove > sum(room.values()):
        total = sum(counts.values())
        raise GreenlmError(
            f"cannot remove {remove} more {what}: with at least {minimum} per layer, {sum(room.values())} of the"
            f" {total} left can go; lower the target or the per-layer minimum"
        )
    if ranking == "global":
        order = sorted((float(scores[i][j]), i, j) for i in counts for j in range(counts[i]))
        taken: dict[int, list[int]] = {}
        count = 0
        for _, i, j in order:
            if count == remove:
                break
            if len(taken.get(i, [])) < room[i]:
                taken.setdefault(i, []).append(j)
                count += 1
        return {i: sorted(js) for i, js in taken.items()}
    if ranking != "per_layer":
        raise ValueError(f"unknown ranking {ranking!r}")
    total = sum(counts.values())
    exact = {i: remove * c / total for i, c in counts.items()}
    quota = {i: min(room[i], int(exact[i])) for i in counts}
    by_remainder = sorted(counts, key=lambda i: (-(exact[i] - int(exact[i])), i))
    while sum(quota.values()) < remove:
        for i in by_remainder:
            if sum(quota.values()) < remove and quota[i] < room[i]:
                quota[i] += 1
    out = {}
    for i, q in quota.items():
        if q:
            out[i] = sorted(int(j) for j in torch.argsort(scores[i], stable=True)[:q])
    return out


def plan_round(model, importance: Importance, *, heads_removed_target: int, neurons_removed_target: int,
               layers_dropped_target: int, start_heads: int, start_neurons: int, start_layers: int,
               min_heads_per_layer: int, min_neurons_per_layer: int, ranking: str) -> PrunePlan:
    """Plan one round so that, after it, the totals removed (vs the start) equal the targets."""
    heads_now = pruned.heads_per_layer(model)
    neurons_now = pruned.intermediate_per_layer(model)
    drop_now = layers_dropped_target - (start_layers - len(heads_now))
    layers = sorted(int(i) for i in torch.argsort(importance.layers, stable=True)[:max(0, drop_now)])
    gone_heads = start_heads - sum(heads_now) + sum(heads_now[i] for i in layers)
    gone_neurons = start_neurons - sum(neurons_now) + sum(neurons_now[i] for i in layers)
    heads = select_lowest(importance.heads, heads_removed_target - gone_heads, minimum=min_heads_per_layer,
                          ranking=ranking, skip=set(layers), what="attention heads")
    neurons = select_lowest(importance.neurons, neurons_removed_target - gone_neurons,
                            minimum=min_neurons_per_layer, ranking=ranking, skip=set(layers), what="FFN neurons")
    return PrunePlan(layers=layers, heads=heads, neurons=neurons)


def apply_plan(model, plan: PrunePlan) -> None:
    """Remove what ``plan`` names, physically (heads and neurons first, then layers)."""
    if plan.heads:
        pruned.prune_heads(model, plan.heads)
    if plan.neurons:
        pruned.prune_neurons(model, plan.neurons)
    if plan.layers:
        pruned.drop_layers(model, plan.layers)
    pruned.sync_config(model)


# ---- data and helpers ------------------------------------------------------------------------------


@dataclass
class _Data:
    importance: EncodedSplit
    train: EncodedSplit
    select: EncodedSplit | None  # where choices are made (best epoch, when to stop): validation, else dev
    select_name: str | None
    dev: EncodedSplit | None  # reported, and the inputs timed
    extra: dict[str, EncodedSplit]  # every labelled split but train, evaluated at the end
    pad_token_id: int
    num_labels: int
    mean_dev_tokens: int


def _encode(task: Task, tokenizer, model_labels: list[str], config: PruneConfig, max_length: int) -> _Data:
    def enc(split):
        return encode_split(align_labels(split, task, model_labels, "the input model"), tokenizer, max_length)

    train_split = task.split("train")
    importance = enc(train_split.subset(config.importance_examples, seed=config.seed))
    train_part = train_split
    if config.train_examples:
        train_part = train_split.subset(config.train_examples, seed=config.seed + 1)
    extra = {name: enc(split) for name, split in task.splits.items()
             if name != "train" and all(y >= 0 for y in split.labels)}
    select_name = selection_split_name(task)
    select = extra.get(select_name) if select_name is not None else None
    dev = extra.get(task.eval_split)  # the reported split ("dev" in the names below)
    mean_tokens = round(sum(dev.lengths()) / len(dev)) if dev is not None and len(dev) else max_length
    return _Data(importance, enc(train_part), select, select_name if select is not None else None, dev, extra,
                 tokenizer.pad_token_id, len(model_labels), mean_tokens)


def _eval(model, data: _Data, encoded: EncodedSplit | None) -> dict | None:
    if encoded is None:
        return None
    return evaluate(model, encoded, pad_token_id=data.pad_token_id, num_labels=data.num_labels)


def _shape_facts(model, seq_len: int) -> dict:
    from greenlm.measure import count_flops, count_params

    return {
        "layers": len(pruned.encoder_layers(model)),
        "heads_per_layer": pruned.heads_per_layer(model),
        "intermediate_per_layer": pruned.intermediate_per_layer(model),
        "params": count_params(model)["total"],
        "flops_per_example": count_flops(model, seq_len).infer_flops_per_example,
    }


def _train_config(config: PruneConfig, select_best: bool) -> TrainConfig:
    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                       seed=config.seed, warmup_ratio=0.06, select_metric="accuracy" if select_best else None)


def _speed(models: dict[str, torch.nn.Module], data: _Data, examples: int, threads: int | None) -> dict | None:
    """Latency (batch 1) and throughput (batch 32) of each model, side by side on the same dev inputs."""
    if data.dev is None:
        return None
    timed = side_by_side({name: torch_forward(model) for name, model in models.items()},
                         speed_inputs(data.dev, max_examples=examples), pad_token_id=data.pad_token_id, threads=threads)
    protocol = timed.pop("protocol")
    for report in timed.values():
        report["protocol"] = protocol
    return timed


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# ---- the library entry point -----------------------------------------------------------------------


@dataclass
class PruneOutcome:
    model: torch.nn.Module
    details: dict  # what goes under "prune" in metrics.json
    splits: dict  # split -> metrics of the pruned model
    truncation: dict  # split -> rows cut at max_length (train: the rows recovery trains on)


def prune(model, tokenizer, task: Task, config: PruneConfig, *, work_dir: str | Path, teacher=None,
          progress: bool = True, on_note=print) -> PruneOutcome:
    """Prune ``model`` (a classifier fine-tuned on ``task``) as ``config`` says; resumable from ``work_dir``.

    ``teacher``: the model to distill from when ``config.teacher == "teacher"`` (else the unpruned input).
    The returned model may be a different object from ``model`` (an iterative run resumes from disk).
    """
    pruned.layout_of(model)  # refuse unknown architectures before any work
    work_dir = Path(work_dir)
    model_labels = [model.config.id2label[i] for i in sorted(model.config.id2label)]
    max_length = input_max_length(model.config, tokenizer, config.max_length, task.split("train"), on_note,
                                  who="prune: max_length")
    data = _encode(task, tokenizer, model_labels, config, max_length)
    truncation = truncation_records({"train": data.train, **data.extra}, on_note)
    if config.max_drop is not None and data.select is None:
        raise GreenlmError(f"max_drop needs a validation or dev split to measure accuracy on; task '{task.name}' has"
                           " none")
    if config.recovery == "distill" and config.teacher == "teacher" and teacher is None:
        raise GreenlmError("prune setting teacher='teacher' needs the fine-tuned teacher model (teacher_dir)")
    model.eval()
    unpruned = copy.deepcopy(model)
    distill_from = teacher if config.teacher == "teacher" else unpruned
    permutation = _teacher_permutation(distill_from, model_labels) if config.recovery == "distill" else []
    loss_fn = (_distill_loss_fn(distill_from, permutation, config.distill_alpha, config.distill_temperature)
               if config.recovery == "distill" else None)
    baseline = _eval(unpruned, data, data.select)
    if config.method == "structured":
        final, details = _structured(model, tokenizer, data, config, work_dir, loss_fn, baseline, progress, on_note)
    else:
        final, details = _unstructured(model, data, config, work_dir, loss_fn, progress, on_note)
    splits = {name: _eval(final, data, encoded) for name, encoded in data.extra.items()}
    details["max_length"] = max_length
    details["selection"] = {**selection_record(task, "when to stop pruning (max_drop) and the best recovery epoch"),
                            "input": baseline}
    reported = task.eval_split
    details["input_dev"] = _eval(unpruned, data, data.dev) if data.select_name != reported else baseline
    if details["input_dev"] is not None and reported in splits:
        drop = round(100 * (details["input_dev"]["accuracy"] - splits[reported]["accuracy"]), 3)
        details["accuracy_drop_points"] = drop
        details["accuracy_kept"] = _ratio(splits[reported]["accuracy"], details["input_dev"]["accuracy"])
    if baseline is not None:
        select_drop = round(100 * (baseline["accuracy"] - splits[data.select_name]["accuracy"]), 3)
        details["selection"]["accuracy_drop_points"] = select_drop
        details["within_max_drop"] = None if config.max_drop is None else select_drop <= config.max_drop
        if config.max_drop is not None and select_drop > config.max_drop:
            on_note(f"accuracy dropped {select_drop} points on {data.select_name}, more than max_drop"
                    f" {config.max_drop}")
    details["before"] = _shape_facts(unpruned, data.mean_dev_tokens)
    details["after"] = _shape_facts(final, data.mean_dev_tokens)
    details["flops_seq_len"] = data.mean_dev_tokens
    details["params_ratio"] = _ratio(details["after"]["params"], details["before"]["params"])
    details["flops_ratio"] = _ratio(details["after"]["flops_per_example"], details["before"]["flops_per_example"])
    if config.measure_speed and data.dev is not None:
        models = {"input": unpruned, "pruned": final}
        if config.method != "structured":
            models["pruned_csr_kernel"] = sp.to_sparse_kernels(final)
        details["speed"] = _speed(models, data, config.speed_examples, config.speed_threads)
        details["speed"]["note"] = _speed_note(details["speed"], config.method)
    details["recovery"] = {
        "kind": config.recovery,
        "distilled_from": None if config.recovery != "distill" else ("the unpruned input model"
                                                                      if config.teacher == "input" else "the teacher"),
        "epochs": config.epochs,
    }
    details["train_examples"] = len(data.train)
    details["importance_examples"] = len(data.importance) if config.method == "structured" else None
    return PruneOutcome(final, details, splits, truncation)


def _teacher_permutation(teacher, labels: list[str]) -> list[int]:
    teacher_labels = [teacher.config.id2label[i] for i in sorted(teacher.config.id2label)]
    if sorted(teacher_labels) != sorted(labels):
        raise GreenlmError(f"the teacher's labels {teacher_labels} differ from the pruned model's {labels}")
    return [teacher_labels.index(label) for label in labels]


def _speed_note(speed: dict, method: str) -> str:
    base = speed["input"]
    notes = []
    for name in [n for n in speed if n not in ("input", "note")]:
        s = speed[name]
        notes.append(f"{name}: latency x{_ratio(base['latency_ms_p50'], s['latency_ms_p50'])}, "
                     f"throughput x{_ratio(s['throughput_examples_per_s'], base['throughput_examples_per_s'])}")
    text = "measured side by side in one process, same inputs and threads; " + "; ".join(notes)
    if method != "structured":
        text += (". Zeros inside dense matrices do not make dense matrix products faster; only the CSR kernel"
                 " can, and its figure is the measured one")
    return text


# ---- structured ------------------------------------------------------------------------------------


def _structured(model, tokenizer, data: _Data, config: PruneConfig, work_dir: Path, loss_fn, baseline,
                progress, on_note):
    start_heads_list = pruned.heads_per_layer(model)
    start_heads, start_neurons = sum(start_heads_list), sum(pruned.intermediate_per_layer(model))
    start_layers = len(start_heads_list)
    heads_target = round(config.head_sparsity * start_heads)
    neurons_target = round(config.ffn_sparsity * start_neurons)
    if config.drop_layers >= start_layers:
        raise GreenlmError(f"drop_layers {config.drop_layers} would remove the whole model ({start_layers} layers);"
                           f" use at most {start_layers - 1}")
    if heads_target >= start_heads:
        raise GreenlmError(f"head_sparsity {config.head_sparsity} would remove every attention head of the model")
    kept_layers = start_layers - config.drop_layers
    if start_heads - heads_target < config.min_heads_per_layer * kept_layers:
        most = start_heads - config.min_heads_per_layer * kept_layers
        raise GreenlmError(
            f"head_sparsity {config.head_sparsity} removes {heads_target} of {start_heads} heads, but each of the"
            f" {kept_layers} kept layers must keep {config.min_heads_per_layer}: at most {most}"
            f" ({most / start_heads:.0%}) can go; lower head_sparsity, drop whole layers (drop_layers),"
            " or set min_heads_per_layer 0"
        )
    rounds = config.iterations if config.schedule == "iterative" else 1
    state = _read_state(work_dir)
    history: list[dict] = state.get("history", [])
    current = model
    if history:
        current = load_classifier(str(work_dir / f"round-{len(history)}")).model
        on_note(f"resuming pruning after round {len(history)} of {rounds}")
    stopped_at = state.get("stopped_at")
    for k in range(len(history) + 1, rounds + 1):
        if stopped_at is not None:
            break
        share = k / rounds
        pruned_dir = work_dir / f"round-{k}-pruned"
        if (pruned_dir / "plan.json").is_file():
            current = load_classifier(str(pruned_dir)).model
            plan_info = read_json(pruned_dir / "plan.json")
        else:
            importance = gate_importance(current, data.importance, pad_token_id=data.pad_token_id)
            plan = plan_round(
                current, importance, heads_removed_target=round(heads_target * share),
                neurons_removed_target=round(neurons_target * share),
                layers_dropped_target=round(config.drop_layers * share), start_heads=start_heads,
                start_neurons=start_neurons, start_layers=start_layers,
                min_heads_per_layer=config.min_heads_per_layer, min_neurons_per_layer=config.min_neurons_per_layer,
                ranking=config.ranking,
            )
            apply_plan(current, plan)
            plan_info = {"plan": plan.to_dict(), "importance": importance.summary()}
            save_classifier(current, tokenizer, pruned_dir, {"plan.json": plan_info})
        entry = {"round": k, "heads_per_layer": pruned.heads_per_layer(current),
                 "intermediate_per_layer": pruned.intermediate_per_layer(current),
                 "layers_kept": pruned.pruned_from(current)["layers"], "plan": plan_info["plan"],
                 "selection_before_recovery": _eval(current, data, data.select)}
        if config.recovery != "none":
            result = train(current, data.train, data.select, _train_config(config, select_best=True),
                           pad_token_id=data.pad_token_id, work_dir=work_dir / f"round-{k}-train", loss_fn=loss_fn,
                           progress=progress, description=f"prune round {k}/{rounds}: {config.recovery}")
            entry["recovery_steps"] = result.state.step
        entry["selection"] = _eval(current, data, data.select)
        history.append(entry)
        save_classifier(current, tokenizer, work_dir / f"round-{k}")
        if (config.max_drop is not None and baseline is not None
                and 100 * (baseline["accuracy"] - entry["selection"]["accuracy"]) > config.max_drop):
            stopped_at = k
        _write_state(work_dir, {"history": history, "stopped_at": stopped_at})
        on_note(f"round {k}/{rounds}: {sum(entry['heads_per_layer'])} heads,"
                f" {sum(entry['intermediate_per_layer'])} FFN neurons, {len(entry['heads_per_layer'])} layers;"
                f" {data.select_name} accuracy {entry['selection']['accuracy']:.4f}" if entry["selection"]
                else f"round {k}/{rounds} done")
    kept_round = len(history)
    if stopped_at is not None and stopped_at > 1:
        kept_round = stopped_at - 1
        on_note(f"round {stopped_at} lost more than max_drop {config.max_drop} accuracy points;"
                f" keeping round {kept_round}")
        current = load_classifier(str(work_dir / f"round-{kept_round}")).model
    elif stopped_at == 1:
        on_note(f"round 1 already lost more than max_drop {config.max_drop} accuracy points; kept it, as the"
                " smallest step this schedule takes: raise --iterations for smaller steps")
    final_heads = sum(pruned.heads_per_layer(current))
    final_neurons = sum(pruned.intermediate_per_layer(current))
    details = {
        "schedule": config.schedule,
        "rounds_run": len(history),
        "round_kept": kept_round,
        "target": {"head_sparsity": config.head_sparsity, "ffn_sparsity": config.ffn_sparsity,
                   "drop_layers": config.drop_layers},
        "target_reached": kept_round == rounds,
        "within_max_drop": stopped_at is None or stopped_at > 1,
        "head_sparsity": round(1 - final_heads / start_heads, 4),
        "ffn_sparsity": round(1 - final_neurons / start_neurons, 4),
        "heads": {"before": start_heads, "after": final_heads},
        "ffn_neurons": {"before": start_neurons, "after": final_neurons},
        "pruned_from": pruned.pruned_from(current),
        "history": history,
    }
    return current.eval(), details


def _read_state(work_dir: Path) -> dict:
    path = work_dir / "prune_state.json"
    return read_json(path) if path.is_file() else {}


def _write_state(work_dir: Path, state: dict) -> None:
    atomic_write_json(work_dir / "prune_state.json", state)


# ---- unstructured ----------------------------------------------------------------------------------


def _unstructured(model, data: _Data, config: PruneConfig, work_dir: Path, loss_fn, progress, on_note):
    controller = sp.SparsityController(model, config.method, config.scope,
                                       score_scale=config.score_learning_rate / config.learning_rate)
    callbacks = []
    if config.schedule == "one_shot":
        controller.set_sparsity(config.sparsity)
    else:
        callbacks.append(sp.schedule_callback(controller, config.sparsity, config.sparsity_warmup,
                                              config.sparsity_cooldown, config.mask_update_steps))
    steps = 0
    if config.schedule == "cubic" or config.recovery != "none":
        # A cubic run changes the mask until its last steps: keep the last weights, not the best epoch's.
        result = train(model, data.train, data.select, _train_config(config, select_best=config.schedule == "one_shot"),
                       pad_token_id=data.pad_token_id, work_dir=work_dir / "train", loss_fn=loss_fn,
                       callbacks=callbacks, progress=progress,
                       description=f"{config.method} pruning to {config.sparsity:.0%}")
        steps = result.state.step
        if controller.sparsity != config.sparsity:  # a resumed run that had already finished its steps
            controller.set_sparsity(config.sparsity)
    controller.bake()
    model.eval()
    report = sp.sparsity_report(model)
    details = {
        "schedule": config.schedule,
        "scope": config.scope if config.method == "magnitude" else "per_matrix",
        "target_sparsity": config.sparsity,
        "train_steps": steps,
        **report,
    }
    on_note(f"{config.method}: {report['sparsity']:.2%} of the encoder's linear weights are zero"
            f" ({report['overall_sparsity']:.2%} of all parameters)")
    return model, details


# ---- the stage ------------------------------------------------------------------------------------


def uses_teacher(config: PruneConfig) -> bool:
    return config.recovery == "distill" and config.teacher == "teacher"


def run(ctx: StageContext, config: PruneConfig) -> StageOutput:
    """The ``prune`` method: prune the model folder at ``ctx.input_dir``.

    The output folder holds the model (safetensors; a structurally pruned one records its per-layer
    shapes) and the tokenizer; unstructured runs add ``model.sparse.safetensors`` (CSR). ``ctx.work_dir``
    holds rounds and training checkpoints, so an interrupted run resumes.
    """
    if uses_teacher(config) and ctx.teacher_dir is None:
        raise GreenlmError("prune setting teacher='teacher' needs a fine-tuned teacher folder (greenlm run gives its"
                           " own; on the command line: --teacher-dir)")
    loaded = ctx.load_input()
    model, tokenizer = loaded.model, loaded.tokenizer
    pruned.layout_of(model)
    unknown = sorted(set(ctx.task.labels) - set(loaded.labels))
    if unknown:
        raise GreenlmError(f"prune: the input model knows labels {loaded.labels}, not the task's {unknown};"
                           " prune a model fine-tuned on this task")
    teacher = load_classifier(str(ctx.teacher_dir), trainable=True).model if uses_teacher(config) else None
    outcome = prune(model, tokenizer, ctx.task, config, work_dir=ctx.work_dir, teacher=teacher, progress=ctx.progress,
                    on_note=ctx.note)
    details = {"method": config.method, **outcome.details}
    outcome.model.config.greenlm = {**(getattr(outcome.model.config, "greenlm", None) or {}), "task": ctx.task.name,
                                    "labels": list(loaded.labels), "max_length": outcome.details["max_length"]}

    def write(folder: Path) -> None:
        save_classifier(outcome.model, tokenizer, folder)
        if config.method == "structured":
            return
        csr_bytes = sp.save_sparse_checkpoint(outcome.model, folder / SPARSE_CHECKPOINT)
        dense = (folder / "model.safetensors").read_bytes()
        details["checkpoint"] = {
            "dense_safetensors_bytes": len(dense),
            "csr_safetensors_bytes": csr_bytes,
            "csr_compression_ratio": _ratio(len(dense), csr_bytes),
            "dense_gzip_bytes": len(gzip.compress(dense, compresslevel=6)),
            "note": f"{SPARSE_CHECKPOINT}: matrices with >= 30% zeros stored as CSR (int16 column ids, fp32"
                    " values), the rest dense; sizes are the files' measured bytes",
        }

    return StageOutput(metrics={"splits": outcome.splits, "truncation": outcome.truncation, "prune": details},
                       write=write, model_name=ctx.source)
