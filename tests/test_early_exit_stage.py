"""The early-exit stage: calibration, losses, threshold choice, the whole run, resume, bad settings, the CLI."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from greenlm.common import GreenlmError
from greenlm.compress.early_exit import (EarlyExitConfig, candidate_knobs, exit_loss, fit_temperature, nll,
                                         select_point, split_heldout)
from greenlm.data import TaskSplit, encode_split
from greenlm.models import TinySpec, build_tiny_classifier, load_classifier
from greenlm.runtime import predict_records
from greenlm.models.early_exit import EarlyExitClassifier
from greenlm.train import TrainConfig, evaluate, train
from conftest import finetune_folder as finetune

from conftest import greenlm_in_process, make_toy_task, toy_split, write_toy_task_files, stage_runner

run = stage_runner("early_exit")

FAST = dict(epochs=1, batch_size=16, learning_rate=3e-3, exit_learning_rate=3e-3, precision="fp32", measure_speed=False)


@pytest.fixture(scope="module")
def toy():
    return make_toy_task(320, 64)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, toy):
    """A tiny 3-layer BERT fine-tuned on the toy task (the stage's upstream model)."""
    out = tmp_path_factory.mktemp("early_exit") / "teacher"
    finetune(toy, "tiny:layers=3,hidden=32,heads=4,ffn=37,vocab=99", out,
             TrainConfig(epochs=3, batch_size=16, learning_rate=3e-3, precision="fp32"), max_length=32, progress=False)
    return out


# ---- calibration ------------------------------------------------------------------------------------


def test_fit_temperature_recovers_a_known_scale():
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 3, generator=generator) * 2
    labels = torch.multinomial(true_logits.softmax(-1), 1, generator=generator).squeeze(1)
    overconfident = true_logits * 3  # a model 3x too sure of itself
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll(overconfident, labels, t) < nll(overconfident, labels) - 0.1
    # Already calibrated logits keep T close to 1; T never makes the NLL worse than T = 1.
    assert fit_temperature(true_logits, labels) == pytest.approx(1.0, abs=0.1)
    assert nll(true_logits, labels, fit_temperature(true_logits, labels)) <= nll(true_logits, labels)


def _noisy(n: int, seed: int, flip: float = 0.2) -> TaskSplit:
    split = toy_split(n, seed)
    rng = random.Random(seed)
    return TaskSplit(split.text_a, None, [1 - y if rng.random() < flip else y for y in split.labels])


def test_calibration_lowers_nll_on_a_toy_set(tmp_path):
    """An exit model overfitted to noisy labels is overconfident; per-exit temperatures fitted on held-out rows
    lower the NLL there and on rows never used for fitting."""
    from greenlm.compress.early_exit import calibrate, collect_exit_logits

    train_split, heldout, unseen = _noisy(64, 0), _noisy(300, 1), _noisy(300, 2)
    backbone, tokenizer = build_tiny_classifier(TinySpec(layers=2, hidden=32, heads=4, ffn=37, vocab=99),
                                                ["neg", "pos"], train_split.text_a)
    model = EarlyExitClassifier(backbone)
    data = {name: encode_split(s, tokenizer, 32) for name, s in (("train", train_split), ("heldout", heldout),
                                                                  ("unseen", unseen))}

    def loss_fn(m, batch):
        out = m(**{k: v for k, v in batch.items() if k != "labels"})
        return exit_loss(out.exit_logits, batch["labels"], m.exit_layers, scheme="sum", train_final=True)

    train(model, data["train"], None, TrainConfig(epochs=15, batch_size=16, learning_rate=3e-3, precision="fp32",
                                                  select_metric=None, checkpoint_every_steps=1000),
          pad_token_id=tokenizer.pad_token_id, work_dir=tmp_path, loss_fn=loss_fn, progress=False)
    held_logits = collect_exit_logits(model, data["heldout"], pad_token_id=tokenizer.pad_token_id)
    held_labels = torch.tensor(heldout.labels)
    temperatures, report = calibrate(held_logits, held_labels, model.exit_layers)
    unseen_logits = collect_exit_logits(model, data["unseen"], pad_token_id=tokenizer.pad_token_id)
    unseen_labels = torch.tensor(unseen.labels)
    for j, entry in enumerate(report):
        assert temperatures[j] > 1.2  # overconfident: softened
        assert entry["heldout_nll_after"] < entry["heldout_nll_before"] - 0.02
        assert nll(unseen_logits[j], unseen_labels, temperatures[j]) < nll(unseen_logits[j], unseen_labels)
        assert entry["heldout_ece_after"] < entry["heldout_ece_before"]


