"""The one measuring pass of a run: every model produced, same inputs, same threads, one process.

The inputs are the task's reported split (``task.eval_split``: dev unless the run names another; called "dev"
below). Per model: dev accuracy (and macro-F1, MCC, each class's precision/recall/F1, the confusion matrix, the
accuracy's 95% bootstrap interval, and every prediction, so the report can compare models example by
example), the rows truncation cut, the runtime and precision it ran in, parameters, FLOPs per example (at the
dev set's mean length; for a model with exits, expected from the exits it took on dev here), size on disk,
latency (batch 1) and throughput (batch ``evaluation.batch_size``), and inference energy per 1,000 examples
from a price tag around repeated throughput passes.

The test split is evaluated here and only here (``greenlm.data.measuring_pass_splits``): the run's stages never
see it (``greenlm.data.stage_task``). When the run reports on dev, each model's test figures (the same metrics,
without the predictions) are kept beside the dev ones, and ``other_splits`` names them.

Speed is taken in interleaved rounds (``greenlm.runtime.interleaved_speed``): every model is loaded first,
then round r times each model once, in an order rotated by r, for ``evaluation.repeats`` rounds; each model
keeps its best round. While timing, the machine's load is recorded (``greenlm.measure.machine_load``: the
1-minute load average before and after, the share of CPU time other processes took, ``busy``) under
``machine.load``, so the report can say when absolute speeds were taken on a shared machine.

The result is cached in ``measurements.json`` under a key made of the models' artifact hashes, the
evaluation settings and the machine (not its load), so an unchanged run does not measure again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import torch

import greenlm
from greenlm.common import atomic_write_json, read_json, read_json_cache
from greenlm.common.hardware import cpu_model
from greenlm.data import (EncodedSplit, Task, align_labels, collate, encode_split, length_grouped_batches,
                          measuring_pass_splits, truncation_line, truncation_record)
from greenlm.measure.machine_load import CpuWindow, load_record, loadavg_1m
from greenlm.measure.timing import torch_threads
from greenlm.models import load_classifier
from greenlm.models.quantized import is_torch_int8
from greenlm.runtime import interleaved_speed, run_batches, speed_inputs, with_stream
from greenlm.train.metrics import detailed_metrics

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


def _predict(m: _Loaded, encoded: EncodedSplit, batch_size: int) -> tuple[list[int], list[int] | None]:
    """Every row's predicted label id, in the split's order, and (a model with exits) the layer it exited after."""
    predictions, exits = [0] * len(encoded), None
    groups = length_grouped_batches(encoded.lengths(), batch_size, shuffle=False)
    batches = [_inputs(collate(encoded, indices, m.pad_token_id)) for indices in groups]
    predict_batches = getattr(m.model, "predict_batches", None)  # early exit: logits and the exit of each row
    if callable(predict_batches):
        with torch.inference_mode():
            logits, layers = predict_batches(batches)
        exits = [0] * len(encoded)
        order = [i for indices in groups for i in indices]
        for i, p, layer in zip(order, logits.argmax(-1).tolist(), layers.tolist()):
            predictions[i], exits[i] = p, int(layer)
        return predictions, exits
    for indices, logits in zip(groups, run_batches(m.forward, batches)):
        for i, p in zip(indices, torch.as_tensor(logits).argmax(-1).tolist()):
            predictions[i] = p
    return predictions, exits


def _pass_key(recipe, stages, eval_split: str, other_splits: list[str] = ()) -> str:
    evaluation = {k: v for k, v in dataclasses.asdict(recipe.evaluation).items() if k != "split"}
    if eval_split != "dev":  # passes on dev keep the key they had before the split could be chosen
        evaluation["split"] = eval_split
    if other_splits:  # ... and passes of tasks without a test split, the key they had before test was measured here
        evaluation["other_splits"] = list(other_splits)
    payload = {
        "artifacts": [(s.name, read_json(s.folder / "stage.json")["artifact_sha256"]) for s in stages],
        "evaluation": evaluation,
        "measure": dataclasses.asdict(recipe.measure),
        "cpu": cpu_model(),
        "threads": recipe.evaluation.threads or torch.get_num_threads(),
        "greenlm": greenlm.__version__,
        "speed": "interleaved rounds",  # figures taken one model after another (older passes) are measured again
        "dev": "predictions kept",  # passes that kept no per-example predictions (no intervals) are measured again
    }  # never the machine's load: it is recorded with the figures, it does not make them stale
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass
class _Loaded:
    """One model ready to measure: its forward, its encoding of the dev rows (and of the other splits measured
    here) and of the speed inputs."""

    folder: Path
    model: object
    forward: object
    encoded: EncodedSplit
    inputs: EncodedSplit
    pad_token_id: int
    labels: list[str]
    others: dict[str, EncodedSplit] = dataclasses.field(default_factory=dict)
    encode_s: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds tokenizing each split


def _load(task: Task, folder: Path, speed_examples: int) -> _Loaded:
    loaded = load_classifier(str(folder))
    saved = getattr(loaded.model.config, "greenlm", None) or {}
    max_length = saved.get("max_length") or 128
    seconds: dict[str, float] = {}

    def encoded(split: str) -> EncodedSplit:
        started = time.perf_counter()
        out = encode_split(align_labels(task.split(split), task, loaded.labels, str(folder)), loaded.tokenizer,
                           max_length)
        seconds[split] = time.perf_counter() - started
        return out

    reported, *others = measuring_pass_splits(task)
    dev = encoded(reported)
    return _Loaded(folder, loaded.model, _forward_of(loaded.model), dev, speed_inputs(dev, speed_examples),
                   loaded.tokenizer.pad_token_id, [str(label) for label in loaded.labels],
                   {name: encoded(name) for name in others}, seconds)


def protocol_of(ev, split: str = "dev") -> dict:
    """The measuring protocol, in words, for ``measurements.json`` and the report."""
    rounds = (f"{ev.repeats} interleaved round(s): each round times every model once (one warm-up pass, then one"
              " timed pass), the order rotated by one model each round")
    return {
        "latency": f"batch 1, {ev.latency_examples} {split} inputs, each timed once per round after 1 warm-up call;"
                   " p50/p90 over the inputs; the round with the lowest p50 is kept",
        "throughput": f"batch {ev.batch_size}, {ev.speed_examples} {split} inputs, length-grouped, dynamic padding;"
                      f" the best of {ev.repeats} round(s)",
        "rounds": rounds,
        "best_or_median": "best: interference from other work only slows a pass down, so each model's fastest round"
                          " is its least disturbed one (every round's figures are in measurements.json)",
        "flops": f"matmul convention at the {split} inputs' mean length (greenlm.measure.count_flops)",
    }


def measure_models(recipe, task: Task, stages, run_dir: Path, log, *, remeasure: bool = False) -> dict:
    """Evaluate and time every model of the run in one pass; reuse ``measurements.json`` when its key matches
    (``remeasure``: take the pass again, e.g. after one taken on a busy machine)."""
    others = measuring_pass_splits(task)[1:]
    key = _pass_key(recipe, stages, task.eval_split, others)
    cache = run_dir / MEASUREMENTS_FILE
    saved = read_json_cache(cache)
    if saved is not None and saved.get("key") == key:
        if not remeasure:
            busy = ((saved.get("machine") or {}).get("load") or {}).get("busy")
            retake = "; taken on a busy machine: --remeasure takes them again" if busy else ""
            log(f"measurements: reused (models and settings unchanged{retake})")
            return saved
        log("measurements: taken again (--remeasure)")
    ev = recipe.evaluation
    threads = ev.threads or torch.get_num_threads()
    load_before = loadavg_1m()
    also = f" (and their accuracy on {', '.join(others)})" if others else ""
    log(f"measuring {len(stages)} model(s) on the same {task.name} {task.eval_split} inputs{also}, {threads}"
        f" thread(s), speed in {ev.repeats} interleaved round(s)")
    loaded = {stage.name: _load(task, stage.folder, ev.speed_examples) for stage in stages}
    started = time.perf_counter()
    with CpuWindow() as window:
        speeds = interleaved_speed({name: (m.forward, m.inputs, m.pad_token_id) for name, m in loaded.items()},
                                   batch_size=ev.batch_size, latency_examples=ev.latency_examples, rounds=ev.repeats,
                                   threads=threads)
    load = load_record(load_before, loadavg_1m(), window, threads=threads)
    log(f"  speed: {time.perf_counter() - started:.1f} s; {load_summary(load)}")
    models = {}
    for stage in stages:
        started = time.perf_counter()
        record = models[stage.name] = _measure_one(recipe, loaded[stage.name], speeds[stage.name], threads,
                                                   task.eval_split)
        accuracies = ", ".join(f"{split} accuracy {record[split]['accuracy']:.4f}"
                               for split in (task.eval_split, *others))
        log(f"  {stage.name}: {accuracies}, {record['speed']['throughput_examples_per_s']:.1f} examples/s"
            f" ({time.perf_counter() - started:.1f} s)")
    for line in truncation_lines(models, (task.eval_split, *others)):
        log(f"  note: {line}")
    result = {
        "key": key,
        "eval_split": task.eval_split,  # each model's accuracy is under this split's name
        "other_splits": others,  # evaluated here too (accuracy, macro-F1, MCC, per class; no predictions kept)
        "machine": {"cpu": cpu_model(), "threads": threads, "torch": torch.__version__, "load": load},
        "protocol": protocol_of(ev, task.eval_split),
        "models": models,
    }
    atomic_write_json(cache, result)
    return result


def truncation_lines(models: dict, splits) -> list[str]:
    """One line per split and truncation record: how many rows were cut at max_length, naming the models it holds
    for (every model reads the rows at its own max_length; most inherit the teacher's)."""
    lines = []
    for split in splits:
        groups: dict[str, list[str]] = {}
        for name, record in models.items():
            cut = (record.get(split) or {}).get("truncation")
            if cut:
                groups.setdefault(truncation_line(split, cut), []).append(name)
        lines += [line if len(groups) == 1 else f"{line} ({', '.join(names)})" for line, names in groups.items()]
    return lines


def load_summary(load: dict) -> str:
    """One line for run.log: the load average and what other processes took while timing."""
    share = load.get("other_processes_cpu_share")
    other = "n/a" if share is None else f"{100 * share:.0f}% of the CPU"
    state = "shared (busy)" if load.get("busy") else "not busy"
    return (f"machine {state}: load {load.get('loadavg_1m_before')} before, {load.get('loadavg_1m_after')} after,"
            f" other processes {other}")


def _measure_one(recipe, m: _Loaded, speed: dict, threads: int, split: str) -> dict:
    from greenlm.measure import PriceTag, count_params

    ev = recipe.evaluation
    with torch_threads(threads):
        started = time.perf_counter()
        predictions, exits = _predict(m, m.encoded, ev.batch_size)
        split_metrics = {**detailed_metrics(m.encoded.labels, predictions, m.labels),
                         "truncation": truncation_record(m.encoded),  # seconds: tokenizing, predicting, scoring
                         "seconds": round(m.encode_s[split] + time.perf_counter() - started, 3)}
        others = {}
        for name, encoded in m.others.items():  # test, when the run reports on dev: its figures, once per model
            started = time.perf_counter()
            predicted, _ = _predict(m, encoded, ev.batch_size)
            others[name] = {**detailed_metrics(encoded.labels, predicted, m.labels),
                            "truncation": truncation_record(encoded),
                            "seconds": round(m.encode_s[name] + time.perf_counter() - started, 3)}
        energy = _inference_energy(recipe, m.forward, m.inputs, m.pad_token_id, ev.batch_size, PriceTag)
    mean_length = max(1, round(sum(m.encoded.lengths()) / len(m.encoded)))
    flops, exit_record = _expected_flops(m.model, m.encoded.lengths(), exits, mean_length)
    counted = isinstance(m.model, torch.nn.Module) and not is_torch_int8(m.model)  # int8 linears hold no parameters
    params = count_params(m.model) if counted else {"total": 0}
    if not params.get("total"):  # runtimes without torch parameters (ONNX or PyTorch int8): count from the config
        params = count_params(str(m.folder / "config.json"))
    return {
        "folder": str(m.folder),
        split: split_metrics,
        **others,
        # in the split's order, in the model's label ids: the report pairs models example by example (same indices)
        "predictions": {"gold": [int(y) for y in m.encoded.labels], "predicted": [int(p) for p in predictions]},
        "runtime": runtime_of(m.model),
        "params": params,
        "flops_per_example": flops,
        "flops_basis": EXPECTED_FLOPS if exit_record is not None else FULL_FLOPS,
        **({"exits": exit_record} if exit_record is not None else {}),
        "mean_dev_length_tokens": mean_length,
        "size_on_disk_bytes": size_on_disk_bytes(m.folder),
        "speed": speed,
        "inference_energy": energy,
    }


EXPECTED_FLOPS = "expected"  # a model with exits: what it runs on dev, from the exits taken there
FULL_FLOPS = "full depth"


def runtime_of(model) -> dict:
    """What the model ran in while measured: ``engine`` (torch or onnxruntime) and ``precision`` (fp32, bf16,
    int8-dynamic, int8-static, ...), so an int8 row says whether it also changed runtime."""
    if not isinstance(model, torch.nn.Module) and getattr(getattr(model, "runtime", None), "precision", None):
        return {"engine": "onnxruntime", "precision": str(model.runtime.precision)}
    if is_torch_int8(model):
        return {"engine": "torch", "precision": "int8-dynamic"}
    dtype = next((p.dtype for p in model.parameters()), torch.float32) if hasattr(model, "parameters") else None
    return {"engine": "torch", "precision": {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")}


def _expected_flops(model, lengths: list[int], exits: list[int] | None, mean_length: int) -> tuple[float, dict | None]:
    """FLOPs per example at the dev mean length; for a model with exits (``exits``: the layer each dev row left
    after, in this pass), what it is expected to run on dev, and the record of the exits taken (None without).

    PyTorch models with exits: each row priced at its own length and exit, exit heads included
    (``greenlm.models.exit_costs``, as the early-exit stage prices them). PyTorch int8 models with exits (whose
    int8 kernels FLOP counting cannot see): the layers run at the mean length, weighted by the share of rows
    leaving at each exit (exit heads not counted)."""
    from greenlm.measure import count_flops
    from greenlm.models.pruned import first_layers_config

    full = count_flops(model.config, mean_length).infer_flops
    if exits is None:
        return full, None
    layers = torch.tensor(exits)
    share = {str(layer): round(float((layers == layer).double().mean()), 6) for layer in model.exit_layers}
    record = {"mean_exit_layer": round(float(layers.double().mean()), 4), "exit_share": share}
    if not is_torch_int8(model):
        from greenlm.models.exit_costs import measure_exit_costs

        costs = measure_exit_costs(model)
        expected = costs.exit_flops(torch.tensor(lengths), layers, heads_run=model.exits_early())
        return float(expected.mean()), record
    expected = 0.0
    for layer, fraction in share.items():
        expected += float(fraction) * count_flops(first_layers_config(model.config, int(layer)),
                                                  mean_length).infer_flops
    return expected, record


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
