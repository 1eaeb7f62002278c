"""The quantize stage: folders that load back, the accuracy-aware fallback, bad input, the CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import greenlm
from greenlm.common import GreenlmError
from greenlm.compress.quantize import QuantizeConfig
from greenlm.models import load_classifier
from greenlm.runtime import onnx as gx
from greenlm.train import TrainConfig
from conftest import finetune_folder as finetune

from conftest import stage_runner

run = stage_runner("quantize")

# one thread for evaluation and timing (the tests' count, conftest): the default, the physical cores, is what
# greenlm's own runs use (test_quantize_exits' `quantized` fixture keeps it)
FAST = dict(measure_speed=False, sensitivity_examples=32, batch_size=32, threads=1)


@pytest.fixture(scope="module")
def task():
    from conftest import make_toy_task

    return make_toy_task()


@pytest.fixture(scope="module")
def model_dir(task, tmp_path_factory):
    """A tiny classifier fine-tuned on the toy task with greenlm's own flow (a real model folder)."""
    out = tmp_path_factory.mktemp("models") / "fp32"
    config = TrainConfig(epochs=4, batch_size=16, learning_rate=3e-3, precision="fp32", warmup_ratio=0.1)
    finetune(task, "tiny", out, config, max_length=32, progress=False, on_note=lambda _: None)
    return out


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GREENLM_CACHE_DIR", str(tmp_path / "cache"))  # greenlm.load's choices stay in the test


def test_int8_dynamic_stage_writes_a_loadable_smaller_model(task, model_dir, tmp_path):
    out = tmp_path / "int8"
    notes = []
    metrics = run(model_dir, task, QuantizeConfig(**{**FAST, "measure_speed": True, "speed_examples": 32}), out,
                  work_dir=tmp_path / "work", on_note=notes.append)
    q = metrics["quantize"]
    assert metrics["method"] == "quantize" and metrics["task"] == "toy"
    assert q["status"] == "quantized" and q["output_is"] == "quantized"
    assert q["accuracy_drop_points"] <= 1.0 and q["per_channel_choice"] is not None
    assert q["output_disk_bytes"] == (out / "model.onnx").stat().st_size < 0.75 * q["input_disk_bytes"]
    assert q["speed"]["quantized"]["runtime"] == "onnx-int8" and q["speed"]["throughput_speedup"] > 0
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert not (out / "model.safetensors").exists()  # the true size: no fp32 copy hidden beside the int8 graph
    # one call loads it back, through greenlm's loader and through greenlm.load
    loaded = load_classifier(str(out))
    assert loaded.labels == ["neg", "pos"]
    dev = task.split("dev")
    predictor = greenlm.load(out)
    assert predictor.runtime.name == "onnx-int8"
    predicted = predictor(dev.text_a)
    accuracy = np.mean([p == task.labels[y] for p, y in zip(predicted, dev.labels)]) * 100
    assert accuracy == pytest.approx(metrics["splits"]["dev"]["accuracy"] * 100)


def test_bf16_stage_halves_the_weights(task, model_dir, tmp_path):
    out = tmp_path / "bf16"
    metrics = run(model_dir, task, QuantizeConfig(scheme="bf16", **FAST), out, work_dir=tmp_path / "work",
                  on_note=lambda _: None)
    q = metrics["quantize"]
    assert q["status"] == "quantized"
    assert q["output_disk_bytes"] < 0.6 * q["input_disk_bytes"]
    predictor = greenlm.load(out, measure=False)
    assert predictor.runtime.name == "torch-bf16"


def test_int8_static_stage_calibrates_on_train_rows(task, model_dir, tmp_path):
    out = tmp_path / "static"
    metrics = run(model_dir, task, QuantizeConfig(scheme="int8-static", calibration_examples=24, per_channel=True,
                                                  **FAST), out, work_dir=tmp_path / "work", on_note=lambda _: None)
    q = metrics["quantize"]
    assert q["calibration"] == {"examples": 24, "method": "minmax"}
    graph = onnx.load(str(out / "model.onnx")).graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) >= 12


