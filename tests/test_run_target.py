"""Issue 14: the run's target and Pareto front, the machine's load while timing, which split chose what.

Hand-made rows, measurements and stage folders (``_report_runs.make_run``): no training, fast.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from _report_runs import INTENSITY_G_PER_KWH, MODELS, make_run, pricetag

from greenlm.measure import machine_load
from greenlm.measure.machine_load import CpuWindow, busy_cpu_seconds, is_busy, load_record
from greenlm.report.provenance import load_sentence, selection_markdown, selection_warning, selections
from greenlm.report.regenerate import FORMATS, generate_report
from greenlm.report.target import (describe_target, mark_rows, meets, target_record, target_region,
                                   target_settings)

BUSY = {"loadavg_1m_before": 1.5, "loadavg_1m_after": 2.25, "cpus": 2, "threads": 2, "window_s": 10.0,
        "other_processes_cpu_share": 0.34, "busy": True, "rule": machine_load.BUSY_RULE}
CALM = {**BUSY, "loadavg_1m_before": 0.1, "loadavg_1m_after": 0.9, "other_processes_cpu_share": 0.02, "busy": False}


def _rows(**changes) -> list[dict]:
    """Report rows of the four hand-made models (as build_rows makes them), with ``changes[model]`` applied."""
    ref = MODELS["finetune"]
    rows = []
    for model, (method, upstream, acc, thr, flops, _e1k, size, e_stage, _layers, _ffn) in MODELS.items():
        rows.append({"model": model, "method": method, "from": upstream, "status": "ran", "accuracy": acc,
                     "performance_retained_pct": 100 * acc / ref[2], "throughput_examples_per_s": thr,
                     "speedup_x": thr / ref[3], "latency_ms_p50": 1000 / thr, "flops_per_example": flops,
                     "size_mb": size, "stage_energy_kwh": e_stage, "stage_co2e_kg": e_stage * 0.4,
                     "stage_cost_usd": 0.5 * e_stage, "stage_wall_s": 1000 * e_stage,
                     **changes.get(model, {})})
    return rows


def _by_model(rows: list[dict], key: str) -> dict:
    return {r["model"]: r[key] for r in rows}


# ---- the target and the front ---------------------------------------------------------------------------------


def test_settings_come_from_the_recipe_and_an_empty_target_is_none():
    assert target_settings({"target": {"speedup": 3, "min_retained_pct": 97.0}}) == {
        "speedup": 3.0, "min_retained_pct": 97.0, "max_latency_ms": None, "max_flops": None}
    assert target_settings({"target": {"speedup": None, "min_retained_pct": None}}) is None
    assert target_settings({"stages": {}}) is None


def test_description_matches_the_recipe_schema():
    from greenlm.pipeline.schema import TargetSettings

    for values in ({"speedup": 10, "min_retained_pct": 97}, {"max_latency_ms": 2.5}, {"max_flops": 3e8},
                   {"speedup": 4, "max_latency_ms": 1, "max_flops": 1.5e9, "min_retained_pct": 99.5}):
        settings = target_settings({"target": values})
        assert describe_target(settings) == TargetSettings(**values).describe()


def test_target_met_best_is_the_most_accurate_that_meets_it():
    rows = _rows()
    settings = target_settings({"target": {"speedup": 3, "min_retained_pct": 97}})
    front = mark_rows(rows, settings)
    # distill: 3x, 97.8% retained; quantize: 4.5x, 97.3%; the teacher is 1x and early_exit 0.9x
    assert _by_model(rows, "meets_target") == {"finetune": False, "distill": True, "quantize": True,
                                               "early_exit": False}
    assert front == ["finetune", "distill", "quantize"]
    assert _by_model(rows, "on_front") == {"finetune": True, "distill": True, "quantize": True, "early_exit": False}
    record = target_record(rows, settings)
    assert record["met_by"] == ["distill", "quantize"] and record["best"] == "distill" and record["best_meets"]
    assert record["speedup"] == 3.0 and record["max_flops"] is None
    assert record["summary"].startswith("distill meets the target (>= 3x the teacher's throughput, >= 97% of its")
    assert "3.00x the teacher's throughput" in record["summary"] and "2 models meet it" in record["summary"]
    assert record["shortfall"] is None and record["closest_rule"] is None


def test_latency_bound_changes_the_best():
    rows = _rows()
    settings = target_settings({"target": {"speedup": 3, "max_latency_ms": 3.0}})
    mark_rows(rows, settings)
    record = target_record(rows, settings)  # distill's p50 is 3.33 ms, quantize's 2.22 ms
    assert record["met_by"] == ["quantize"] and record["best"] == "quantize"


def test_target_not_met_picks_the_closest_and_says_by_how_much():
    rows = _rows()
    settings = target_settings({"target": {"speedup": 10, "min_retained_pct": 99}})
    mark_rows(rows, settings)
    assert not any(_by_model(rows, "meets_target").values())
    record = target_record(rows, settings)
    # shortfalls: quantize 0.55 + 0.017, distill 0.70 + 0.012, early_exit 0.91, the teacher 0.90
    assert record["met_by"] == [] and record["best"] == "quantize" and record["best_meets"] is False
    assert record["shortfall"]["speedup"] == pytest.approx(0.55)
    assert record["shortfall"]["min_retained_pct"] == pytest.approx((99 - 100 * 0.895 / 0.92) / 99, abs=1e-4)
    assert record["closest_rule"].startswith("no model meets the target: the closest")
    assert record["summary"].startswith("No model meets the target (>= 10x the teacher's throughput")
    assert "the closest is quantize" in record["summary"] and "speedup by 55%" in record["summary"]


def test_missing_figures_are_unknown_not_failures():
    rows = _rows(distill={"speedup_x": None, "throughput_examples_per_s": None, "latency_ms_p50": None})
    settings = target_settings({"target": {"speedup": 3}})
    mark_rows(rows, settings)
    assert _by_model(rows, "meets_target") == {"finetune": False, "distill": None, "quantize": True,
                                               "early_exit": False}
    assert "distill" not in mark_rows(rows, settings)  # no throughput: not on the front either
    unmeasured = _rows(quantize={"report_status": "not measured"})
    mark_rows(unmeasured, settings)
    assert _by_model(unmeasured, "meets_target")["quantize"] is None
    assert meets(rows[2], None) is None


def test_no_target_gives_none_everywhere():
    rows = _rows()
    mark_rows(rows, None)
    assert target_record(rows, None) is None and target_region(rows, None) is None
    assert all(r["meets_target"] is None for r in rows)
    assert _by_model(rows, "on_front")["distill"] is True


def test_cost_of_the_run_the_chain_and_the_teacher():
    rows = _rows()
    settings = target_settings({"target": {"speedup": 4}})
    mark_rows(rows, settings)
    cost = target_record(rows, settings)["cost"]
    energy = {m: v[7] for m, v in MODELS.items()}
    assert cost["run"]["energy_kwh"] == pytest.approx(sum(energy.values()))
    assert cost["run"]["wall_s"] == pytest.approx(1000 * sum(energy.values()))
    assert cost["teacher_finetune"]["energy_kwh"] == pytest.approx(energy["finetune"])
    assert cost["chain_stages"] == ["quantize", "distill", "finetune"]
    assert cost["chain"]["co2e_kg"] == pytest.approx(0.4 * (energy["quantize"] + energy["distill"]
                                                            + energy["finetune"]))


def test_target_region_is_relative_to_the_teacher():
    region = target_region(_rows(), {"speedup": 3.0, "min_retained_pct": 97.0, "max_latency_ms": None,
                                     "max_flops": None})
    assert region["throughput"] == pytest.approx(300.0) and region["accuracy"] == pytest.approx(0.97 * 0.92)
    assert target_region(_rows(), {"speedup": None, "min_retained_pct": None, "max_latency_ms": 2.0,
                                   "max_flops": None}) is None


def test_figure_shades_the_target_region():
    from greenlm.report import figures as figs

    if not figs.available():
        pytest.skip("matplotlib is not installed")
    rows = _rows()
    settings = target_settings({"target": {"speedup": 5, "min_retained_pct": 97}})
    mark_rows(rows, settings)
    fig = figs.tradeoff_figure(rows, figs.TRADEOFF_AXES[0], teacher="finetune", target=target_region(rows, settings))
    (ax,) = fig.figure.axes
    (patch,) = [p for p in ax.patches if p.get_label() == "target region"]
    assert patch.get_x() == pytest.approx(500.0) and patch.get_y() == pytest.approx(97 * 0.92)
    assert ax.get_xlim()[1] > 500.0  # widened: no model reaches 5x, the region is still shown
    table = list(csv.DictReader(io.StringIO(fig.csv)))
    assert {r["model"]: r["meets_target"] for r in table} == {m: "0" for m in MODELS}
    assert "The shaded region is the target (throughput >= 500 examples/s, accuracy >= 89.24%)." in fig.caption
    flops = figs.tradeoff_figure(rows, figs.TRADEOFF_AXES[1], target=target_region(rows, settings))
    assert not [p for p in flops.figure.axes[0].patches if p.get_label() == "target region"]
    fig.figure.clear()
    flops.figure.clear()


# ---- the machine's load while timing -------------------------------------------------------------------------


def _proc_stat(path: Path, per_cpu: dict[int, int]) -> None:
    """A /proc/stat whose CPUs have ``busy`` ticks of user time each (and 1000 idle)."""
    total = sum(per_cpu.values())
    lines = [f"cpu  {total} 0 0 {1000 * len(per_cpu)} 0 0 0 0 0 0"]
    lines += [f"cpu{n} {busy} 0 0 1000 0 0 0 0 0 0" for n, busy in per_cpu.items()]
    path.write_text("\n".join(lines + ["intr 1 2 3", "ctxt 99"]) + "\n")


def test_proc_stat_counts_busy_time_of_the_chosen_cpus(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 10 20 5000 300 1 2 7 50 0\ncpu0 60 5 10 2500 150 1 1 4 25 0\n"
                    "cpu1 40 5 10 2500 150 0 1 3 25 0\n")
    ticks = os.sysconf("SC_CLK_TCK")
    # busy = user + nice + system + irq + softirq + steal; not idle, iowait or guest (already in user)
    assert busy_cpu_seconds([1], str(stat)) == (pytest.approx((40 + 5 + 10 + 0 + 1 + 3) / ticks), 1)
    assert busy_cpu_seconds(None, str(stat)) == (pytest.approx((100 + 10 + 20 + 1 + 2 + 7) / ticks), 2)
    assert busy_cpu_seconds([5], str(stat))[1] == 2  # a CPU the file does not list: the machine's total
    assert busy_cpu_seconds(None, str(tmp_path / "missing")) is None


def test_window_takes_other_processes_time_on_this_process_cpus(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    ticks = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(machine_load, "allowed_cpus", lambda: [0, 1])
    _proc_stat(stat, {0: 0, 1: 0, 2: 0})
    with CpuWindow(str(stat)) as window:
        _proc_stat(stat, {0: ticks, 1: ticks // 2, 2: 50 * ticks})  # cpu2 is not ours: not counted
    assert window.cpus == 2
    assert window.busy_cpu_s == pytest.approx(1.5)
    assert window.other_cpu_s == pytest.approx(1.5 - window.own_cpu_s)
    window.wall_s = 3.0
    record = load_record(0.5, 1.25, window, threads=2)
    assert record["other_processes_cpu_share"] == pytest.approx((1.5 - window.own_cpu_s) / 6, abs=1e-3)
    assert record["busy"] is True and record["cpus"] == 2
    assert record["loadavg_1m_before"] == 0.5 and record["loadavg_1m_after"] == 1.25
    assert set(record) >= {"loadavg_1m_before", "loadavg_1m_after", "cpus", "other_processes_cpu_share", "busy"}


def test_busy_rule():
    # measured: more than a quarter of a CPU taken by other processes, on average
    assert is_busy(other_cpu_s=3.0, wall_s=10.0, cpus=2, threads=2, loadavg_before=0.0) is True
    assert is_busy(other_cpu_s=2.0, wall_s=10.0, cpus=2, threads=2, loadavg_before=9.0) is False
    # without /proc/stat: the load average before the pass against the CPUs the timing threads leave free
    assert is_busy(other_cpu_s=None, wall_s=10.0, cpus=4, threads=2, loadavg_before=2.6) is True
    assert is_busy(other_cpu_s=None, wall_s=10.0, cpus=4, threads=2, loadavg_before=2.4) is False
    assert is_busy(other_cpu_s=None, wall_s=10.0, cpus=4, threads=2, loadavg_before=None) is False


def test_load_wording():
    busy = load_sentence({"load": BUSY})
    assert busy == ("the machine was shared while timing (load 1.50 before, 2.25 after; other processes 34% of the 2"
                    " CPUs it could use): absolute speeds are low and noisy; ratios were taken in interleaved rounds")
    calm = load_sentence({"load": CALM})
    assert calm.startswith("the machine was not busy while timing (load 0.10 before, 0.90 after; other processes 2%")
    assert "shared" not in calm
    assert "other processes n/a" in load_sentence({"load": {**CALM, "other_processes_cpu_share": None}})
    assert load_sentence({"cpu": "x"}) is None and load_sentence(None) is None


def test_interleaved_rounds_rotate_the_order_and_keep_the_best(monkeypatch):
    from greenlm.data import EncodedSplit
    from greenlm.runtime import speed

    inputs = EncodedSplit(input_ids=[[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 4, 2]], token_type_ids=None, labels=[0, 1, 0])
    calls = []

    def forward_of(name):
        def forward(batch):
            if not calls or calls[-1] != name:
                calls.append(name)
            return torch.zeros(len(batch["input_ids"]), 2)
        return forward

    throughputs = iter([10.0, 30.0, 20.0, 5.0, 50.0, 40.0, 70.0, 60.0, 6.0])
    real = speed.measure_speed

    def fake_measure(forward, encoded, **kwargs):
        assert kwargs["repeats"] == 1  # one timed pass per model per round
        report = real(forward, encoded, **kwargs)
        return speed.SpeedReport(**{**report.to_dict(), "throughput_examples_per_s": next(throughputs)})

    monkeypatch.setattr(speed, "measure_speed", fake_measure)
    models = {name: (forward_of(name), inputs, 0) for name in ("a", "b", "c")}
    best = speed.interleaved_speed(models, batch_size=2, latency_examples=2, rounds=3, threads=1)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    # the throughputs came in call order: a 10, b 30, c 20 | b 5, c 50, a 40 | c 70, a 60, b 6
    assert {n: best[n]["rounds"]["throughput_examples_per_s"] for n in "abc"} == {
        "a": [10.0, 40.0, 60.0], "b": [30.0, 5.0, 6.0], "c": [20.0, 50.0, 70.0]}
    assert {n: best[n]["throughput_examples_per_s"] for n in "abc"} == {"a": 60.0, "b": 30.0, "c": 70.0}
    assert all(best[n]["latency_ms_p50"] == min(best[n]["rounds"]["latency_ms_p50"]) for n in "abc")
    assert speed.rotated(["a", "b"], 3) == ["b", "a"] and speed.rotated([], 2) == []


def test_measurement_cache_key_ignores_the_load(tmp_path, monkeypatch):
    from greenlm.pipeline import measure_pass

    run = make_run(tmp_path)
    recipe = _recipe({"speedup": 3})
    stages = [SimpleNamespace(name=m, folder=run / m) for m in MODELS]
    key = measure_pass._pass_key(recipe, stages, "dev")
    saved = {**_measurements(BUSY), "key": key}
    (run / "measurements.json").write_text(json.dumps(saved))
    logged = []
    for load in ((0.0, 0.0, 0.0), (7.5, 7.0, 6.0)):  # another load now: the saved pass is still the one
        monkeypatch.setattr(os, "getloadavg", lambda load=load: load)
        assert measure_pass._pass_key(recipe, stages, "dev") == key
        assert measure_pass.measure_models(recipe, SimpleNamespace(eval_split="dev", splits={}), stages, run,
                                            logged.append) == saved
    # the saved pass was taken on a busy machine: the line says how to retake it
    assert logged == ["measurements: reused (models and settings unchanged; taken on a busy machine: --remeasure"
                      " takes them again)"] * 2


def test_remeasure_takes_the_pass_again(tmp_path, monkeypatch):
    """``remeasure`` (greenlm run --remeasure) ignores a saved pass with the same key."""
    from greenlm.pipeline import measure_pass

    run = make_run(tmp_path)
    recipe = _recipe({"speedup": 3})
    stages = [SimpleNamespace(name=m, folder=run / m) for m in MODELS]
    saved = {**_measurements(BUSY), "key": measure_pass._pass_key(recipe, stages, "dev")}
    (run / "measurements.json").write_text(json.dumps(saved))

    class Retaken(Exception):
        pass

    def stop(*_a, **_k):
        raise Retaken

    monkeypatch.setattr(measure_pass, "_load", stop)  # the first thing a new pass does: load every model
    logged = []
    with pytest.raises(Retaken):
        measure_pass.measure_models(recipe, SimpleNamespace(name="toy", eval_split="dev", splits={}), stages, run,
                                    logged.append, remeasure=True)
    assert logged[0] == "measurements: taken again (--remeasure)"


# ---- which split chose what ------------------------------------------------------------------------------------

VALIDATION = {"split": "validation", "examples": 300, "chose": "best epoch", "from": "train"}
ON_DEV = {"split": "dev", "examples": 872, "chose": "exit threshold",
          "warning": "chosen on 'dev', a split that is also reported: its figures are optimistic"}


def test_selections_are_found_wherever_a_stage_records_them():
    rows = selections({"finetune": {"splits": {}, "finetune": {"selection": VALIDATION}},
                       "distill": {"selection": VALIDATION},
                       "quantize": {"quantize": {"scheme": "int8"}},
                       "early_exit": {"early_exit": {"selection": [ON_DEV, {**VALIDATION, "chose": "layers"}]}},
                       "missing": None})
    assert [(r["stage"], r["recorded_under"], r["chose"], r["split"]) for r in rows] == [
        ("finetune", "finetune", "best epoch", "validation"), ("distill", None, "best epoch", "validation"),
        ("early_exit", "early_exit", "exit threshold", "dev"), ("early_exit", "early_exit", "layers", "validation")]
    assert [r["on_reported_split"] for r in rows] == [False, False, True, False]
    assert selection_warning(rows).startswith("early_exit made its choice on `dev`, a split that is also reported")
    assert selection_warning(rows[:2]) is None
    lines = selection_markdown(rows)
    assert lines[0] == "## Which split chose what"
    assert "| early_exit | exit threshold | dev **(reported split)** | 872 |" in lines
    assert "| finetune | best epoch | validation (from train) | 300 |" in lines
    assert any(line.startswith("> **Warning.** early_exit made its choice on `dev`") for line in lines)
    assert selection_markdown([]) == []


# ---- the whole report, through `greenlm report` and through the end of `greenlm run` ---------------------------


def _with(run: Path, *, target: dict | None, load: dict | None, selection: dict[str, dict]) -> Path:
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["target"] = target
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    for name in ("measurements.json", "report.json"):
        data = json.loads((run / name).read_text())
        if load is not None:
            data["machine"]["load"] = load
        (run / name).write_text(json.dumps(data))
    for stage, record in selection.items():
        metrics = json.loads((run / stage / "metrics.json").read_text())
        metrics.setdefault(MODELS[stage][0], {})["selection"] = record
        (run / stage / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_report_of_a_busy_run_with_a_target_met(tmp_path):
    run = _with(make_run(tmp_path), target={"speedup": 3, "min_retained_pct": 97}, load=BUSY,
                selection={"finetune": VALIDATION, "early_exit": ON_DEV})
    generate_report(run, FORMATS, on_note=lambda _: None)
    report = json.loads((run / "report.json").read_text())
    assert report["target"]["met_by"] == ["distill", "quantize"] and report["target"]["best"] == "distill"
    assert {r["model"]: (r["on_front"], r["meets_target"]) for r in report["rows"]} == {
        "finetune": (True, False), "distill": (True, True), "quantize": (True, True), "early_exit": (False, False)}
    assert [(s["stage"], s["split"], s["on_reported_split"]) for s in report["selection"]] == [
        ("finetune", "validation", False), ("early_exit", "dev", True)]
    assert report["machine"]["load"]["busy"] is True
    md = (run / "report.md").read_text()
    models, rest = md.split("## Models", 1)[1].split("## Target", 1)
    assert "**Speed and speedup:** the machine was shared while timing (load 1.50 before, 2.25 after; other" in models
    assert "ratios were taken in interleaved rounds." in models
    target = rest.split("## Which split chose what")[0]
    assert "The recipe's target: >= 3x the teacher's throughput, >= 97% of its accuracy." in target
    assert "**distill meets the target" in target and "Met by: `distill`, `quantize`." in target
    run_kwh = sum(v[7] for v in MODELS.values())
    assert f"| the whole run (every stage's price tag; reused stages at their original cost) | {run_kwh:.3g} |" \
        in target
    assert f"| of which the teacher's fine-tuning | {MODELS['finetune'][7]:.3g} |" in target
    assert "| the chain that produced distill: distill <- finetune |" in target
    assert "> **Warning.** early_exit made its choice on `dev`" in md
    page = (run / "report.html").read_text()
    assert 'id="load-note"><strong>Speed and speedup:</strong> the machine was shared while timing' in page
    assert '<section id="target">' in page and "distill meets the target" in page
    assert page.count('<span class="badge target">meets target</span>') == 2
    assert '<section id="selection">' in page and "<strong>Warning.</strong> early_exit made its choice" in page
    table = list(csv.DictReader(io.StringIO((run / "figures" / "accuracy_vs_throughput.csv").read_text())))
    assert {r["model"]: r["meets_target"] for r in table} == {"finetune": "0", "distill": "1", "quantize": "1",
                                                              "early_exit": "0"}


def test_report_of_a_calm_run_with_a_target_not_met_and_honest_selection(tmp_path):
    run = _with(make_run(tmp_path), target={"speedup": 10}, load=CALM,
                selection={"finetune": VALIDATION, "distill": VALIDATION})
    generate_report(run, ("md", "json", "html"), on_note=lambda _: None)
    report = json.loads((run / "report.json").read_text())
    assert report["target"]["met_by"] == [] and report["target"]["best"] == "quantize"
    md = (run / "report.md").read_text()
    assert "**Speed and speedup:** the machine was not busy while timing (load 0.10 before, 0.90 after" in md
    assert "shared while timing" not in md
    assert "**No model meets the target (>= 10x the teacher's throughput); the closest is quantize" in md
    assert "Met by: no model. The closest is chosen thus: no model meets the target" in md
    assert "Warning" not in md and "Every choice was made on rows kept apart from `dev`" in md
    page = (run / "report.html").read_text()
    assert '<p class="note" id="load-note">Speed and speedup: the machine was not busy' in page
    assert "meets target</span>" not in page


def test_older_run_without_target_load_or_selection_reports_as_before(tmp_path):
    run = make_run(tmp_path)
    generate_report(run, ("md", "json"), on_note=lambda _: None)
    report = json.loads((run / "report.json").read_text())
    assert report["target"] is None and report["selection"] == []
    assert [r["on_front"] for r in report["rows"]] == [True, True, True, False]
    md = (run / "report.md").read_text()
    assert "## Target" not in md and "## Which split chose what" not in md and "while timing" not in md


def _recipe(target: dict):
    from greenlm.pipeline.schema import parse_recipe

    return parse_recipe({"name": "hand", "task": "sst2", "teacher": "minilm",
                         "measure": {"region": "FRA", "pue": 1.2}, "target": target,
                         "stages": {"finetune": {}, "distill": {"from": "finetune"}, "quantize": {"from": "distill"},
                                    "early_exit": {"from": "finetune"}}})


def _measurements(load: dict) -> dict:
    models = {}
    for model, (_m, _u, acc, thr, flops, e1k, size, _e, _l, _f) in MODELS.items():
        models[model] = {"dev": {"accuracy": acc, "macro_f1": acc - 0.01, "mcc": 2 * acc - 1.05},
                         "params": {"total": int(1e6 * size / 90)}, "flops_per_example": flops,
                         "speed": {"latency_ms_p50": 1000 / thr, "latency_ms_p90": 1200 / thr,
                                   "throughput_examples_per_s": thr, "rounds": {}},
                         "size_on_disk_bytes": int(size * 1e6),
                         "inference_energy": {"energy_kwh_per_1000_examples": e1k,
                                              "co2e_kg_per_1000_examples": e1k * INTENSITY_G_PER_KWH / 1000}}
    return {"key": "k", "machine": {"cpu": "Test CPU 9000", "threads": 2, "torch": "2.13.0", "load": load},
            "protocol": {"latency": "batch 1", "throughput": "batch 32", "rounds": "3 interleaved rounds",
                         "flops": "matmul"}, "models": models}


def test_end_of_run_and_greenlm_report_agree(tmp_path, capsys):
    from greenlm.pipeline.report_rows import write_report
    from greenlm.report.terminal import print_report

    run = make_run(tmp_path, measured=False)
    recipe = _recipe({"speedup": 3, "min_retained_pct": 97})
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    metrics = json.loads((run / "early_exit" / "metrics.json").read_text())
    metrics["selection"] = ON_DEV
    (run / "early_exit" / "metrics.json").write_text(json.dumps(metrics))
    stages = [SimpleNamespace(name=m, method=v[0], status="ran", pricetag=pricetag(m, v[7]), folder=run / m)
              for m, v in MODELS.items()]
    returned = write_report(recipe, SimpleNamespace(name="sst2", eval_split="dev"), stages, _measurements(BUSY), run)
    assert returned["target"]["met_by"] == ["distill", "quantize"] and returned["target"]["best"] == "distill"
    assert [s["stage"] for s in returned["selection"]] == ["early_exit"]
    saved = json.loads((run / "report.json").read_text())  # rewritten by `greenlm report`'s code at the end
    assert "pareto_front" in saved  # proof that the end-of-run regeneration ran
    assert saved["target"] == returned["target"] and saved["selection"] == returned["selection"]
    assert [(r["model"], r["on_front"], r["meets_target"]) for r in saved["rows"]] == [
        (r["model"], r["on_front"], r["meets_target"]) for r in returned["rows"]]
    again = copy.deepcopy(saved)
    generate_report(run, ("json",), on_note=lambda _: None)
    assert json.loads((run / "report.json").read_text())["target"] == again["target"]
    print_report(returned)
    out = capsys.readouterr().out
    assert "Speed: the machine was shared while timing" in out
    assert "Target: distill meets the target" in out


def test_expected_flops_of_models_with_exits(monkeypatch):
    """The measuring pass charges a model with exits what it runs on dev, from the exits its rows took in the pass
    itself: each row at its length and exit, exit heads included; for an int8 model with exits, the depth each dev
    input ran to, weighted by the share leaving there."""
    from greenlm.measure import count_flops
    from greenlm.models import TinySpec, build_tiny_classifier
    from greenlm.models.early_exit import EarlyExitClassifier, measure_exit_costs
    from greenlm.pipeline import measure_pass
    from greenlm.pipeline.measure_pass import _expected_flops

    from conftest import toy_split

    backbone, _ = build_tiny_classifier(TinySpec(layers=3, hidden=32, heads=4, ffn=37, vocab=99), ["neg", "pos"],
                                        toy_split(50, 0).text_a, seed=0)
    config = backbone.config
    full = count_flops(config, 10).infer_flops
    assert _expected_flops(backbone, [10, 10], None, 10) == (full, None)
    model = EarlyExitClassifier(backbone, [1, 3], threshold=0.6).eval()
    assert model.exits_early()  # so the exit heads on the way are charged
    lengths, exits = [8, 10, 12, 10], [1, 1, 1, 3]
    flops, record = _expected_flops(model, lengths, exits, 10)
    costs = measure_exit_costs(model)
    assert flops == pytest.approx(float(costs.exit_flops(torch.tensor(lengths), torch.tensor(exits)).mean()))
    assert flops < full and record == {"mean_exit_layer": 1.5, "exit_share": {"1": 0.75, "3": 0.25}}
    monkeypatch.setattr(measure_pass, "is_torch_int8", lambda _: True)  # int8 kernels: priced by the layers run
    one = count_flops(type(config)(**{**config.to_dict(), "num_hidden_layers": 1}), 10).infer_flops
    flops, _ = _expected_flops(model, lengths, exits, 10)
    assert flops == pytest.approx(0.75 * one + 0.25 * full)
    assert one < 0.75 * one + 0.25 * full < full
