"""The one measuring pass of a run: every model produced, same dev inputs, same threads, one process.

Per model: dev accuracy (and macro-F1, MCC), parameters, FLOPs per example (at the dev set's mean
length), size on disk, latency (batch 1) and throughput (batch 32) by ``greenlm.runtime.measure_speed``,
and inference energy per 1,000 examples from a price tag around repeated throughput passes. The
result is cached in ``measurements.json`` under a key made of the models' artifact hashes, the
evaluation settings and the machine, so an unchanged run does not measure again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import torch

import greenlm
from greenlm.common import atomic_write_json
from greenlm.common.hardware import cpu_model
from greenlm.data import EncodedSplit, Task, collate, encode_split, length_grouped_batches
from greenlm.models import load_classifier
from greenlm.runtime import measure_speed, run_batches, speed_inputs, with_stream
from greenlm.data import align_labels
from greenlm.train.metrics import classification_metrics

MEASUREMENTS_FILE = "measurements.json"
_WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".bin", ".data", ".pt")
_MIN_ENERGY_WINDOW_S = 2.0  # repeat the inference pass until the price tag window is at least this long


def size_on_disk_bytes(folder: Path) -> int:
    """Bytes of the weight files (what you would ship), not tokenizer or metadata."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
               and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _forward_of(model):
    """``forward(batch) -> logits`` for any model greenlm loads (torch modules and runtime wrappers)."""
    if hasattr(model, "eval"):
        model.eval()

    @torch.inference_mode()
    def forward(batch):
        out = model(**batch)
        return out.logits if hasattr(out, "logits") else out

    return with_stream(forward, model)


def _inputs(batch: dict) -> dict:
    batch.pop("labels")
    return batch


def _predict(forward, encoded: EncodedSplit, pad_token_id: int, batch_size: int) -> list[int]:
    predictions = [0] * len(encoded)
    groups = length_grouped_batches(encoded.lengths(), batch_size, shuffle=False)
    batches = [_inputs(collate(encoded, indices, pad_token_id)) for indices in groups]
    for indices, logits in zip(groups, run_batches(forward, batches)):
        for i, p in zip(indices, torch.as_tensor(logits).argmax(-1).tolist()):
            predictions[i] = p
    return predictions


def _pass_key(recipe, stages) -> str:
    payload = {
        "artifacts": [(s.name, json.loads((s.folder / "stage.json").read_text())["artifact_sha256"]) for s in stages],
        "evaluation": dataclasses.asdict(recipe.evaluation),
        "measure": dataclasses.asdict(recipe.measure),
        "cpu": cpu_model(),
        "threads": recipe.evaluation.threads or torch.get_num_threads(),
        "greenlm": greenlm.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def measure_models(recipe, task: Task, stages, run_dir: Path, log) -> dict:
    key = _pass_key(recipe, stages)
    cache = run_dir / MEASUREMENTS_FILE
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            log("measurements: reused (models and settings unchanged)")
            return saved
    ev = recipe.evaluation
    threads = ev.threads or torch.get_num_threads()
    log(f"measuring {len(stages)} model(s) on the same {task.name} dev inputs, {threads} thread(s)")
    models = {}
    for stage in stages:
        started = time.perf_counter()
        models[stage.name] = _measure_one(recipe, task, stage.folder, threads)
        log(f"  {stage.name}: accuracy {models[stage.name]['dev']['accuracy']:.4f},"
            f" {models[stage.name]['speed']['throughput_examples_per_s']:.1f} examples/s"
            f" ({time.perf_counter() - started:.1f} s)")
    result = {
        "key": key,
        "machine": {"cpu": cpu_model(), "threads": threads, "torch": torch.__version__},
        "protocol": {
            "latency": f"batch 1, {ev.latency_examples} dev inputs, 1 warm-up + {ev.repeats} timed calls each, p50/p90",
            "throughput": f"batch {ev.batch_size}, {ev.speed_examples} dev inputs, length-grouped, dynamic padding,"
                          f" best of {ev.repeats} passes after 1 warm-up",
            "flops": "matmul convention at the dev inputs' mean length (greenlm.measure.count_flops)",
        },
        "models": models,
    }
    atomic_write_json(cache, result)
    return result


def _measure_one(recipe, task: Task, folder: Path, threads: int) -> dict:
    from greenlm.measure import PriceTag, count_flops, count_params

    ev = recipe.evaluation
    loaded = load_classifier(str(folder))
    model, tokenizer = loaded.model, loaded.tokenizer
    saved = getattr(model.config, "greenlm", None) or {}
    max_length = saved.get("max_length") or 128
    dev = align_labels(task.split("dev"), task, loaded.labels, str(folder))
    encoded = encode_split(dev, tokenizer, max_length)
    forward = _forward_of(model)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        predictions = _predict(forward, encoded, tokenizer.pad_token_id, ev.batch_size)
        dev_metrics = classification_metrics(encoded.labels, predictions, len(loaded.labels))
        inputs = speed_inputs(encoded, ev.speed_examples)
        speed = measure_speed(forward, inputs, pad_token_id=tokenizer.pad_token_id, batch_size=ev.batch_size,
                              latency_examples=ev.latency_examples, repeats=ev.repeats, threads=threads)
        energy = _inference_energy(recipe, forward, inputs, tokenizer.pad_token_id, ev.batch_size, PriceTag)
    finally:
        torch.set_num_threads(previous)
    mean_length = max(1, round(sum(encoded.lengths()) / len(encoded)))
    metrics_file = folder / "metrics.json"
    stage_metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    flops = count_flops(model.config, mean_length).infer_flops
    # Methods whose cost depends on the input (early exit) report their own expected FLOPs.
    flops = stage_metrics.get("expected_flops_per_example", flops)
    params = count_params(model) if isinstance(model, torch.nn.Module) else {"total": 0}
    if not params.get("total"):  # runtimes without torch parameters (ONNX int8): count from the config
        params = count_params(str(folder / "config.json"))
    return {
        "folder": str(folder),
        "dev": dev_metrics,
        "params": params,
        "flops_per_example": flops,
        "mean_dev_length_tokens": mean_length,
        "size_on_disk_bytes": size_on_disk_bytes(folder),
        "speed": speed.to_dict(),
        "inference_energy": energy,
    }


def _inference_energy(recipe, forward, inputs: EncodedSplit, pad_token_id: int, batch_size: int, PriceTag) -> dict:
    batches = [_inputs(collate(inputs, indices, pad_token_id))
               for indices in length_grouped_batches(inputs.lengths(), batch_size, shuffle=False)]
    m = recipe.measure
    examples = 0
    with PriceTag("inference", region=m.region, pue=m.pue, usd_per_hour=m.usd_per_hour,
                  intensity_csv=m.intensity_csv, intensity_g_per_kwh=m.intensity_g_per_kwh) as tag:
        started = time.perf_counter()
        while examples == 0 or time.perf_counter() - started < _MIN_ENERGY_WINDOW_S:
            run_batches(forward, batches)
            examples += len(inputs)
    return tag.record.per_1000_examples(examples)
