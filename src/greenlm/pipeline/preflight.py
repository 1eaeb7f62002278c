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
  - a student given by a folder, or picked by a budget (``target_speedup``): not estimated.

When the best figure misses the target by more than ``MARGIN`` (timing noise; the quantize stage's graph
fusions, which this estimate skips), the run stops with one line naming the best reachable model; within
the margin it goes on and says the target may be missed. Estimates are cached in the runs folder by machine,
recipe shapes and evaluation settings.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from greenlm.common import GreenlmError, atomic_write_json
from greenlm.common.hardware import cpu_model

MARGIN = 1.2  # refuse only when the best estimate is below target / MARGIN (latency: above target * MARGIN)
CACHE_FILE = ".preflight.json"


def _stage_plan(recipe) -> list[dict]:
    """What stands in for each stage: {stage, kind, upstream, ...} in recipe order."""
    plan = []
    for stage in recipe.stages:
        s = stage.settings
        entry = {"stage": stage.name, "method": stage.method, "upstream": stage.upstream}
        if stage.method == "finetune":
            entry["kind"] = "teacher"
        elif stage.method == "distill":
            spec = s.student_spec
            from greenlm.models.students import is_shape_spec

            entry.update(kind="student", shape=spec) if spec and is_shape_spec(spec) else entry.update(kind="unknown")
        elif stage.method == "quantize":
            entry.update(kind="int8" if s.scheme.startswith("int8") else "bf16")
            upstream = next((e for e in plan if e["stage"] == stage.upstream), {})
            if upstream.get("kind") == "exit_bound" or upstream.get("after_exits"):
                entry["after_exits"] = True  # timed without its exits, then bounded as early exit is
        elif stage.method == "prune":
            if s.method == "structured":
                kept = (1 - max(s.head_sparsity, s.ffn_sparsity))
                entry.update(kind="bound", factor=1 / max(kept, 1e-3), why="structured pruning, by the share kept")
            else:
                entry.update(kind="bound", factor=1.0, why="unstructured pruning: dense kernels")
        elif stage.method == "early_exit":
            entry.update(kind="exit_bound", why="early exit: every input leaving at the first exit")
        else:
            entry.update(kind="unknown")
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
        saved = json.loads(cache.read_text())
        if saved.get(key):
            return saved[key]
    except (OSError, json.JSONDecodeError):
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
    train = task.split("train")  # a tiny: model builds its vocabulary from it, as fine-tuning does
    texts = [t if train.text_b is None else f"{t} {train.text_b[i]}" for i, t in enumerate(train.text_a)]
    loaded = load_classifier(recipe.teacher, labels=list(task.labels), train_texts=texts, seed=0)
    teacher, tokenizer = loaded.model.eval(), loaded.tokenizer
    finetune = next(s for s in recipe.stages if s.method == "finetune")
    max_length = getattr(finetune.settings, "max_length", None) or 128
    split = task.splits.get("dev") or task.split("train")
    inputs = speed_inputs(encode_split(split, tokenizer, max_length), ev.speed_examples)
    models: dict[str, torch.nn.Module] = {}
    forwards: dict[str, object] = {}
    for entry in plan:
        name, kind = entry["stage"], entry["kind"]
        upstream = models.get(entry["upstream"]) if entry["upstream"] else None
        if kind == "teacher":
            models[name] = teacher
        elif kind == "student":
            shape = parse_student_shape(entry["shape"], teacher.config)
            models[name] = build_student(teacher, shape, init="random", layer_map=[1] * shape.layers).eval()
        elif kind in ("int8", "bf16") and upstream is not None:
            models[name] = upstream
            forwards[name] = _quantized_forward(upstream, kind, work / name, ev.threads)
            continue
        elif upstream is not None:
            models[name] = upstream  # bounds are computed from the upstream's timing below
            continue
        else:
            continue
        forwards[name] = torch_forward(models[name])
    teacher_name = next(e["stage"] for e in plan if e["kind"] == "teacher")
    timed = side_by_side(forwards, inputs, pad_token_id=tokenizer.pad_token_id, batch_size=ev.batch_size,
                         latency_examples=min(ev.latency_examples, 32), repeats=2, threads=ev.threads, rounds=2)
    base = timed[teacher_name]["throughput_examples_per_s"]
    estimates: dict[str, dict] = {}
    for entry in plan:
        name = entry["stage"]
        if name in timed and name != "protocol" and entry.get("after_exits"):
            t, layers = timed[name], max(1, getattr(models[name].config, "num_hidden_layers", 1))
            estimates[name] = {"speedup": round(layers * t["throughput_examples_per_s"] / base, 3),
                               "latency_ms_p50": t["latency_ms_p50"] / layers,
                               "how": "upper bound: quantized, every input leaving at the first exit"}
        elif name in timed and name != "protocol":
            t = timed[name]
            estimates[name] = {"speedup": round(t["throughput_examples_per_s"] / base, 3),
                               "latency_ms_p50": t["latency_ms_p50"], "how": "measured (same shape, random weights)"}
        elif entry["kind"] in ("bound", "exit_bound") and entry["upstream"] in estimates:
            up = estimates[entry["upstream"]]
            factor = entry.get("factor") or max(1, getattr(models[name].config, "num_hidden_layers", 1))
            latency = None if up["latency_ms_p50"] is None else up["latency_ms_p50"] / factor
            estimates[name] = {"speedup": round(up["speedup"] * factor, 3), "latency_ms_p50": latency,
                               "how": f"upper bound: {entry['why']}"}
        else:
            estimates[name] = {"speedup": None, "latency_ms_p50": None,
                               "how": "not estimated (shape known after training)"}
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
    """Refuse (one line) a speed target no stage can reach; note one that is within the margin."""
    target = recipe.target
    known = {name: e for name, e in estimates.items() if e.get("speedup") is not None}
    if not known:
        return
    if target.speedup is not None:
        best_name, best = max(known.items(), key=lambda kv: kv[1]["speedup"])
        if best["speedup"] * MARGIN < target.speedup:
            raise GreenlmError(
                f"target speedup {target.speedup:g}x is out of reach on this machine: the best this recipe can reach"
                f" is about {best['speedup']:.1f}x ({best_name}, {best['how']}); lower the target or add a smaller"
                " student (e.g. --set stages.distill_3x256.student=2x192)")
        if best["speedup"] < target.speedup:
            log(f"note: the target {target.speedup:g}x is just above the best estimate ({best['speedup']:.1f}x,"
                f" {best_name}): it may be missed")
    if target.max_latency_ms is not None:
        timed = {n: e for n, e in known.items() if e.get("latency_ms_p50") is not None}
        if timed:
            best_name, best = min(timed.items(), key=lambda kv: kv[1]["latency_ms_p50"])
            if best["latency_ms_p50"] > target.max_latency_ms * MARGIN:
                raise GreenlmError(
                    f"target latency {target.max_latency_ms:g} ms is out of reach on this machine: the fastest this"
                    f" recipe can reach is about {best['latency_ms_p50']:.2f} ms at batch 1 ({best_name},"
                    f" {best['how']}); raise the target or add a smaller student")