# ---- losses ---------------------------------------------------------------------------------------------


def test_exit_losses_follow_their_formulas():
    generator = torch.Generator().manual_seed(0)
    logits = [torch.randn(5, 3, generator=generator) for _ in range(3)]
    labels = torch.tensor([0, 2, 1, 1, 0])
    ce = [F.cross_entropy(z, labels) for z in logits]
    layers = (2, 4, 6)
    assert exit_loss(logits, labels, layers, scheme="sum", train_final=True) == pytest.approx(float(sum(ce)), rel=1e-6)
    assert exit_loss(logits, labels, layers, scheme="sum", train_final=False) == pytest.approx(float(ce[0] + ce[1]), rel=1e-6)
    weighted = (2 * ce[0] + 4 * ce[1] + 6 * ce[2]) / 12
    assert exit_loss(logits, labels, layers, scheme="weighted", train_final=True) == pytest.approx(float(weighted), rel=1e-6)
    tau = 2.0
    target = (logits[2] / tau).softmax(-1)
    kl = sum((target * (target.log() - (z / tau).log_softmax(-1))).sum(-1).mean() for z in logits[:2]) * tau**2
    got = exit_loss(logits, labels, layers, scheme="self_distill", train_final=True, distill_temperature=tau)
    assert got == pytest.approx(float(kl + ce[2]), rel=1e-5)
    frozen = exit_loss(logits, labels, layers, scheme="self_distill", train_final=False, distill_temperature=tau)
    assert frozen == pytest.approx(float(kl), rel=1e-5)


def test_exit_heads_get_their_own_learning_rate():
    from greenlm.train.loop import _param_groups

    backbone, _ = build_tiny_classifier(TinySpec(layers=2), ["neg", "pos"], toy_split(50, 0).text_a)
    model = EarlyExitClassifier(backbone)
    groups = _param_groups([model], 0.01, EarlyExitConfig().lr_scale(), 2e-5)
    exit_params = {id(p) for p in model.exits.parameters()}
    assert [len(g["params"]) for g in groups[:2]] == [
        sum(1 for n, p in model.named_parameters() if not n.startswith("exits.") and c(n, p)) for c in
        (lambda n, p: p.ndim >= 2 and "LayerNorm" not in n, lambda n, p: p.ndim < 2 or "LayerNorm" in n)]
    scaled = groups[2:]
    assert {id(p) for g in scaled for p in g["params"]} == exit_params
    assert all(g["lr"] == pytest.approx(1e-3) for g in scaled)
    assert sorted(g["weight_decay"] for g in scaled) == [0.0, 0.01]  # biases keep no decay
    assert _param_groups([model], 0.01)[0]["params"] == [p for n, p in model.named_parameters()
                                                         if p.ndim >= 2 and "LayerNorm" not in n]


# ---- the curve and the choice ----------------------------------------------------------------------------


def _point(threshold, accuracy, speedup, drop, early=True):
    return {"threshold": threshold, "accuracy": accuracy, "flops_speedup": speedup, "drop_points": drop,
            "exits_early": early}


CURVE = [_point(0.5, 0.80, 4.0, 10.0), _point(0.8, 0.88, 3.0, 2.0), _point(0.9, 0.895, 2.5, 0.5),
         _point(0.95, 0.9, 1.8, 0.0), _point(1.0, 0.9, 0.99, 0.0, early=False)]


def test_select_point_for_each_goal():
    assert select_point(CURVE, "max_drop", 1.0, "max_prob") == (CURVE[2], None)
    assert select_point(CURVE, "max_drop", 0.0, "max_prob")[0] == CURVE[3]
    assert select_point(CURVE, "max_drop", 2.0, "max_prob")[0] == CURVE[1]
    assert select_point(CURVE, "target_speedup", 2.0, "max_prob") == (CURVE[2], None)  # most accurate reaching 2x
    assert select_point(CURVE, "threshold", 0.8, "max_prob")[0] == CURVE[1]
    best, note = select_point(CURVE, "target_speedup", 9.0, "max_prob")
    assert best == CURVE[0] and "not reached" in note and "4.00x" in note
    flat = [_point(0.9, 0.7, 1.5, 5.0), _point(1.0, 0.9, 1.0, 0.0, early=False)]
    best, note = select_point(flat, "max_drop", 1.0, "max_prob")
    assert best == flat[1] and "keeping full depth" in note


