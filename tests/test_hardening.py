"""Hostile input and faults (issue 19): each ends in one line and exit code 2, nothing half-written or lost.

Property-based tests (hypothesis) feed the parsers and the numeric settings arbitrary input: the only
acceptable outcomes are a result or a ``GreenlmError``. Fault tests break what a user's machine can break:
damaged state files, a full disk (a small tmpfs, where this machine lets the tests mount one), a read-only
target, Ctrl-C, a FIFO where a file belongs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenlm.common import GreenlmError

TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "GREENLM_HOME": str(tmp_path / "home"), "PYTHONWARNINGS": "ignore",
            "OMP_NUM_THREADS": "1"}


def _greenlm(tmp_path: Path, *args: str, timeout: float = 300, stdin: bytes | None = None):
    return subprocess.run([sys.executable, "-m", "greenlm", *args], capture_output=True, env=_env(tmp_path),
                          cwd=tmp_path, timeout=timeout, input=stdin)


def _one_line_exit_2(result) -> str:
    err = result.stderr.decode() if isinstance(result.stderr, bytes) else result.stderr
    lines = [line for line in err.splitlines() if line.startswith("greenlm: error:")]
    assert result.returncode == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---- numbers: every setting of every method ---------------------------------------------------------------


def _config_classes():
    from greenlm.compress.convert_attention_config import ConvertAttentionConfig
    from greenlm.compress.distill_config import DistillConfig
    from greenlm.compress.early_exit_config import EarlyExitConfig
    from greenlm.compress.prune_config import PruneConfig
    from greenlm.compress.quantize_config import QuantizeConfig
    from greenlm.pipeline.finetune_config import FinetuneStageConfig
    from greenlm.pretrain.config import PretrainConfig
    from greenlm.train.config import TrainConfig

    return [TrainConfig, FinetuneStageConfig, DistillConfig, PruneConfig, QuantizeConfig, EarlyExitConfig,
            ConvertAttentionConfig, PretrainConfig]


def _numeric_fields(kind: type):
    out = []
    for cls in _config_classes():
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            if type(default) is kind:
                out.append((cls, f.name))
    return out


@FAST
@given(field=st.sampled_from(_numeric_fields(float)), value=st.sampled_from([math.inf, -math.inf, math.nan]))
def test_no_setting_accepts_a_non_finite_number(field, value):
    cls, name = field
    with pytest.raises(GreenlmError, match=f"'{name}'.*finite"):
        cls(**{name: value})


@FAST
@given(value=st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)))
def test_seeds_outside_what_the_generators_take_are_refused(value):
    for cls in _config_classes():
        with pytest.raises(GreenlmError, match="'seed'"):
            cls(seed=value)


@FAST
@given(text=st.text(max_size=60))
def test_tiny_spec_parser_gives_a_spec_or_one_error(text):
    from greenlm.models.tiny import TinySpec

    try:
        spec = TinySpec.parse("tiny:" + text)
    except GreenlmError:
        return
    assert spec.parameter_estimate() <= 500_000_000 and spec.hidden % spec.heads == 0


def test_a_huge_tiny_model_is_refused_before_it_allocates():
    from greenlm.models.tiny import TinySpec

    with pytest.raises(GreenlmError, match="at most 4096"):
        TinySpec.parse("tiny:hidden=65536")
    with pytest.raises(GreenlmError, match="parameters"):
        TinySpec.parse("tiny:layers=48,hidden=4096,heads=64,ffn=16384")


# ---- readers and parsers ---------------------------------------------------------------------------------


@FAST
@given(data=st.binary(max_size=400), suffix=st.sampled_from(["tsv", "csv", "jsonl", "tsv.gz"]))
def test_data_file_reader_gives_a_table_or_one_error(tmp_path, data, suffix):
    from greenlm.data.readers import read_table

    path = tmp_path / f"f.{suffix}"
    path.write_bytes(data)
    try:
        table = read_table(path)
    except GreenlmError as err:
        assert "\n" not in str(err)
        return
    assert len(table) >= 1


def _load_task_file(path: Path):
    from greenlm.data import load_task

    return load_task(str(path))


def _load_recipe_file(path: Path):
    from greenlm.pipeline.recipes import load_recipe

    return load_recipe(str(path))


@FAST
@given(text=st.text(max_size=300), parse=st.sampled_from([_load_task_file, _load_recipe_file]))
def test_task_file_and_recipe_parsers_give_a_result_or_one_error(tmp_path, text, parse):
    path = tmp_path / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        parse(path)
    except GreenlmError as err:
        assert "\n" not in str(err)


def test_yaml_alias_bomb_and_deep_nesting_are_refused_quickly(tmp_path):
    from greenlm.pipeline.recipes import load_recipe

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\nname: bomb\n")
    (tmp_path / "deep.yaml").write_text("name: " + "[" * 3000 + "]" * 3000 + "\n")
    started = time.perf_counter()
    with pytest.raises(GreenlmError, match="expands to more than"):
        load_recipe(str(tmp_path / "bomb.yaml"))
    with pytest.raises(GreenlmError, match="nested"):
        load_recipe(str(tmp_path / "deep.yaml"))
    assert time.perf_counter() - started < 10


def test_only_regular_files_are_read(tmp_path):
    from greenlm.data.readers import read_table

    fifo = tmp_path / "train.tsv"
    os.mkfifo(fifo)
    with pytest.raises(GreenlmError, match=r"pipe \(FIFO\)"):
        read_table(fifo)  # would block forever if opened
    (tmp_path / "zero.tsv").symlink_to("/dev/zero")
    with pytest.raises(GreenlmError, match="is a device"):
        read_table(tmp_path / "zero.tsv")  # would never end if read


# ---- model folders ---------------------------------------------------------------------------------------


def _saved_tiny(folder: Path) -> Path:
    from greenlm.models.loading import save_classifier
    from greenlm.models.tiny import TinySpec, build_tiny_classifier

    from conftest import toy_split

    model, tokenizer = build_tiny_classifier(TinySpec.parse(TINY), ["neg", "pos"], toy_split(64, 0).text_a, seed=0)
    return save_classifier(model, tokenizer, folder)


def test_a_safetensors_index_naming_pickle_shards_is_refused(tmp_path):
    from greenlm.models import load_classifier

    folder = _saved_tiny(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"bert.embeddings.word_embeddings.weight": "pytorch_model-00001-of-00001.bin"}}))
    (folder / "pytorch_model-00001-of-00001.bin").write_bytes(b"not loaded")
    with pytest.raises(GreenlmError, match="pickle shards"):
        load_classifier(str(folder))


def test_plain_transformers_refuses_an_early_exit_folder_that_greenlm_loads(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from greenlm.models import load_classifier
    from greenlm.models.early_exit import EarlyExitClassifier
    from greenlm.models.exit_folder import save_early_exit
    from greenlm.models.loading import mark_format
    from greenlm.models.tiny import TinySpec, build_tiny_classifier

    from conftest import toy_split

    backbone, tokenizer = build_tiny_classifier(TinySpec.parse(TINY), ["neg", "pos"], toy_split(64, 0).text_a, 0)
    save_early_exit(EarlyExitClassifier(backbone, tokenizer=tokenizer), tokenizer, tmp_path / "ee")
    config = json.loads((tmp_path / "ee" / "config.json").read_text())
    assert config["model_type"] == "greenlm_early_exit" and config["greenlm"]["base_model_type"] == "bert"
    with pytest.raises((ValueError, KeyError, OSError), match="greenlm_early_exit"):
        AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "ee"))
    assert isinstance(load_classifier(str(tmp_path / "ee")).model, EarlyExitClassifier)
    # the other rewritten formats get the same treatment; a plain folder is left alone
    for fmt in ("pruned", "linear_attention"):
        marked = mark_format({"model_type": "bert", "greenlm": {"format": fmt}})
        assert marked["model_type"] == f"greenlm_{fmt}" and marked["greenlm"]["base_model_type"] == "bert"
    assert mark_format({"model_type": "bert"}) == {"model_type": "bert"}


def test_flops_and_parameters_read_a_marked_folder(tmp_path):
    from greenlm.measure import count_params
    from greenlm.models.loading import mark_format_file

    folder = _saved_tiny(tmp_path / "m")
    before = count_params(str(folder / "config.json"))["total"]
    config = json.loads((folder / "config.json").read_text())
    config["greenlm"] = {"format": "pruned"}
    (folder / "config.json").write_text(json.dumps(config))
    mark_format_file(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "greenlm_pruned"
    assert count_params(str(folder / "config.json"))["total"] == before


@pytest.mark.parametrize("damage", ["config_list", "truncated_weights"])
def test_damaged_model_folder_is_one_line(tmp_path, damage):
    from greenlm.models import load_classifier

    folder = _saved_tiny(tmp_path / "m")
    if damage == "config_list":
        (folder / "config.json").write_text("[1, 2]")
        match = "config.json is damaged"
    else:
        with open(folder / "model.safetensors", "r+b") as f:
            f.truncate(100)
        match = "could not load model"
    with pytest.raises(GreenlmError, match=match):
        load_classifier(str(folder))


def test_damaged_checkpoint_is_refused_in_one_line(tmp_path):
    import torch

    from greenlm.train.checkpoint import load_checkpoint, save_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    folder = tmp_path / "checkpoint"
    save_checkpoint(folder, model=model, optimizer=optimizer, scheduler=scheduler, extras=None, state={"step": 1},
                    rng_states=[{}])
    kwargs = dict(model=model, optimizer=optimizer, scheduler=scheduler, extras=None, rank=0)
    with open(folder / "optimizer.pt", "r+b") as f:
        f.truncate(50)
    with pytest.raises(GreenlmError, match=f"checkpoint in {folder} is damaged.*delete"):
        load_checkpoint(folder, **kwargs)
    (folder / "state.json").write_text("{no")
    with pytest.raises(GreenlmError, match="state.json is damaged"):
        load_checkpoint(folder, **kwargs)


# ---- the command line ------------------------------------------------------------------------------------


def test_usage_errors_and_huge_values_are_one_short_line(tmp_path):
    line = _one_line_exit_2(_greenlm(tmp_path, "train", "--no-such-option"))
    assert "No such option" in line and "greenlm train --help" in line
    line = _one_line_exit_2(_greenlm(tmp_path, "eval", "x" * 20_000, "--task", "sst2"))
    assert len(line) <= 650
    started = time.perf_counter()  # a missing model is named before the machine's speed is measured
    assert "does not exist" in _one_line_exit_2(_greenlm(tmp_path, "bench", str(tmp_path / "nosuch"), "--task", "sst2"))
    assert time.perf_counter() - started < 30


def test_non_utf8_stdin_is_one_line(tmp_path):
    folder = _saved_tiny(tmp_path / "m")
    line = _one_line_exit_2(_greenlm(tmp_path, "predict", str(folder), "-", stdin=b"\xff\xfe not utf-8\n"))
    assert "UTF-8" in line


def test_diverging_training_writes_no_model(tmp_path, toy_task_dir):
    out = tmp_path / "m"
    result = _greenlm(tmp_path, "train", "--task", str(toy_task_dir), "--model", TINY, "--epochs", "1",
                      "--learning-rate", "1e30", "--out", str(out), "--no-progress")
    assert "diverged at step" in _one_line_exit_2(result)
    assert not out.exists()
    assert "finite" in _one_line_exit_2(_greenlm(tmp_path, "train", "--task", str(toy_task_dir), "--model", TINY,
                                                 "--epochs", "inf", "--out", str(out)))


def test_ctrl_c_says_how_to_resume(tmp_path, toy_task_dir):
    proc = subprocess.Popen([sys.executable, "-m", "greenlm", "train", "--task", str(toy_task_dir), "--model", TINY,
                             "--epochs", "5000", "--out", str(tmp_path / "m"), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path), cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(8)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted; run the same command again to resume" in err.decode()


def test_measure_keeps_the_exit_code_and_the_record_when_its_files_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _greenlm(tmp_path, "measure", "--ledger", str(blocker / "ledger.sqlite"), "--out", str(blocker / "x.json"),
                      "--", sys.executable, "-c", "raise SystemExit(3)")
    err = result.stderr.decode()
    assert result.returncode == 3, err
    assert f"could not write {blocker / 'x.json'}" in err
    saved = [line for line in err.splitlines() if "this record was saved to" in line]
    assert saved, err
    record_file = Path(saved[0].split("this record was saved to ")[1].split(" (")[0])
    assert json.loads(record_file.read_text())["status"] == "exit 3"
    record_file.unlink()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 300 KiB file system: training fills it while writing its checkpoint."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the full-disk test runs where it can")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_full_disk_is_one_line_and_leaves_no_model(tmp_path, toy_task_dir, small_tmpfs):
    out = small_tmpfs / "m"
    result = _greenlm(tmp_path, "train", "--task", str(toy_task_dir), "--model", TINY, "--epochs", "1",
                      "--out", str(out), "--no-progress")
    assert "could not write a file" in _one_line_exit_2(result)
    assert not out.exists()


def test_read_only_target_is_one_line(tmp_path, toy_task_dir):
    target = tmp_path / "ro"
    target.mkdir()
    mounted = False
    if os.geteuid() == 0:  # root writes through permissions: a read-only mount, where the machine allows one
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(target)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"root ignores permissions and a read-only mount failed: {done.stderr.decode().strip()}")
        mounted = True
    else:
        target.chmod(0o555)
    try:
        result = _greenlm(tmp_path, "train", "--task", str(toy_task_dir), "--model", TINY, "--epochs", "1",
                          "--out", str(target / "m"))
        line = _one_line_exit_2(result)
        assert "cannot write" in line and ("Read-only" in line or "ermission" in line), line
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], capture_output=True)
        else:
            target.chmod(0o755)
