"""Distillation end to end on tiny models: KD transfers the teacher's function, the stage writes a loadable
student and resumes exactly, the CLI refuses bad input with one clear line."""

from __future__ import annotations

import json
import os

import pytest
import torch

from greenlm.common import GreenlmError
from greenlm.compress import distill as distill_mod
from greenlm.compress.distill import DistillConfig, distill
from greenlm.data import Task, TaskSplit, encode_split
from greenlm.models import TinySpec, build_tiny_classifier, load_classifier, save_classifier
from greenlm.runtime import predict_logits
from greenlm.models import students as st
from greenlm.train import TrainConfig, train

from conftest import greenlm_in_process, stage_runner

run = stage_runner("distill")

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def _rule_task(toy: Task) -> Task:
    """The toy texts, labelled by another rule ("film" in the text): a teacher that disagrees with the toy labels."""
    splits = {name: TaskSplit(s.text_a, None, [int("film" in t.split()) for t in s.text_a]) for name, s in toy.splits.items()}
    return Task(name="toy", labels=toy.labels, text_fields=toy.text_fields, splits=splits, credit="tests")


@pytest.fixture(scope="module")
def rule_teacher(tmp_path_factory):
    """A tiny teacher fine-tuned on the "film" rule, saved like `greenlm train` saves (config.greenlm set)."""
    from conftest import make_toy_task

    toy = make_toy_task()
    rule = _rule_task(toy)
    model, tokenizer = build_tiny_classifier(TinySpec(layers=2, hidden=32, heads=4, ffn=37, vocab=99),
                                             list(toy.labels), toy.split("train").text_a, seed=0)
    config = TrainConfig(epochs=6, batch_size=16, learning_rate=3e-3, precision="fp32", select_metric=None)
    root = tmp_path_factory.mktemp("distill")
    train(model, encode_split(rule.split("train"), tokenizer, 32), None, config, pad_token_id=tokenizer.pad_token_id,
          work_dir=root / "work", progress=False)
    model.config.greenlm = {"task": "toy", "labels": list(toy.labels), "max_length": 32}
    save_classifier(model, tokenizer, root / "teacher")
    dev = encode_split(rule.split("dev"), tokenizer, 32)
    accuracy = (predict_logits(model, dev, pad_token_id=tokenizer.pad_token_id).argmax(-1) == torch.tensor(dev.labels))
    assert accuracy.float().mean() >= 0.9  # the teacher learned its rule
    return root / "teacher", toy


def _agreement(model, teacher, encoded, pad):
    a = predict_logits(model, encoded, pad_token_id=pad).argmax(-1)
    b = predict_logits(teacher, encoded, pad_token_id=pad).argmax(-1)
    return float((a == b).float().mean())


def test_kd_student_matches_the_teacher_better_than_a_label_student(rule_teacher, tmp_path):
    teacher_dir, toy = rule_teacher
    loaded = load_classifier(str(teacher_dir))
    teacher, tok = loaded.model.eval(), loaded.tokenizer
    train_data = encode_split(toy.split("train"), tok, 32)  # gold labels: the toy sentiment, not the rule
    dev = encode_split(toy.split("dev"), tok, 32)
    shape = st.parse_student_shape("1x32", teacher.config)
    config = DistillConfig(student="1x32", init="random", epochs=6, learning_rate=3e-3, batch_size=16,
                           precision="fp32", keep_best=False, warmup_ratio=0.06)

    kd_student = st.build_student(teacher, shape, init="random", layer_map=[2], seed=1)
    distill(teacher, kd_student, train_data, None, config, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "kd",
            layer_map=[2], progress=False)
    label_student = st.build_student(teacher, shape, init="random", layer_map=[2], seed=1)
    train(label_student, train_data, None, config.train_config(phase="prediction"), pad_token_id=tok.pad_token_id,
          work_dir=tmp_path / "ce", progress=False)

    kd, ce = _agreement(kd_student, teacher, dev, tok.pad_token_id), _agreement(label_student, teacher, dev, tok.pad_token_id)
    assert kd >= 0.85, kd
    assert kd > ce + 0.2, (kd, ce)


class _Crash(Exception):
    pass


