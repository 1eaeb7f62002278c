"""Training dynamics recorded by a real (tiny) fine-tuning through the stage shell, resumed after interruptions,
turned into a data map by ``greenlm datamap``, used by ``train_selection``; bad inputs through the command line."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import write_toy_task_files
from greenlm.common import GreenlmError
from greenlm.data import load_task
from greenlm.datamap import read_dynamics, write_point
from greenlm.pipeline.finetune_config import FinetuneStageConfig
from greenlm.stage import run_stage
from greenlm.train import Callback

TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"
N_TRAIN = 128  # 8 steps of 16; one epoch (<= 2 epochs: 4 record points per epoch), points at steps 2, 4, 6, 8
SETTINGS = dict(epochs=1, batch_size=16, learning_rate=3e-3, precision="fp32", max_length=32, checkpoint_every_steps=5)


def finetune(task, out, **settings):
    config = FinetuneStageConfig(**{**SETTINGS, **settings})
    return run_stage("finetune", TINY, task, config, out, progress=False, on_note=lambda _: None, ledger=False)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("datamap")
    write_toy_task_files(root / "toy", n_train=N_TRAIN, n_dev=32)
    return root, load_task(str(root / "toy"))


@pytest.fixture(scope="module")
def recorded(toy):
    root, task = toy
    return finetune(task, root / "recorded", record_dynamics=True)


def point_texts(folder) -> list[str]:
    return [(folder / "training_dynamics" / f"dynamics_epoch_{k}.jsonl").read_text() for k in range(4)]


def test_one_file_per_record_point_with_one_row_per_training_row(toy, recorded):
    _, task = toy
    files = sorted(p.name for p in (recorded.folder / "training_dynamics").iterdir())
    assert files == [f"dynamics_epoch_{k}.jsonl" for k in range(4)]  # nothing else: cartography counts the files
    labels = task.split("train").labels
    for k in range(4):
        rows = [json.loads(line) for line in (recorded.folder / "training_dynamics" / files[k]).read_text().splitlines()]
        assert sorted(r["guid"] for r in rows) == list(range(N_TRAIN))
        assert all(set(r) == {"guid", f"logits_epoch_{k}", "gold"} and len(r[f"logits_epoch_{k}"]) == 2 for r in rows)
        assert all(r["gold"] == labels[r["guid"]] for r in rows)
    dynamics = recorded.metrics["dynamics"]
    assert [p["step"] for p in dynamics["points"]] == [2, 4, 6, 8]
    assert [p["epoch"] for p in dynamics["points"]] == [0.25, 0.5, 0.75, 1.0]
    assert dynamics["examples"] == N_TRAIN and dynamics["points_per_epoch"] == 4
    assert dynamics["record_seconds"] > 0 and dynamics["overhead_vs_train"] > 0
    assert dynamics["task_source"] == str(toy[0] / "toy") and dynamics["train_fingerprint"] == task.split("train").fingerprint()
    assert read_dynamics(recorded.folder).points == 4


def test_recording_does_not_change_training(toy, recorded):
    root, task = toy
    plain = finetune(task, root / "plain")
    assert "dynamics" not in plain.metrics and not (plain.folder / "training_dynamics").exists()
    assert plain.metrics["train"]["history"] == recorded.metrics["train"]["history"]
    a, b = load_file(plain.folder / "model.safetensors"), load_file(recorded.folder / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)


class _Interrupted(Exception):
    pass


class _StopAt:
    """Raises ``_Interrupted`` at the end of step ``plan[when]`` (once), as a kill there would stop the run."""

    wants_train_logits = False

    def __init__(self, plan: dict, when: str):
        self.plan, self.when = plan, when

    def on_step_end(self, state):
        if self.plan[self.when] == state.step:
            self.plan[self.when] = None
            raise _Interrupted(state.step)

    def __getattr__(self, name):  # every other hook: nothing
        return lambda *args: None


def _wrap_train(monkeypatch, first=(), last=()):
    """Fine-tuning's training loop with extra callbacks before and after the recorder."""
    import greenlm.train.finetune as finetune_module

    real_train = finetune_module.train

    def train(*args, callbacks=(), **kwargs):
        return real_train(*args, callbacks=(*first, *callbacks, *last), **kwargs)

    monkeypatch.setattr(finetune_module, "train", train)


