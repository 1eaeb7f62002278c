"""The classes of defect the hostile rerun (benchmarks/hostile_cli.py, issue 19) found: one fast test per class.

Each asserts what a person sees: one line (a ``GreenlmError``, or ``greenlm: error:`` with exit code 2), and nothing
written, replaced or lost.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from greenlm.common import GreenlmError

TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"


def _greenlm(tmp_path: Path, *args: str, timeout: float = 120, env: dict | None = None):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "GREENLM_HOME": str(tmp_path / "home"),
                "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", "greenlm", *args], capture_output=True, text=True, env=full_env,
                          cwd=tmp_path, timeout=timeout)


def _one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("greenlm: error:")]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def _saved_tiny(folder: Path) -> Path:
    from greenlm.models.loading import save_classifier
    from greenlm.models.tiny import TinySpec, build_tiny_classifier

    from conftest import toy_split

    model, tokenizer = build_tiny_classifier(TinySpec.parse(TINY), ["neg", "pos"], toy_split(64, 0).text_a, seed=0)
    return save_classifier(model, tokenizer, folder)


# ---- an output path that names nothing, or names a file where a folder goes --------------------------------------


@pytest.mark.parametrize("given", ["", ".", "..", "/"])
def test_an_output_path_naming_nothing_is_refused(tmp_path, given):
    from greenlm.common import atomic_dir, atomic_write_text
    from greenlm.common.workdir import folder_lock

    os.chdir(tmp_path)
    for write in (lambda: atomic_write_text(given, "x"), lambda: atomic_dir(given).__enter__(),
                  lambda: folder_lock(Path(given), "test").__enter__()):
        with pytest.raises(GreenlmError, match="names no file or folder"):
            write()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_file_where_a_folder_goes_is_kept_and_refused(tmp_path):
    from greenlm.common import atomic_dir, move_into_place

    target = tmp_path / "out"
    target.write_text("keep me")
    with pytest.raises(GreenlmError, match="is a file; a folder goes there"):
        with atomic_dir(target) as folder:
            (folder / "model.onnx").write_text("new")
    built = tmp_path / "built"
    built.mkdir()
    with pytest.raises(GreenlmError, match="is a file"):
        move_into_place(built, target)
    assert target.read_text() == "keep me" and built.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["built", "out"]  # no temporary or .old left


def test_empty_run_and_sweep_names_are_refused_not_replaced(tmp_path):
    from greenlm.pipeline.recipes import load_recipe

    with pytest.raises(GreenlmError, match="plain folder name"):
        load_recipe("quick", name="")


# ---- a model that only runs (an ONNX export) given where one is trained ---------------------------------------


def test_an_onnx_export_is_refused_where_a_model_is_trained(tmp_path):
    from greenlm.models import load_classifier
    from greenlm.runtime.engine import export_folder

    folder = _saved_tiny(tmp_path / "m")
    export_folder(str(folder), tmp_path / "onnx", optimize=False)
    assert load_classifier(str(tmp_path / "onnx")).labels == ["neg", "pos"]  # runs: eval, predict, bench
    with pytest.raises(GreenlmError, match="exported ONNX model.*cannot be trained"):
        load_classifier(str(tmp_path / "onnx"), trainable=True)
    assert load_classifier(str(folder), trainable=True).model.training is not None


# ---- a folder whose weights do not fill its architecture ------------------------------------------------------


@pytest.mark.parametrize("damage", ["other_model_type", "missing_layer"])
def test_weights_that_do_not_fit_the_config_are_refused_not_randomised(tmp_path, damage):
    from safetensors.torch import load_file, save_file

    from greenlm.models import load_classifier

    folder = _saved_tiny(tmp_path / "m")
    if damage == "other_model_type":
        config = json.loads((folder / "config.json").read_text())
        config.update({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2, "n_embd": 32})
        (folder / "config.json").write_text(json.dumps(config))
    else:
        state = load_file(folder / "model.safetensors")
        save_file({k: v for k, v in state.items() if "encoder.layer.1." not in k}, folder / "model.safetensors",
                  metadata={"format": "pt"})
    with pytest.raises(GreenlmError, match="not in its files.*would be random"):
        load_classifier(str(folder))
    # a new head for other labels is expected, and allowed
    assert load_classifier(str(_saved_tiny(tmp_path / "ok")), labels=["a", "b", "c"]).labels == ["a", "b", "c"]


# ---- numbers that are not finite, or overflow ------------------------------------------------------------------


@pytest.mark.parametrize("key,value", [("pue", "inf"), ("pue", "1e400"), ("usd_per_hour", "1e999"),
                                       ("usd_per_hour", "-inf")])
def test_settings_refuse_infinite_numbers(key, value):
    from greenlm.measure.settings import check_value

    with pytest.raises(GreenlmError, match=key):
        check_value(key, value, "GREENLM_TEST")


def test_settings_file_with_an_overflowing_number_is_refused(tmp_path, monkeypatch):
    from greenlm.measure.settings import machine_settings

    (tmp_path / "settings.toml").write_text("pue = 1e400\n")
    monkeypatch.setenv("GREENLM_SETTINGS", str(tmp_path / "settings.toml"))
    with pytest.raises(GreenlmError, match="pue must be"):
        machine_settings()


def test_calc_refuses_results_that_overflow_and_ledger_dates_before_year_one():
    from greenlm.measure.calc import price_by_hand
    from greenlm.measure.ledger import parse_since

    with pytest.raises(GreenlmError, match="energy .* too large"):
        price_by_hand(hours=1e200, watts=1e200, pue=1e200)
    with pytest.raises(GreenlmError, match="cost .* too large"):
        price_by_hand(hours=1e300, watts=1, usd_per_hour=1e300)
    with pytest.raises(GreenlmError, match="before the year 1"):
        parse_since("99999999999d")
    with pytest.raises(GreenlmError, match="not a date"):
        parse_since("\u0663d")  # an Arabic-Indic digit is not a count of days


# ---- settings with no range or choice check, and sizes without a bound ----------------------------------------


@pytest.mark.parametrize("setting", [{"select_metric": "loss"}, {"eval_batch_size": 0},
                                     {"length_group_factor": -1}])
def test_training_settings_are_all_checked(setting):
    from greenlm.train.config import TrainConfig

    with pytest.raises(GreenlmError, match=next(iter(setting))):
        TrainConfig(**setting)


@pytest.mark.parametrize("spec,match", [("tiny:vocab=1", "at least 16"), ("tiny:positions=2", "at least 8"),
                                        ("tiny:attention=abc,k=999999999", "from 1 to"),
                                        ("tiny:attention=performer,features=99999999", "from 1 to"),
                                        ("tiny:attention=rfa,seed=-1", "from 0 to")])
def test_model_shapes_are_bounded_both_ways(spec, match):
    from greenlm.models.tiny import TinySpec

    started = time.perf_counter()
    with pytest.raises(GreenlmError, match=match):
        TinySpec.parse(spec)
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("setting", ["max_examples", "threads", "max_length"])
def test_bench_settings_refuse_zero_instead_of_meaning_all(setting):
    from greenlm.runtime.bench_config import BenchConfig

    with pytest.raises(GreenlmError, match=setting):
        BenchConfig(**{setting: 0})


@pytest.mark.parametrize("args", [["eval", "m", "--max-length", "0"], ["predict", "m", "--batch-size", "0"],
                                  ["export", "m", "--out", "o", "--max-length", "0"],
                                  ["tasks", "check", "sst2", "--max-length", "0"],
                                  ["bench", "m", "--threads", "0"], ["flops", "m", "--seq-len", "8", "--num-labels", "0"]])
def test_counts_on_the_command_line_refuse_zero(tmp_path, args):
    line = _one_line(_greenlm(tmp_path, *args, timeout=60))
    # click's range message, or greenlm's own for options that also take a word (--max-length auto)
    assert ("greater than or equal to 1" in line or "not in the range x>=1" in line
            or re.search(r"--[a-z-]+ must be >= [12]\b", line)), line


# ---- damaged or odd input files ---------------------------------------------------------------------------------


def test_damaged_training_dynamics_are_one_line_and_fast(tmp_path):
    from greenlm.datamap.dynamics_io import read_dynamics

    folder = tmp_path / "m" / "training_dynamics"
    folder.mkdir(parents=True)
    (folder / "epoch_0.jsonl").write_text('{"guid": ')
    with pytest.raises(GreenlmError, match="no record points"):
        read_dynamics(tmp_path / "m")
    (folder / "dynamics_epoch_99999999999.jsonl").write_text("")
    started = time.perf_counter()
    with pytest.raises(GreenlmError, match=r"lack record point\(s\) \[0, 1, 2, 3, 4\]"):
        read_dynamics(tmp_path / "m")
    assert time.perf_counter() - started < 1


def test_label_names_must_name_every_label(tmp_path):
    from greenlm.data import load_task

    from conftest import write_toy_task_files

    write_toy_task_files(tmp_path / "t")
    for names in (["a"], ["a", "b", "c"]):
        (tmp_path / "task.yaml").write_text(json.dumps({"train": "t/train.tsv", "dev": "t/dev.tsv",
                                                        "label_names": names}))
        with pytest.raises(GreenlmError, match=f"{len(names)} name\\(s\\) for 2 label"):
            load_task(str(tmp_path / "task.yaml"))


def test_a_byte_order_mark_is_not_an_error(tmp_path, monkeypatch):
    from greenlm.common import read_json
    from greenlm.data import load_task
    from greenlm.measure.settings import machine_settings
    from greenlm.pipeline.recipes import load_recipe, bundled_recipe_text

    from conftest import write_toy_task_files

    bom = "\ufeff"
    write_toy_task_files(tmp_path / "t")
    (tmp_path / "task.json").write_text(bom + json.dumps({"train": "t/train.tsv", "dev": "t/dev.tsv"}))
    assert load_task(str(tmp_path / "task.json")).labels == ("neg", "pos")
    (tmp_path / "r.yaml").write_text(bom + bundled_recipe_text("quick"))
    assert load_recipe(str(tmp_path / "r.yaml")).name == "quick"
    (tmp_path / "c.json").write_text(bom + '{"a": 1}')
    assert read_json(tmp_path / "c.json") == {"a": 1}
    (tmp_path / "settings.toml").write_text(bom + "pue = 1.3\n")
    monkeypatch.setenv("GREENLM_SETTINGS", str(tmp_path / "settings.toml"))
    assert machine_settings()["pue"].value == 1.3


# ---- a report written to a new folder on a full disk -------------------------------------------------------------


def test_a_failed_report_leaves_no_half_written_folder(tmp_path, monkeypatch):
    import errno

    from greenlm.report import regenerate

    from _report_runs import make_run

    run_dir = make_run(tmp_path / "runs")
    real = regenerate.atomic_write_text

    def full_disk(path, text):  # report.json (atomic_write_json) is written; report.tex finds the disk full
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(regenerate, "atomic_write_text", full_disk)
    with pytest.raises(GreenlmError, match="No space left"):
        regenerate.generate_report(run_dir, ("json", "tex"), tmp_path / "out", on_note=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # neither the folder nor its temporary
    monkeypatch.setattr(regenerate, "atomic_write_text", real)
    files = regenerate.generate_report(run_dir, ("json", "tex"), tmp_path / "out", on_note=lambda _: None).files
    assert sorted(p.name for p in files) == ["report.json", "report.tex"] and all(p.is_file() for p in files)
    assert all(p.parent == tmp_path / "out" for p in files)


# ---- greenlm measure with nothing to run --------------------------------------------------------------------------


def test_measure_without_a_command_is_one_error_line(tmp_path):
    assert "no command given" in _one_line(_greenlm(tmp_path, "measure", "--no-ledger"))


# ---- sizes that would allocate without bound ---------------------------------------------------------------------


def test_typed_sizes_are_bounded_before_anything_is_allocated():
    from types import SimpleNamespace

    from greenlm.compress.convert_attention_config import ConvertAttentionConfig
    from greenlm.compress.distill_config import DistillConfig
    from greenlm.models.students import parse_student_shape
    from greenlm.pretrain.config import PretrainConfig
    from greenlm.runtime.attention_bench import LengthBenchConfig

    teacher = SimpleNamespace(hidden_size=384, num_attention_heads=12, intermediate_size=1536, vocab_size=30522,
                              max_position_embeddings=512)
    started = time.perf_counter()
    attempts = [
        (lambda: parse_student_shape("2x9999999", teacher), "hidden 9,999,999 is above"),
        (lambda: parse_student_shape("48x4096x64x16384", teacher), "parameters"),
        (lambda: LengthBenchConfig(seq_lens=(1_000_000_000,)), "positions 1,000,000,000 is above"),
        (lambda: LengthBenchConfig(seq_lens=(16,), shape="48x1000000"), "hidden 1,000,000 is above"),
        (lambda: DistillConfig(augment="embedding", augment_copies=1_000_000_000), "augment_copies must be from 1 to"),
        (lambda: ConvertAttentionConfig(max_positions=1_000_000_000), "max_positions: positions"),
        (lambda: PretrainConfig(vocab_size=1_000_000_000), "vocab 1,000,000,000 is above"),
    ]
    for attempt, match in attempts:
        with pytest.raises(GreenlmError, match=match):
            attempt()
    assert parse_student_shape("4x312", teacher).hidden == 312  # a real shape still passes
    # Refused before allocating: any of these sizes built would take minutes or exhaust memory. (The bound is loose:
    # lazy imports inside the checks took 2.5 s on a 2-core machine shared with a training.)
    assert time.perf_counter() - started < 15


def test_memory_the_allocator_refuses_is_one_line():
    import torch

    from greenlm.cli.main import _OUT_OF_MEMORY, _out_of_memory

    with pytest.raises(RuntimeError) as refused:
        torch.empty(2**60, dtype=torch.uint8)  # an exabyte: the CPU allocator says no at once
    assert _out_of_memory(refused.value) and "too large" in _OUT_OF_MEMORY
    assert not _out_of_memory(RuntimeError("shape mismatch"))
