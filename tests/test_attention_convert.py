"""convert_attention: swap a fine-tuned tiny BERT's attention, recover by distillation, save a folder that eval and
predict load; the CLI's bad inputs are one line and exit code 2; ``greenlm bench --seq-lens`` on a tiny shape."""

from __future__ import annotations

import json

import pytest
import torch

from greenlm.common import GreenlmError
from greenlm.compress.convert_attention_config import ConvertAttentionConfig
from greenlm.data import encode_split
from greenlm.models import load_classifier
from greenlm.models.linear_attention import LinearSelfAttention
from greenlm.train import TrainConfig, evaluate

from conftest import finetune_folder, greenlm_in_process, make_toy_task, stage_runner, write_toy_task_files

run = stage_runner("convert_attention")
FAST = dict(epochs=2, batch_size=16, learning_rate=3e-3, precision="fp32")


@pytest.fixture(scope="module")
def toy():
    return make_toy_task(256, 64)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, toy):
    out = tmp_path_factory.mktemp("convert") / "finetuned"
    finetune_folder(toy, "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99,positions=32", out,
                    TrainConfig(epochs=3, batch_size=16, learning_rate=3e-3, precision="fp32"), max_length=32)
    return out


def test_convert_recovers_accuracy_and_reloads(finetuned, toy, tmp_path, attention="rfa:features=16"):
    out = tmp_path / "converted"
    metrics = run(finetuned, toy, ConvertAttentionConfig(attention=attention, max_positions=64, **FAST),
                  out, work_dir=tmp_path / "work")
    details = metrics["convert_attention"]
    kind = attention.split(":")[0]
    assert details["attention"]["kind"] == kind and details["attention"]["features"] == 16
    # the temperature started from the original's query and key norms
    assert len(details["rfa_inv_sigma_start"]) == 2 and len(details["rfa_inv_sigma_start"][0]) == 4
    assert details["positions"] == {"extended_from": 32, "to": 64, "init": "copied"}
    original = details["original"]["splits"]["dev"]["accuracy"]
    assert original > 0.8  # the toy task is learnt by the softmax model
    assert metrics["splits"]["dev"]["accuracy"] >= original - 0.1  # recovered within 10 points on 64 rows
    assert details["training"]["steps"] > 0 and details["selection"]
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    saved = json.loads((out / "config.json").read_text())
    assert saved["greenlm"]["format"] == "linear_attention" and saved["max_position_embeddings"] == 64
    loaded = load_classifier(str(out))
    assert isinstance(loaded.model.bert.encoder.layer[0].attention.self, LinearSelfAttention)
    dev = encode_split(toy.split("dev"), loaded.tokenizer, 32)
    again = evaluate(loaded.model, dev, pad_token_id=loaded.tokenizer.pad_token_id, num_labels=2)
    assert again["accuracy"] == metrics["splits"]["dev"]["accuracy"]
    # inputs longer than the original's 32 positions run on the converted model
    with torch.no_grad():
        assert loaded.model(input_ids=torch.randint(5, 40, (1, 60))).logits.shape == (1, 2)


def test_config_refuses_bad_settings():
    with pytest.raises(GreenlmError, match="known: softmax, rfa, performer, t2r, abc"):
        ConvertAttentionConfig(attention="linformer")
    with pytest.raises(GreenlmError, match="linear kind"):
        ConvertAttentionConfig(attention="softmax")
    with pytest.raises(GreenlmError, match="memory size k must be a whole number from 1 to"):
        ConvertAttentionConfig(attention="abc:k=0")
    with pytest.raises(GreenlmError, match="alpha must be in"):
        ConvertAttentionConfig(alpha=2.0)


def greenlm(*args, stdin=None):
    """``greenlm ARGS`` through its entry point, in this process: a process of its own adds seconds of imports and
    nothing these tests look at (the peak-memory test below starts the fresh process it measures)."""
    return greenlm_in_process(*args, stdin=stdin)


