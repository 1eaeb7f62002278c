"""``greenlm pretrain``: output folders that load, FLOPs that agree with ``greenlm flops``, exact resume, bad input."""

from __future__ import annotations

import json
import random
import sys

import pytest
import torch

from greenlm.common import GreenlmError
from greenlm.measure import count_flops
from greenlm.pretrain.config import PretrainConfig
from greenlm.pretrain.run import run_pretraining
from greenlm.pretrain.vocab import train_wordpiece
from greenlm.train import Callback

TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=300,positions=32"
NOUNS = ["castle", "river", "village", "bridge", "farmer", "market", "novel", "sailor", "tower", "stone", "road"]
VERBS = ["built", "crossed", "sold", "wrote", "carried", "watched", "rebuilt", "visited"]
GLUE = ["the", "a", "of", "and", "with", "in", "at", "its", "their", ",", "."]


def write_corpus(path, lines: int = 500, seed: int = 0):
    rng = random.Random(seed)
    text = []
    for _ in range(lines):
        words = []
        for _ in range(rng.randint(6, 14)):
            words.append(rng.choice(NOUNS + VERBS if rng.random() < 0.5 else GLUE))
        words.append(str(rng.randint(1800, 2000)))
        text.append(" ".join(words) + " .")
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


def small_config(corpus, **changes) -> PretrainConfig:
    base = dict(corpus=str(corpus), model=TINY, max_length=32, batch_size=8, steps=6, learning_rate=1e-3,
                warmup_ratio=0.0, checkpoint_every_steps=2, eval_blocks=16, precision="fp32")
    return PretrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


@pytest.fixture(scope="module")
def mlm_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("mlm") / "out"
    config = small_config(corpus, masking="whole-word", vocab_size=150, snapshot_fractions=(0.0, 0.5, 1.0))
    return config, run_pretraining(config, out, progress=False, on_note=lambda m: None)


@pytest.fixture(scope="module")
def electra_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("electra") / "out"
    config = small_config(corpus, objective="electra", masking="content-words", generator_fraction=0.5)
    return config, run_pretraining(config, out, progress=False, on_note=lambda m: None)


def test_mlm_output_loads_in_transformers_and_greenlm(mlm_run):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from greenlm.models import load_classifier

    config, result = mlm_run
    folder = result.folder
    assert result.status == "ran" and folder.is_dir()
    assert not (folder.parent / f".{folder.name}.work").exists()  # the work folder is gone once the output is there
    model = AutoModelForMaskedLM.from_pretrained(folder)
    assert type(model).__name__ == "BertForMaskedLM"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 150 == model.config.vocab_size
    loaded = load_classifier(str(folder), labels=["neg", "pos"])
    assert loaded.model.config.num_labels == 2 and loaded.labels == ["neg", "pos"]
    # the fine-tuned encoder starts from the pre-trained weights
    assert torch.equal(loaded.model.bert.encoder.layer[0].attention.self.query.weight,
                       model.bert.encoder.layer[0].attention.self.query.weight)