def _interrupt(monkeypatch, plan: dict):
    """Stop "before" the recorder's hook (after the checkpoint) or "after" it, at the steps ``plan`` names."""
    _wrap_train(monkeypatch, first=(_StopAt(plan, "before"),), last=(_StopAt(plan, "after"),))


def test_resume_neither_recomputes_nor_duplicates_record_points(toy, recorded, monkeypatch):
    """Attempt 1 stops right after recording the point of step 6 (last checkpoint: step 5), so the resumed run
    replays step 6; attempt 2 stops at step 8, the last, after its checkpoint but before its point is recorded;
    attempt 3 finds training done and records that point from the checkpoint's weights."""
    from greenlm.train.dynamics import DynamicsRecorder

    root, task = toy
    plan = {"after": 6, "before": None}
    real_record = DynamicsRecorder._record
    recorded_points: list[int] = []

    def record(self, k):
        recorded_points.append(k)
        return real_record(self, k)

    _interrupt(monkeypatch, plan)
    monkeypatch.setattr(DynamicsRecorder, "_record", record)
    out = root / "resumed"
    with pytest.raises(_Interrupted):
        finetune(task, out, record_dynamics=True)
    assert recorded_points == [0, 1, 2]
    plan["before"] = 8
    with pytest.raises(_Interrupted):
        finetune(task, out, record_dynamics=True)
    assert recorded_points == [0, 1, 2]  # step 6 replayed: its point was there, nothing recomputed
    done = finetune(task, out, record_dynamics=True)
    assert recorded_points == list(range(4))  # every point computed exactly once over the three attempts
    assert point_texts(done.folder) == point_texts(recorded.folder)  # the same logits as the uninterrupted run
    assert [p["k"] for p in done.metrics["dynamics"]["points"]] == list(range(4))


def test_training_on_a_selection_records_its_rows(toy, recorded):
    root, task = toy
    chosen = finetune(task, root / "ambiguous", train_selection="ambiguous:0.25+random:0.25",
                      selection_map=str(recorded.folder), record_dynamics=True)
    selection = chosen.metrics["train_selection"]
    assert chosen.metrics["selection"]["chose"] == "best epoch"  # which split chose it: a separate record
    assert selection["rows_used"] == 64 and selection["rows_available"] == N_TRAIN and selection["map_points"] == 4
    assert [p["rows"] for p in selection["parts"]] == [32, 32]
    rows = json.loads((chosen.folder / "selection.json").read_text())["rows"]
    assert len(rows) == 64 == chosen.metrics["train"]["examples"] and selection["rows_file"] == "selection.json"
    assert read_dynamics(chosen.folder).guids == rows  # dynamics of a selection keep the task's row numbers


def test_distillation_on_the_teachers_own_map(toy, recorded):
    """The distill stage takes a selection too; selection_map "teacher" reads the map the teacher recorded."""
    from greenlm.compress.distill_config import DistillConfig

    root, task = toy
    config = DistillConfig(student="1x16x2x32", epochs=1, batch_size=16, max_length=32, train_selection="hard:0.5",
                           selection_map="teacher", precision="fp32")
    result = run_stage("distill", str(recorded.folder), task, config, root / "student", teacher_dir=str(recorded.folder),
                       progress=False, on_note=lambda _: None, ledger=False)
    details = result.metrics["distill"]
    assert details["train_selection"]["rows_used"] == 64 and details["data"]["train_rows"] == 64
    assert details["train_selection"]["map"] == str(recorded.folder)
    with pytest.raises(GreenlmError, match="distill setting: train_subset and train_selection cannot be combined"):
        DistillConfig(train_selection="random:0.5", train_subset=10)
    with pytest.raises(GreenlmError, match="ranks rows by a data map"):
        DistillConfig(train_selection="ambiguous:0.5")


# ---- the command line: in this process, as `greenlm` runs (errors: one line, exit code 2) ----------------------------


