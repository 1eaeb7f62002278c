"""ONNX export, int8 / bf16 closeness to fp32, and the inference engine (order, padding, batching).

Tolerances stated here are the ones the docs give:
- fp32 export: every logit within 1e-4 + 1e-3 x |logit| of PyTorch (``FP32_ATOL``, ``FP32_RTOL``);
- int8 (dynamic or static) of a trained tiny model: max |logit - fp32 logit| <= 0.1 and >= 95% of the
  predictions unchanged;
- bf16: max |logit - fp32 logit| <= 0.05 (8 mantissa bits: ~0.4% relative per operation).
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch

from greenlm.data import EncodedSplit, collate, encode_split
from greenlm.models import TinySpec, build_tiny_classifier
from greenlm.runtime import onnx as gx
from greenlm.runtime.engine import OrtRuntime, Predictor, TorchRuntime, pack, run_engine, sorted_batches
from greenlm.train import TrainConfig, train

INT8_MAX_ABS = 0.1
INT8_MIN_AGREEMENT = 0.95
BF16_MAX_ABS = 0.05


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny BERT trained on the toy task (a real decision function, not random weights), and its dev set."""
    from conftest import make_toy_task

    task = make_toy_task()
    model, tok = build_tiny_classifier(TinySpec(layers=2, hidden=32, heads=4, ffn=37, vocab=99), list(task.labels),
                                       task.split("train").text_a, seed=0)
    train_data = encode_split(task.split("train"), tok, 32)
    dev = encode_split(task.split("dev"), tok, 32)
    config = TrainConfig(epochs=4, batch_size=16, learning_rate=3e-3, precision="fp32", warmup_ratio=0.1)
    train(model, train_data, None, config, pad_token_id=tok.pad_token_id,
          work_dir=tmp_path_factory.mktemp("train"), progress=False)
    model.eval()
    return model, tok, dev, tmp_path_factory.mktemp("onnx")


def torch_logits(model, packed_batch):
    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in packed_batch.items()}).logits.numpy()


def all_batches(dev, tok, size=16):
    packed = pack(dev, tok.pad_token_id)
    return [packed.batch(rows) for rows in sorted_batches(packed.lengths, size)] + [packed.batch(np.arange(len(dev)))]


@pytest.mark.parametrize("optimize", [True, False])
def test_export_matches_pytorch(trained, optimize):
    model, tok, dev, folder = trained
    path = folder / f"fp32-{optimize}.onnx"
    report = gx.export_onnx(model, path, check_batches=all_batches(dev, tok)[:2], optimize=optimize)
    assert report.fused is optimize
    if optimize:
        assert report.fused_ops["Attention"] == 2 and report.fused_ops["SkipLayerNormalization"] == 4
    runtime = OrtRuntime(path, precision="fp32", threads=1)
    for batch in all_batches(dev, tok):  # every padded batch of the dev set, also ones not checked at export
        expected = torch_logits(model, batch)
        got = runtime(batch)
        assert np.all(np.abs(got - expected) <= gx.FP32_ATOL + gx.FP32_RTOL * np.abs(expected))
    # export leaves the caller's model alone (attention implementation, dtype, mode)
    assert next(model.parameters()).dtype == torch.float32 and not model.training


def test_export_refuses_a_graph_that_disagrees(trained, monkeypatch):
    model, tok, dev, folder = trained
    real = gx._torch_logits
    monkeypatch.setattr(gx, "_torch_logits", lambda *a: [x + 1.0 for x in real(*a)])  # PyTorch "says" otherwise
    with pytest.raises(gx.GreenlmError, match="differs from the PyTorch model"):
        gx.export_onnx(model, folder / "bad.onnx", check_batches=all_batches(dev, tok)[:1], optimize=False)


def int8_closeness(model, tok, dev, path):
    runtime = OrtRuntime(path, precision="int8", threads=1)
    packed = pack(dev, tok.pad_token_id)
    got = run_engine(runtime, packed, batch_size=16, num_labels=2)
    expected = run_engine(TorchRuntime(model, threads=1), packed, batch_size=16, num_labels=2)
    return float(np.abs(got - expected).max()), float((got.argmax(1) == expected.argmax(1)).mean())


@pytest.mark.parametrize("per_channel", [True, False])
def test_int8_dynamic_close_to_fp32(trained, per_channel):
    model, tok, dev, folder = trained
    fp32 = folder / "dyn-src.onnx"
    if not fp32.is_file():
        gx.export_onnx(model, fp32, check_batches=all_batches(dev, tok)[:1], optimize=True)
    path = folder / f"dyn-{per_channel}.onnx"
    gx.quantize_onnx_dynamic(fp32, path, per_channel=per_channel)
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["MatMulInteger"] >= 6 and ops["QAttention"] == 2  # integer kernels, not fp32 in disguise
    max_abs, agreement = int8_closeness(model, tok, dev, path)
    assert max_abs <= INT8_MAX_ABS and agreement >= INT8_MIN_AGREEMENT
    assert max_abs > 0  # it really changed precision
    assert path.stat().st_size < 0.75 * fp32.stat().st_size


