"""The stage shell: identity and reuse, one resume mechanism, the lock, atomic folders, the price tag of attempts."""

from __future__ import annotations

import json

import pytest

from greenlm.common import GreenlmError
from greenlm.stage import METHODS, Method, run_stage
from greenlm.stage.workdir import folder_lock

import stage_fake_method as fake


@pytest.fixture
def method(monkeypatch):
    monkeypatch.setitem(METHODS, "fake", Method("fake", "stage_fake_method", "stage_fake_method:FakeConfig",
                                                 "a test method", input="spec"))
    fake.CALLS.clear()
    return fake


def stage(task, out, config=None, **kw):
    return run_stage("fake", "tiny", task, config or fake.FakeConfig(), out, ledger=False, on_note=lambda _: None, **kw)


def test_a_finished_folder_is_whole_and_reused(method, toy_task, tmp_path):
    out = tmp_path / "out"
    first = stage(toy_task, out)
    assert first.status == "ran" and (out / "model.txt").read_text() == "1"
    assert {"metrics.json", "pricetag.json", "stage.json", "README.md"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "fake" and metrics["fake"]["notes"] == ["fake method ran"]
    assert set(metrics["fake"]["cost"]["phases"]) == {"work"}
    assert not (tmp_path / ".out.work").exists()
    again = stage(toy_task, out)
    assert again.status == "reused" and len(method.CALLS) == 1  # not run again
    assert "reused" in repr(again) and "<table>" in again._repr_html_()


def test_a_folder_holding_another_run_is_refused(method, toy_task, tmp_path):
    out = tmp_path / "out"
    stage(toy_task, out)
    with pytest.raises(GreenlmError, match=r"already holds a different run \(differs in: settings.value\)"):
        stage(toy_task, out, fake.FakeConfig(value=2))
    assert (out / "model.txt").read_text() == "1"  # untouched
    replaced = stage(toy_task, out, fake.FakeConfig(value=2), replace=True)
    assert replaced.status == "ran" and (out / "model.txt").read_text() == "2"


def test_an_interrupted_stage_resumes_and_counts_both_attempts(method, toy_task, tmp_path):
    out, config = tmp_path / "out", fake.FakeConfig(stop_after_state=True)
    with pytest.raises(KeyboardInterrupt):
        stage(toy_task, out, config)
    assert not out.exists() and (tmp_path / ".out.work" / "state" / "state.txt").is_file()
    done = stage(toy_task, out, config)
    assert [c["resumed"] for c in method.CALLS] == [False, True]
    assert done.metrics["fake"]["resumed"] is True
    assert done.pricetag["meta"]["attempts"] == 2 and "2 attempts" in done.pricetag["warnings"][-1]


def test_state_left_by_other_settings_is_not_resumed(method, toy_task, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        stage(toy_task, out, fake.FakeConfig(stop_after_state=True))
    stage(toy_task, out, fake.FakeConfig(value=3))
    assert [c["resumed"] for c in method.CALLS] == [False, False]


def test_a_second_process_is_refused_while_the_first_holds_the_folder(method, toy_task, tmp_path):
    out = tmp_path / "out"
    with folder_lock(out, holder="greenlm fake --out out"):
        with pytest.raises(GreenlmError, match="is in use by greenlm fake --out out"):
            stage(toy_task, out)
    assert not out.exists() and not method.CALLS
    assert stage(toy_task, out).status == "ran"  # the lock is released with its holder


def test_folders_from_before_the_shell_and_strangers(method, toy_task, tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "greenlm_run.json").write_text("{}")
    with pytest.raises(GreenlmError, match="written by an earlier greenlm"):
        stage(toy_task, legacy)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(GreenlmError, match="not empty and holds no greenlm run"):
        stage(toy_task, stranger)
    (tmp_path / "file").write_text("x")
    with pytest.raises(GreenlmError, match="is a file"):
        stage(toy_task, tmp_path / "file")
    assert not method.CALLS


def test_the_wrong_config_type_is_a_programming_error(method, toy_task, tmp_path):
    from greenlm.compress.quantize_config import QuantizeConfig

    with pytest.raises(TypeError, match="fake takes a FakeConfig"):
        stage(toy_task, tmp_path / "out", QuantizeConfig())


def test_apply_runs_a_method_in_memory(toy_task):
    """The in-memory shape: (method, model, task, config) -> a model in memory with its metrics and price tag."""
    from greenlm.compress.quantize_config import QuantizeConfig
    from greenlm.models import TinySpec, build_tiny_classifier
    from greenlm.stage.inmemory import apply

    pair = build_tiny_classifier(TinySpec(layers=2, hidden=32, heads=4, ffn=37, vocab=99), ["neg", "pos"],
                                 toy_task.split("train").text_a)
    out = apply("quantize", pair, toy_task, QuantizeConfig(scheme="bf16", measure_speed=False),
                on_note=lambda _: None)
    assert out.metrics["method"] == "quantize" and "dev" in out.metrics["splits"]
    assert out.pricetag["wall_s"] > 0
    assert "quantize" in repr(out)
