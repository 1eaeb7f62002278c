"""--report-to: the training loop logs loss, dev metrics, energy and CO2e through Accelerate's trackers."""

from __future__ import annotations

import sys

import pytest

from greenlm.common import GreenlmError
from greenlm.train.trackers import Tracking, check_installed, parse_report_to, tracking

pytestmark = pytest.mark.filterwarnings("ignore::greenlm.measure.PriceTagWarning")


def test_report_to_is_a_comma_list():
    assert parse_report_to(None) == () and parse_report_to("none") == () and parse_report_to(" ") == ()
    assert parse_report_to("TensorBoard, wandb,tensorboard") == ("tensorboard", "wandb")
    with pytest.raises(GreenlmError, match="unknown tracker 'comet'.*tensorboard, mlflow, wandb"):
        parse_report_to("tensorboard,comet")
    with pytest.raises(GreenlmError, match="unknown tracker 'none'"):
        parse_report_to("none,wandb")


def test_a_missing_tracker_is_one_line_naming_its_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # blocked: import wandb fails
    with pytest.raises(GreenlmError) as err:
        check_installed(("wandb",))
    assert str(err.value) == ("Weights & Biases (wandb) is not installed (needed for --report-to wandb); "
                              "install it with: pip install 'greenlm[wandb]'")


def test_run_names_one_per_training():
    spec = Tracking(("tensorboard",))
    assert [spec.run_name("finetune"), spec.run_name("finetune"), spec.run_name("prune round 1/2")] == [
        "finetune", "finetune-2", "prune-round-1-2"]


def _train_tiny(toy_task, tmp_path, spec):
    from greenlm.measure import PriceTag
    from greenlm.train import TrainConfig, train
    from tests.test_train_loop import tiny_setup

    model, tok, train_data, dev_data = tiny_setup(toy_task)
    config = TrainConfig(epochs=2, batch_size=64, learning_rate=3e-3, precision="fp32")
    with PriceTag("stage", region="USA", pue=1.0, ledger=False), tracking(spec):
        return train(model, train_data, dev_data, config, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "w",
                     progress=False)


def _fake_tracker():
    from accelerate.tracking import GeneralTracker

    class Fake(GeneralTracker):
        name = "fake"
        requires_logging_directory = False
        main_process_only = True

        def __init__(self):
            super().__init__()
            self.config, self.logs, self.ended = None, [], False

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values):
            self.config = dict(values)

        def log(self, values, step=None, **kwargs):
            self.logs.append((step, dict(values)))

        def finish(self):
            self.ended = True

    return Fake()


def test_loss_dev_accuracy_energy_and_co2e_reach_a_tracker(toy_task, tmp_path):
    fake = _fake_tracker()
    result = _train_tiny(toy_task, tmp_path, Tracking(trackers=(fake,), logging_dir=tmp_path / "tracking"))
    steps = result.state.step
    losses = [step for step, values in fake.logs if "train/loss" in values]
    assert losses == list(range(1, steps + 1))
    evals = [values for _, values in fake.logs if "eval/accuracy" in values]
    assert len(evals) == 2  # one per epoch
    for values in evals:  # every evaluation carries the price so far
        assert values["energy_kwh"] > 0 and values["co2e_kg"] > 0 and "cost_usd" not in values  # no price given
    assert fake.config["learning_rate"] == 3e-3 and fake.ended


def test_tensorboard_event_file_holds_the_energy_scalar(toy_task, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _train_tiny(toy_task, tmp_path, Tracking(("tensorboard",), tmp_path / "tracking"))
    found = {}
    for event_file in (tmp_path / "tracking").rglob("events.out.tfevents*"):
        acc = EventAccumulator(str(event_file)).Reload()
        for tag in acc.Tags()["scalars"]:
            found[tag] = [e.value for e in acc.Scalars(tag)]
    assert found.get("energy_kwh") and all(v > 0 for v in found["energy_kwh"]), sorted(found)
    assert found.get("co2e_kg") and found.get("train/loss") and found.get("eval/accuracy")


def _greenlm_without_wandb(*args):
    import os
    import subprocess

    code = ("import sys; sys.modules['wandb'] = None; from greenlm.cli.main import main; "
            f"sys.argv = ['greenlm', *{list(args)!r}]; main()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("command", [["train", "--model", "tiny"], ["run", "quick"]])
def test_cli_refuses_a_missing_or_unknown_tracker_before_any_work(tmp_path, command):
    out = ["--out", str(tmp_path / "o")] if command[0] == "train" else ["--runs-dir", str(tmp_path / "runs")]
    missing = _greenlm_without_wandb(*command, *out, "--report-to", "tensorboard,wandb")
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.strip().splitlines()[-1].endswith("install it with: pip install 'greenlm[wandb]'")
    unknown = _greenlm_without_wandb(*command, *out, "--report-to", "comet")
    assert unknown.returncode == 2 and "unknown tracker 'comet'" in unknown.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "runs" / "quick" / "tracking").exists()


def test_greenlm_run_report_to_tensorboard_logs_each_training_stage(tmp_path):
    """greenlm run --report-to tensorboard on a one-stage tiny recipe: runs/<run>/tracking/finetune has the energy."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from conftest import write_toy_task_files
    from test_pipeline_run import cli, write_recipe

    write_toy_task_files(tmp_path / "toy", n_train=64, n_dev=16)
    recipe = write_recipe(tmp_path / "recipe.yaml", tmp_path / "toy", epochs=1)
    result = cli(tmp_path, "run", str(recipe), "--no-progress", "--report-to", "tensorboard")
    assert result.returncode == 0, result.stderr[-3000:]
    tracking = tmp_path / "runs" / "tiny" / "tracking"
    scalars = set()
    for event_file in tracking.rglob("events.out.tfevents*"):
        assert event_file.relative_to(tracking).parts[0] == "finetune"
        scalars |= set(EventAccumulator(str(event_file)).Reload().Tags()["scalars"])
    assert {"energy_kwh", "co2e_kg", "train/loss", "eval/accuracy"} <= scalars
