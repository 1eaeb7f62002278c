"""The price-tag commands through the real `greenlm` CLI: measure, flops, calc, ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import greenlm_in_process

BUSY_CHILD = (
    "import subprocess, sys\n"
    "code = 'import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.3: pass'\n"
    "subprocess.run([sys.executable, '-c', code], check=True)\n"
    "sys.exit(3)\n"
)


def greenlm(*args, home, **kwargs):
    """``greenlm ARGS`` in a process of its own (``greenlm measure`` runs a command, and passes on its exit code)."""
    env = {**os.environ, "GREENLM_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "greenlm", *args], capture_output=True, text=True, env=env,
                          timeout=300, **kwargs)


def cli(*args, home):
    """``greenlm ARGS`` through the same entry point in this process: calc and flops compute, no seconds of imports."""
    return greenlm_in_process(*args, env={**os.environ, "GREENLM_HOME": str(home), "COLUMNS": "200"})


def test_measure_returns_the_command_exit_code_and_counts_its_children(tmp_path):
    out = tmp_path / "tag.json"
    run = greenlm("measure", "--region", "USA", "--pue", "1.1", "--project", "demo", "--out", str(out),
                  "--emissions-csv", str(tmp_path), "--", sys.executable, "-c", BUSY_CHILD, home=tmp_path)
    assert run.returncode == 3, run.stderr
    assert "price tag" in run.stderr and "[exit 3]" in run.stderr
    rec = json.loads(out.read_text())
    assert rec["cpu_s"] >= 0.29  # the grandchild's busy loop is in the command's CPU time
    assert rec["wall_s"] >= 0.3 and rec["status"] == "exit 3"
    assert rec["pue"] == 1.1 and rec["co2e_kg"] > 0 and rec["intensity_region"] == "USA"
    assert rec["meta"] == {"program": os.path.basename(sys.executable), "arguments": 2}
    assert (tmp_path / "emissions.csv").read_text().startswith("timestamp,project_name,run_id")

    ledger = greenlm("ledger", "--group-by", "project", "--json", home=tmp_path)
    assert ledger.returncode == 0, ledger.stderr
    (group,) = json.loads(ledger.stdout)["totals"]
    assert group["group"] == "demo" and group["records"] == 1
    assert group["energy_kwh"] == pytest.approx(rec["energy_kwh"])
    assert greenlm("ledger", home=tmp_path).returncode == 0


def test_measure_missing_or_unrunnable_command(tmp_path):
    run = greenlm("measure", "--no-ledger", "--", "nosuchcmd-greenlm", "--flag", home=tmp_path)
    assert run.returncode == 127
    assert run.stderr.strip() == "greenlm: command not found: nosuchcmd-greenlm (not on PATH)"
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    run = greenlm("measure", "--no-ledger", "--", str(script), home=tmp_path)
    assert run.returncode == 126 and "not an executable file" in run.stderr
    run = greenlm("measure", "--no-ledger", home=tmp_path)
    assert run.returncode == 2 and "no command given" in run.stderr


def test_measure_bad_options_exit_2_before_running(tmp_path):
    marker = tmp_path / "ran"
    run = greenlm("measure", "--pue", "0.5", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')", home=tmp_path)
    assert run.returncode == 2 and "PUE must be 1.0 or more" in run.stderr
    assert not marker.exists()
    run = greenlm("measure", "--region", "Frnace", "--", "true", home=tmp_path)
    assert run.returncode == 2 and "closest: FRANCE" in run.stderr and "Traceback" not in run.stderr


def test_calc_reproduces_strubell_table_3_transformer_base(tmp_path):
    # Strubell et al. 2019, Table 3, Transformer (base): 8 x P100, 12 h, 1415.78 W -> 27 kWh-PUE, 26 lbs
    run = cli("calc", "--watts", "1415.78", "--hours", "12", "--preset", "strubell2019",
                  "--usd-per-hour", "2.5", "--json", home=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    energy = 1.58 * 12 * 1415.78 / 1000
    assert out["energy_kwh"] == pytest.approx(energy)
    assert out["co2e_lbs"] == pytest.approx(0.954 * energy)
    assert out["co2e_kg"] == pytest.approx(0.954 * energy * 0.45359237)
    assert out["cost_usd"] == pytest.approx(30.0)
    assert round(out["energy_kwh"]) == 27 and round(out["co2e_lbs"]) == 26


def test_calc_component_form_and_bad_input(tmp_path):
    run = cli("calc", "--cpu-watts", "100", "--ram-watts", "20", "--gpu-watts", "250", "--gpus", "4",
                  "--hours", "2", "--pue", "1.2", "--intensity-g-per-kwh", "400", "--json", home=tmp_path)
    out = json.loads(run.stdout)
    assert out["power_w"] == 1120 and out["energy_kwh"] == pytest.approx(1.2 * 2 * 1120 / 1000)
    assert out["co2e_kg"] == pytest.approx(out["energy_kwh"] * 0.4)
    for args, message in [
        (("--watts", "100", "--hours", "0"), "hours must be greater than 0"),
        (("--watts", "-5", "--hours", "1"), "watts must be greater than 0"),
        (("--watts", "5", "--hours", "1", "--pue", "0.8"), "PUE must be 1.0 or more"),
        (("--watts", "5", "--hours", "1", "--region", "Untied States"), "unknown region"),
        (("--watts", "5", "--hours", "1", "--gpus", "2"), "--gpus needs --gpu-watts"),
        (("--hours", "1",), "give the power"),
    ]:
        run = cli("calc", *args, home=tmp_path)
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1


def test_flops_json(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ElectraConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=37, embedding_size=16, architectures=["ElectraForPreTraining"])
    config.save_pretrained(tmp_path / "model")
    run = cli("flops", str(tmp_path / "model"), "--seq-len", "16", "--convention", "electra",
                  "--train-steps", "10", "--batch-size", "4", "--pretraining", "mlm", "--json", home=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    from greenlm.measure import count_flops

    api = count_flops(config, 16, convention="electra", train_steps=10, batch_size=4, pretraining="mlm")
    assert out["infer_flops"] == pytest.approx(api.infer_flops)
    assert out["train_flops"] == pytest.approx(api.train_flops)
    assert out["params"]["total"] == api.params["total"]
    run = cli("flops", str(tmp_path / "model"), "--seq-len", "16", home=tmp_path)
    assert run.returncode == 0 and "attention" in run.stdout and "non-embedding" in run.stdout
    run = cli("flops", str(tmp_path / "nowhere"), "--seq-len", "16", home=tmp_path)
    assert run.returncode == 2 and "does not exist" in run.stderr
