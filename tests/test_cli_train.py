"""``greenlm train / eval / predict`` through the real command line: results, bad inputs, kill -9 resume.

A real process trains the shared model, is killed with SIGKILL and resumes, runs under ``accelerate launch`` and
looks for a hub model offline; the other commands go through the same entry point in this process
(``conftest.greenlm_in_process``), which saves each the seconds a fresh interpreter spends importing torch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import greenlm_in_process
from safetensors.torch import load_file

TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def greenlm(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``greenlm ARGS`` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "greenlm", *args], input=stdin, capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``greenlm ARGS`` in this process, with the environment ``greenlm`` gets."""
    return greenlm_in_process(*args, stdin=stdin, env=ENV)


def assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2, one line on stderr that mentions each needle, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def train_args(task_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--task", str(task_dir), "--model", TINY, "--lr", "3e-3", "--epochs", "5", "--batch-size", "16",
            "--max-length", "32", "--out", str(out), "--no-progress", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny model trained through the CLI, shared by the tests that only read it."""
    from conftest import write_toy_task_files

    root = tmp_path_factory.mktemp("cli")
    write_toy_task_files(root / "toy")
    out = root / "model"
    result = greenlm(*train_args(root / "toy", out))
    assert result.returncode == 0, result.stderr
    return root / "toy", out


def test_train_writes_a_complete_hf_folder(trained):
    _, out = trained
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "stage.json", "pricetag.json",
            "README.md"} <= names
    assert not any(n.endswith(".bin") for n in names)
    assert not (out.parent / f".{out.name}.work").exists()  # the work folder goes once the output is complete
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["splits"]["dev"]["accuracy"] >= 0.9
    assert set(metrics["splits"]["dev"]) >= {"accuracy", "macro_f1", "mcc"}
    # Its price tag and a Hugging Face model card that carries the figures.
    tag = json.loads((out / "pricetag.json").read_text())
    assert tag["name"] == "finetune" and tag["wall_s"] > 0 and tag["energy_kwh"] > 0
    import yaml

    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    result = meta["model-index"][0]["results"][0]
    assert result["metrics"][0] == {"type": "accuracy", "name": "Accuracy",
                                    "value": round(metrics["splits"]["dev"]["accuracy"], 6)}
    assert meta["greenlm"]["stage_energy_kwh"] == tag["energy_kwh"]
    assert "`greenlm train --task" in card and "greenlm bench" in card  # the command that made it, in full


def test_same_command_again_trains_nothing(trained):
    task_dir, out = trained
    before = (out / "model.safetensors").stat().st_mtime_ns
    result = cli(*train_args(task_dir, out))
    assert result.returncode == 0
    assert "nothing to do" in result.stderr
    assert (out / "model.safetensors").stat().st_mtime_ns == before


def test_eval_and_predict(trained):
    task_dir, out = trained
    result = cli("eval", str(out), "--task", str(task_dir), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    saved = json.loads((out / "metrics.json").read_text())["splits"]["dev"]
    assert metrics["accuracy"] == pytest.approx(saved["accuracy"])
    # per class and the confusion matrix (issue 21): the matrix adds up to the examples, its diagonal to the accuracy
    counts = metrics["confusion_matrix"]["counts"]
    assert metrics["confusion_matrix"]["labels"] == ["neg", "pos"] == [c["label"] for c in metrics["per_class"]]
    assert sum(map(sum, counts)) == metrics["examples"]
    assert (counts[0][0] + counts[1][1]) / metrics["examples"] == pytest.approx(metrics["accuracy"])
    assert [c["support"] for c in metrics["per_class"]] == [sum(row) for row in counts]
    assert metrics["accuracy_ci95"]["low"] <= metrics["accuracy"] <= metrics["accuracy_ci95"]["high"]
    table = cli("eval", str(out), "--task", str(task_dir))
    assert table.returncode == 0, table.stderr
    assert "per class" in table.stdout and "confusion matrix" in table.stdout and "95% bootstrap" in table.stdout

    result = cli("predict", str(out), "-", stdin="the film was superb and lovely\nit was awful and dull\n\n")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg"]
    for row in rows:
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_kill_9_then_resume_equals_uninterrupted(trained, tmp_path):
    task_dir, reference = trained
    out = tmp_path / "killed"
    args = train_args(task_dir, out, "--checkpoint-every", "3")
    proc = subprocess.Popen([sys.executable, "-m", "greenlm", *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = tmp_path / ".killed.work" / "state" / "train" / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["step"] >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing that looks finished

    # Resume (same command, a different --checkpoint-every is a different run: keep it equal).
    result = greenlm(*args)
    assert result.returncode == 0, result.stderr
    # Checkpoint frequency is part of the identity, so compare against an uninterrupted run of the same args.
    straight = tmp_path / "straight"
    assert cli(*train_args(task_dir, straight, "--checkpoint-every", "3")).returncode == 0
    a = load_file(out / "model.safetensors")
    b = load_file(straight / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    hist = lambda p: json.loads((p / "metrics.json").read_text())["train"]["history"]  # noqa: E731
    assert hist(out) == hist(straight)


@pytest.mark.slow
def test_two_processes_reach_the_same_quality(trained, tmp_path):
    task_dir, reference = trained
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "greenlm", *train_args(task_dir, out, "--epochs", "8")]
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["num_processes"] == 2
    single = json.loads((reference / "metrics.json").read_text())
    assert metrics["splits"]["dev"]["accuracy"] >= single["splits"]["dev"]["accuracy"] - 0.05


# --- bad input: one line, exit code 2, nothing half-written -------------------------------------------


def test_unknown_task(tmp_path):
    assert_clean_error(greenlm("train", "--task", "sst3", "--model", TINY, "--out", str(tmp_path / "o")), "sst3", "sst2")


def test_missing_task_folder(tmp_path):
    assert_clean_error(cli("train", "--task", str(tmp_path / "nope/"), "--model", TINY, "--out", str(tmp_path / "o")))


def test_wrong_column(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "train.tsv").write_text("sentence\tstars\nok film\t1\nbad film\t0\n")
    (folder / "dev.tsv").write_text("sentence\tstars\nok\t1\n")
    assert_clean_error(cli("train", "--task", str(folder), "--model", TINY, "--out", str(tmp_path / "o")), "label")


def test_unknown_dev_label(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "train.tsv").write_text("text\tlabel\nok film\tpos\nbad film\tneg\n")
    (folder / "dev.tsv").write_text("text\tlabel\nfine\tmaybe\n")
    assert_clean_error(cli("train", "--task", str(folder), "--model", TINY, "--out", str(tmp_path / "o")), "maybe")


def test_non_utf8(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "train.tsv").write_bytes(b"text\tlabel\nok film\tpos\nbad \xff film\tneg\n")
    (folder / "dev.tsv").write_text("text\tlabel\nfine\tpos\n")
    assert_clean_error(cli("train", "--task", str(folder), "--model", TINY, "--out", str(tmp_path / "o")), "UTF-8")


def test_model_folder_without_weights(tmp_path, trained):
    _, model = trained
    folder = tmp_path / "noweights"
    folder.mkdir()
    (folder / "config.json").write_text((model / "config.json").read_text())
    assert_clean_error(cli("eval", str(folder), "--task", "sst2"), "no weights")


def test_pickle_only_weights_are_refused_unless_allowed(tmp_path, trained):
    task_dir, model = trained
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_text((model / name).read_text())
    torch.save(load_file(model / "model.safetensors"), folder / "pytorch_model.bin")
    assert_clean_error(cli("eval", str(folder), "--task", str(task_dir)), "pickle", "--allow-pickle")
    allowed = cli("eval", str(folder), "--task", str(task_dir), "--allow-pickle", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["accuracy"] >= 0.9


def test_max_length_above_positions(tmp_path, trained):
    task_dir, _ = trained
    result = cli("train", "--task", str(task_dir), "--model", "tiny:positions=64", "--max-length", "100",
                     "--out", str(tmp_path / "o"))
    assert_clean_error(result, "--max-length", "64")
    assert not (tmp_path / "o").exists()


def test_output_folder_holding_a_different_run(trained):
    task_dir, out = trained
    before = (out / "model.safetensors").read_bytes()
    assert_clean_error(cli(*train_args(task_dir, out, "--seed", "7")), "different run", "seed")
    assert (out / "model.safetensors").read_bytes() == before


def test_output_folder_with_unrelated_files(tmp_path, trained):
    task_dir, _ = trained
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_clean_error(cli(*train_args(task_dir, out)), "not empty")
    assert (out / "notes.txt").read_text() == "mine"


def test_hub_id_without_internet(tmp_path):
    result = greenlm("train", "--task", "rte", "--model", "someone/no-such-model", "--out", str(tmp_path / "o"))
    assert_clean_error(result, "someone/no-such-model", "minilm")


def test_predict_non_utf8_input(tmp_path, trained):
    _, model = trained
    bad = tmp_path / "in.txt"
    bad.write_bytes(b"fine film\n\xfe\xff broken\n")
    assert_clean_error(cli("predict", str(model), str(bad)), "UTF-8")
