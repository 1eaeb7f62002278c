"""``greenlm sweep``: the trial loop (pruning, reuse accounting, resume) with a stand-in runner, then a real
tiny sweep through the CLI."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
from conftest import greenlm_in_process
import yaml

from greenlm.common import GreenlmError
from greenlm.pipeline.runner import RunOutcome
from greenlm.stage import StageResult
from greenlm.pipeline.sweep import budget_curve, run_sweep
from greenlm.report.emp import expected_max_performance

SEARCH = ["stages.distill.learning_rate=loguniform(1e-5,1e-1)"]
ENERGY = {"finetune": 1.0e-2, "distill": 2.0e-3, "quantize": 1.0e-4}


def _recipe(tmp_path: Path) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "fake", "task": "sst2", "teacher": "tiny",
        "stages": {"finetune": {"epochs": 1}, "distill": {"student": "1x32"}, "quantize": {"from": "distill"}},
    }, sort_keys=False))
    return str(path)


class FakeRunner:
    """Stands in for run_recipe: scores follow the learning rate (best at 1e-3), finished stages are reused
    by their settings as the real cache reuses them by key; records every stage it really runs."""

    def __init__(self):
        self.cache: dict = {}
        self.ran: list[tuple[str, str]] = []

    @staticmethod
    def lr(recipe):
        return next((s.settings.learning_rate for s in recipe.stages if s.name == "distill"), None)

    def score(self, recipe, stage: str) -> float:
        lr = self.lr(recipe)
        if stage == "finetune":
            return 0.92
        distill = 0.9 - 0.05 * abs(math.log10(lr) + 3)
        return {"finetune": 0.92, "distill": distill, "quantize": distill - 0.01}[stage]

    def __call__(self, recipe, runs_root, *, resume, progress, echo, measure):
        assert resume is True
        outcome = RunOutcome(Path(runs_root) / recipe.name)
        for spec in recipe.stages:
            key = (spec.name, self.lr(recipe) if spec.name != "finetune" else None)
            status = "reused from earlier" if key in self.cache else "ran"
            if status == "ran":
                self.cache[key] = True
                self.ran.append((recipe.name, spec.name))
            metrics = {"splits": {"dev": {"accuracy": self.score(recipe, spec.name), "macro_f1": 0.5, "mcc": 0.1}}}
            outcome.stages.append(StageResult(spec.method, outcome.run_dir / spec.name, status, 1.0, metrics,
                                              {"energy_kwh": ENERGY[spec.name], "co2e_kg": 0.0, "cost_usd": None},
                                              name=spec.name))
        if measure:
            outcome.report = {"rows": [{"model": s.name, "accuracy": s.metrics["splits"]["dev"]["accuracy"]}
                                       for s in outcome.stages]}
        return outcome


def test_trials_prune_reuse_and_curve(tmp_path):
    fake = FakeRunner()
    outcome = run_sweep(_recipe(tmp_path), SEARCH, 8, runs_root=tmp_path / "runs", echo=lambda _: None, _run=fake,
                        seed=3)
    record = json.loads((outcome.sweep_dir / "sweep.json").read_text())
    trials = record["trials"]
    states = [t["state"] for t in trials]
    assert states.count("complete") + states.count("pruned") == 8
    assert states.count("pruned") >= 1, states  # a learning rate far from 1e-3 gives a distill below the median
    for t in trials:
        ran = {stage for name, stage in fake.ran if name == t["name"]}
        if t["state"] == "pruned":
            assert "quantize" not in ran and t["value"] is None  # stopped after distill: later stages not run
            assert list(t["intermediate"]) == ["finetune", "distill"]
        else:
            lr = t["params"]["stages.distill.learning_rate"]
            assert t["value"] == pytest.approx(0.9 - 0.05 * abs(math.log10(lr) + 3) - 0.01)
    # the teacher is trained once: later trials reuse it and are charged only for what they ran
    assert [s for n, s in fake.ran].count("finetune") == 1
    assert trials[0]["energy_kwh"] == pytest.approx(sum(ENERGY.values()))
    assert trials[0]["stages_ran"] == ["finetune", "distill", "quantize"]
    for t in trials[1:]:
        assert "finetune" in t["stages_reused"]
        expected = ENERGY["distill"] + (ENERGY["quantize"] if t["state"] == "complete" else 0)
        assert t["energy_kwh"] == pytest.approx(expected)
    # the budget curve: Dodge et al. over the finished trials, energy spent counting pruned trials too
    scores = [t["value"] for t in trials if t["state"] == "complete"]
    curve = record["curve"]
    assert [p["n"] for p in curve] == list(range(1, len(scores) + 1))
    for p in curve:
        assert p["expected_max"] == pytest.approx(expected_max_performance(scores, p["n"]))
    last_complete = max(i for i, t in enumerate(trials) if t["state"] == "complete")
    spent = sum(t["energy_kwh"] for t in trials[: last_complete + 1])
    assert curve[-1]["cumulative_energy_kwh"] == pytest.approx(spent)
    assert curve[-1]["best_so_far"] == pytest.approx(max(scores))
    assert {"sweep.md", "sweep.html", "sweep.json"} <= {p.name for p in outcome.files}
    assert (outcome.sweep_dir / "figures" / "budget_curve.png").is_file()


def test_resume_continues_and_changed_settings_are_refused(tmp_path):
    fake = FakeRunner()
    recipe = _recipe(tmp_path)
    common = dict(runs_root=tmp_path / "runs", echo=lambda _: None, _run=fake, prune=False, sampler="random")
    first = run_sweep(recipe, SEARCH, 3, **common)
    assert len(first.record["trials"]) == 3 and len(fake.ran) == 3 + 2 * 2
    again = run_sweep(recipe, SEARCH, 3, **common)  # nothing left to do
    assert len(again.record["trials"]) == 3 and len(fake.ran) == 7
    more = run_sweep(recipe, SEARCH, 5, **common)
    assert [t["number"] for t in more.record["trials"]] == [0, 1, 2, 3, 4]
    rates = [t["params"]["stages.distill.learning_rate"] for t in more.record["trials"]]
    assert len(set(rates)) == 5  # the resumed sweep drew new values, not the first ones again
    with pytest.raises(GreenlmError, match="differs in: search"):
        run_sweep(recipe, ["stages.distill.learning_rate=loguniform(1e-4,1e-2)"], 5, **common)
    forced = run_sweep(recipe, ["stages.distill.learning_rate=loguniform(1e-4,1e-2)"], 2, force=True, **common)
    assert [t["number"] for t in forced.record["trials"]] == [0, 1]


def test_an_interrupted_trial_is_recorded_and_replaced(tmp_path):
    recipe = _recipe(tmp_path)
    fake = FakeRunner()

    class Interrupted(FakeRunner):
        def __call__(self, recipe, *args, **kwargs):
            if recipe.name == "trial-001":
                raise KeyboardInterrupt
            return fake(recipe, *args, **kwargs)

    common = dict(runs_root=tmp_path / "runs", echo=lambda _: None, prune=False)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(recipe, SEARCH, 3, _run=Interrupted(), **common)
    done = run_sweep(recipe, SEARCH, 3, _run=fake, **common)
    states = {t["number"]: t["state"] for t in done.record["trials"]}
    assert states == {0: "complete", 1: "interrupted", 2: "complete", 3: "complete"}
    assert len(done.curve) == 3


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    fake = FakeRunner()

    def flaky(recipe, *args, **kwargs):
        if recipe.name == "trial-000":
            raise GreenlmError("loss became NaN at step 3; lower the learning rate")
        return fake(recipe, *args, **kwargs)

    outcome = run_sweep(_recipe(tmp_path), SEARCH, 2, runs_root=tmp_path / "runs", echo=lambda _: None, _run=flaky,
                        prune=False)
    first = outcome.record["trials"][0]
    assert first["state"] == "failed" and "NaN" in first["error"]
    assert [t["state"] for t in outcome.record["trials"][1:]] == ["complete", "complete"]


def test_fewer_than_two_finished_trials_make_no_curve():
    record = {"trials": [{"state": "complete", "value": 0.8, "energy_kwh": 1.0},
                         {"state": "pruned", "value": None, "energy_kwh": 1.0}]}
    with pytest.raises(GreenlmError, match="at least 2 finished trials, got 1"):
        budget_curve(record)


def test_real_tiny_sweep_through_the_cli(tmp_path):
    from conftest import write_toy_task_files

    write_toy_task_files(tmp_path / "toy")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "tiny", "task": str(tmp_path / "toy"), "teacher": "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99",
        "measure": {"region": "USA", "pue": 1.0},
        "stages": {"finetune": {"epochs": 2, "learning_rate": 3e-3, "batch_size": 16, "max_length": 32},
                   "distill": {"student": "1x32", "epochs": 1, "batch_size": 32}},
    }, sort_keys=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GREENLM_HOME": str(tmp_path / "home"), "PYTHONWARNINGS": "ignore"}
    args = [sys.executable, "-m", "greenlm", "sweep", str(recipe), "--trials", "3", "--no-measure", "--no-progress",
            "--search", "stages.distill.learning_rate=loguniform(1e-3,1e-2)", "--search",
            "stages.distill.temperature=choice(1,2)"]
    # through the command's entry point in this process (test_sweep_storage starts real workers side by side)
    result = greenlm_in_process(*args[3:], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "runs" / "tiny-sweep"
    record = json.loads((sweep / "sweep.json").read_text())
    assert [t["state"] for t in record["trials"]] == ["complete"] * 3
    assert [t["stages_ran"] for t in record["trials"]] == [["finetune", "distill"], ["distill"], ["distill"]]
    for t in record["trials"]:  # each trial is a normal run folder holding the sampled settings
        resolved = yaml.safe_load((tmp_path / t["run_dir"] / "recipe.yaml").read_text())
        assert resolved["stages"]["distill"]["learning_rate"] == pytest.approx(
            t["params"]["stages.distill.learning_rate"])
        assert resolved["stages"]["distill"]["temperature"] == t["params"]["stages.distill.temperature"]
        splits = json.loads((tmp_path / t["run_dir"] / "distill" / "metrics.json").read_text())["splits"]
        assert t["value"] == pytest.approx(splits["validation"]["accuracy"])  # compared on validation, not dev
        assert t["objective_split"] == "validation" and "dev" in splits
    assert len(record["curve"]) == 3 and (sweep / "figures" / "budget_curve.svg").is_file()
    assert "expected best validation accuracy of 3 trials" in result.stdout
    # the same command again has nothing to run; `greenlm report` rewrites the sweep's report
    again = greenlm_in_process(*args[3:], env=env, cwd=tmp_path)
    assert again.returncode == 0 and len(json.loads((sweep / "sweep.json").read_text())["trials"]) == 3
    (sweep / "sweep.md").unlink()
    report = greenlm_in_process("report", str(sweep), env=env, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "## Budget/performance curve" in (sweep / "sweep.md").read_text()
