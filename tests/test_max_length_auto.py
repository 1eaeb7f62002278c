"""Issue 21: ``--max-length auto`` on every command a max length applies to (one resolver,
``greenlm.models.input_max_length``), and truncation counted per split in the distill and prune stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from greenlm.common import GreenlmError
from greenlm.common.numbers import max_length_setting
from greenlm.compress.convert_attention_config import ConvertAttentionConfig
from greenlm.compress.distill import DistillConfig
from greenlm.compress.early_exit_config import EarlyExitConfig
from greenlm.compress.prune import PruneConfig
from greenlm.compress.quantize_config import QuantizeConfig
from greenlm.data import covering_length, token_lengths
from greenlm.models import input_max_length, load_classifier
from greenlm.stage import StageContext
from greenlm.train import TrainConfig

from conftest import finetune_folder, make_toy_task, one_error_line, stage_runner

TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny model fine-tuned on the toy task at 32 tokens (the toy rows have 5 to 15)."""
    folder = tmp_path_factory.mktemp("auto") / "teacher"
    finetune_folder(make_toy_task(), TINY, folder, TrainConfig(epochs=1, batch_size=16, learning_rate=3e-3,
                                                               precision="fp32"), max_length=32)
    return folder


def lengths_of(teacher, split_name: str) -> list[int]:
    return token_lengths(make_toy_task().split(split_name), load_classifier(str(teacher)).tokenizer)


