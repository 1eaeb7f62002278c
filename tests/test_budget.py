"""Budgets (--max-kwh, --max-co2e-kg, --max-usd): the projection from progress on a fake energy source (stop at the
projected step, warn once, checkpoint first, resume to the same weights), the stage shell writing no model when
stopped, the command line (exit code 3 and one line; the same command with a higher budget resumes to the same
bytes; bad budgets exit 2), ``greenlm run`` and ``greenlm measure`` stopping a command that would run forever."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import greenlm_in_process

from greenlm.common import EXIT_BUDGET, BudgetExceeded, GreenlmError
from greenlm.measure import Budget, Spend
from greenlm.train import TrainConfig, train
from greenlm.train.budget import BudgetWatch, budgeting

TINY = "tiny:layers=1,hidden=16,heads=2,ffn=16,vocab=60"
pytestmark = pytest.mark.filterwarnings("ignore::greenlm.measure.PriceTagWarning")


# ---- the budget and its arithmetic -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "1"])
def test_a_budget_must_be_positive_and_finite(bad):
    with pytest.raises(GreenlmError, match="--max-kwh must be a positive, finite number"):
        Budget(max_kwh=bad)
    with pytest.raises(GreenlmError, match="--max-usd"):
        Budget(max_usd=bad)


def test_spend_arithmetic_and_limits():
    a, b = Spend(1.0, 0.5, None), Spend(2.0, 1.0, 3.0)
    assert a + b == Spend(3.0, 1.5, None) and (b - a).energy_kwh == 1.0 and b.scaled(2) == Spend(4.0, 2.0, 6.0)
    budget = Budget(max_kwh=2.4, max_usd=10)
    assert budget.over(b) is None and budget.over(b, 0.8) == "energy_kwh" and budget.over(a + b) == "energy_kwh"
    assert budget.unknown(a) == "cost_usd" and not Budget()
    with pytest.raises(GreenlmError, match="--max-usd needs a price"):
        budget.check_measurable(co2e=False, cost=False)
    Budget(max_kwh=1).check_measurable(co2e=False, cost=False)  # energy is always measured


# ---- the training loop on a fake energy source ---------------------------------------------------------------------


def _per_step(steps_done: int) -> float:
    """kWh after ``steps_done`` steps: 1 Wh a step for 4 steps, then 3 Wh a step (the machine got slower)."""
    return 0.001 * min(steps_done, 4) + 0.003 * max(steps_done - 4, 0)


class FakeEnergy:
    """The watch reads once before each optimizer step (the first read is the training's baseline, at step 0)."""

    def __init__(self):
        self.reads = 0

    def __call__(self) -> Spend:
        self.reads += 1
        kwh = _per_step(self.reads - 1)
        return Spend(kwh, kwh * 0.4, kwh * 10)


def _setup(toy_task, seed=0):
    from greenlm.data import encode_split
    from greenlm.models import TinySpec, build_tiny_classifier

    model, tok = build_tiny_classifier(TinySpec(layers=1, hidden=16, heads=2, ffn=16, vocab=60), list(toy_task.labels),
                                       toy_task.split("train").text_a, seed=seed)
    return model, tok, encode_split(toy_task.split("train"), tok, 32)


CONFIG = TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, precision="fp32", checkpoint_every_steps=1000)