def test_stage_writes_a_loadable_student_and_resumes_exactly(rule_teacher, tmp_path, monkeypatch):
    teacher_dir, toy = rule_teacher
    task = _rule_task(toy)
    config = DistillConfig(student="2x16", intermediate_epochs=1, epochs=2, learning_rate=3e-3,
                           intermediate_learning_rate=3e-3, batch_size=32, precision="fp32", checkpoint_every_steps=3,
                           trim_vocab=True, augment="embedding", augment_copies=1, keep_best=False)
    straight = run(teacher_dir, task, config, tmp_path / "straight", work_dir=tmp_path / "w1", progress=False,
                   on_note=lambda m: None)

    calls = {"n": 0}
    real = distill_mod.kd_loss

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 20:  # mid prediction phase, after a checkpoint
            raise _Crash()
        return real(*args, **kwargs)

    monkeypatch.setattr(distill_mod, "kd_loss", crashing)
    with pytest.raises(_Crash):
        run(teacher_dir, task, config, tmp_path / "resumed", work_dir=tmp_path / "w2", progress=False, on_note=lambda m: None)
    assert not (tmp_path / "resumed").exists()  # nothing half-written that looks complete
    monkeypatch.setattr(distill_mod, "kd_loss", real)
    resumed = run(teacher_dir, task, config, tmp_path / "resumed", work_dir=tmp_path / "w2", progress=False,
                  on_note=lambda m: None)
    assert resumed["distill"]["cost"]["resumed"] is True

    a, b = load_classifier(str(tmp_path / "straight")), load_classifier(str(tmp_path / "resumed"))
    for (name, p), (_, q) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(p, q), name
    assert straight["splits"] == resumed["splits"]

    # The folder is a complete classifier with the contract's metrics layout.
    assert a.labels == list(task.labels) and a.model.config.num_hidden_layers == 2 and a.model.config.hidden_size == 16
    saved = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    vocab = saved["distill"]["student"]["vocab"]
    assert vocab["trimmed"] and len(a.tokenizer) == vocab["size"] == a.model.config.vocab_size
    assert saved["method"] == "distill" and saved["task"] == "toy"
    assert set(saved["splits"]["dev"]) >= {"accuracy", "macro_f1", "mcc", "examples"}
    details = saved["distill"]
    assert details["student"]["layer_map"] == [1, 2] and details["data"]["augmentation"]["augmented_rows"] > 0
    assert set(details["phases"]) == {"intermediate", "prediction"}
    assert {"augment", "intermediate", "teacher_logits", "prediction"} <= set(details["cost"]["phases"])
    assert details["cost"]["total"]["flops"] > 0
    assert saved["splits"]["dev"]["accuracy"] >= 0.75  # the rule is learnt by the student


def test_bad_input_is_refused(rule_teacher, tmp_path, toy_task):
    teacher_dir, _ = rule_teacher
    quiet = dict(work_dir=tmp_path / "w", progress=False, on_note=lambda m: None)
    with pytest.raises(GreenlmError, match="layer map"):
        run(teacher_dir, toy_task, DistillConfig(student="2x16", layer_map="1,2,3"), tmp_path / "o", **quiet)
    # a pre-trained student with another tokenizer
    other, other_tok = build_tiny_classifier(TinySpec(layers=1, hidden=16, heads=2, ffn=20, vocab=60),
                                             list(toy_task.labels), ["entirely different words"] * 20)
    save_classifier(other, other_tok, tmp_path / "other")
    with pytest.raises(GreenlmError, match="tokenizer"):
        run(teacher_dir, toy_task, DistillConfig(student=str(tmp_path / "other")), tmp_path / "o", **quiet)
    assert DistillConfig().student_spec == "4x312" and DistillConfig(target_speedup=4.0).student_spec is None
    for bad in (dict(student=" "), dict(student="2x16", target_speedup=4.0), dict(target_speedup=0.5), dict(hard_label_weight=2.0),
                dict(augment="mlm"), dict(init="copy"), dict(augment="glove")):
        with pytest.raises(GreenlmError):
            DistillConfig(**bad)
    with pytest.raises(GreenlmError, match="did you mean 'temperature'"):
        DistillConfig.from_dict({"temprature": 2.0})


