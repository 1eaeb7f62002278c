"""A run folder built by hand (no training): what ``greenlm run`` writes, with figures chosen so that the
Pareto fronts are known. Used by the report tests; fast."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

# model: (method, from, accuracy, throughput, flops, inference kWh/1k, size MB, stage kWh, layers, ffn)
MODELS = {
    "finetune": ("finetune", None, 0.92, 100.0, 2.0e9, 4.0e-4, 90.0, 2.0e-2, 4, 64),
    "distill": ("distill", "finetune", 0.90, 300.0, 0.6e9, 1.2e-4, 30.0, 8.0e-3, 2, 64),
    "quantize": ("quantize", "distill", 0.895, 450.0, 0.6e9, 0.9e-4, 8.0, 1.0e-3, 2, 64),
    "early_exit": ("early_exit", "finetune", 0.915, 90.0, 1.2e9, 3.0e-4, 92.0, 6.0e-3, 4, 64),
}
# what the numbers above make of the fronts (accuracy up; throughput up, the others down)
FRONTS = {
    "throughput_examples_per_s": ["finetune", "distill", "quantize"],
    "flops_per_example": ["distill", "early_exit", "finetune"],
    "inference_energy_kwh_per_1000": ["quantize", "distill", "early_exit", "finetune"],
    "size_mb": ["quantize", "distill", "finetune"],
}
INTENSITY_G_PER_KWH = 400.0


def bert_config(layers: int, ffn: int, fmt: str | None = None) -> dict:
    config = {
        "architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": 99,
        "hidden_size": 32, "num_hidden_layers": layers, "num_attention_heads": 4, "intermediate_size": ffn,
        "max_position_embeddings": 64, "type_vocab_size": 2, "id2label": {"0": "0", "1": "1"},
        "label2id": {"0": 0, "1": 1}, "greenlm": {"labels": ["0", "1"], "max_length": 32, "task": "sst2"},
    }
    if fmt:
        config["greenlm"]["format"] = fmt
    return config


def pricetag(stage: str, energy_kwh: float) -> dict:
    return {
        "name": stage, "stage": stage, "status": "ok", "wall_s": 1000 * energy_kwh, "energy_kwh": energy_kwh,
        "energy_source": "estimate:tdp-utilisation", "pue": 1.2, "co2e_kg": energy_kwh * INTENSITY_G_PER_KWH / 1000,
        "intensity_g_per_kwh": INTENSITY_G_PER_KWH, "intensity_source": "test table", "intensity_region": "FRA",
        "intensity_year": 2023, "intensity_kind": "country", "cost_usd": 0.5 * energy_kwh, "usd_per_hour": 1.0,
        "machine": {"cpu_model": "Test CPU 9000", "logical_cpus": 2}, "energy_details": {},
    }


def early_exit_curve() -> dict:
    def points(noise: float):
        out = []
        for i in range(21):
            t = 1 - 0.5 * 10 ** (-4 * i / 20)
            speed = 3.0 - 2.0 * i / 20
            out.append({"threshold": round(t, 9), "exits_early": True, "accuracy": 0.92 - 0.02 * (speed - 1) + noise,
                        "drop_points": 2 * (speed - 1), "mean_exit_layer": 4 / speed, "exit_share": {},
                        "flops_per_example": 2.0e9 / speed, "flops_speedup": speed})
        out.append({"threshold": 1.0, "exits_early": False, "accuracy": 0.92, "drop_points": 0.0,
                    "mean_exit_layer": 4.0, "exit_share": {}, "flops_per_example": 2.0e9, "flops_speedup": 1.0})
        return out

    heldout, dev = points(0.0), points(-0.002)
    return {"policy": "max_prob", "knob": "threshold", "chosen": heldout[10]["threshold"],
            "curves": {"heldout": heldout, "dev": dev}}


def make_run(root: Path, name: str = "hand", *, measured: bool = True) -> Path:
    """A run folder of four models; ``measured=False`` leaves out measurements.json and report.json."""
    from greenlm.measure import count_params

    run = root / name
    run.mkdir(parents=True)
    stages = {}
    for model, (method, upstream, *_rest) in MODELS.items():
        # recipe.yaml names a stage's method "type" (older runs: "method"; both are read)
        key = "method" if model == "early_exit" else "type"
        stages[model] = {key: method, **({"from": upstream} if upstream else {}), "epochs": 1.0}
    recipe = {"name": name, "task": "sst2", "teacher": "minilm", "measure": {"region": "FRA", "pue": 1.2},
              "evaluation": {"batch_size": 32}, "stages": stages}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    (run / "run.log").write_text("2026-01-01 00:00:00 run 'hand'\n")
    finished = time.time() - 100
    rows, models = [], {}
    for model, (method, upstream, acc, thr, flops, e1k, size, e_stage, layers, ffn) in MODELS.items():
        folder = run / model
        folder.mkdir()
        fmt = {"quantize": "onnx", "early_exit": "early_exit"}.get(model)
        (folder / "config.json").write_text(json.dumps(bert_config(layers, ffn, fmt)))
        (folder / ("model.onnx" if fmt == "onnx" else "model.safetensors")).write_bytes(b"\0" * int(size * 1000))
        (folder / "metrics.json").write_text(json.dumps({
            "task": "sst2", "model": model, "method": method,
            "splits": {"dev": {"accuracy": acc, "macro_f1": acc - 0.01, "mcc": 2 * acc - 1.05, "examples": 872}},
            method: {"scheme": "int8-dynamic", "notes": [f"{model} note for the card"]},
        }))
        (folder / "pricetag.json").write_text(json.dumps(pricetag(model, e_stage)))
        (folder / "stage.json").write_text(json.dumps({
            "stage": model, "method": method, "key": f"key-{model}", "artifact_sha256": f"sha-{model}",
            "identity": {"method": method, "settings": {"epochs": 1.0, "learning_rate": 1e-4}},
            "seconds": 1.0, "finished_at_unix": finished}))
        if model == "early_exit":
            (folder / "curve.json").write_text(json.dumps(early_exit_curve()))
        chain = [model] + ([upstream] if upstream else [])
        if upstream and MODELS[upstream][1]:
            chain.append(MODELS[upstream][1])
        chain_kwh = sum(MODELS[s][7] for s in chain)
        ref = MODELS["finetune"]
        params = count_params(str(folder / "config.json"))
        rows.append({
            "model": model, "method": method, "from": upstream, "status": "ran", "accuracy": acc,
            "macro_f1": acc - 0.01, "mcc": 2 * acc - 1.05, "performance_retained_pct": 100 * acc / ref[2],
            "params": params["total"], "compression_x": None, "flops_per_example": flops,
            "latency_ms_p50": 1000 / thr, "latency_ms_p90": 1200 / thr, "throughput_examples_per_s": thr,
            "speedup_x": thr / ref[3], "size_mb": size, "size_compression_x": ref[6] / size,
            "stage_energy_kwh": e_stage, "stage_co2e_kg": e_stage * INTENSITY_G_PER_KWH / 1000,
            "stage_cost_usd": 0.5 * e_stage, "stage_wall_s": 1000 * e_stage, "cumulative_energy_kwh": chain_kwh,
            "cumulative_co2e_kg": chain_kwh * INTENSITY_G_PER_KWH / 1000, "cumulative_cost_usd": 0.5 * chain_kwh,
            "energy_source": "estimate:tdp-utilisation", "inference_energy_kwh_per_1000": e1k,
            "inference_co2e_kg_per_1000": e1k * INTENSITY_G_PER_KWH / 1000, "folder": str(folder),
        })
        models[model] = {"folder": str(folder), "params": params, "flops_per_example": flops,
                         "mean_dev_length_tokens": 24, "size_on_disk_bytes": int(size * 1e6)}
    for row in rows:
        row["compression_x"] = rows[0]["params"] / row["params"]
    if measured:
        machine = {"cpu": "Test CPU 9000", "threads": 2, "torch": "2.13.0"}
        protocol = {"latency": "batch 1", "throughput": "batch 32", "flops": "matmul convention"}
        (run / "measurements.json").write_text(json.dumps({"key": "k", "machine": machine, "protocol": protocol,
                                                           "models": models}))
        (run / "report.json").write_text(json.dumps({
            "run": name, "task": "sst2", "teacher": "minilm",
            "written_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine,
            "protocol": protocol, "energy_sources": ["estimate:tdp-utilisation"], "rows": rows}))
    return run


def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n"), readme[:80]
    end = readme.index("\n---\n", 4)
    return yaml.safe_load(readme[4:end])