def test_projection_stops_at_the_projected_step_saves_a_checkpoint_and_resumes_to_the_same_weights(toy_task, tmp_path,
                                                                                                    caplog):
    straight, tok, data = _setup(toy_task)
    ref = train(straight, data, None, CONFIG, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "a", progress=False)
    assert ref.state.total_steps == 8  # need: 4 x 1 Wh + 4 x 3 Wh = 16 Wh
    # steps 1-4 project 8 Wh (under 80% of 12.5); after step 5: 7 + 7/5 x 3 = 11.2 Wh (warn: 90%); after step 6:
    # 10 + 10/6 x 2 = 13.3 Wh > 12.5: stop before the 7th step
    first, _, _ = _setup(toy_task)
    watch = BudgetWatch(Budget(max_kwh=0.0125), read=FakeEnergy())
    with caplog.at_level(logging.WARNING, logger="greenlm"), pytest.raises(BudgetExceeded) as stop, budgeting(watch):
        train(first, data, None, CONFIG, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "b", progress=False)
    message = str(stop.value)
    assert "\n" not in message and stop.value.exit_code == EXIT_BUDGET == 3
    assert message.startswith("budget: stopped at step 6 of 8 (checkpoint saved, no model written): spent 0.01 kWh,"
                              " projected total 0.01333 kWh > --max-kwh 0.0125; run the same command again with a"
                              " higher --max-kwh (e.g. --max-kwh 0.016)")
    warned = [r.getMessage() for r in caplog.records if "budget:" in r.getMessage()]
    assert len(warned) == 1 and "projected total 0.0112 kWh is 90% of --max-kwh 0.0125" in warned[0]
    assert (tmp_path / "b" / "checkpoint").is_dir()
    # the same training with a higher budget resumes from the checkpoint: same weights, bit for bit
    resumed, _, _ = _setup(toy_task, seed=7)
    with budgeting(BudgetWatch(Budget(max_kwh=1.0), read=FakeEnergy())):
        res = train(resumed, data, None, CONFIG, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "b", progress=False)
    assert res.state.step == 8
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_steady_rate_stops_at_the_first_check_and_other_figures_count_too(toy_task, tmp_path):
    model, tok, data = _setup(toy_task)
    watch = BudgetWatch(Budget(max_co2e_kg=0.001), read=lambda: Spend(0.0, 0.0005, 0.0))  # spent already: step 0
    with pytest.raises(BudgetExceeded, match=r"at step 0 of 8 .* spent 0.0011 kg CO2e > --max-co2e-kg 0.001"), \
            budgeting(watch):
        watch.charge({"energy_kwh": 0.0, "co2e_kg": 0.0006, "cost_usd": 0.0})  # an earlier stage of the run
        train(model, data, None, CONFIG, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "c", progress=False)
    fake = FakeEnergy()
    with pytest.raises(BudgetExceeded, match=r"at step 1 of 8 .*--max-usd 0.05"), \
            budgeting(BudgetWatch(Budget(max_usd=0.05), read=fake)):  # 10 USD/kWh: 0.08 USD projected after step 1
        train(model, data, None, CONFIG, pad_token_id=tok.pad_token_id, work_dir=tmp_path / "d", progress=False)
    assert fake.reads == 2


def test_a_stage_stopped_by_its_budget_writes_no_model_and_resumes_to_the_same_folder(toy_task, tmp_path):
    from greenlm.pipeline.finetune_config import FinetuneStageConfig
    from greenlm.stage import run_stage

    config = FinetuneStageConfig(epochs=1, batch_size=32, learning_rate=1e-3, max_length=32, precision="fp32")
    run_stage("finetune", TINY, toy_task, config, tmp_path / "straight", progress=False, ledger=False)
    out = tmp_path / "m"
    with pytest.raises(BudgetExceeded, match="at step 6 of 8 of finetune"), \
            budgeting(BudgetWatch(Budget(max_kwh=0.0125), read=FakeEnergy())):
        run_stage("finetune", TINY, toy_task, config, out, name="finetune", progress=False, ledger=False)
    assert not out.exists()
    attempts = list((tmp_path / ".m.work" / "pricetags").glob("*.json"))
    assert len(attempts) == 1 and '"status": "error: BudgetExceeded"' in attempts[0].read_text()
    with budgeting(BudgetWatch(Budget(max_kwh=1.0), read=FakeEnergy())):
        result = run_stage("finetune", TINY, toy_task, config, out, name="finetune", progress=False, ledger=False)
    assert result.status == "ran" and result.pricetag["meta"]["attempts"] == 2
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "straight" / "model.safetensors").read_bytes()


# ---- the command line ---------------------------------------------------------------------------------------------


def _env(cwd: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "GREENLM_HOME": str(cwd / "home"), "PYTHONWARNINGS": "ignore"}


def _greenlm(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``greenlm ARGS`` in a process of its own, run from ``cwd``."""
    return subprocess.run([sys.executable, "-m", "greenlm", *args], capture_output=True, text=True, env=_env(cwd),
                          timeout=timeout, cwd=cwd)


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``greenlm ARGS`` through the same entry point in this process (no seconds of imports), run from ``cwd``.
    A real process still shows exit code 3 (``greenlm train``) and stops a real command (``greenlm measure``)."""
    return greenlm_in_process(*args, env=_env(cwd), cwd=cwd)


def _budget_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("greenlm: budget")]


