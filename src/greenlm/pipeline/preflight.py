"""Before any training: can the recipe reach its target speed on this machine?

A recipe with a speed target (``target.speedup``, ``target.max_latency_ms``) is checked before its first
stage runs. Each stage's model is stood in for by one of the same shape with random weights, which runs
exactly as fast as the trained one will: the teacher as the pre-trained model, a distilled student of a
given shape built from the teacher's config, a quantized model exported and quantized the way the
``quantize`` stage does (int8: ONNX Runtime; bf16: PyTorch). They are timed side by side on the task's real
dev sentences (batch 32 for throughput, batch 1 for latency), as the run's measuring pass will time them.

Stages whose speed depends on training are bounded from above instead, and marked so:
  - structured pruning: the input's speed divided by the share of the model kept (heads, FFN and layers);
  - unstructured pruning: the input's speed (dense kernels do not skip zeros);
  - early exit: the input's speed times its number of layers (every input leaving at the first exit);
  - a quantized model: its input's stand-in quantized and timed, times the input's own bound, if any;
  - a student given by a folder, or picked by a budget (``target_speedup``): not estimated, nor is anything
    built on it.

When the best figure misses the target by more than ``MARGIN`` (timing noise between runs), the run stops with
one line naming the best reachable model; within the margin, or when some stage cannot be estimated (it might
reach anything), it goes on and says the target may be missed. Estimates are cached in the runs folder by machine,
recipe shapes and evaluation settings.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_json, read_json
from greenlm.common.hardware import cpu_model

MARGIN = 1.2  # refuse only when the best estimate is below target / MARGIN (latency: above target * MARGIN)
CACHE_FILE = ".preflight.json"


def _stage_plan(recipe) -> list[dict]:
    """What stands in for each stage: {stage, method, upstream, kind, ...} in recipe order."""
    from greenlm.models.students import is_shape_spec

    plan = []
    for stage in recipe.stages:
        s = stage.settings
        entry = {"stage": stage.name, "method": stage.method, "upstream": stage.upstream, "kind": "unknown"}
        if stage.method == "finetune":
            entry["kind"] = "teacher"
        elif stage.method == "distill" and s.student_spec and is_shape_spec(s.student_spec):
            entry.update(kind="student", shape=s.student_spec)
        elif stage.method == "quantize":
            entry["kind"] = "int8" if s.scheme.startswith("int8") else "bf16"
        elif stage.method == "prune" and s.method == "structured":
            entry.update(kind="bound", kept_share=1 - max(s.head_sparsity, s.ffn_sparsity), drop_layers=s.drop_layers,
                         why="structured pruning, by the share of heads, FFN and layers kept")
        elif stage.method == "prune":
            entry.update(kind="bound", kept_share=1.0, drop_layers=0, why="unstructured pruning: dense kernels")
        elif stage.method == "early_exit":
            entry.update(kind="exit_bound", why="early exit, every input leaving at the first exit")
        plan.append(entry)
    return plan


def _cache_key(recipe, plan: list[dict]) -> str:
    from greenlm import __version__

    payload = {"plan": plan, "teacher": recipe.teacher, "task": recipe.task, "cpu": cpu_model(),
               "evaluation": [recipe.evaluation.speed_examples, recipe.evaluation.latency_examples,
                              recipe.evaluation.batch_size, recipe.evaluation.threads], "greenlm": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def estimate_speeds(recipe, task, runs_root: Path, log) -> dict[str, dict]:
    """Stage -> {"speedup": x vs the teacher, "latency_ms_p50", "how": "measured" | "upper bound: ..."}."""
    plan = _stage_plan(recipe)
    key = _cache_key(recipe, plan)
    cache = Path(runs_root) / CACHE_FILE
    try:
        saved = read_json(cache)
        if saved.get(key):
            return saved[key]
    except (OSError, ValueError):
        saved = {}
    log("checking the target before training: timing stand-ins of every stage's model (random weights, same"
        " shapes) on dev sentences")
    with tempfile.TemporaryDirectory(prefix="greenlm-preflight-") as tmp:
        estimates = _measure(recipe, task, plan, Path(tmp))
    try:
        Path(runs_root).mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache, {**{k: v for k, v in saved.items() if isinstance(v, dict)}, key: estimates})
    except OSError:
        pass  # a cache that cannot be written only costs the next run the same minute
    return estimates


def _measure(recipe, task, plan: list[dict], work: Path) -> dict[str, dict]:
    import torch

    from greenlm.data import encode_split
    from greenlm.models import load_classifier
    from greenlm.models.students import build_student, parse_student_shape
    from greenlm.runtime import side_by_side, speed_inputs, torch_forward

    ev = recipe.evaluation
    torch.manual_seed(0)
    # a tiny: model builds its vocabulary from the training text, as fine-tuning does
    loaded = load_classifier(recipe.teacher, labels=list(task.labels), train_texts=task.split("train").joined_texts(),
                             seed=0, trainable=True)
    teacher, tokenizer = loaded.model.eval(), loaded.tokenizer
    finetune = next(s for s in recipe.stages if s.method == "finetune")
    max_length = getattr(finetune.settings, "max_length", None) or 128
    if not isinstance(max_length, int):  # "auto": chosen from the training rows when the stage runs
        max_length = 128
    split = task.splits.get(task.eval_split) or task.split("train")
    inputs = speed_inputs(encode_split(split, tokenizer, max_length), ev.speed_examples)
    models: dict[str, torch.nn.Module] = {}  # stage -> the module its stand-in is (or is built on)
    forwards: dict[str, object] = {}  # the stand-ins that are timed
    timed_as: dict[str, str] = {}  # stage -> the timed stand-in its figure comes from
    factor: dict[str, float] = {}  # stage -> upper-bound multiplier on that figure (1: measured as is)
    why: dict[str, list[str]] = {}
    for entry in plan:
        name, kind, up = entry["stage"], entry["kind"], entry["upstream"]
        if kind == "teacher":
            models[name] = teacher
        elif kind == "student":
            shape = parse_student_shape(entry["shape"], teacher.config)
            models[name] = build_student(teacher, shape, init="random", layer_map=[1] * shape.layers).eval()
        elif up not in timed_as or kind == "unknown":
            continue  # unknown until trained, and so is everything built on it
        elif kind in ("int8", "bf16"):
            models[name] = models[up]
            forwards[name] = _quantized_forward(models[up], kind, work / name, ev.threads)
            timed_as[name], factor[name], why[name] = name, factor[up], list(why[up])
            continue
        else:  # bounded from the upstream's stand-in
            layers = max(1, getattr(models[up].config, "num_hidden_layers", 1))
            own = (layers if kind == "exit_bound" else
                   layers / max(1, layers - entry["drop_layers"]) / max(entry["kept_share"], 1e-3))
            models[name] = models[up]
            timed_as[name], factor[name], why[name] = timed_as[up], factor[up] * own, [*why[up], entry["why"]]
            continue
        forwards[name] = torch_forward(models[name])
        timed_as[name], factor[name], why[name] = name, 1.0, []
    teacher_name = next(e["stage"] for e in plan if e["kind"] == "teacher")
    timed = side_by_side(forwards, inputs, pad_token_id=tokenizer.pad_token_id, batch_size=ev.batch_size,
                         latency_examples=min(ev.latency_examples, 32), repeats=2, threads=ev.threads, rounds=2)
    base = timed[teacher_name]["throughput_examples_per_s"]
    estimates: dict[str, dict] = {}
    for entry in plan:
        name = entry["stage"]
        if name not in timed_as:
            estimates[name] = {"speedup": None, "latency_ms_p50": None,
                               "how": "not estimated (its model is known only after training)"}
            continue
        t, k = timed[timed_as[name]], factor[name]
        latency = None if t["latency_ms_p50"] is None else t["latency_ms_p50"] / k
        how = ("measured (same shape, random weights)" if not why[name]
               else "upper bound: " + "; ".join(why[name]))
        estimates[name] = {"speedup": round(k * t["throughput_examples_per_s"] / base, 3), "latency_ms_p50": latency,
                           "how": how}
    return estimates


def _quantized_forward(model, kind: str, work: Path, threads: int | None):
    from greenlm.runtime.runtimes import OrtRuntime, TorchRuntime

    if kind == "bf16":
        import copy

        return TorchRuntime(copy.deepcopy(model), precision="bf16", threads=threads)
    from greenlm.runtime import onnx as gx

    work.mkdir(parents=True, exist_ok=True)
    fp32, int8 = work / "model.onnx", work / "model.int8.onnx"
    gx.export_onnx(model, fp32)
    gx.quantize_onnx_dynamic(fp32, int8)
    return OrtRuntime(int8, precision="int8-dynamic", threads=threads)


def check_target(recipe, estimates: dict[str, dict], log) -> None:
    """Refuse (one line) a speed target no stage can reach; note one that is within the margin. A stage that
    cannot be estimated (a student picked by a budget, a folder) may reach anything: then only a note."""
    target = recipe.target
    known = {name: e for name, e in estimates.items() if e.get("speedup") is not None}
    unknown = [name for name, e in estimates.items() if e.get("speedup") is None]
    if not known:
        return
    if target.speedup is not None:
        best_name, best = max(known.items(), key=lambda kv: kv[1]["speedup"])
        if best["speedup"] * MARGIN < target.speedup and not unknown:
            raise GreenlmError(
                f"target speedup {target.speedup:g}x is out of reach on this machine: the best this recipe can reach"
                f" is about {best['speedup']:.1f}x ({best_name}, {best['how']}); lower the target or add a smaller"
                " student (e.g. --set stages.distill_2x256.student=2x192)")
        if best["speedup"] < target.speedup:
            unknowable = f" and {', '.join(unknown)} cannot be estimated before training" if unknown else ""
            log(f"note: the target {target.speedup:g}x is above the best estimate ({best['speedup']:.1f}x,"
                f" {best_name}){unknowable}: it may be missed")
    if target.max_latency_ms is not None:
        timed = {n: e for n, e in known.items() if e.get("latency_ms_p50") is not None}
        if timed:
            best_name, best = min(timed.items(), key=lambda kv: kv[1]["latency_ms_p50"])
            if best["latency_ms_p50"] > target.max_latency_ms * MARGIN and not unknown:
                raise GreenlmError(
                    f"target latency {target.max_latency_ms:g} ms is out of reach on this machine: the fastest this"
                    f" recipe can reach is about {best['latency_ms_p50']:.2f} ms at batch 1 ({best_name},"
                    f" {best['how']}); raise the target or add a smaller student")
