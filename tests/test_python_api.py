"""The Python API (greenlm.api): the examples of docs/python-api.md run, results print, settings are checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import greenlm
from greenlm.common import GreenlmError

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"


def doc_blocks() -> list[str]:
    """The plain ```python blocks of the doc (```python no-run blocks are left out)."""
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread, and lose much when other processes share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_doc_examples_run(tmp_path, monkeypatch, one_thread):
    import dataclasses

    from greenlm.data import load as data_load

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Every example as written, on rt_polarity's own rows but fewer of them: 1,000 train, 200 dev, 200 test of its
    # 8,530 / 1,066 / 1,066 (test_data_cli checks those). The examples train on 200-300 rows either way; the rest was
    # evaluation of every model on all of dev and test, and most of this test's minutes.
    real_load_bundled = data_load.load_bundled
    rows = {"train": 1000, "dev": 200, "test": 200}

    def fewer_rows(name, **options):
        task = real_load_bundled(name, **options)
        return dataclasses.replace(task, splits={split: data.subset(rows.get(split, len(data)))
                                                 for split, data in task.splits.items()})

    monkeypatch.setattr(data_load, "load_bundled", fewer_rows)
    blocks = doc_blocks()
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "python_api_doc"}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{DOC.name} (python block {number})", "exec"), namespace)  # noqa: S102 (our own doc)
    assert namespace["teacher"].folder == Path("runs/rt_polarity-tiny-layers-2-hidden-32-heads-4-ffn-37-vocab-99")
    assert namespace["small"].folder == Path(f"{namespace['student'].folder}-quantize")
    for name in ("teacher", "student", "small", "fast", "pruned"):
        result = namespace[name]
        assert result.status == "ran" and (result.folder / "stage.json").is_file(), name
    assert namespace["again"].status == "reused"
    assert (tmp_path / "runs" / "tiny" / "report.md").is_file()
    assert [s.name for s in namespace["result"].stages] == ["finetune", "quantize"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A tiny teacher fine-tuned on the toy task, and a student distilled from it (once for the module)."""
    from conftest import make_toy_task

    root = tmp_path_factory.mktemp("api")
    task = make_toy_task(128, 64)
    teacher = greenlm.finetune(TINY, task=task, out=root / "teacher", epochs=2, learning_rate=3e-3, max_length=32)
    student = greenlm.distill(teacher, task=task, out=root / "student", student="1x32", epochs=1, max_length=32)
    return task, teacher, student


def test_results_print_and_show_in_notebooks(chain):
    from greenlm.pipeline.runner import RunOutcome

    _, teacher, student = chain
    assert teacher.status == "ran" and student.status == "ran"
    for result in (teacher, student):
        assert isinstance(result.accuracy, float)
        assert str(result.folder) in repr(result)
        assert f"{result.accuracy:.4f}" in result._repr_html_()
    stages = [teacher, student]
    run = greenlm.RunResult(RunOutcome(teacher.folder.parent, stages, None, 1.0))
    text = repr(run)
    assert "student" in text and "distill" in text and f"{student.accuracy:.4f}" in text
    html = run._repr_html_()
    assert html.count("<tr>") == 3 and f"{student.accuracy:.4f}" in html and "kWh" in html
    assert run["student"].folder == student.folder


def test_same_call_again_is_reused(chain):
    task, teacher, student = chain
    again = greenlm.distill(teacher, task=task, out=student.folder, student="1x32", epochs=1, max_length=32)
    assert again.status == "reused" and again.reused and again.folder == student.folder
    assert again.accuracy == student.accuracy


def test_unknown_setting_names_the_closest(chain):
    task, teacher, _ = chain
    with pytest.raises(GreenlmError) as err:
        greenlm.distill(teacher, task=task, studnet="1x32")
    message = str(err.value)
    assert "studnet" in message and "did you mean 'student'" in message and "\n" not in message
    with pytest.raises(GreenlmError, match="did you mean 'train_subset'"):
        greenlm.finetune(TINY, task=task, train_subsett=10)
    with pytest.raises(GreenlmError, match=r"greenlm.quantize\(\).*scheme"):
        greenlm.quantize(teacher, task=task, scheme="int4")


def test_config_or_settings_not_both(chain):
    from greenlm.compress.distill import DistillConfig

    task, teacher, student = chain
    with pytest.raises(GreenlmError, match="not both"):
        greenlm.distill(teacher, task=task, config=DistillConfig(student="1x32"), epochs=1)
    # a config object with the same values is the same stage (epochs=1 here, 1.0 through the settings)
    same = greenlm.distill(teacher, task=task, out=student.folder,
                           config=DistillConfig(student="1x32", epochs=1, max_length=32))
    assert same.status == "reused" and same.folder == student.folder


def test_run_set_values_keep_their_types():
    """set= goes through --set's YAML parsing: a value written as YAML comes back as it was."""
    import yaml

    from greenlm.api import _yaml

    for value in (2, 3e-3, 1e-05, None, True, "4x312", "null", "2,4", [2, 4], "a: b"):
        assert yaml.safe_load(_yaml(value)) == value


def test_import_greenlm_stays_light():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import greenlm; greenlm.__dir__()"],
                         capture_output=True, text=True, check=True).stderr
    assert "torch" not in out and "greenlm.api" not in out
    assert {"finetune", "distill", "prune", "quantize", "early_exit", "run"} <= set(dir(greenlm))
