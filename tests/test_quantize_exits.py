"""PyTorch int8 (``greenlm quantize``, runtime torch): a model with early exits becomes one int8 folder that
loads, predicts with its exits, evaluates and benchmarks; the fallback by groups; honest selection; refusals."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import greenlm
from greenlm.common import GreenlmError
from greenlm.compress import quantize_torch
from greenlm.compress.quantize_config import QuantizeConfig
from greenlm.data import carve_validation, collate, encode_split
from greenlm.models import (
    TinySpec,
    build_tiny_classifier,
    load_classifier,
    save_classifier,
)
from greenlm.models.early_exit import EarlyExitClassifier, save_early_exit
from greenlm.models.quantized import (
    int8_digest,
    is_quantized_linear,
    is_torch_int8,
    linear_groups,
)
from greenlm.runtime import predict_records
from greenlm.runtime.inference import predict_outputs

from conftest import NEGATIVE, POSITIVE, make_toy_task, stage_runner

run = stage_runner("quantize")

# one thread for evaluation and timing (the tests' count, conftest): the default, the physical cores, is what
# greenlm's own runs use (the `quantized` fixture keeps it)
FAST = dict(measure_speed=False, sensitivity_examples=32, batch_size=32, threads=1)
# 64 validation rows: one row that changes its prediction is 1.6 accuracy points. Dynamic int8 moves the logits by
# about 1% (below), so a row close to a tie or to the exit threshold may change; 5 points (3 rows) keeps the
# tests about the plumbing. The fallback, which the tolerance triggers, is tested on its own below.
TOLERANCE = 5.0
EXIT_LAYERS = [1, 2]
THRESHOLD = 0.8
MAX_LENGTH = 32


@torch.no_grad()
def _reads_sentiment(backbone, tokenizer, gains=(0.5, 1.0, 3.0), scale: float = 2.0):
    """A tiny 3-layer BERT that solves the toy task by construction, no training: each sentiment word's embedding
    gets +d (positive words) or -d (negative), d a unit direction; the last layer's attention averages every token
    into every token, so the first token, which the model's own head reads, carries the sentence's direction; each
    exit head and the model's own head project onto d with a gain growing with depth and classify by the sign.
    Confidence grows with depth, so at threshold 0.8 inputs leave at every exit (about 45 / 25 / 30%)."""
    generator = torch.Generator().manual_seed(0)
    hidden = backbone.config.hidden_size
    d = torch.randn(hidden, generator=generator)
    d /= d.norm()
    embeddings = backbone.bert.embeddings.word_embeddings.weight
    for words, sign in ((POSITIVE, 1.0), (NEGATIVE, -1.0)):
        for word in words:
            (token,) = tokenizer(word, add_special_tokens=False)["input_ids"]
            embeddings[token] += sign * d
    attention = backbone.bert.encoder.layer[-1].attention
    for linear, weight in ((attention.self.query, 0), (attention.self.key, 0), (attention.self.value, 1),
                           (attention.output.dense, 1)):
        linear.weight.copy_(weight * torch.eye(hidden))
        linear.bias.zero_()
    model = EarlyExitClassifier(backbone, EXIT_LAYERS, tokenizer=tokenizer).eval()
    readers = [(head.dense, head.classifier) for head in model.exits.values()]
    readers.append((backbone.bert.pooler.dense, backbone.classifier))
    for (dense, classifier), gain in zip(readers, gains):
        dense.weight.copy_(gain * torch.outer(d, d))
        dense.bias.zero_()
        classifier.weight.copy_(torch.stack([-scale * d, scale * d]))
        classifier.bias.zero_()
    return model


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The model of ``_reads_sentiment`` with exits after layers 1 and 2 (threshold 0.8), saved as greenlm
    early_exit folder, its backbone as a plain folder, and the toy task with 64 validation rows carved from train."""
    root = tmp_path_factory.mktemp("quantize-exits")
    task = carve_validation(make_toy_task(320, 64), fraction=0.2, max_examples=64, seed=0)
    backbone, tokenizer = build_tiny_classifier(TinySpec(layers=3, hidden=32, heads=4, ffn=37, vocab=99),
                                                ["neg", "pos"], task.split("train").text_a, seed=0)
    model = _reads_sentiment(backbone.eval(), tokenizer)
    model.set_policy("max_prob", threshold=THRESHOLD)
    info = {"task": "toy", "labels": ["neg", "pos"], "max_length": MAX_LENGTH}
    model.set_backbone_info(**info)
    _, layers = predict_outputs(model, encode_split(task.split("train"), tokenizer, MAX_LENGTH),
                                pad_token_id=tokenizer.pad_token_id)
    assert len(set(layers.tolist())) == 3  # the set-up itself: inputs leave at every exit
    save_early_exit(model, tokenizer, root / "exits")
    backbone.config.greenlm = dict(info)
    save_classifier(backbone, tokenizer, root / "plain")
    return {"root": root, "task": task, "exits": root / "exits", "plain": root / "plain"}