def test_mlm_metrics_flops_and_pricetag(mlm_run):
    config, result = mlm_run
    metrics = json.loads((result.folder / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 6 and metrics["train"]["tokens"] == 6 * 8 * 32
    assert metrics["train"]["tokens_per_s"] > 0
    assert metrics["validation"]["mlm_perplexity"] > 1 and metrics["validation"]["mlm_loss"] > 0
    # `greenlm flops OUT --convention electra --pretraining mlm --train-steps 6 --batch-size 8` says the same
    report = count_flops(result.folder, 32, convention="electra", pretraining="mlm", train_steps=6, batch_size=8)
    assert metrics["flops"]["electra"]["train_flops"] == pytest.approx(report.train_flops, rel=1e-12)
    matmul = count_flops(result.folder, 32, convention="matmul", pretraining="mlm", train_steps=6, batch_size=8)
    assert metrics["flops"]["matmul"]["train_flops"] == pytest.approx(matmul.train_flops, rel=1e-12)
    tag = json.loads((result.folder / "pricetag.json").read_text())
    assert tag["flops"] == pytest.approx(report.train_flops, rel=1e-12)
    assert tag["wall_s"] > 0
    # the vocabulary of 150 trained on the corpus saves parameters and FLOPs against the spec's 300
    vocab = metrics["vocabulary"]
    assert vocab["size"] == 150 and vocab["reference_size"] == 300
    assert vocab["params_saved"] == 150 * 32 + 150  # word embeddings (tied decoder) + the decoder's bias
    assert vocab["train_flops_per_block_saved"] > 0
    masking = metrics["masking"]
    assert masking["strategy"] == "whole-word" and 0.10 < masking["masked_share"] <= 0.16
    snapshots = metrics["snapshots"]
    assert [s["step"] for s in snapshots] == [0, 3, 6]  # step 0: the untrained encoder, the compare's baseline
    assert snapshots[0]["train_flops_electra"] == 0
    assert snapshots[1]["train_flops_electra"] == pytest.approx(report.train_flops / 2)
    assert (result.folder / "snapshots" / "step-3" / "config.json").is_file()


def test_rerun_is_reused_and_a_different_folder_is_refused(mlm_run, corpus):
    config, result = mlm_run
    again = run_pretraining(config, result.folder, progress=False, on_note=lambda m: None)
    assert again.status == "reused"
    with pytest.raises(GreenlmError, match="holds something else"):
        run_pretraining(small_config(corpus, steps=5), result.folder, progress=False, on_note=lambda m: None)


def test_electra_discriminator_is_the_encoder(electra_run):
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    config, result = electra_run
    folder = result.folder
    assert AutoConfig.from_pretrained(folder).architectures == ["ElectraForPreTraining"]
    assert type(AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)).__name__ == \
        "ElectraForSequenceClassification"
    assert type(AutoModel.from_pretrained(folder)).__name__ == "ElectraModel"
    generator = AutoConfig.from_pretrained(folder / "generator")
    assert generator.hidden_size == 16 and generator.num_attention_heads == 2  # half of 32 / 4
    assert generator.embedding_size == 32  # the shared embeddings' width
    metrics = result.metrics
    report = count_flops(folder, 32, convention="electra", pretraining="electra", generator=folder / "generator",
                         train_steps=6, batch_size=8)
    assert metrics["flops"]["electra"]["train_flops"] == pytest.approx(report.train_flops, rel=1e-12)
    assert "--generator OUT/generator" in metrics["greenlm_flops_command"]
    assert metrics["masking"]["content_share_of_masked"] == 1.0
    assert set(metrics["validation"]) >= {"generator_mlm_loss", "disc_accuracy", "disc_loss"}


def test_electra_generator_shares_embeddings(corpus):
    from greenlm.pretrain.models import build_models

    tokenizer = train_wordpiece(corpus.read_text().splitlines(), 100, 32)
    built = build_models(TINY, tokenizer, objective="electra", generator_fraction=0.25, disc_weight=50.0,
                         max_length=32, seed=0, new_vocab=False)
    disc, gen = built.encoder, built.generator
    assert gen.electra.embeddings is disc.electra.embeddings
    assert gen.generator_lm_head.weight is disc.electra.embeddings.word_embeddings.weight
    assert gen.config.hidden_size == 8 < disc.config.hidden_size


class _Crash(Exception):
    pass


@pytest.mark.parametrize("objective,masking", [("electra", "whole-word"), ("mlm", "content-words")])
def test_resume_after_interruption_equals_uninterrupted(corpus, tmp_path, objective, masking):
    config = small_config(corpus, objective=objective, masking=masking)
    straight = run_pretraining(config, tmp_path / "straight", progress=False, on_note=lambda m: None)

    class CrashAt(Callback):
        def on_step_end(self, state):
            if state.step == 3:  # the checkpoint is at step 2: step 3 is done again after the resume
                raise _Crash()

    out = tmp_path / "resumed"
    with pytest.raises(_Crash):
        run_pretraining(config, out, progress=False, callbacks=(CrashAt(),), on_note=lambda m: None)
    assert not out.exists() and (tmp_path / ".resumed.work" / "state" / "checkpoint").is_dir()
    notes = []
    resumed = run_pretraining(config, out, progress=False, on_note=notes.append)
    assert any("resuming" in n for n in notes)
    from safetensors.torch import load_file

    a, b = load_file(straight.folder / "model.safetensors"), load_file(resumed.folder / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed.metrics["validation"] == straight.metrics["validation"]
    # the price tag adds the attempts up: the first counted to its last checkpoint (step 2), the second steps 3-6
    assert resumed.pricetag["meta"]["attempts"] == 2
    assert resumed.pricetag["flops"] == pytest.approx(straight.pricetag["flops"], rel=1e-12)


def test_minilm_gets_an_mlm_head(corpus, tmp_path):
    from transformers import AutoModelForMaskedLM

    notes = []
    config = small_config(corpus, model="minilm", steps=1, batch_size=2, max_length=16, eval_blocks=2)
    result = run_pretraining(config, tmp_path / "minilm-mlm", progress=False, on_note=notes.append)
    assert any("no masked-LM head" in n for n in notes)
    model = AutoModelForMaskedLM.from_pretrained(result.folder)
    assert model.config.architectures == ["BertForMaskedLM"]
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight  # tied
    assert result.metrics["validation"]["mlm_perplexity"] > 1


def test_vocabulary_size_is_honoured_and_refused_below_the_specials(corpus):
    lines = corpus.read_text().splitlines()
    for size in (40, 90):
        assert len(train_wordpiece(lines, size, 32)) == size
    with pytest.raises(GreenlmError, match="special"):
        train_wordpiece(lines, 5, 32)
    with pytest.raises(GreenlmError, match="special tokens"):
        PretrainConfig(vocab_size=5)


@pytest.mark.parametrize("changes,needle", [
    ({"generator_fraction": 1.5}, "larger than its discriminator"),
    ({"mask_rate": 0.0}, "mask rate"),
    ({"mask_rate": 1.0}, "mask rate"),
    ({"steps": 5, "flops_budget": 1e9}, "not both"),
])
def test_bad_settings_are_refused(changes, needle):
    with pytest.raises(GreenlmError, match=needle):
        PretrainConfig(**changes)


def run_cli(monkeypatch, capsys, *args):
    from greenlm.cli.main import main

    monkeypatch.setattr(sys, "argv", ["greenlm", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def _bad_corpus(tmp_path, kind):
    path = tmp_path / f"{kind}.txt"
    if kind == "empty":
        path.write_text("\n  \n", encoding="utf-8")
    elif kind == "binary":
        path.write_bytes(b"some text\nmore\x00\x01\x02 bytes\n")
    elif kind == "latin1":
        path.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    return path


@pytest.mark.parametrize("kind,extra,needle", [
    ("empty", [], "is empty"),
    ("binary", [], "looks binary (a NUL byte at line 2"),
    ("latin1", [], "latin1.txt':1: not valid UTF-8"),
    ("good", ["--mask-rate", "1.5"], "mask rate"),
    ("good", ["--generator-fraction", "2", "--objective", "electra"], "larger than its discriminator"),
    ("good", ["--vocab-size", "3"], "special tokens"),
    ("missing", [], "does not exist"),
])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(monkeypatch, capsys, tmp_path, corpus, kind, extra, needle):
    path = corpus if kind == "good" else _bad_corpus(tmp_path, kind) if kind != "missing" else tmp_path / "nope.txt"
    out = tmp_path / "out"
    code, err = run_cli(monkeypatch, capsys, "pretrain", "--corpus", str(path), "--model", TINY, "--max-length", "32",
                        "--out", str(out), "--no-progress", *extra)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert needle in lines[0] and lines[0].startswith("greenlm: error:")
    assert not [p.name for p in tmp_path.iterdir() if p.name.lstrip(".").startswith("out")]  # no folder, work, lock


def test_whole_word_masking_refuses_a_slow_tokenizer(monkeypatch, corpus, tmp_path):
    import greenlm.pretrain.run as run

    class Slow:
        is_fast = False

    monkeypatch.setattr(run, "source_tokenizer", lambda spec: (Slow(), "somewhere"))
    with pytest.raises(GreenlmError, match="fast tokenizer"):
        run_pretraining(small_config(corpus, masking="whole-word"), tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_kill_9_during_pretraining_then_the_same_command_equals_an_uninterrupted_run(corpus, tmp_path):
    """A real process killed with SIGKILL (no clean-up runs) resumes from its last checkpoint when the same command
    is run again, and ends with the weights of a run never interrupted."""
    import signal
    import subprocess
    import time

    from safetensors.torch import load_file

    def args(out):
        return [sys.executable, "-m", "greenlm", "pretrain", "--corpus", str(corpus), "--model", TINY,
                "--objective", "electra", "--masking", "content-words", "--generator-fraction", "0.5",
                "--max-length", "32", "--batch-size", "8", "--steps", "120", "--lr", "1e-3", "--checkpoint-every", "10",
                "--eval-blocks", "4", "--out", str(out), "--no-progress"]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(args(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / ".killed.work" / "state" / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["step"] >= 20:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "pre-training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not killed.exists()  # nothing that looks finished
    resumed = subprocess.run(args(killed), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    straight = tmp_path / "straight"  # uninterrupted, through the same entry point in this process
    from conftest import greenlm_in_process

    assert greenlm_in_process(*args(straight)[3:]).returncode == 0
    a, b = load_file(killed / "model.safetensors"), load_file(straight / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert json.loads((killed / "metrics.json").read_text())["validation"] == \
        json.loads((straight / "metrics.json").read_text())["validation"]


def test_linear_attention_pretraining_loads_for_fine_tuning_and_extends_positions(corpus, tmp_path):
    """--attention builds the encoder (and ELECTRA's generator) with linear attention; the folder fine-tunes in
    greenlm with it; continuing from that folder with longer blocks extends the position table by copying."""
    from greenlm.models import load_classifier
    from greenlm.models.linear_attention import LinearSelfAttention

    first = run_pretraining(small_config(corpus, attention="performer:features=8", objective="electra",
                                         generator_fraction=0.5), tmp_path / "perf", progress=False,
                            on_note=lambda m: None)
    saved = json.loads((first.folder / "config.json").read_text())["greenlm"]
    assert saved["format"] == "linear_attention" and saved["attention"]["kind"] == "performer"
    assert saved["attention"]["features"] == 8
    loaded = load_classifier(str(first.folder), labels=["neg", "pos"])
    layers = loaded.model.electra.encoder.layer
    assert all(isinstance(layer.attention.self, LinearSelfAttention) for layer in layers)
    from safetensors.torch import load_file

    weights = load_file(first.folder / "model.safetensors")
    assert torch.equal(layers[1].attention.self.projection, weights["electra.encoder.layer.1.attention.self.projection"])
    # FLOPs of the run are the linear kind's, counted from the model (not a softmax model of the same shape)
    softmax = run_pretraining(small_config(corpus, objective="electra", generator_fraction=0.5), tmp_path / "soft",
                              progress=False, on_note=lambda m: None)
    assert first.metrics["flops"]["matmul"]["train_flops"] != softmax.metrics["flops"]["matmul"]["train_flops"]

    notes: list[str] = []
    longer = run_pretraining(small_config(corpus, model=str(first.folder), objective="mlm", max_length=48,
                                          attention="softmax", steps=2), tmp_path / "long", progress=False,
                             on_note=notes.append)
    assert any("positions extended from 32 to 48" in n for n in notes)
    config = json.loads((longer.folder / "config.json").read_text())
    assert config["max_position_embeddings"] == 48 and config["greenlm"]["positions"]["extended_from"] == 32
    # the continued model kept the trained Performer (its projection travelled) and says so
    assert config["greenlm"]["format"] == "linear_attention" and config["greenlm"]["attention"]["kind"] == "performer"
    assert any("continued with its own performer" in n for n in notes)
    continued = load_file(longer.folder / "model.safetensors")
    assert torch.equal(continued["electra.encoder.layer.1.attention.self.projection"],
                       weights["electra.encoder.layer.1.attention.self.projection"])
    with pytest.raises(GreenlmError, match="already runs performer"):
        run_pretraining(small_config(corpus, model=str(first.folder), attention="abc:k=4", steps=1), tmp_path / "x",
                        progress=False, on_note=lambda m: None)
    with pytest.raises(GreenlmError, match="unknown attention 'rfb'"):
        small_config(corpus, attention="rfb")
