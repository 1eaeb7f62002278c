"""``greenlm bench``: every field for every model and runtime, the peers' batching, the CLI and the table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from greenlm.common import GreenlmError
from greenlm.common.hardware import cpu_has_bf16
from greenlm.data import EncodedSplit
from greenlm.runtime.bench import ALL_RUNTIMES, BenchConfig, bench, expand_runtimes
from greenlm.runtime.speed import measure_speed
from greenlm.report.bench import bench_markdown
from greenlm.train import TrainConfig
from conftest import finetune_folder as finetune

from conftest import stage_runner

run = stage_runner("quantize")

ROW_FIELDS = {
    "model", "model_index", "runtime", "kind", "precision", "batching", "status", "reason", "threads", "examples",
    "timing_examples", "latency_ms_p50", "latency_ms_p90", "latency_batch_size", "throughput_examples_per_s",
    "throughput_batch_size", "throughput_examples_per_s_by_batch", "peak_rss_mb", "peak_rss_rise_mb", "disk_bytes",
    "disk_mb", "accuracy", "agreement_with_fp32", "energy_kwh_per_1000_examples", "energy_source", "energy_reason",
    "gflop_per_s_executed", "gflop_per_s_useful", "share_of_fp32_matmul_peak", "flops_reason", "build_s",
    "speedup_vs_first", "latency_speedup_vs_first", "speedup_vs_first_model_same_runtime",
}
MEASURED = ("latency_ms_p50", "latency_ms_p90", "throughput_examples_per_s", "peak_rss_mb", "disk_bytes", "accuracy",
            "gflop_per_s_executed", "gflop_per_s_useful", "share_of_fp32_matmul_peak", "speedup_vs_first")
FAST = dict(rounds=1, repeats=1, latency_examples=3, max_examples=24, threads=1, batch_sizes=(1, 8))


@pytest.fixture(scope="module")
def task():
    from conftest import make_toy_task

    return make_toy_task(n_train=256, n_dev=48)


@pytest.fixture(scope="module")
def models(task, tmp_path_factory):
    """A fine-tuned tiny classifier and its int8 version (quantized by greenlm)."""
    from greenlm.compress.quantize import QuantizeConfig

    root = tmp_path_factory.mktemp("bench-models")
    config = TrainConfig(epochs=4, batch_size=16, learning_rate=3e-3, precision="fp32", warmup_ratio=0.1)
    finetune(task, "tiny", root / "fp32", config, max_length=32, progress=False, on_note=lambda _: None)
    run(root / "fp32", task, QuantizeConfig(per_channel=True, measure_speed=False), root / "int8",
        work_dir=root / "work", on_note=lambda _: None)
    return root / "fp32", root / "int8"


def test_bench_json_has_every_field_for_every_model_and_runtime(task, models, tmp_path):
    fp32, int8 = models
    result = bench([str(fp32), str(int8)], task, BenchConfig(**FAST), work_dir=tmp_path, on_note=lambda _: None)
    json.dumps(result)  # JSON-ready
    rows = result["results"]
    assert [(r["model_index"], r["runtime"]) for r in rows] == [(m, rt) for m in (0, 1) for rt in ALL_RUNTIMES]
    for row in rows:
        assert set(row) == ROW_FIELDS, row["runtime"]
        if row["status"] == "ok":
            for key in MEASURED:
                assert isinstance(row[key], (int, float)) and row[key] > 0, (row["runtime"], key)
            assert row["energy_kwh_per_1000_examples"] is not None or row["energy_reason"]
        else:
            assert row["status"] == "skipped" and row["reason"]
    ok = {(r["model_index"], r["runtime"]) for r in rows if r["status"] == "ok"}
    timed = {rt for rt in ALL_RUNTIMES if rt != "saved" and (rt != "torch-bf16" or cpu_has_bf16())}
    assert ok == {(0, rt) for rt in timed} | {(1, "saved")}  # emulated bf16 (AMD Zen 3, say) is skipped, below
    first = rows[0]
    assert first["runtime"] == "hf-eager-pad128" and first["speedup_vs_first"] == 1.0
    assert all(r["speedup_vs_first_model_same_runtime"] == 1.0 for r in rows if r["model_index"] == 0 and r["status"] == "ok")
    assert result["first_row"] == {"model": str(fp32), "runtime": "hf-eager-pad128"}
    assert result["matmul_peak_gflop_per_s"]["fp32"] > 0
    assert result["machine"]["threads"] == 1 and result["machine"]["cpu_model"]
    by = {(r["model_index"], r["runtime"]): r for r in rows}
    # the naive peer pads to 128 tokens: most of its FLOPs are padding; greenlm's sorted batches waste
    # less than the same batches in the given order (ort-fp32)
    useful = {rt: by[0, rt]["gflop_per_s_useful"] / by[0, rt]["gflop_per_s_executed"] for rt in timed}
    assert useful["hf-eager-pad128"] < 0.5
    assert useful["torch-fp32"] > useful["ort-fp32"] > useful["hf-eager-pad128"]
    # both GFLOP/s figures are rounded to 0.01: on a slow or busy machine (0.5 GFLOP/s) that alone moves a ratio ~2%
    rounding = sum(0.005 / by[0, rt][key] for rt in ("torch-fp32", "onnx-int8")
                   for key in ("gflop_per_s_useful", "gflop_per_s_executed"))
    assert useful["torch-fp32"] == pytest.approx(useful["onnx-int8"], rel=1e-2 + rounding)
    # sizes: int8 graphs are smaller than the fp32 weights; bf16 is half
    assert by[0, "onnx-int8"]["disk_bytes"] < 0.75 * by[0, "torch-fp32"]["disk_bytes"]
    assert by[1, "saved"]["disk_bytes"] == (int8 / "model.onnx").stat().st_size
    if cpu_has_bf16():
        assert by[0, "torch-bf16"]["disk_bytes"] < 0.6 * by[0, "torch-fp32"]["disk_bytes"]
    else:  # emulated bf16 is not timed, and the row says why
        assert by[0, "torch-bf16"]["status"] == "skipped" and "AMX" in by[0, "torch-bf16"]["reason"]
    # every runtime predicts the same dev set; fp32 runtimes agree with PyTorch fp32
    for runtime in ("ort-fp32", "onnx-fp32", "torch-fp32"):
        assert by[0, runtime]["agreement_with_fp32"] == 100.0
        assert by[0, runtime]["accuracy"] == by[0, "hf-eager-pad128"]["accuracy"]
    summary = result["summary"][str(fp32)]
    assert summary["fastest_runtime"] in ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8")
    assert set(summary["throughput_ratio_vs"]) == timed - {summary["fastest_runtime"]}
    assert summary["int8_vs_fp32"]["int8_runtime"] == "onnx-int8"


def test_runtime_names_and_groups():
    assert expand_runtimes(["peers", "torch"]) == ("hf-eager-pad128", "ort-fp32", "ort-int8", "torch-fp32", "torch-bf16")
    assert expand_runtimes(["onnx-int8", "onnx"]) == ("onnx-int8", "onnx-fp32")
    with pytest.raises(GreenlmError, match="unknown runtime 'tensorrt'"):
        expand_runtimes(["tensorrt"])
    with pytest.raises(GreenlmError, match="batch sizes"):
        BenchConfig(batch_sizes=(0,))


def test_measure_speed_given_order_and_fixed_padding():
    """The peers' batching: the given order, padded per batch or to a fixed width; greenlm's: sorted."""
    lengths = [5, 30, 7, 12, 30, 3, 9, 20]
    encoded = EncodedSplit(input_ids=[[1] * n for n in lengths], token_type_ids=None, labels=[0] * 8)
    seen = []

    def forward(batch):
        seen.append(tuple(batch["input_ids"].shape))
        return torch.zeros(batch["input_ids"].shape[0], 2)

    def shapes(**kwargs):
        seen.clear()
        report = measure_speed(forward, encoded, pad_token_id=0, batch_size=4, latency_examples=2, repeats=1, **kwargs)
        return report, seen[4:6]  # the 2 latency inputs x (warm-up + 1 timed), then the first throughput pass

    report, passes = shapes()
    assert passes == [(4, 30), (4, 9)] and report.order == "length" and report.padded_to is None
    report, passes = shapes(order="given")
    assert passes == [(4, 30), (4, 30)]
    report, passes = shapes(order="given", pad_to=32)
    assert passes == [(4, 32), (4, 32)] and report.padded_to == 32 and seen[0] == (1, 32)
    report = measure_speed(forward, encoded, pad_token_id=0, batch_size=4, latency_examples=0, repeats=1)
    assert report.latency_ms_p50 is None and report.throughput_examples_per_s > 0


def test_bench_cli_writes_json_and_markdown(task, models, tmp_path):
    from conftest import write_toy_task_files

    from greenlm.cli.main import app

    fp32, int8 = models
    write_toy_task_files(tmp_path / "toy", n_dev=48)
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    result = CliRunner().invoke(app, [
        "bench", str(fp32), str(int8), "--task", str(tmp_path / "toy"), "--runtimes", "peers,onnx-int8,saved",
        "--batch-sizes", "1,8", "--rounds", "1", "--repeats", "1", "--latency-examples", "2", "--max-examples", "16",
        "--threads", "1", "--json", str(out), "--markdown", str(md), "--no-energy",
    ], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["command"].startswith("greenlm ")
    assert [r["runtime"] for r in data["results"] if r["status"] == "ok"] == [
        "hf-eager-pad128", "ort-fp32", "ort-int8", "onnx-int8", "saved"]
    assert all(r["throughput_batch_size"] == 8 for r in data["results"])
    assert all(r["energy_reason"] == "energy measurement off" for r in data["results"] if r["status"] == "ok")
    assert "fastest greenlm runtime" in result.output and "ort-int8" in result.output
    text = md.read_text()
    assert sum(line.startswith("| ") for line in text.splitlines()) == 1 + 5  # header + 5 measured rows
    bad = CliRunner().invoke(app, ["bench", str(fp32), "--task", str(tmp_path / "toy"), "--batch-sizes", "1,x"])
    assert bad.exit_code != 0 and "--batch-sizes" in str(bad.exception)


def test_markdown_lists_skipped_runtimes_on_request():
    row = {k: None for k in ROW_FIELDS} | {"model": "m", "runtime": "saved", "status": "skipped", "reason": "why"}
    result = {"results": [row], "summary": {}, "matmul_peak_gflop_per_s": {"fp32": 1.0}, "machine": {"threads": 1}}
    assert "skipped: why" in bench_markdown(result, skipped=True)
    assert "skipped" not in bench_markdown(result)
    assert np.isfinite(1.0)


def test_bench_refuses_a_model_that_is_not_a_classifier(task, models, tmp_path):
    fp32, _ = models
    other = tmp_path / "mlm"
    other.mkdir()
    for item in fp32.iterdir():
        if item.is_file():
            (other / item.name).write_bytes(item.read_bytes())
    config = json.loads((fp32 / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    with pytest.raises(GreenlmError, match="not a supported architecture"):
        bench([str(other)], task, BenchConfig(**FAST), work_dir=tmp_path / "w", on_note=lambda _: None)


def test_saved_runs_a_bf16_folder_as_saved(task, models, tmp_path):
    from greenlm.compress.quantize import QuantizeConfig
    from greenlm.models import load_classifier
    from greenlm.runtime.bench import _build

    fp32, _ = models
    run(fp32, task, QuantizeConfig(scheme="bf16", measure_speed=False), tmp_path / "bf16", work_dir=tmp_path / "w",
        on_note=lambda _: None)
    candidate = _build("saved", load_classifier(str(tmp_path / "bf16")), 1, tmp_path / "b", None, BenchConfig(**FAST))
    assert candidate.runtime.name == "torch-bf16" and candidate.precision == "bf16"
    assert candidate.disk_bytes == (tmp_path / "bf16" / "model.safetensors").stat().st_size
    plain = _build("saved", load_classifier(str(fp32)), 1, tmp_path / "b", None, BenchConfig(**FAST))
    assert plain.runtime is None and "plain PyTorch model" in plain.skipped


def test_bench_of_an_early_exit_folder(task, models, tmp_path):
    """Torch runtimes run the exits (pooled across batches, in bf16 too); ONNX ones are skipped with the reason;
    the size on disk counts the backbone/ sub-folder."""
    from greenlm.models import load_classifier
    from greenlm.models.early_exit import EarlyExitClassifier, save_early_exit

    fp32, _ = models
    loaded = load_classifier(str(fp32))
    model = EarlyExitClassifier(loaded.model, tokenizer=loaded.tokenizer, threshold=0.6).eval()
    model.set_backbone_info(**(loaded.model.config.greenlm or {}))
    save_early_exit(model, loaded.tokenizer, tmp_path / "exits", {"metrics.json": {}})
    config = BenchConfig(**{**FAST, "runtimes": ("torch-fp32", "torch-bf16", "onnx-fp32")})
    result = bench([str(tmp_path / "exits")], task, config, work_dir=tmp_path / "w", on_note=lambda _: None)
    by = {r["runtime"]: r for r in result["results"]}
    assert by["torch-fp32"]["status"] == "ok"
    assert by["torch-bf16"]["status"] == ("ok" if cpu_has_bf16() else "skipped")
    assert by["onnx-fp32"]["status"] == "skipped" and "early exits" in by["onnx-fp32"]["reason"]
    weights = [tmp_path / "exits" / "model.safetensors", tmp_path / "exits" / "backbone" / "model.safetensors"]
    assert by["torch-fp32"]["disk_bytes"] == sum(p.stat().st_size for p in weights)
    # the same accuracy as the model called on one example at a time (no pooling, no batch effects)
    from greenlm.data import collate, encode_split

    encoded = encode_split(task.split("dev"), loaded.tokenizer, loaded.model.config.greenlm["max_length"])
    with torch.no_grad():
        predicted = [int(model(**{k: v for k, v in collate(encoded, [i], loaded.tokenizer.pad_token_id).items()
                                  if k != "labels"}).logits.argmax(-1)) for i in range(len(encoded))]
    expected = 100.0 * float(np.mean(np.asarray(predicted) == np.asarray(encoded.labels)))
    assert by["torch-fp32"]["accuracy"] == pytest.approx(expected, abs=1e-6)