def test_int8_static_quantizes_activations(trained):
    model, tok, dev, folder = trained
    plain = folder / "static-src.onnx"
    gx.export_onnx(model, plain, check_batches=all_batches(dev, tok)[:1], optimize=False)
    packed = pack(dev, tok.pad_token_id)
    calibration = [packed.batch(np.array([i])) for i in range(32)]
    path = folder / "static.onnx"
    cache = folder / "calibration.json"
    gx.quantize_onnx_static(plain, path, calibration, per_channel=True, cache_path=cache)
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    # activations are quantized with fixed scales (QuantizeLinear), not only the weights
    assert ops["QuantizeLinear"] >= 12 and ops["DequantizeLinear"] >= 24
    max_abs, agreement = int8_closeness(model, tok, dev, path)
    assert max_abs <= INT8_MAX_ABS and agreement >= INT8_MIN_AGREEMENT
    # the cached ranges let a second conversion (here excluding a node) skip calibration
    node = gx.quantizable_nodes(plain, gx.STATIC_OPS)[0]
    gx.quantize_onnx_static(plain, folder / "static2.onnx", [], exclude=[node], cache_path=cache)
    kept = [n for n in onnx.load(str(folder / "static2.onnx")).graph.node if n.name == node]
    assert kept and kept[0].op_type == "MatMul"


def test_static_needs_calibration_rows(trained):
    model, tok, dev, folder = trained
    with pytest.raises(gx.GreenlmError, match="calibration set is empty"):
        gx.quantize_onnx_static(folder / "static-src.onnx", folder / "never.onnx", [])


def test_bf16_close_to_fp32(trained):
    model, tok, dev, _ = trained
    packed = pack(dev, tok.pad_token_id)
    import copy

    bf16 = TorchRuntime(copy.deepcopy(model), precision="bf16", threads=1)
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    got = run_engine(bf16, packed, batch_size=16, num_labels=2)
    expected = run_engine(TorchRuntime(model, threads=1), packed, batch_size=16, num_labels=2)
    assert got.dtype == np.float32
    assert 0 < np.abs(got - expected).max() <= BF16_MAX_ABS


def test_torch_runtime_runs_on_its_threads_and_puts_the_process_count_back(trained):
    """A runtime pinned to N threads runs each call on N and leaves the process's count as it was: a later
    training in the same process (the Python API's next stage) must not inherit the runtime's count."""
    import copy

    model, tok, dev, _ = trained
    seen = []
    handle = model.bert.embeddings.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    try:
        before = torch.get_num_threads()
        runtime = TorchRuntime(copy.deepcopy(model), threads=before + 1)
        handle.remove()  # the copy keeps its own hook
        run_engine(runtime, pack(dev, tok.pad_token_id), batch_size=16, num_labels=2)
        assert seen and set(seen) == {before + 1}
        assert torch.get_num_threads() == before
    finally:
        handle.remove()
        torch.set_num_threads(before)


def test_pack_equals_collate(trained):
    _, tok, dev, _ = trained
    packed = pack(dev, tok.pad_token_id)
    rows = [5, 0, 17, 3]
    batch = packed.batch(np.array(rows))
    reference = collate(dev, rows, tok.pad_token_id)
    assert torch.equal(torch.from_numpy(batch["input_ids"]), reference["input_ids"])
    assert torch.equal(torch.from_numpy(batch["attention_mask"]), reference["attention_mask"])


class Recorder:
    """A runtime that returns each row's first-token id and length as its 'logits', and logs batch shapes."""

    def __init__(self):
        self.shapes = []

    def __call__(self, batch):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        self.shapes.append(ids.shape)
        assert mask[:, -1].any()  # padded only to the longest row of this batch
        return np.stack([ids[:, 1], mask.sum(1)], axis=1).astype(np.float32)


def test_engine_returns_rows_in_input_order_with_sorted_dynamic_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 40, size=100)
    ids = [[101] + [1000 + i] + [7] * (int(n) - 2) for i, n in enumerate(lengths)]
    encoded = EncodedSplit(input_ids=ids, token_type_ids=None, labels=[0] * 100)
    recorder = Recorder()
    out = run_engine(recorder, pack(encoded, 0), batch_size=8, num_labels=2)
    np.testing.assert_array_equal(out[:, 0], 1000 + np.arange(100))  # every row back in its place
    np.testing.assert_array_equal(out[:, 1], lengths)
    widths = [shape[1] for shape in recorder.shapes]
    assert widths == sorted(widths, reverse=True) and widths[0] == lengths.max()  # longest first
    assert sum(w * b for b, w in recorder.shapes) < 0.8 * len(lengths) * lengths.max()  # far less padding


def test_predictor_matches_one_by_one_pytorch(trained):
    """Bucketed, padded batches give each text the logits it gets alone (no padding, batch 1), in order."""
    model, tok, dev, _ = trained
    from conftest import make_toy_task

    texts = make_toy_task().split("dev").text_a[:40]
    predictor = Predictor(TorchRuntime(model, threads=1), tok, ["neg", "pos"], max_length=32, batch_size=7)
    logits = predictor.logits(texts)
    with torch.inference_mode():
        alone = np.concatenate([model(**tok([t], return_tensors="pt")).logits.numpy() for t in texts])
    np.testing.assert_allclose(logits, alone, atol=1e-5)
    records = predictor.predict(texts[:3])
    assert [r["label"] for r in records] == predictor(texts[:3])
    assert abs(sum(records[0]["probabilities"].values()) - 1) < 1e-5
    assert predictor.logits([]).shape == (0, 2)