def test_cli_refuses_an_untuned_teacher_and_warns_about_a_wider_student(rule_teacher, tmp_path, toy_task_dir):
    teacher_dir, toy = rule_teacher
    untuned, tok = build_tiny_classifier(TinySpec(layers=2, hidden=32, heads=4, ffn=37, vocab=99), ["x", "y"],
                                         toy.split("train").text_a)
    save_classifier(untuned, tok, tmp_path / "untuned")
    base = ["distill", "--task", str(toy_task_dir), "--no-progress", "--epochs", "1"]
    refused = greenlm_in_process(*base, str(tmp_path / "untuned"), "--student", "1x16", "--out", str(tmp_path / "a"),
                                 env=ENV)
    assert refused.returncode == 2, refused.stderr
    lines = [line for line in refused.stderr.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and "not fine-tuned" in lines[0] and "--allow-untuned-teacher" in lines[0]
    assert not (tmp_path / "a").exists()

    wider = greenlm_in_process(*base, str(teacher_dir), "--student", "2x48", "--out", str(tmp_path / "b"), env=ENV)
    assert wider.returncode == 0, wider.stderr
    assert "not compression" in wider.stderr
    assert (tmp_path / "b" / "pricetag.json").is_file() and (tmp_path / "b" / "metrics.json").is_file()
    again = greenlm_in_process(*base, str(teacher_dir), "--student", "2x48", "--out", str(tmp_path / "b"), env=ENV)
    assert again.returncode == 0 and "already holds this finished run" in again.stderr


def test_distill_stage_inside_greenlm_run(tmp_path, toy_task_dir):
    """A recipe with finetune then distill, through the `greenlm run` command line (its entry point, in this
    process)."""
    import yaml

    recipe = {
        "name": "kd",
        "task": str(toy_task_dir),
        "teacher": "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99",
        "measure": {"region": "USA", "pue": 1.0},
        "evaluation": {"speed_examples": 32, "latency_examples": 4, "repeats": 1},
        "stages": {
            "finetune": {"epochs": 5, "learning_rate": 3e-3, "batch_size": 16, "max_length": 32},
            "distill": {"student": "1x16", "intermediate_epochs": 1, "epochs": 4, "learning_rate": 3e-3,
                        "intermediate_learning_rate": 3e-3, "batch_size": 16, "trim_vocab": True},
        },
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    environment = {**ENV, "GREENLM_HOME": str(tmp_path / "home")}
    result = greenlm_in_process("run", str(tmp_path / "recipe.yaml"), "--no-progress", env=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stage = tmp_path / "runs" / "kd" / "distill"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["method"] == "distill" and metrics["distill"]["student"]["shape"]["spec"] == "1x16x2x18"
    assert metrics["splits"]["dev"]["accuracy"] >= 0.8
    tag = json.loads((stage / "pricetag.json").read_text())
    # the method's phases are phases of the stage's price tag
    assert {"distill:intermediate", "distill:prediction"} <= {p["name"] for p in tag["phases"]}
    assert tag["co2e_kg"] > 0  # the recipe's region reaches the stage's price tag
    loaded = load_classifier(str(stage))
    assert loaded.model.config.num_hidden_layers == 1
    report = json.loads((tmp_path / "runs" / "kd" / "report.json").read_text())
    assert [row["method"] for row in report["rows"]] == ["finetune", "distill"]
    assert report["rows"][1]["params"] < report["rows"][0]["params"]


def test_shape_by_budget_is_measured_and_cached(rule_teacher, tmp_path, monkeypatch):
    from greenlm.compress.distill import _choose_shape
    from greenlm.measure import count_flops

    teacher_dir, toy = rule_teacher
    loaded = load_classifier(str(teacher_dir))
    config = DistillConfig(target_speedup=1.5)
    shape, info = _choose_shape(loaded.model, loaded.tokenizer, toy.split("dev"), toy.split("train"), 32, config,
                                tmp_path, lambda m: None)
    teacher_flops = count_flops(loaded.model.config, info["seq_len"]).infer_flops_per_example
    flops = count_flops(st.student_config(loaded.model.config, shape), info["seq_len"]).infer_flops_per_example
    assert flops <= teacher_flops / 1.5
    assert info["tried"] and all(t["measured_speedup"] > 0 and t["flop_speedup"] >= 1.5 for t in info["tried"])
    assert info["shape"]["spec"] == shape.describe()
    # a resumed run takes the cached choice, without measuring again (timings are noisy)
    import greenlm.runtime

    monkeypatch.setattr(greenlm.runtime, "measure_speed", lambda *a, **k: pytest.fail("measured again"))
    again, _ = _choose_shape(loaded.model, loaded.tokenizer, toy.split("dev"), toy.split("train"), 32, config,
                             tmp_path, lambda m: None)
    assert again == shape