def test_greenlm_train_stops_with_exit_3_and_resumes_with_a_higher_budget(toy_task_dir, tmp_path):
    args = ["train", "--task", str(toy_task_dir), "--model", TINY, "--epochs", "2", "--max-length", "32",
            "--no-progress"]
    # a budget no training can meet (energy on this machine is at least an estimate, never zero)
    stopped = _greenlm(tmp_path, *args, "--out", "m", "--max-kwh", "1e-12")
    assert stopped.returncode == 3, stopped.stderr
    lines = _budget_lines(stopped.stderr)
    assert len(lines) == 1 and lines[0] == stopped.stderr.strip().splitlines()[-1]
    assert "stopped at step 0 of 16 of finetune (checkpoint saved, no model written)" in lines[0]
    assert "> --max-kwh 1e-12; run the same command again with a higher --max-kwh" in lines[0]
    assert not (tmp_path / "m").exists() and (tmp_path / ".m.work" / "state").is_dir()
    resumed = _cli(tmp_path, *args, "--out", "m", "--max-kwh", "1000")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming finetune" in resumed.stderr
    straight = _cli(tmp_path, *args, "--out", "straight")
    assert straight.returncode == 0, straight.stderr
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == \
        (tmp_path / "straight" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("command, budget", [
    (["train", "--model", TINY, "--out", "x"], ["--max-kwh", "0"]),
    (["distill", "teacher", "--out", "x"], ["--max-co2e-kg", "-1"]),
    (["run"], ["--max-usd", "nan"]),
    (["pretrain", "--out", "x"], ["--max-kwh", "inf"]),
    (["measure", "--", "true"], ["--max-kwh", "-0.5"]),
])
def test_a_budget_that_is_not_positive_is_one_line_and_exit_2(command, budget, tmp_path):
    split = command.index("--") if "--" in command else len(command)
    result = _cli(tmp_path, *command[:split], *budget, *command[split:])
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"{budget[0]} must be a positive, finite number" in result.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


def test_a_limit_the_price_tag_cannot_have_is_refused_before_work(toy_task_dir, tmp_path):
    result = _cli(tmp_path, "train", "--task", str(toy_task_dir), "--model", TINY, "--out", "x", "--max-usd", "1")
    assert result.returncode == 2 and "--max-usd needs a price" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / ".x.work").exists()


def test_greenlm_run_budget_covers_the_run_and_resumes(toy_task_dir, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "tiny", "task": str(toy_task_dir), "teacher": TINY, "measure": {"region": "USA"},
        "evaluation": {"speed_examples": 16, "latency_examples": 2, "repeats": 1},
        "stages": {"finetune": {"epochs": 1, "batch_size": 32, "max_length": 32}}}))
    stopped = _cli(tmp_path, "run", str(recipe), "--no-progress", "--max-co2e-kg", "1e-15")
    assert stopped.returncode == 3, stopped.stderr
    lines = _budget_lines(stopped.stderr)
    assert len(lines) == 1 and "--max-co2e-kg 1e-15" in lines[0] and "kg CO2e" in lines[0]
    run = tmp_path / "runs" / "tiny"
    assert not (run / "finetune").exists() and not (run / "report.json").exists()
    resumed = _cli(tmp_path, "run", str(recipe), "--no-progress", "--max-co2e-kg", "100")
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "finetune" / "model.safetensors").is_file() and (run / "report.json").is_file()


def test_greenlm_measure_stops_a_command_that_would_run_forever(tmp_path):
    result = _greenlm(tmp_path, "measure", "--max-kwh", "1e-7", "--budget-check-s", "0.05", "--no-ledger", "--",
                      sys.executable, "-c", "while True: pass", timeout=120)
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("greenlm: budget: stopped python") and "(sent SIGTERM)" in last
    lines = _budget_lines(result.stderr)
    assert "> --max-kwh 1e-07" in last and [line for line in lines if "stopped" in line] == [last]
    assert len(lines) <= 2 and all("% of --max-kwh 1e-07" in line for line in lines if line != last)  # warned once
    assert "[stopped: budget]" in result.stderr  # the price tag is still printed
    fine = _greenlm(tmp_path, "measure", "--max-kwh", "1000", "--no-ledger", "--", sys.executable, "-c", "pass")
    assert fine.returncode == 0 and not _budget_lines(fine.stderr)


def test_pretraining_stopped_by_its_budget_resumes_to_the_same_weights_and_flops(tmp_path):
    from safetensors.torch import load_file

    from greenlm.pretrain.run import run_pretraining
    from test_pretrain_run import small_config, write_corpus

    config = small_config(write_corpus(tmp_path / "corpus.txt", lines=200), checkpoint_every_steps=100)  # 6 steps
    straight = run_pretraining(config, tmp_path / "straight", progress=False, on_note=lambda m: None)
    out = tmp_path / "pt"
    # 1 Wh a step for 4 steps, then 3 Wh: after step 5 the projection is 7 + 7/5 = 8.4 Wh > 8 Wh
    with pytest.raises(BudgetExceeded, match="at step 5 of 6 of pretrain"), \
            budgeting(BudgetWatch(Budget(max_kwh=0.008), read=FakeEnergy())):
        run_pretraining(config, out, progress=False, on_note=lambda m: None)
    assert not out.exists()
    with budgeting(BudgetWatch(Budget(max_kwh=1.0), read=FakeEnergy())):
        resumed = run_pretraining(config, out, progress=False, on_note=lambda m: None)
    a, b = load_file(straight.folder / "model.safetensors"), load_file(resumed.folder / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert resumed.pricetag["meta"]["attempts"] == 2
    assert resumed.pricetag["flops"] == pytest.approx(straight.pricetag["flops"], rel=1e-12)  # the stopped steps too
