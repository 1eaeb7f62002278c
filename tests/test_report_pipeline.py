"""The report at the end of a real (tiny) ``greenlm run``: figures, HTML, LaTeX and model cards, and that they
change nothing the cache depends on."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _report_runs import front_matter
from conftest import greenlm_in_process

TINY = "tiny:layers=2,hidden=32,heads=4,ffn=37,vocab=99"


def _env(root: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "GREENLM_HOME": str(root / "home"), "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import write_toy_task_files

    root = tmp_path_factory.mktemp("report-run")
    write_toy_task_files(root / "toy")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "tiny", "task": str(root / "toy"), "teacher": TINY,
        "measure": {"region": "USA", "pue": 1.2, "usd_per_hour": 0.5},
        "evaluation": {"speed_examples": 32, "latency_examples": 4, "repeats": 1},
        "stages": {
            "finetune": {"epochs": 3, "learning_rate": 3e-3, "batch_size": 16, "max_length": 32},
            "distill": {"student": "1x32", "epochs": 1},
            "early_exit": {"from": "finetune", "epochs": 1, "train_subset": 128, "measure_speed": False},
        },
    }, sort_keys=False))
    args = [sys.executable, "-m", "greenlm", "run", str(recipe), "--no-progress"]
    # through the command's entry point in this process (test_pipeline_run starts a real one); the run without
    # matplotlib below needs a fresh interpreter and starts one
    result = greenlm_in_process(*args[3:], env=_env(root), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, args, result


def test_run_ends_with_every_report(tiny_run):
    root, _, result = tiny_run
    run = root / "runs" / "tiny"
    figures = {p.stem for p in (run / "figures").glob("*.png")}
    assert figures == {"accuracy_vs_throughput", "accuracy_vs_flops", "accuracy_vs_inference_energy",
                       "accuracy_vs_size", "early_exit_early_exit", "breakdown", "pricetag",
                       "confusion_finetune", "confusion_distill", "confusion_early_exit"}  # one per measured model
    for stem in figures:
        assert (run / "figures" / f"{stem}.svg").is_file() and (run / "figures" / f"{stem}.csv").is_file()
    assert (run / "report.html").stat().st_size > 50_000 and "\\toprule" in (run / "report.tex").read_text()
    report = json.loads((run / "report.json").read_text())
    assert set(report["pareto_front"]) == {"throughput_examples_per_s", "flops_per_example",
                                           "inference_energy_kwh_per_1000", "size_mb"}
    assert all(report["pareto_front"].values())
    assert "report:" in result.stderr and "report.html" in (run / "run.log").read_text()
    md = (run / "report.md").read_text()
    assert "![Accuracy vs throughput](figures/accuracy_vs_throughput.png)" in md


def test_every_model_folder_has_a_card(tiny_run):
    root, _, _ = tiny_run
    run = root / "runs" / "tiny"
    report = json.loads((run / "report.json").read_text())
    for row in report["rows"]:
        meta = front_matter((run / row["model"] / "README.md").read_text())
        metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
        assert metrics["accuracy"] == pytest.approx(row["accuracy"], abs=1e-6)
        co2 = meta["co2_eq_emissions"]
        assert co2["emissions"] == pytest.approx(1000 * row["cumulative_co2e_kg"], rel=1e-5)
        assert co2["geographical_location"].startswith("USA") and co2["hardware_used"] != "unknown"
        assert meta["greenlm"]["artifact_sha256"] == json.loads((run / row["model"] / "stage.json").read_text())[
            "artifact_sha256"]
        assert meta["greenlm"]["stage_cost_usd"] == pytest.approx(row["stage_cost_usd"])
    ee = front_matter((run / "early_exit" / "README.md").read_text())
    assert ee["library_name"] == "greenlm" and "early-exit" in ee["tags"]


def test_cards_and_figures_leave_the_cache_intact(tiny_run):
    root, args, _ = tiny_run
    again = greenlm_in_process(*args[3:], env=_env(root), cwd=root)  # the same command, in this process
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("reused (inputs unchanged)") == 3 and "measurements: reused" in again.stderr


def test_html_of_a_real_run_renders_in_chromium(tiny_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium; .ci/run installs it)")
    root, _, _ = tiny_run
    page = root / "runs" / "tiny" / "report.html"
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'data-figures-rendered="10/10"' in dom  # 7 figures and 3 confusion matrices (one per model)
    assert re.findall(r'<tr[^>]*data-model="([^"]+)"', dom) == ["finetune", "distill", "early_exit"]


def test_run_without_matplotlib_still_succeeds(tiny_run):
    root, args, _ = tiny_run
    code = ("import sys; sys.modules['matplotlib'] = None; from greenlm.cli.main import main;"
            f" sys.argv = ['greenlm'] + {args[3:] + ['--name', 'nompl']!r}; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(root), cwd=root,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = root / "runs" / "nompl"
    assert "figures skipped: matplotlib is not installed" in result.stderr
    assert "figures skipped" in (run / "run.log").read_text()
    assert (run / "report.html").is_file() and not (run / "figures").exists()
    assert (run / "distill" / "README.md").is_file()