def test_candidate_knobs():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.5]], [[1.0, 0.0], [0.0, 3.0]]])  # [E=2, N=2, K=2]
    knobs = candidate_knobs(logits, [1.0, 1.0], "max_prob")
    assert knobs[-1] == 1.0 and all(0 < k <= 1 for k in knobs)
    assert knobs[0] < float(torch.softmax(torch.tensor([0.0, 0.5]), -1).max())  # below every confidence
    assert candidate_knobs(torch.zeros(4, 3, 2), [1.0] * 4, "patience") == [1, 2, 3]


def test_split_heldout_is_disjoint_and_seeded():
    split = toy_split(200, 0)
    rest, held = split_heldout(split, 0.1, 2000, seed=3)
    assert len(held) == 20 and len(rest) == 180
    again = split_heldout(split, 0.1, 2000, seed=3)[1]
    assert held.text_a == again.text_a
    assert len(split_heldout(split, 0.5, 30, seed=3)[1]) == 30
    with pytest.raises(GreenlmError, match="too few"):
        split_heldout(toy_split(10, 0), 0.1, 2000, seed=0)


# ---- the stage -------------------------------------------------------------------------------------------


def test_stage_end_to_end(teacher_dir, toy, tmp_path):
    out = tmp_path / "ee"
    metrics = run(teacher_dir, toy, EarlyExitConfig(**{**FAST, "measure_speed": True, "speed_examples": 16}), out,
                  work_dir=tmp_path / "work", progress=False, on_note=lambda _: None)
    details = metrics["early_exit"]
    assert metrics["method"] == "early_exit" and metrics["task"] == "toy"
    assert details["exit_layers"] == [1, 2, 3] and details["goal"]["kind"] == "max_drop"
    chosen = details["heldout"]["chosen_point"]
    assert chosen["drop_points"] <= 1.0  # the default goal holds on the held-out rows
    assert details["splits"]["dev"]["curve_agreement"] == 1.0
    assert details["speed"]["throughput_speedup"] > 0 and details["speed"]["early_exit"]["throughput_batch_size"] == 32
    for name in ("config.json", "model.safetensors", "metrics.json", "curve.json", "curve.csv", "backbone/config.json",
                 "tokenizer.json"):
        assert (out / name).is_file(), name
    curve = json.loads((out / "curve.json").read_text())
    assert set(curve["curves"]) == {"heldout", "dev"} and len(curve["curves"]["dev"]) >= 3
    assert curve["curves"]["dev"][-1]["threshold"] == 1.0 and curve["curves"]["dev"][-1]["flops_speedup"] == 1.0
    assert (out / "curve.csv").read_text().startswith("split,policy,threshold,chosen,accuracy")

    loaded = load_classifier(str(out))
    assert isinstance(loaded.model, EarlyExitClassifier) and loaded.model.threshold == details["threshold"]
    dev = encode_split(toy.split("dev"), loaded.tokenizer, 32)
    again = evaluate(loaded.model, dev, pad_token_id=loaded.tokenizer.pad_token_id, num_labels=2)
    assert again["accuracy"] == metrics["splits"]["dev"]["accuracy"]
    records = predict_records(loaded.model, loaded.tokenizer, toy.split("dev"), loaded.labels, max_length=32)
    assert all(r["exit_layer"] in (1, 2, 3) for r in records)
    mean_exit = sum(r["exit_layer"] for r in records) / len(records)
    assert mean_exit == pytest.approx(details["splits"]["dev"]["mean_exit_layer"], abs=1e-4)


def test_frozen_encoder_keeps_the_original_predictions(teacher_dir, toy, tmp_path):
    config = EarlyExitConfig(**{**FAST, "train_encoder": False, "threshold": 1.0, "loss": "self_distill"})
    metrics = run(teacher_dir, toy, config, tmp_path / "ee", work_dir=tmp_path / "work", progress=False,
                  on_note=lambda _: None)
    upstream = load_classifier(str(teacher_dir))
    loaded = load_classifier(str(tmp_path / "ee"))
    dev = encode_split(toy.split("dev"), upstream.tokenizer, 32)
    from greenlm.runtime import predict_logits

    assert torch.equal(predict_logits(loaded.model, dev, pad_token_id=0), predict_logits(upstream.model, dev, pad_token_id=0))
    assert metrics["splits"]["dev"]["accuracy"] == metrics["early_exit"]["upstream"]["splits"]["dev"]["accuracy"]
    # The exits did learn (they start as copies of the final head, on other layers' states).
    head = loaded.model.exits["1"]
    assert not torch.equal(head.dense.weight, upstream.model.bert.pooler.dense.weight)