def sabotaged_quantizer(real, classifier_node):
    """A quantizer under which int8 'breaks' the classifier (its weights negated) unless it stays fp32."""

    def quantize(src, dst, *, per_channel=True, exclude=(), op_types=gx.DYNAMIC_OPS):
        real(src, dst, per_channel=per_channel, exclude=list(exclude) + [classifier_node], op_types=op_types)
        if classifier_node not in exclude:
            model = onnx.load(str(dst))
            # the quantizer may have rewritten the (fp32) Gemm as MatMul "<name>_MatMul" + Add
            node = next(n for n in model.graph.node if n.name in (classifier_node, f"{classifier_node}_MatMul"))
            for init in model.graph.initializer:
                if init.name == node.input[1]:
                    weights = onnx.numpy_helper.to_array(init)
                    init.CopyFrom(onnx.numpy_helper.from_array(-weights, init.name))
            onnx.save(model, str(dst))

    return quantize


@pytest.fixture
def sabotage(monkeypatch):
    real = gx.quantize_onnx_dynamic
    monkeypatch.setattr(gx, "quantize_onnx_dynamic", sabotaged_quantizer(real, "/model/classifier/Gemm"))


def test_fallback_finds_the_sensitive_node_and_keeps_it_fp32(task, model_dir, tmp_path, sabotage):
    notes = []
    metrics = run(model_dir, task, QuantizeConfig(per_channel=True, **FAST), tmp_path / "out",
                  work_dir=tmp_path / "work", on_note=notes.append)
    q = metrics["quantize"]
    assert q["status"] == "quantized"
    assert q["fp32_nodes"] == ["/model/classifier/Gemm"]  # the most sensitive node, found first
    first = q["fallback_trajectory"][0]
    assert first["fp32_nodes"] == [] and first["accuracy"] < 50  # int8 everywhere was broken
    assert min(q["sensitivity_kl_when_fp32"], key=q["sensitivity_kl_when_fp32"].get) == "/model/classifier/Gemm"
    assert q["accuracy_drop_points"] <= 1.0
    assert any("sensitive" in n for n in notes)
    settings = json.loads((tmp_path / "out" / "config.json").read_text())["greenlm"]["onnx"]
    assert settings["fp32_nodes"] == ["/model/classifier/Gemm"]