def greenlm(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from greenlm.cli.main import main

    monkeypatch.setattr(sys, "argv", ["greenlm", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    return exit_.value.code or 0, captured.out, captured.err


def assert_one_line_error(result, *needles):
    code, _, err = result
    lines = [line for line in err.strip().splitlines() if not line.startswith("note:")]
    assert code == 2 and len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_datamap_command_writes_the_map(toy, recorded, monkeypatch, capsys):
    root, _ = toy
    out = root / "map"
    code, stdout, err = greenlm(monkeypatch, capsys, "datamap", str(recorded.folder), "--out", str(out), "--top", "5")
    assert code == 0, err
    assert stdout.strip() == str(out / "datamap.html") and "over 4 record points" in err
    summary = json.loads((out / "datamap.json").read_text())
    assert summary["rows"] == N_TRAIN and summary["points"] == 4 and sum(summary["regions"].values()) == N_TRAIN
    assert len((out / "datamap.csv").read_text().splitlines()) == N_TRAIN + 1
    assert len((out / "hardest.csv").read_text().splitlines()) == 6
    html = (out / "datamap.html").read_text()
    assert "Most ambiguous rows" in html and "Hardest rows" in html and "http" not in html.split("<body>")[1]


def test_bad_inputs_through_the_command_line(toy, recorded, monkeypatch, capsys):
    root, task = toy
    other = root / "other"
    write_toy_task_files(other, n_train=64, n_dev=16)
    # dynamics whose guids are not the task's training rows
    assert_one_line_error(greenlm(monkeypatch, capsys, "datamap", str(recorded.folder), "--task", str(other)),
                          "recorded on other training rows")
    stranger = root / "stranger"
    write_point(stranger, 0, [0, 500], [[0.1, 0.2], [0.3, 0.1]], [0, 1])
    write_point(stranger, 1, [0, 500], [[0.1, 0.2], [0.3, 0.1]], [0, 1])
    assert_one_line_error(greenlm(monkeypatch, capsys, "datamap", str(stranger), "--task", str(root / "toy")),
                          "guid 500 is outside its 128 training rows")
    # a map from one record point
    single = root / "single"
    labels = task.split("train").labels
    write_point(single, 0, list(range(N_TRAIN)), [[0.0, 1.0]] * N_TRAIN, labels)
    assert_one_line_error(greenlm(monkeypatch, capsys, "datamap", str(single), "--task", str(root / "toy")),
                          "1 record point", "variability")
    train = ["train", "--task", str(root / "toy"), "--model", TINY, "--batch-size", "16", "--max-length", "32",
             "--no-progress", "--validation-fraction", "0"]  # the map was recorded without a validation split
    # a map recorded with another validation split (other training rows) is refused, saying why
    assert_one_line_error(greenlm(monkeypatch, capsys, *train[:-1], "0.1", "--out", str(root / "bad0"),
                                  "--train-selection", "hard:0.5", "--selection-map", str(recorded.folder)),
                          "recorded with no validation split", "use the same validation fraction (0)")
    # a selection fraction outside (0, 1]
    assert_one_line_error(greenlm(monkeypatch, capsys, *train, "--out", str(root / "bad1"), "--train-selection",
                                  "ambiguous:1.5", "--selection-map", str(recorded.folder)), "outside (0, 1]")
    # a selection that keeps fewer rows than one batch: round(0.05 * 128) = 6 < 16
    assert_one_line_error(greenlm(monkeypatch, capsys, *train, "--out", str(root / "bad2"), "--train-selection",
                                  "hard:0.05", "--selection-map", str(recorded.folder)), "keeps 6 of 128 rows",
                          "fewer than one batch (16)")
    assert not (root / "bad2").exists()
    # an audit of an empty split
    empty = root / "empty"
    write_toy_task_files(empty, n_train=32, n_dev=4)
    (empty / "dev.tsv").write_text("text\tlabel\n")
    assert_one_line_error(greenlm(monkeypatch, capsys, "data", "audit", "--task", str(empty)),
                          "dev.tsv has no rows")


def test_record_dynamics_is_a_command_line_option():
    from greenlm.cli.train_cmd import train_command
    import inspect

    params = inspect.signature(train_command).parameters
    assert {"record_dynamics", "train_selection", "selection_map"} <= set(params)


def test_dynamics_of_a_train_subset_keep_the_rows_numbers():
    from conftest import make_toy_task
    from greenlm.train.finetune import _subset_rows

    train = make_toy_task(200, 8).split("train")
    subset = train.subset(50, seed=3)
    rows = _subset_rows(train, subset, 50, 3)
    assert len(rows) == 50 and rows == sorted(rows) and train.select(rows).text_a == subset.text_a
    assert _subset_rows(train, train, 500, 3) == list(range(200))  # a subset as large as the split is the split


def test_the_stage_key_follows_the_map_content_not_its_folder_name(toy, recorded, tmp_path):
    """Two folders holding the same map give one key; the same folder with another map gives another."""
    import shutil

    from greenlm.stage.shell import stage_identity

    _, task = toy
    copy = tmp_path / "copy"
    shutil.copytree(recorded.folder, copy)

    from greenlm.stage.folders import identity_key

    def key(folder):
        config = FinetuneStageConfig(train_selection="ambiguous:0.25", selection_map=str(folder))
        return identity_key(stage_identity("finetune", config, task, "tiny", spec_identity={"teacher": "tiny"}))

    assert key(recorded.folder) == key(copy)
    dynamics = sorted((copy / "training_dynamics").glob("dynamics_epoch_*.jsonl"))[-1]
    dynamics.write_text(dynamics.read_text().replace('"gold":1', '"gold":0', 1))
    assert key(recorded.folder) != key(copy)


# ---- dynamics_mode "train": the training forward pass's own logits (the reference code's way) -------------------------


class _BatchLosses(Callback):
    """Each optimizer step's training rows (from the loop's hook) and its loss (one micro-batch per step here)."""

    wants_train_logits = True

    def __init__(self):
        self.rows, self.losses, self.epochs = [], [], []

    def on_train_logits(self, state, indices, logits):
        self.rows.append(list(indices))
        self.epochs.append(state.epoch)

    def on_step_end(self, state):
        self.losses.append(state.last_loss)


@pytest.fixture(scope="module")
def recorded_train_mode(toy):
    root, task = toy
    return finetune(task, root / "train-mode", record_dynamics=True, dynamics_mode="train", epochs=2)


def test_train_mode_keeps_the_training_pass_logits_one_point_per_epoch(toy, monkeypatch):
    """Parity: the cross-entropy of each step's rows, computed from the written logits, is that step's loss."""
    root, task = toy
    watcher = _BatchLosses()
    _wrap_train(monkeypatch, first=(watcher,))
    result = finetune(task, root / "train-mode-watched", record_dynamics=True, dynamics_mode="train", epochs=2)
    dynamics = result.metrics["dynamics"]
    assert [p["step"] for p in dynamics["points"]] == [8, 16] and dynamics["points_per_epoch"] == 1
    assert dynamics["dynamics_mode"] == "train" and "training forward pass" in dynamics["mode"]
    read = read_dynamics(result.folder)
    assert read.points == 2 and read.guids == list(range(N_TRAIN))
    gold = torch.as_tensor(read.gold)
    assert len(watcher.rows) == 16 and watcher.epochs == [0] * 8 + [1] * 8
    for step, (rows, loss) in enumerate(zip(watcher.rows, watcher.losses)):
        logits = torch.as_tensor(read.logits[step // 8][rows])
        expected = torch.nn.functional.cross_entropy(logits, gold[rows]).item()
        assert expected == pytest.approx(loss, abs=1e-5), step


def test_train_mode_changes_nothing_and_costs_less_than_a_forward_pass(toy, recorded_train_mode):
    root, task = toy
    plain = finetune(task, root / "plain-2", epochs=2)
    a, b = load_file(plain.folder / "model.safetensors"), load_file(recorded_train_mode.folder / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)
    eval_mode = finetune(task, root / "eval-2", record_dynamics=True, epochs=2)
    assert eval_mode.metrics["dynamics"]["dynamics_mode"] == "eval" and len(eval_mode.metrics["dynamics"]["points"]) == 8
    # eval mode runs 8 passes over the rows; train mode copies logits it already has (generous factor: timing noise)
    assert recorded_train_mode.metrics["dynamics"]["record_seconds"] < eval_mode.metrics["dynamics"]["record_seconds"]


def test_train_mode_resumes_inside_an_epoch_and_between_a_checkpoint_and_its_point(toy, recorded_train_mode, monkeypatch):
    """Attempt 1 stops after step 6 (checkpoint at step 5: step 6 is replayed, rows of steps 1-5 come from the saved
    partial logits); attempt 2 stops at step 8 after its checkpoint, before its point; attempt 3 writes that
    point from the logits saved with the checkpoint and trains on. The files equal the uninterrupted run's."""
    root, task = toy
    plan = {"after": 6, "before": None}
    _interrupt(monkeypatch, plan)
    out = root / "train-mode-resumed"
    settings = dict(record_dynamics=True, dynamics_mode="train", epochs=2)
    with pytest.raises(_Interrupted):
        finetune(task, out, **settings)
    plan["before"] = 8
    with pytest.raises(_Interrupted):
        finetune(task, out, **settings)
    done = finetune(task, out, **settings)
    files = [f"dynamics_epoch_{k}.jsonl" for k in range(2)]
    assert sorted(p.name for p in (done.folder / "training_dynamics").iterdir()) == files
    for name in files:
        assert (done.folder / "training_dynamics" / name).read_text() == \
            (recorded_train_mode.folder / "training_dynamics" / name).read_text()


def test_train_mode_without_the_partial_logits_stops_before_training(toy, monkeypatch):
    root, task = toy
    _interrupt(monkeypatch, {"after": 3, "before": None})  # checkpoint at step 3 of epoch 0
    out = root / "train-mode-lost"
    settings = dict(record_dynamics=True, dynamics_mode="train", epochs=2, checkpoint_every_steps=3)
    with pytest.raises(_Interrupted):
        finetune(task, out, **settings)
    (partial,) = root.glob(".train-mode-lost.work/**/partial.safetensors")
    partial.unlink()
    with pytest.raises(GreenlmError, match="resumes inside epoch 0 but .* does not hold the logits"):
        finetune(task, out, **settings)


def test_train_mode_settings_and_the_stage_key():
    from greenlm.pipeline.recipes import load_recipe
    from greenlm.stage.shell import settings_of

    assert "dynamics_mode" not in settings_of(FinetuneStageConfig())  # stages keyed before the setting keep their key
    assert settings_of(FinetuneStageConfig(record_dynamics=True, dynamics_mode="train"))["dynamics_mode"] == "train"
    # a run's recipe.yaml too: run folders written before the setting existed still match their recipe
    assert "dynamics_mode" not in load_recipe("quick", [], None).to_dict()["stages"]["finetune"]
    with pytest.raises(GreenlmError, match="at least 2 epochs"):
        FinetuneStageConfig(record_dynamics=True, dynamics_mode="train", epochs=1)
    with pytest.raises(GreenlmError, match="dynamics_mode must be 'eval' or 'train', not 'dropout'"):
        FinetuneStageConfig(record_dynamics=True, dynamics_mode="dropout")
    with pytest.raises(GreenlmError, match="set record_dynamics too"):
        FinetuneStageConfig(dynamics_mode="train")


def test_training_pass_logits_need_plain_cross_entropy(tmp_path):
    from conftest import make_toy_task
    from greenlm.data import encode_split
    from greenlm.models import TinySpec, build_tiny_classifier
    from greenlm.train import TrainConfig, train

    split = make_toy_task(32, 8).split("train")
    model, tokenizer = build_tiny_classifier(TinySpec.parse("tiny:layers=1,hidden=16,heads=2,ffn=16,vocab=99"),
                                             ["neg", "pos"], split.joined_texts())
    encoded = encode_split(split, tokenizer, 16)
    with pytest.raises(GreenlmError, match="only for plain fine-tuning"):
        train(model, encoded, None, TrainConfig(epochs=1, batch_size=16, precision="fp32"), pad_token_id=0,
              work_dir=tmp_path, loss_fn=lambda m, b: m(**b).loss, callbacks=(_BatchLosses(),), progress=False)