@pytest.mark.parametrize("policy,loss", [("patience", "weighted"), ("entropy", "sum")])
def test_other_policies_and_losses(teacher_dir, toy, tmp_path, policy, loss):
    config = EarlyExitConfig(**{**FAST, "policy": policy, "loss": loss, "exit_layers": [2], "max_steps": 5})
    metrics = run(teacher_dir, toy, config, tmp_path / "ee", work_dir=tmp_path / "work", progress=False,
                  on_note=lambda _: None)
    details = metrics["early_exit"]
    assert details["exit_layers"] == [2, 3] and details["policy"] == policy
    knob = "patience" if policy == "patience" else "threshold"
    assert load_classifier(str(tmp_path / "ee")).model.settings()[knob] == details[knob]


def test_unreachable_target_keeps_the_best_reachable(teacher_dir, toy, tmp_path):
    notes = []
    metrics = run(teacher_dir, toy, EarlyExitConfig(**{**FAST, "target_speedup": 50.0, "max_steps": 3}),
                  tmp_path / "ee", work_dir=tmp_path / "work", progress=False, on_note=notes.append)
    details = metrics["early_exit"]
    fastest = max(p["flops_speedup"] for p in json.loads((tmp_path / "ee" / "curve.json").read_text())["curves"]["heldout"])
    assert details["heldout"]["chosen_point"]["flops_speedup"] == fastest < 50
    assert any("target speedup 50.0x is not reached" in n and "kept" in n for n in notes)
    assert "not reached" in details["goal"]["note"]