@pytest.fixture(scope="module")
def quantized(made):
    """The exit folder through the quantize stage with the default settings (PyTorch int8, chosen for exits)."""
    out, notes = made["root"] / "exits-int8", []
    metrics = run(made["exits"], made["task"], QuantizeConfig(tolerance_points=TOLERANCE, speed_examples=16,
                                                              sensitivity_examples=32), out,
                  work_dir=made["root"] / "work", on_note=notes.append)
    return out, metrics, notes


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GREENLM_CACHE_DIR", str(tmp_path / "cache"))  # greenlm.load's choices stay in the test


def _weight_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


def _task_files(task, folder):
    """The task's train and dev splits as the TSV files a user gives the command line."""
    folder.mkdir()
    for name in ("train", "dev"):
        split = task.split(name)
        rows = ["text\tlabel"] + [f"{t}\t{task.labels[y]}" for t, y in zip(split.text_a, split.labels)]
        (folder / f"{name}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


# ---- the stage --------------------------------------------------------------------------------------


def test_exit_model_becomes_one_int8_folder(made, quantized):
    out, metrics, notes = quantized
    q = metrics["quantize"]
    assert q["runtime"] == "torch" and q["status"] == "quantized" and q["output_is"] == "quantized"
    assert q["reference_accuracy"] >= 95.0 and q["accuracy_drop_points"] <= TOLERANCE
    # honest selection: the drop is checked on rows carved from train, and metrics.json says so
    assert q["tune_split"] == "validation"
    assert q["selection"]["split"] == "validation" and q["selection"]["from"] == "train"
    assert q["selection"]["examples"] == 64 and "warning" not in q["selection"]
    assert not any("also reported" in n for n in notes)
    # every labelled split is reported, with what the exits did there, before and after
    assert set(metrics["splits"]) == {"validation", "dev"}
    exits = q["exits"]
    assert exits["exit_layers"] == [1, 2, 3] and exits["policy"] == "max_prob" and exits["threshold"] == THRESHOLD
    for name, split in exits["splits"].items():
        assert split["accuracy"] == metrics["splits"][name]["accuracy"]
        assert 1.0 < split["mean_exit_layer"] < 3.0 and sum(split["exit_share"].values()) == pytest.approx(1, abs=1e-3)
        assert abs(split["mean_exit_layer"] - split["input"]["mean_exit_layer"]) < 0.25
    assert metrics["splits"]["dev"]["accuracy"] >= 0.9  # the model reads the sentiment words
    # the speed of input and output, timed side by side by the shared protocol
    assert q["speed"]["input_fp32"]["runtime"] == "torch-fp32" and q["speed"]["quantized"]["runtime"] == "torch-int8"
    assert q["speed"]["throughput_speedup"] > 0 and "side by side" in q["speed"]["protocol"]
    # sizes, honestly: fp32 on disk (backbone/ included), int8 in memory
    assert q["input_disk_bytes"] == q["output_disk_bytes"] == _weight_bytes(made["exits"]) and q["size_ratio"] == 1.0
    assert q["weights_in_memory_bytes"]["quantized"] < 0.6 * q["weights_in_memory_bytes"]["input"]
    assert q["quantized_linear_layers"] == q["linear_layers"] == 24 and q["fp32_groups"] == []
    # the folder: the input's files, config.json asking for int8 and keeping the exits
    config = json.loads((out / "config.json").read_text())["greenlm"]
    before = json.loads((made["exits"] / "config.json").read_text())["greenlm"]
    assert {k: v for k, v in config.items() if k != "quantization"} == before
    assert config["quantization"]["scheme"] == "int8-dynamic" and config["quantization"]["runtime"] == "torch"
    assert config["quantization"]["int8_sha256"] == q["int8_sha256"]
    for name in ("model.safetensors", "backbone/model.safetensors"):
        assert (out / name).read_bytes() == (made["exits"] / name).read_bytes()
    assert json.loads((out / "metrics.json").read_text())["quantize"]["int8_sha256"] == q["int8_sha256"]


def test_the_folder_loads_as_int8_with_working_exits(made, quantized):
    out, metrics, _ = quantized
    q = metrics["quantize"]
    loaded = load_classifier(str(out))
    model = loaded.model
    assert isinstance(model, EarlyExitClassifier) and is_torch_int8(model)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear) or is_quantized_linear(m)]
    assert len(linear) == 24 and all(type(m).__module__ == "torch.ao.nn.quantized.dynamic.modules.linear"
                                     for m in linear)
    # the layer-by-layer path the exits run through uses the int8 modules (the final classifier included)
    assert model._parts.head.classifier is model.backbone.classifier and is_quantized_linear(model._parts.head.classifier)
    assert model._parts.layers is model.backbone.bert.encoder.layer
    fp32 = load_classifier(str(made["exits"])).model
    assert (model.exit_layers, model.policy, model.threshold, model.temperatures) == \
        (fp32.exit_layers, fp32.policy, fp32.threshold, fp32.temperatures)
    # deterministic: the int8 weights checked by the stage, at every load
    assert int8_digest(model) == q["int8_sha256"] == int8_digest(load_classifier(str(out)).model)
    # logits close to fp32, every exit at full depth (no exit decision in between). Per-channel int8 weights
    # round by at most 1/254 of a channel's largest weight, activations by 1/127 of their range per call (7
    # bits on x86); through three layers of six products each the logits move by about 1% of their scale:
    # 5% of the largest fp32 logit (+ 1e-3) bounds it with room, and a model left in fp32 would differ by 0.
    dev = encode_split(made["task"].split("dev"), loaded.tokenizer, MAX_LENGTH)
    batch = collate(dev, list(range(len(dev))), loaded.tokenizer.pad_token_id)
    batch.pop("labels")
    with torch.no_grad():
        pairs = list(zip(fp32.exit_logits(**batch), model.exit_logits(**batch)))
    for reference, got in pairs:
        diff = float((reference - got).abs().max())
        assert 0 < diff <= 0.05 * float(reference.abs().max()) + 1e-3
    # predictions report the exit each input took; the same figures as the stage's (same batches)
    records = predict_records(model, loaded.tokenizer, made["task"].split("dev"), loaded.labels,
                              max_length=MAX_LENGTH, batch_size=32)
    layers = [r["exit_layer"] for r in records]
    assert set(layers) <= {1, 2, 3} and len(set(layers)) >= 2
    assert np.mean(layers) == pytest.approx(q["exits"]["splits"]["dev"]["mean_exit_layer"], abs=1e-4)
    labels = made["task"].split("dev").labels
    accuracy = np.mean([r["label"] == loaded.labels[y] for r, y in zip(records, labels)])
    assert accuracy == pytest.approx(metrics["splits"]["dev"]["accuracy"], abs=1e-6)