def test_over_tolerance_keeps_the_input_model(task, model_dir, tmp_path, sabotage):
    notes = []
    out = tmp_path / "out"
    metrics = run(model_dir, task, QuantizeConfig(per_channel=True, fallback=False, **FAST), out,
                  work_dir=tmp_path / "work", on_note=notes.append)
    q = metrics["quantize"]
    assert q["status"] == "over_tolerance_input_kept" and q["output_is"] == "input"
    assert q["accuracy_drop_points"] > 1.0
    assert any("the stage output is the input model" in n for n in notes)
    assert (out / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    assert metrics["splits"]["dev"]["accuracy"] == pytest.approx(q["reference_accuracy"] / 100)
    # ... unless told otherwise
    kept = run(model_dir, task, QuantizeConfig(per_channel=True, fallback=False, keep_over_tolerance=True, **FAST),
               tmp_path / "kept", work_dir=tmp_path / "work", on_note=lambda _: None)
    assert kept["quantize"]["status"] == "over_tolerance_kept" and (tmp_path / "kept" / "model.onnx").is_file()


def test_resume_reuses_the_export(task, model_dir, tmp_path, monkeypatch):
    from greenlm.compress import quantize as quantize_mod

    work = tmp_path / "work"

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # the run stops after the export and the int8 conversion
    monkeypatch.setattr(quantize_mod, "_split_metrics", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(model_dir, task, QuantizeConfig(per_channel=False, **FAST), tmp_path / "a", work_dir=work)
    assert not (tmp_path / "a").exists() and any(work.rglob("*.onnx"))
    monkeypatch.undo()

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(gx, "export_onnx", no_export)
    again = run(model_dir, task, QuantizeConfig(per_channel=False, **FAST), tmp_path / "a", work_dir=work,
                on_note=lambda _: None)
    assert again["quantize"]["status"] == "quantized"
    assert not work.exists()  # a finished stage leaves no work folder behind


@pytest.mark.parametrize("field, value, message", [
    ("scheme", "int4", "unknown scheme"),
    ("tolerance_points", -1, "tolerance_points"),
    ("calibration_method", "kl", "unknown calibration_method"),
    ("calibration_examples", 0, "calibration_examples"),
    ("per_channel", "yes", "per_channel"),
])
def test_config_is_validated(field, value, message):
    with pytest.raises(GreenlmError, match=message):
        QuantizeConfig(**{field: value})


def test_bad_inputs(task, model_dir, tmp_path, monkeypatch):
    from dataclasses import replace

    empty_train = replace(task, splits={**task.splits, "train": task.split("train").select([])})
    with pytest.raises(GreenlmError, match="calibration set is empty"):
        run(model_dir, empty_train, QuantizeConfig(scheme="int8-static", **FAST), tmp_path / "x", work_dir=tmp_path / "w")
    with pytest.raises(GreenlmError, match="no 'test' split"):
        run(model_dir, task, QuantizeConfig(tune_split="test", **FAST), tmp_path / "x", work_dir=tmp_path / "w")
    # not a sequence classifier
    config = json.loads((model_dir / "config.json").read_text())
    other = tmp_path / "mlm"
    other.mkdir()
    for item in model_dir.iterdir():
        if item.is_file():
            (other / item.name).write_bytes(item.read_bytes())
    (other / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    with pytest.raises(GreenlmError, match="not a supported architecture"):
        run(other, task, QuantizeConfig(**FAST), tmp_path / "x", work_dir=tmp_path / "w")
    assert not (tmp_path / "x").exists()  # nothing half-written
    # ONNX Runtime missing: say what to install
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # how greenlm.common.optional sees a missing package
    with pytest.raises(GreenlmError, match=r"ONNX Runtime is not installed .* pip install 'greenlm\[onnx\]'"):
        run(model_dir, task, QuantizeConfig(runtime="onnx", **FAST), tmp_path / "x", work_dir=tmp_path / "w2")


def test_quantize_and_export_through_the_cli(task, model_dir, tmp_path):
    from conftest import write_toy_task_files

    from greenlm.cli.main import app

    write_toy_task_files(tmp_path / "toy")
    runner = CliRunner()
    out = tmp_path / "q"
    result = runner.invoke(app, ["quantize", str(model_dir), "--task", str(tmp_path / "toy"), "--out", str(out),
                                 "--no-measure-speed", "--per-channel", "on", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["quantize"]["status"] == "quantized" and (out / "model.onnx").is_file()
    assert not (tmp_path / ".q.quantize-work").exists()
    # a non-empty folder that is not a quantize output is refused
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["quantize", str(model_dir), "--task", str(tmp_path / "toy"), "--out",
                                 str(tmp_path / "busy")])
    assert result.exit_code != 0 and "not empty" in str(result.exception)

    exported = tmp_path / "onnx"
    result = runner.invoke(app, ["export", str(model_dir), "--format", "onnx", "--out", str(exported),
                                 "--task", str(tmp_path / "toy"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["max_abs_diff"] <= report["atol"] and report["checked_on"] == "toy dev rows"
    assert greenlm.load(exported, measure=False).runtime.name == "onnx-fp32"
    result = runner.invoke(app, ["export", str(model_dir), "--format", "tflite", "--out", str(tmp_path / "t")])
    assert result.exit_code != 0 and "not supported" in str(result.exception)


def test_load_measures_once_and_predict_uses_it(task, model_dir, tmp_path, monkeypatch):
    from greenlm.cli.main import app
    from greenlm.runtime import engine as rt

    predictor = greenlm.load(model_dir)
    choice = predictor.choice
    assert choice["measured"] and choice["runtime"] in ("torch-fp32", "onnx-fp32")
    assert set(choice["throughput_examples_per_s_at_32"]) >= {"torch-fp32@1", "onnx-fp32@1"}
    assert predictor.runtime.name == choice["runtime"] and predictor.batch_size == choice["batch_size"]
    monkeypatch.setattr(rt, "_measure_choice", lambda *a, **k: pytest.fail("measured again"))
    again = greenlm.load(model_dir)  # cached per folder, machine and settings
    assert again.runtime.name == choice["runtime"]
    texts = task.split("dev").text_a[:5]
    np.testing.assert_allclose(again.logits(texts), predictor.logits(texts), atol=1e-4)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    runner = CliRunner()
    fast = runner.invoke(app, ["predict", str(model_dir), str(tmp_path / "in.txt"), "--runtime", "auto"])
    plain = runner.invoke(app, ["predict", str(model_dir), str(tmp_path / "in.txt")])
    assert fast.exit_code == 0 and plain.exit_code == 0, fast.output + plain.output
    fast_rows = [json.loads(line) for line in fast.stdout.splitlines()]
    plain_rows = [json.loads(line) for line in plain.stdout.splitlines()]
    assert [r["label"] for r in fast_rows] == [r["label"] for r in plain_rows]
    assert [r["text"] for r in fast_rows] == texts


def test_calibration_methods_are_onnx_runtimes():
    from greenlm.compress.quantize_config import CALIBRATION_METHODS

    assert CALIBRATION_METHODS == gx.CALIBRATION_METHODS