def test_cli_convert_then_predict(finetuned, tmp_path):
    task_dir = tmp_path / "toy"
    write_toy_task_files(task_dir, 256, 64)
    out = tmp_path / "abc"
    result = greenlm("convert-attention", str(finetuned), "--attention", "abc:k=4", "--task", str(task_dir), "--out",
                     str(out), "--epochs", "1", "--batch-size", "16", "--lr", "3e-3", "--precision", "fp32",
                     "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "points vs the softmax original" in result.stderr and "saved to" in result.stderr
    predicted = greenlm("predict", str(out), stdin="the film was good\nawful plot\n")
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(rows) == 2 and all(r["label"] in ("neg", "pos") for r in rows)


def _one_line_error(result, message):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("greenlm: error:") and message in lines[0], lines


@pytest.mark.parametrize("args,message", [
    (["--attention", "linformer"], "known: softmax, rfa, performer, t2r, abc"),
    (["--attention", "rfa:features=0"], "features must be a whole number from 1 to"),
    (["--attention", "abc:k=0"], "memory size k must be a whole number from 1 to"),
    (["--max-length", "100"], "above what the model's positions allow (32)"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(finetuned, tmp_path, args, message):
    _one_line_error(greenlm("convert-attention", str(finetuned), "--task", "sst2", "--out", str(tmp_path / "o"), *args),
                    message)


def test_cli_refuses_a_model_type_it_cannot_convert(tmp_path):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from greenlm.models.tiny import build_tiny_tokenizer

    folder = tmp_path / "distil"
    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=99, dim=32, n_layers=1, n_heads=4,
                                                                 hidden_dim=37, num_labels=2,
                                                                 id2label={0: "neg", 1: "pos"},
                                                                 label2id={"neg": 0, "pos": 1}))
    model.save_pretrained(folder)
    build_tiny_tokenizer(["the film was good"], 99, 64).save_pretrained(folder)
    task_dir = tmp_path / "toy"
    write_toy_task_files(task_dir, 32, 16)
    _one_line_error(greenlm("convert-attention", str(folder), "--task", str(task_dir), "--out", str(tmp_path / "o")),
                    "cannot convert the attention of model type 'distilbert'; supported: BERT (incl. MiniLM), RoBERTa")


def test_distill_builds_a_student_with_linear_attention(finetuned, toy, tmp_path):
    from greenlm.compress.distill_config import DistillConfig

    out = tmp_path / "student"
    metrics = stage_runner("distill")(finetuned, toy, DistillConfig(student="1x32", attention="rfa:features=8",
                                                                    epochs=1, learning_rate=3e-3, batch_size=16,
                                                                    precision="fp32"), out, work_dir=tmp_path / "w")
    assert metrics["distill"]["config"]["attention"] == "rfa:features=8"
    saved = json.loads((out / "config.json").read_text())["greenlm"]
    assert saved["format"] == "linear_attention" and saved["attention"]["features"] == 8 and saved["task"] == "toy"
    loaded = load_classifier(str(out))
    assert isinstance(loaded.model.bert.encoder.layer[0].attention.self, LinearSelfAttention)
    with pytest.raises(GreenlmError, match="no attention scores to imitate"):
        DistillConfig(attention="abc", intermediate_epochs=1)


def test_bench_seq_lens_tiny_run(tmp_path):
    out = tmp_path / "lengths.json"
    result = greenlm("bench", "--seq-lens", "16,32", "--attention", "softmax,softmax-eager,performer:features=8,abc:k=4",
                     "--bench-shape", "1x32x2x64", "--batch-sizes", "1,2", "--repeats", "1", "--rounds", "1",
                     "--threads", "1", "--no-memory", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 2 * 2 * 4
    for row in data["rows"]:
        assert row["latency_ms_p50"] > 0 and row["tokens_per_s"] > 0
        # latency_ms_p50 is rounded to 0.001 ms: below 0.5 ms that alone moves the quotient by more than 0.1%
        rounding = 0.0005 / row["latency_ms_p50"]
        assert row["tokens_per_s"] == pytest.approx(row["batch"] * row["seq_len"] / row["latency_ms_p50"] * 1000,
                                                    rel=1e-3 + rounding)
    assert set(data["crossover"]) == {"softmax-eager", "performer:features=8,redraw=fixed,seed=0,orthogonal=1", "abc:k=4"}
    assert "| 32 | 2 | abc:k=4 |" in result.stdout
    assert data["rows"][0]["flops"]["attention_share_of_flops"] > 0


def test_bench_peak_memory_is_measured_in_a_fresh_process():
    from greenlm.runtime.attention_bench import LengthBenchConfig, _peak_memory
    from greenlm.models.attention_spec import AttentionSpec

    config = LengthBenchConfig(seq_lens=(4096,), shape="1x64x2x64", scope="attention", threads=1)
    # eager softmax-sized scores would be 2 heads x 4096^2 floats = 128 MB; the linear kernel holds N x m
    memory = _peak_memory(config, AttentionSpec.parse("performer:features=8"), 2, 4096)
    assert "error" not in memory, memory
    assert memory["peak_mb_above_baseline"] >= 0 and memory["peak_mb"] >= memory["baseline_mb"]
    # q, k, v and the output alone are 4 x 2 MB at once; an N x N score matrix would be 128 MB
    assert 2 < memory["peak_mb_above_baseline"] < 100, memory


def test_crossover_is_the_shortest_length_from_which_it_always_wins():
    from greenlm.runtime.attention_bench import _Row, crossover

    rows = [_Row("abc:k=4", "abc", 1, n, speedup_vs_softmax=s) for n, s in ((128, 1.2), (512, 0.9), (2048, 1.5),
                                                                            (8192, 4.0))]
    assert crossover(rows, ["abc:k=4"], (1,)) == {"abc:k=4": {"1": 2048}}
    rows[1].speedup_vs_softmax = 1.1
    assert crossover(rows, ["abc:k=4"], (1,)) == {"abc:k=4": {"1": 128}}
    rows[3].speedup_vs_softmax = 0.5
    assert crossover(rows, ["abc:k=4"], (1,)) == {"abc:k=4": {"1": None}}


@pytest.mark.parametrize("args,message", [
    (["--seq-lens", "16,x"], "--seq-lens must be whole numbers"),
    (["--seq-lens", "16", "--attention", "softmax,linformer"], "known: softmax, rfa, performer, t2r, abc"),
])
def test_bench_seq_lens_bad_input(args, message):
    _one_line_error(greenlm("bench", *args), message)


def test_length_bench_config_refuses_bad_settings():
    from greenlm.runtime.attention_bench import LengthBenchConfig

    with pytest.raises(GreenlmError, match="features must be a whole number from 1 to"):
        LengthBenchConfig(attentions="softmax,performer:features=0")
    with pytest.raises(GreenlmError, match="is not LAYERSxHIDDEN"):
        LengthBenchConfig(shape="big")
    with pytest.raises(GreenlmError, match="--seq-lens must be whole numbers >= 1"):
        LengthBenchConfig(seq_lens=(0,))


def test_tiny_model_with_linear_attention_trains_saves_and_reloads(toy, tmp_path):
    out = tmp_path / "tiny-abc"
    finetune_folder(toy, "tiny:layers=1,hidden=32,heads=4,ffn=37,vocab=99,positions=32,attention=abc:k=4", out,
                    TrainConfig(epochs=1, batch_size=16, learning_rate=3e-3, precision="fp32"), max_length=32)
    saved = json.loads((out / "config.json").read_text())["greenlm"]
    assert saved["format"] == "linear_attention" and saved["attention"] == {"kind": "abc", "k": 4}
    assert saved["task"] == "toy"
    loaded = load_classifier(str(out))
    assert isinstance(loaded.model.bert.encoder.layer[0].attention.self, LinearSelfAttention)


@pytest.mark.slow
def test_convert_attention_stage_in_greenlm_run(tmp_path):
    import os

    import yaml

    write_toy_task_files(tmp_path / "toy", 160, 48)
    recipe = {"name": "linear", "task": str(tmp_path / "toy"), "teacher": "tiny:layers=1,hidden=32,heads=4,ffn=37,vocab=99",
              "measure": {"region": "USA", "pue": 1.0},
              "evaluation": {"speed_examples": 16, "latency_examples": 2, "repeats": 1},
              "stages": {"finetune": {"epochs": 2, "learning_rate": 3e-3, "batch_size": 16, "max_length": 32},
                         "convert_attention": {"attention": "abc:k=4", "epochs": 1, "learning_rate": 3e-3,
                                               "batch_size": 16}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = greenlm_in_process("run", str(tmp_path / "r.yaml"), "--runs-dir", str(tmp_path / "runs"), "--no-progress",
                                env={**os.environ, "GREENLM_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-2000:]
    stage = tmp_path / "runs" / "linear" / "convert_attention"
    assert json.loads((stage / "config.json").read_text())["greenlm"]["format"] == "linear_attention"
    report = (tmp_path / "runs" / "linear" / "report.md").read_text()
    assert "convert_attention" in report


def test_t2r_conversion_trains_its_feature_map_and_recovers(finetuned, toy, tmp_path):
    """T2R (Kasai et al. 2021): the learned feature map is trained by the conversion, and the toy task recovers."""
    out = tmp_path / "t2r"
    metrics = run(finetuned, toy, ConvertAttentionConfig(attention="t2r:features=8", **FAST), out,
                  work_dir=tmp_path / "work")
    original = metrics["convert_attention"]["original"]["splits"]["dev"]["accuracy"]
    assert metrics["splits"]["dev"]["accuracy"] >= original - 0.1
    loaded = load_classifier(str(out))
    attn = loaded.model.bert.encoder.layer[0].attention.self
    start = LinearSelfAttention(attn, attn.spec, 0, loaded.model.config.hidden_size)  # the map's initial values
    assert not torch.equal(attn.feature_weight, start.feature_weight)  # trained, saved and reloaded
    assert "rfa_inv_sigma_start" not in metrics["convert_attention"] or \
        metrics["convert_attention"]["rfa_inv_sigma_start"] is None


def test_length_bench_leaves_the_callers_thread_count():
    """``length_bench`` times on ``threads`` and gives the caller's count back (the Python API runs stages after it)."""
    import torch

    from greenlm.runtime.attention_bench import LengthBenchConfig, length_bench

    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    result = length_bench(LengthBenchConfig(seq_lens=(8,), attentions="softmax,abc:k=2", batch_sizes=(1,),
                                            shape="1x16", runs=1, rounds=1, threads=wanted, memory=False),
                          on_note=lambda _: None)
    assert result["machine"]["threads"] == wanted
    assert torch.get_num_threads() == before