def test_predict_eval_load_and_bench_run_the_folder(made, quantized, tmp_path):
    from greenlm.cli.main import app
    from greenlm.runtime.bench import BenchConfig, bench

    out, metrics, _ = quantized
    dev = made["task"].split("dev")
    folder = _task_files(made["task"], tmp_path / "toy")
    (tmp_path / "in.txt").write_text("\n".join(dev.text_a[:12]) + "\n")
    runner = CliRunner()
    for extra in ([], ["--runtime", "auto"]):  # auto: exits keep the torch runtime
        result = runner.invoke(app, ["predict", str(out), str(tmp_path / "in.txt"), *extra])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert len(rows) == 12 and all(r["exit_layer"] in (1, 2, 3) for r in rows)
    result = runner.invoke(app, ["eval", str(out), "--task", str(folder), "--batch-size", "32", "--json",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(metrics["splits"]["dev"]["accuracy"])
    predictor = greenlm.load(out, measure=False)
    assert predictor.runtime.name == "torch-int8" and predictor.runtime.precision == "int8-dynamic"
    assert len(predictor(dev.text_a[:5])) == 5
    with pytest.raises(GreenlmError, match="torch-int8 only"):
        greenlm.load(out, runtime="torch-fp32", measure=False)
    result = bench([str(out)], made["task"], BenchConfig(runtimes=("saved", "torch-fp32"), rounds=1, repeats=1,
                                                         latency_examples=3, max_examples=24, threads=1,
                                                         batch_sizes=(1, 8), energy=False),
                   work_dir=tmp_path / "bench", on_note=lambda _: None)
    rows = {row["runtime"]: row for row in result["results"]}
    assert rows["saved"]["status"] == "ok" and rows["saved"]["precision"] == "int8-dynamic"
    assert rows["saved"]["accuracy"] == pytest.approx(metrics["splits"]["dev"]["accuracy"] * 100, abs=2.0)
    assert rows["saved"]["disk_bytes"] == _weight_bytes(made["exits"])  # fp32 on disk, said as it is
    assert rows["torch-fp32"]["status"] == "skipped" and "PyTorch int8" in rows["torch-fp32"]["reason"]


def test_quantize_command_on_an_exit_folder(made, tmp_path):
    from greenlm.cli.main import app

    folder = _task_files(made["task"], tmp_path / "toy")
    out = tmp_path / "q"
    result = CliRunner().invoke(app, ["quantize", str(made["exits"]), "--task", str(folder), "--out", str(out),
                                      "--no-measure-speed", "--tolerance", str(TOLERANCE), "--validation-fraction",
                                      "0.2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "PyTorch" in result.output and "mean exit layer" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quantize"]["runtime"] == "torch" and metrics["quantize"]["tune_split"] == "validation"
    assert is_torch_int8(load_classifier(str(out)).model)


# ---- a model without exits, the fallback, the selection split ---------------------------------------


def test_plain_model_with_runtime_torch(made, tmp_path):
    task = replace(made["task"], splits={k: v for k, v in made["task"].splits.items() if k != "validation"})
    notes = []
    metrics = run(made["plain"], task, QuantizeConfig(runtime="torch", tolerance_points=TOLERANCE, **FAST),
                  tmp_path / "q", work_dir=tmp_path / "w", on_note=notes.append)
    q = metrics["quantize"]
    assert q["runtime"] == "torch" and q["status"] == "quantized" and q["exits"] is None
    # no validation split: chosen on dev, which is also reported; said in metrics.json and on the terminal
    assert q["tune_split"] == "dev" and q["selection"]["split"] == "dev" and "optimistic" in q["selection"]["warning"]
    assert any("also reported" in n for n in notes)
    loaded = load_classifier(str(tmp_path / "q"))
    assert type(loaded.model).__name__ == "BertForSequenceClassification" and is_torch_int8(loaded.model)
    assert greenlm.load(tmp_path / "q", measure=False).runtime.name == "torch-int8"
    # a split named explicitly is used, and the record says who chose it
    named = run(made["plain"], made["task"], QuantizeConfig(runtime="torch", tune_split="dev",
                                                            tolerance_points=TOLERANCE, **FAST),
                tmp_path / "q2", work_dir=tmp_path / "w2", on_note=lambda _: None)["quantize"]
    assert named["tune_split"] == "dev" and named["selection"]["set_by"] == "tune_split"
    assert "warning" in named["selection"]


def _sabotaged(real):
    """A quantizer under which int8 breaks the model's own classifier (weights negated) unless it stays fp32."""

    def quantize_linears(model, *, per_channel, fp32_groups=(), inplace=False):
        quantized = real(model, per_channel=per_channel, fp32_groups=fp32_groups, inplace=inplace)
        if "head" not in fp32_groups:
            classifier = quantized.backbone.classifier
            weight = classifier.weight()
            scales, zero_points = weight.q_per_channel_scales(), weight.q_per_channel_zero_points()
            flipped = torch.quantize_per_channel(-weight.dequantize(), scales, zero_points, 0, torch.qint8)
            classifier.set_weight_bias(flipped, -classifier.bias())
        return quantized

    return quantize_linears


def test_fallback_keeps_the_sensitive_group_fp32(made, tmp_path, monkeypatch):
    monkeypatch.setattr(quantize_torch, "quantize_linears", _sabotaged(quantize_torch.quantize_linears))
    notes = []
    metrics = run(made["exits"], made["task"], QuantizeConfig(per_channel=True, tolerance_points=TOLERANCE, **FAST),
                  tmp_path / "q", work_dir=tmp_path / "w", on_note=notes.append)
    q = metrics["quantize"]
    first = q["fallback_trajectory"][0]
    assert first["fp32_groups"] == [] and first["accuracy"] < 100 - 2 * TOLERANCE  # int8 everywhere was broken
    assert min(q["sensitivity_kl_when_fp32"], key=q["sensitivity_kl_when_fp32"].get) == "head"
    assert set(q["sensitivity_kl_when_fp32"]) == set(q["groups"]) == {"layer.1", "layer.2", "layer.3", "head",
                                                                        "exit.1", "exit.2"}
    assert q["fp32_groups"] == ["head"] and q["status"] == "quantized" and q["accuracy_drop_points"] <= TOLERANCE
    assert any("sensitive" in n for n in notes)
    config = json.loads((tmp_path / "q" / "config.json").read_text())["greenlm"]["quantization"]
    assert config["fp32_groups"] == ["head"]
    model = load_classifier(str(tmp_path / "q")).model  # the loader (not sabotaged) keeps the head in fp32
    assert isinstance(model.backbone.classifier, torch.nn.Linear) and isinstance(model.backbone.bert.pooler.dense,
                                                                                  torch.nn.Linear)
    assert all(is_quantized_linear(m) for name in linear_groups(model)["layer.2"]
               for m in [model.get_submodule(name)])
    # without the fallback the drop stays over the tolerance, and the output is the input model
    kept = run(made["exits"], made["task"], QuantizeConfig(per_channel=True, fallback=False,
                                                           tolerance_points=TOLERANCE, **FAST),
               tmp_path / "in", work_dir=tmp_path / "w2", on_note=lambda _: None)["quantize"]
    assert kept["status"] == "over_tolerance_input_kept" and kept["output_is"] == "input"
    assert "quantization" not in json.loads((tmp_path / "in" / "config.json").read_text())["greenlm"]
    assert not is_torch_int8(load_classifier(str(tmp_path / "in")).model)


# ---- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    (dict(scheme="int8-static"), "cannot take a model with early exits"),
    (dict(runtime="onnx"), "cannot take a model with early exits"),
])
def test_exits_refuse_the_onnx_schemes(made, tmp_path, settings, message):
    with pytest.raises(GreenlmError, match=message):
        run(made["exits"], made["task"], QuantizeConfig(**settings, **FAST), tmp_path / "x", work_dir=tmp_path / "w")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("settings, message", [
    (dict(runtime="tvm"), "unknown runtime"),
    (dict(runtime="torch", scheme="int8-static"), "runtime torch runs int8-dynamic only"),
    (dict(runtime="torch", scheme="bf16"), "runtime torch runs int8-dynamic only"),
    (dict(runtime="onnx", scheme="bf16"), "bf16 runs in PyTorch"),
    (dict(tune_split=""), "tune_split"),
])
def test_settings_are_checked(settings, message):
    with pytest.raises(GreenlmError, match=message):
        QuantizeConfig(**settings)


def test_unset_runtime_falls_back_to_torch_without_onnx_runtime(monkeypatch):
    import sys

    plain = object()  # not a model with exits
    notes = []
    if quantize_torch.is_available("onnxruntime") and quantize_torch.is_available("onnx"):
        assert quantize_torch.int8_runtime(QuantizeConfig(), plain, notes.append) == "onnx" and notes == []
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as in `pip install greenlm` without extras
    assert quantize_torch.int8_runtime(QuantizeConfig(), plain, notes.append) == "torch"
    assert len(notes) == 1 and "ONNX Runtime is not installed" in notes[0] and "greenlm[onnx]" in notes[0]
    assert quantize_torch.int8_runtime(QuantizeConfig(runtime="onnx"), plain) == "onnx"  # asked for: it errors later
    assert quantize_torch.int8_runtime(QuantizeConfig(scheme="int8-static"), plain) == "onnx"


def test_int8_models_are_refused_where_they_cannot_go(made, quantized, tmp_path, monkeypatch):
    out, _, _ = quantized
    with pytest.raises(GreenlmError, match="already PyTorch int8"):
        run(out, made["task"], QuantizeConfig(**FAST), tmp_path / "x", work_dir=tmp_path / "w")
    plain_int8 = load_classifier(str(made["plain"])).model
    from greenlm.models.quantized import quantize_linears

    with pytest.raises(GreenlmError, match="already quantized"):
        EarlyExitClassifier(quantize_linears(plain_int8, per_channel=True), EXIT_LAYERS)
    # a torch build without dynamic quantization: one line, no traceback into torch
    import torch.ao.quantization as tq

    monkeypatch.delattr(tq, "quantize_dynamic")
    with pytest.raises(GreenlmError, match=r"has no torch\.ao\.quantization\.quantize_dynamic"):
        run(made["exits"], made["task"], QuantizeConfig(**FAST), tmp_path / "y", work_dir=tmp_path / "w2")
    assert not (tmp_path / "y").exists()
