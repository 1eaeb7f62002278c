"""The prune stage and ``greenlm prune`` on a tiny fine-tuned model: outputs, metrics, iterative
schedule with --max-drop, resume, unstructured accounting, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from greenlm.common import GreenlmError
from greenlm.compress import prune as prune_module
from greenlm.compress.prune import PruneConfig
from greenlm.models import load_classifier, pruned
from greenlm.train import TrainConfig
from conftest import finetune_folder as finetune

from conftest import greenlm_in_process, make_toy_task, write_toy_task_files, stage_runner

run = stage_runner("prune")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP barrier waits on a busy machine (10-1000x slower with 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FAST = dict(importance_examples=64, train_examples=64, epochs=1, learning_rate=1e-3, batch_size=16,
            measure_speed=False)


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    """A tiny BERT fine-tuned on the toy task (learns it in a few epochs)."""
    folder = tmp_path_factory.mktemp("ft") / "model"
    config = TrainConfig(epochs=3, batch_size=16, learning_rate=3e-3, precision="fp32")
    finetune(make_toy_task(), "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99", folder, config, max_length=32,
             progress=False)
    return folder


def test_structured_stage_output(fine_tuned, tmp_path, toy_task):
    config = PruneConfig(head_sparsity=0.5, ffn_sparsity=0.25, recovery="finetune", **FAST)
    notes = []
    metrics = run(fine_tuned, toy_task, config, tmp_path / "out", work_dir=tmp_path / "work", progress=False,
                  on_note=notes.append)
    assert metrics["method"] == "prune" and metrics["task"] == "toy"
    assert set(metrics["splits"]["dev"]) >= {"accuracy", "macro_f1", "mcc", "examples"}
    details = metrics["prune"]
    assert details["heads"] == {"before": 8, "after": 4}
    assert details["ffn_neurons"] == {"before": 74, "after": 74 - round(0.25 * 74)}
    assert details["head_sparsity"] == 0.5 and details["target_reached"] is True
    assert details["after"]["params"] < details["before"]["params"]
    assert details["after"]["flops_per_example"] < details["before"]["flops_per_example"]
    assert len(details["history"]) == 1 and details["history"][0]["recovery_steps"] == 4

    loaded = load_classifier(str(tmp_path / "out"))
    assert sum(pruned.heads_per_layer(loaded.model)) == 4
    assert loaded.model.config.greenlm["task"] == "toy"
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert not (tmp_path / "work").exists()  # rounds and checkpoints cleared once the output is complete

    # The same run again is a no-op that returns the saved metrics.
    again = run(fine_tuned, toy_task, config, tmp_path / "out", work_dir=tmp_path / "work", progress=False)
    assert again == saved
    with pytest.raises(GreenlmError, match="already holds a different run"):
        run(fine_tuned, toy_task, PruneConfig(head_sparsity=0.25, **FAST), tmp_path / "out", work_dir=tmp_path / "w2")


def test_iterative_stops_before_max_drop(fine_tuned, tmp_path, toy_task, monkeypatch):
    # Accuracy scripted by the heads left: 8 -> 0.90, 6 -> 0.895 (-0.5 points), 4 -> 0.85 (-5 points).
    by_heads = {8: 0.90, 6: 0.895, 4: 0.85, 2: 0.80}

    def scripted_eval(model, data, encoded):
        if encoded is None:
            return None
        accuracy = by_heads[sum(pruned.heads_per_layer(model))]
        return {"accuracy": accuracy, "macro_f1": accuracy, "mcc": 0.0, "examples": len(encoded)}

    monkeypatch.setattr(prune_module, "_eval", scripted_eval)
    config = PruneConfig(schedule="iterative", iterations=3, head_sparsity=0.75, max_drop=1.0, recovery="none",
                         **FAST)
    notes = []
    metrics = run(fine_tuned, toy_task, config, tmp_path / "out", work_dir=tmp_path / "work", progress=False,
                  on_note=notes.append)
    details = metrics["prune"]
    assert details["rounds_run"] == 2 and details["round_kept"] == 1 and details["target_reached"] is False
    assert [sum(h["heads_per_layer"]) for h in details["history"]] == [6, 4]
    assert details["heads"]["after"] == 6
    assert details["accuracy_drop_points"] == pytest.approx(0.5)
    assert details["within_max_drop"] is True
    assert any("keeping round 1" in note for note in notes)
    assert sum(pruned.heads_per_layer(load_classifier(str(tmp_path / "out")).model)) == 6


class _Crash(Exception):
    pass


def test_resume_equals_uninterrupted(fine_tuned, tmp_path, toy_task, monkeypatch):
    config = PruneConfig(schedule="iterative", iterations=2, head_sparsity=0.5, ffn_sparsity=0.2,
                         recovery="distill", **FAST)
    straight = run(fine_tuned, toy_task, config, tmp_path / "a", work_dir=tmp_path / "wa", progress=False)

    real_train = prune_module.train
    calls = []

    def crash_in_round_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise _Crash()
        return real_train(*args, **kwargs)

    monkeypatch.setattr(prune_module, "train", crash_in_round_two)
    with pytest.raises(_Crash):
        run(fine_tuned, toy_task, config, tmp_path / "b", work_dir=tmp_path / "wb", progress=False)
    assert not (tmp_path / "b").exists()  # nothing half-written that looks complete
    monkeypatch.setattr(prune_module, "train", real_train)
    notes = []
    resumed = run(fine_tuned, toy_task, config, tmp_path / "b", work_dir=tmp_path / "wb", progress=False,
                  on_note=notes.append)
    assert any("resuming pruning after round 1" in note for note in notes)
    assert resumed["prune"]["history"] == straight["prune"]["history"]
    a = load_classifier(str(tmp_path / "a")).model.state_dict()
    b = load_classifier(str(tmp_path / "b")).model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_unstructured_movement_stage(fine_tuned, tmp_path, toy_task):
    from greenlm.compress import sparsity as sp

    config = PruneConfig(method="movement", schedule="cubic", sparsity=0.75, recovery="distill",
                         **{**FAST, "measure_speed": True, "speed_examples": 8, "epochs": 2})
    metrics = run(fine_tuned, toy_task, config, tmp_path / "out", work_dir=tmp_path / "work", progress=False)
    details = metrics["prune"]
    model = load_classifier(str(tmp_path / "out")).model
    linears = sp.prunable_linears(model)
    # Top-k per matrix: exactly round(0.25 * n) weights kept in each
    for name, linear in linears.items():
        assert int((linear.weight != 0).sum()) == round(0.25 * linear.weight.numel()), name
    assert details["sparsity"] == pytest.approx(0.75, abs=1e-3)
    ckpt = details["checkpoint"]
    on_disk = (tmp_path / "out" / "model.sparse.safetensors").stat().st_size
    assert ckpt["csr_safetensors_bytes"] == on_disk
    assert ckpt["dense_safetensors_bytes"] == (tmp_path / "out" / "model.safetensors").stat().st_size
    assert ckpt["csr_compression_ratio"] > 1
    restored = sp.load_sparse_checkpoint(tmp_path / "out" / "model.sparse.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(restored[name], tensor), name
    speed = details["speed"]
    assert set(speed) == {"input", "pruned", "pruned_csr_kernel", "note"}
    assert "do not make dense matrix products faster" in speed["note"]
    assert details["params_ratio"] == 1.0 and details["flops_ratio"] == 1.0  # zeros are still computed


def test_schedule_defaults_to_the_methods_first():
    assert PruneConfig().schedule == "one_shot"
    assert PruneConfig(method="magnitude").schedule == "one_shot"
    assert PruneConfig(method="movement").schedule == "cubic"


def test_bad_settings_are_refused(fine_tuned, tmp_path, toy_task):
    for bad in (dict(sparsity=1.0), dict(sparsity=-0.1), dict(head_sparsity=1.0), dict(method="random"),
                dict(method="movement", recovery="none"), dict(method="movement", schedule="one_shot"),
                dict(head_sparsity=0.0)):
        with pytest.raises(GreenlmError):
            PruneConfig(**bad)
    # 7 of 8 heads with every layer keeping one: impossible; the message says how many can go.
    with pytest.raises(GreenlmError, match="at most 6 .75%. can go"):
        run(fine_tuned, toy_task, PruneConfig(head_sparsity=0.85, **FAST), tmp_path / "o", work_dir=tmp_path / "w")
    with pytest.raises(GreenlmError, match="whole model"):
        run(fine_tuned, toy_task, PruneConfig(drop_layers=2, **FAST), tmp_path / "o", work_dir=tmp_path / "w")
    with pytest.raises(GreenlmError, match="--teacher-dir"):
        run(fine_tuned, toy_task, PruneConfig(teacher="teacher", **FAST), tmp_path / "o", work_dir=tmp_path / "w")


def test_cli_prune(fine_tuned, tmp_path):
    task_dir = tmp_path / "toy"
    write_toy_task_files(task_dir)
    base = ["prune", str(fine_tuned), "--task", str(task_dir)]  # through the entry point, in this process
    bad = greenlm_in_process(*base, "--heads", "1.5", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["greenlm: error: prune setting: head_sparsity must be in [0, 1), got 1.5"]
    good = greenlm_in_process(*base, "--heads", "0.25", "--recovery", "none", "--importance-examples", "32",
                              "--no-measure-speed", "--no-progress", "--out", str(tmp_path / "p"))
    assert good.returncode == 0, good.stderr
    assert "heads 8 -> 6" in good.stderr and "saved to" in good.stderr
    assert sum(pruned.heads_per_layer(load_classifier(str(tmp_path / "p")).model)) == 6


def test_a_pruned_model_composes_with_quantize_and_exits(fine_tuned, tmp_path, toy_task):
    """Issue 14's chains: a pruned folder is still a sequence classifier to every later method (its config.json
    hides the architecture from plain transformers; greenlm's loader restores it), so it quantizes to int8 and
    takes exits."""
    from greenlm.compress.early_exit import EarlyExitConfig
    from greenlm.compress.quantize import QuantizeConfig
    from greenlm.models.loading import model_config

    out = tmp_path / "pruned"
    run(fine_tuned, toy_task, PruneConfig(head_sparsity=0.5, ffn_sparsity=0.25, **FAST), out,
        work_dir=tmp_path / "w0")
    raw = json.loads((out / "config.json").read_text())
    assert raw["model_type"] == "greenlm_pruned"  # plain transformers still refuses the folder
    assert model_config(out).architectures == ["BertForSequenceClassification"]
    assert load_classifier(str(out)).model.config.architectures == ["BertForSequenceClassification"]

    quantized = stage_runner("quantize")(out, toy_task, QuantizeConfig(measure_speed=False), tmp_path / "int8",
                                         work_dir=tmp_path / "w1")
    assert quantized["method"] == "quantize" and "accuracy" in quantized["splits"]["dev"]
    int8 = load_classifier(str(tmp_path / "int8"))
    assert sum(pruned.heads_per_layer(load_classifier(str(out)).model)) == 4
    assert int8.labels == load_classifier(str(out)).labels

    exits = stage_runner("early_exit")(out, toy_task, EarlyExitConfig(epochs=1, batch_size=16, learning_rate=3e-3,
                                                                       precision="fp32", measure_speed=False),
                                       tmp_path / "exits", work_dir=tmp_path / "w2")
    assert exits["method"] == "early_exit"
    assert load_classifier(str(tmp_path / "exits")).model.num_layers == 2

    # ... and the pruned model with exits in PyTorch int8, priced by the measuring pass at the exits it takes
    from greenlm.measure import count_flops
    from greenlm.pipeline.measure_pass import _expected_flops

    stage_runner("quantize")(tmp_path / "exits", toy_task, QuantizeConfig(measure_speed=False),
                             tmp_path / "exits-int8", work_dir=tmp_path / "w3")
    model = load_classifier(str(tmp_path / "exits-int8")).model
    expected, record = _expected_flops(model, [10, 10], [1, 2], 10)
    full = count_flops(load_classifier(str(out)).model.config, 10).infer_flops  # both (pruned) layers
    assert record["exit_share"] == {"1": 0.5, "2": 0.5}
    assert 0.5 * full < expected < full  # half the rows ran one of the two layers