def test_rerun_resumes_from_the_work_dir(teacher_dir, toy, tmp_path, monkeypatch):
    from greenlm.compress import early_exit as ee

    config = EarlyExitConfig(**FAST)

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # killed after training, while calibrating
    monkeypatch.setattr(ee, "calibrate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(teacher_dir, toy, config, tmp_path / "a", work_dir=tmp_path / "work")
    (state_file,) = (tmp_path / "work").rglob("checkpoint/state.json")
    trained_s = json.loads(state_file.read_text())["train_seconds"]
    monkeypatch.undo()
    resumed = run(teacher_dir, toy, config, tmp_path / "a", work_dir=tmp_path / "work")
    # Training was not run again: the time spent training is the checkpoint's, to the millisecond.
    assert resumed["early_exit"]["train"]["train_seconds"] == round(trained_s, 3)
    assert set(resumed["early_exit"]["cost"]["phases"]) >= {"train", "calibrate", "evaluate"}
    straight = run(teacher_dir, toy, config, tmp_path / "b", work_dir=tmp_path / "work-b")
    assert resumed["splits"] == straight["splits"]


def test_stage_refuses_what_it_cannot_do(teacher_dir, toy, tmp_path):
    with pytest.raises(GreenlmError, match="exit layer 7 is out of range: the model has 3 layers"):
        run(teacher_dir, toy, EarlyExitConfig(**{**FAST, "exit_layers": [1, 7]}), tmp_path / "x",
            work_dir=tmp_path / "w", progress=False)
    with pytest.raises(GreenlmError, match="nothing to train"):
        run(teacher_dir, toy, EarlyExitConfig(**{**FAST, "exit_layers": [3], "train_encoder": False}), tmp_path / "x",
            work_dir=tmp_path / "w", progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("settings,message", [
    ({"threshold": 0.0}, r"outside \(0, 1\]"),
    ({"threshold": 1.01}, r"outside \(0, 1\]"),
    ({"threshold": math.nan}, r"threshold.*finite number"),
    ({"exit_layers": [0, 2]}, "exit layer 0 is out of range"),
    ({"exit_layers": []}, "non-empty list"),
    ({"policy": "entropi"}, "did you mean 'entropy'"),
    ({"loss": "weigted"}, "did you mean 'weighted'"),
    ({"max_drop": 1.0, "target_speedup": 2.0}, "at most one of"),
    ({"target_speedup": 0.5}, "target_speedup 0.5 must be a number >= 1"),
    ({"max_drop": -1.0}, r"max_drop -1.0 must be accuracy points in \[0, 100\]"),
    ({"policy": "patience", "threshold": 0.9}, "takes patience, not threshold"),
    ({"patience": 2}, "patience is for the patience policy"),
    ({"policy": "patience", "patience": 0}, "patience 0 must be a whole number >= 1"),
    ({"heldout_fraction": 0.9}, r"heldout_fraction must be in \(0, 0.5\]"),
    ({"epochs": 0}, "epochs must be > 0"),
    ({"exit_pooling": "maen"}, "did you mean 'mean'"),
])
def test_config_refuses_bad_settings(settings, message):
    with pytest.raises(GreenlmError, match=message):
        EarlyExitConfig(**settings)


def test_config_goal_and_defaults():
    assert EarlyExitConfig().goal() == ("max_drop", 1.0)
    assert EarlyExitConfig(target_speedup=3).goal() == ("target_speedup", 3)
    assert EarlyExitConfig().train_config().learning_rate == 2e-5
    assert EarlyExitConfig().lr_scale() == {"exits.": pytest.approx(50.0)}
    assert EarlyExitConfig(train_encoder=False).train_config().learning_rate == 1e-3
    assert EarlyExitConfig(train_encoder=False).lr_scale() is None
    assert json.loads(json.dumps(EarlyExitConfig(exit_layers=[2, 4]).to_dict()))["exit_layers"] == [2, 4]


# ---- the command line ------------------------------------------------------------------------------------


def greenlm(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "greenlm", *args], capture_output=True, text=True, input=stdin,
                          timeout=600)


cli = greenlm_in_process  # the same entry point in this process: no seconds of imports per command


def test_cli_early_exit_then_predict(teacher_dir, tmp_path):
    task_dir = tmp_path / "toy"
    write_toy_task_files(task_dir, 320, 64)
    out = tmp_path / "ee"
    result = cli("early-exit", str(teacher_dir), "--task", str(task_dir), "--out", str(out), "--epochs", "1",
                     "--batch-size", "16", "--lr", "3e-3", "--exit-lr", "3e-3", "--precision", "fp32", "--no-speed", "--no-progress",
                     "--exit-layers", "1,2", "--target-speedup", "1.5")
    assert result.returncode == 0, result.stderr
    assert "FLOPs speedup" in result.stderr and "saved to" in result.stderr
    assert json.loads((out / "stage.json").read_text())["identity"]["settings"]["target_speedup"] == 1.5
    again = cli("early-exit", str(teacher_dir), "--task", str(task_dir), "--out", str(out), "--epochs", "1",
                    "--batch-size", "16", "--lr", "3e-3", "--exit-lr", "3e-3", "--precision", "fp32", "--no-speed", "--no-progress",
                    "--exit-layers", "1,2", "--target-speedup", "1.5")
    assert again.returncode == 0 and "already holds this finished run" in again.stderr
    predicted = cli("predict", str(out), stdin="the film was good\nawful plot\n")
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(rows) == 2 and all(r["exit_layer"] in (1, 2, 3) for r in rows)
    auto = cli("predict", str(out), "--runtime", "auto", stdin="the film was good\nawful plot\n")
    assert auto.returncode == 0 and "run on the torch runtime" in auto.stderr
    assert [json.loads(line) for line in auto.stdout.splitlines()] == rows
    from greenlm.models.loading import load_classifier
    from greenlm.runtime.engine import runtime_candidates

    assert runtime_candidates(load_classifier(str(out)).model.config, None) == ["torch-fp32"]


@pytest.mark.parametrize("args,message", [
    (["--threshold", "1.5"], "outside (0, 1]"),
    (["--exit-layers", "1,x"], "must be whole numbers separated by commas"),
    (["--policy", "maxprob"], "did you mean 'max_prob'"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    result = greenlm("early-exit", str(tmp_path), "--task", "sst2", "--out", str(tmp_path / "o"), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("greenlm: error:") and message in lines[0]


def test_cli_model_that_cannot_take_exits(tmp_path):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    folder = tmp_path / "distil"
    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=4,
                                                                 hidden_dim=37, num_labels=2,
                                                                 id2label={0: "neg", 1: "pos"},
                                                                 label2id={"neg": 0, "pos": 1}))
    _, tokenizer = build_tiny_classifier(TinySpec(), ["neg", "pos"], toy_split(50, 0).text_a)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    task_dir = tmp_path / "toy"
    write_toy_task_files(task_dir, 64, 16)
    result = cli("early-exit", str(folder), "--task", str(task_dir), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "cannot attach early exits to DistilBertForSequenceClassification" in result.stderr