def greenlm(*args: str, cwd, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**ENV, "GREENLM_HOME": str(cwd / "home")}
    return subprocess.run([sys.executable, "-m", "greenlm", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          input=stdin, timeout=300)


# --- one setting, read the same way everywhere ---------------------------------------------------------------


def test_the_setting_is_a_number_auto_or_unset():
    assert max_length_setting("auto", 8) == "auto" and max_length_setting(" AUTO ", 8) == "auto"
    assert max_length_setting("64", 8) == 64 and max_length_setting(64, 8) == 64 and max_length_setting(None, 8) is None
    with pytest.raises(GreenlmError, match="max_length must be a number of tokens or 'auto', got 'lots'"):
        max_length_setting("lots", 8)
    with pytest.raises(GreenlmError, match="max_length must be >= 8"):
        max_length_setting("4", 8)
    for config in (DistillConfig, PruneConfig, QuantizeConfig, EarlyExitConfig, ConvertAttentionConfig):
        assert config(max_length="auto").max_length == "auto" and config(max_length="48").max_length == 48
        assert config().max_length is None
        with pytest.raises(GreenlmError, match="got 'lots'"):
            config(max_length="lots")


def test_auto_covers_most_rows_and_stays_within_the_positions(teacher):
    loaded = load_classifier(str(teacher))
    train = make_toy_task().split("train")
    lengths = token_lengths(train, loaded.tokenizer)
    notes = []
    chosen = input_max_length(loaded.model.config, loaded.tokenizer, "auto", train, notes.append)
    assert chosen == covering_length(lengths, 0.99) and 8 < chosen < 32
    assert notes == [f"max_length auto: {chosen} tokens covers"
                     f" {100 * sum(n <= chosen for n in lengths) / len(lengths):.1f}% of the 256 training rows"
                     " (aim: 99%)"]
    assert input_max_length(loaded.model.config, loaded.tokenizer, None, train) == 32  # what it was trained with
    assert input_max_length(loaded.model.config, loaded.tokenizer, 12, train) == 12
    with pytest.raises(GreenlmError, match=r"distill: max_length 600 is above what the model's positions allow"):
        input_max_length(loaded.model.config, loaded.tokenizer, 600, train, who="distill: max_length")
    capped = loaded.model.config
    capped.max_position_embeddings = 10
    assert input_max_length(capped, loaded.tokenizer, "auto", train, notes.append) == 10
    assert "(capped at the model's 10 positions)" in notes[-1]


def test_every_compression_stage_resolves_auto_from_the_training_rows(teacher, tmp_path):
    """distill, quantize, early exit and attention conversion ask their StageContext; prune asks the same resolver."""
    loaded = load_classifier(str(teacher))
    notes = []
    ctx = StageContext(method="quantize", task=make_toy_task(), source=str(teacher), work_dir=tmp_path,
                       on_note=notes.append)
    chosen = ctx.max_length(loaded.model, "auto", loaded.tokenizer)
    assert chosen == covering_length(lengths_of(teacher, "train"), 0.99)
    assert notes[0].startswith(f"max_length auto: {chosen} tokens covers") and ctx.notes == notes
    assert ctx.max_length(loaded.model, None) == 32


# --- distill and prune: one truncation line per split ------------------------------------------------------------


def test_distill_with_auto_counts_truncation_per_split(teacher, tmp_path):
    notes = []
    config = DistillConfig(student="1x16", epochs=1, batch_size=16, max_length="auto")
    metrics = stage_runner("distill")(teacher, make_toy_task(), config, tmp_path / "student", on_note=notes.append)
    chosen = covering_length(lengths_of(teacher, "train"), 0.99)
    assert metrics["distill"]["data"]["max_length"] == chosen
    assert json.loads((tmp_path / "student" / "config.json").read_text())["greenlm"]["max_length"] == chosen
    assert any(n.startswith(f"max_length auto: {chosen} tokens") for n in notes)
    assert set(metrics["truncation"]) == {"train", "dev"}
    for split, rows in (("train", 256), ("dev", 64)):
        cut = sum(n > chosen for n in lengths_of(teacher, split))
        assert metrics["truncation"][split] == {"rows": rows, "truncated": cut, "share": round(cut / rows, 6),
                                                "max_length": chosen}
        assert f"truncation: {split}: {cut:,} of {rows:,} rows" in "\n".join(notes)


def test_prune_counts_truncation_per_split_and_takes_auto(teacher, tmp_path):
    notes = []
    config = PruneConfig(head_sparsity=0.5, recovery="none", importance_examples=64, measure_speed=False,
                         max_length=9)
    metrics = stage_runner("prune")(teacher, make_toy_task(), config, tmp_path / "pruned", on_note=notes.append)
    cut = sum(n > 9 for n in lengths_of(teacher, "dev"))
    assert 0 < cut < 64  # the toy rows have 5 to 15 tokens: some are cut at 9
    assert metrics["truncation"]["dev"] == {"rows": 64, "truncated": cut, "share": round(cut / 64, 6), "max_length": 9}
    assert metrics["truncation"]["train"]["rows"] == 256
    assert f"truncation: dev: {cut} of 64 rows" in "\n".join(notes)

    notes.clear()
    config = PruneConfig(head_sparsity=0.5, recovery="none", importance_examples=64, measure_speed=False,
                         max_length="auto")
    metrics = stage_runner("prune")(teacher, make_toy_task(), config, tmp_path / "auto", on_note=notes.append)
    chosen = covering_length(lengths_of(teacher, "train"), 0.99)
    assert metrics["prune"]["max_length"] == chosen and metrics["truncation"]["train"]["max_length"] == chosen
    assert notes[0].startswith(f"max_length auto: {chosen} tokens")


# --- eval and predict: auto covers the rows they read --------------------------------------------------------------


def test_eval_and_predict_take_auto(teacher, toy_task_dir, tmp_path):
    evaluated = greenlm("eval", str(teacher), "--task", str(toy_task_dir), "--max-length", "auto", "--json",
                        "--no-progress", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    chosen = covering_length(lengths_of(teacher, "dev"), 0.99)
    assert f"note: max_length auto: {chosen} tokens" in evaluated.stderr and "of the 64 dev rows" in evaluated.stderr
    assert json.loads(evaluated.stdout)["truncation"]["max_length"] == chosen

    texts = make_toy_task().split("dev").text_a[:20]
    predicted = greenlm("predict", str(teacher), "-", "--max-length", "auto", "--no-progress", cwd=tmp_path,
                        stdin="\n".join(texts) + "\n")
    assert predicted.returncode == 0, predicted.stderr
    assert "max_length auto:" in predicted.stderr and "of the 20 input rows" in predicted.stderr
    assert len(predicted.stdout.strip().splitlines()) == 20

    for command in (("predict", str(teacher), "-"), ("eval", str(teacher), "--task", str(toy_task_dir)),
                    ("quantize", str(teacher), "--task", str(toy_task_dir), "--out", str(tmp_path / "q"))):
        line = one_error_line(greenlm(*command, "--max-length", "lots", cwd=tmp_path, stdin=""))
        assert "max-length must be a number of tokens or 'auto', got 'lots'" in line.replace("_", "-")
    assert not (tmp_path / "q").exists()
