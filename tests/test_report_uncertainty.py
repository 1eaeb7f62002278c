"""Issue 21: every report shows macro-F1 and MCC, each model's runtime and precision, the accuracy's interval, the
paired difference from the teacher (marked `=` within noise, also on the Pareto front), the spread of the timing
rounds, expected FLOPs of a model with exits, and per-class results with a confusion matrix.

Hand-made run folder and measuring-pass record (``_report_runs.make_run``): no training, fast.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml
from _report_runs import MODELS, make_run, pricetag

from greenlm.report import figures as figs
from greenlm.report.regenerate import generate_report

N = 500
# correct dev examples of each model, nested (a model right on an example the teacher got wrong only where said)
CORRECT = {"finetune": 460, "distill": 450, "quantize": 448, "early_exit": 461}
RUNTIME = {"quantize": {"engine": "onnxruntime", "precision": "int8-dynamic"}}


def _predicted(model: str) -> list[int]:
    """Gold is 1 for the first 250 rows, 0 for the rest; the model is right on its first CORRECT rows, except
    early_exit, which is the teacher plus one extra row right (row 470): one example in 500 above it."""
    gold = [1] * 250 + [0] * 250
    right = set(range(CORRECT["finetune"])) | {470} if model == "early_exit" else set(range(CORRECT[model]))
    return [g if i in right else 1 - g for i, g in enumerate(gold)]


def _measurements() -> dict:
    gold = [1] * 250 + [0] * 250
    models = {}
    for model, (_m, _u, _acc, thr, flops, e1k, size, _e, _l, _f) in MODELS.items():
        predicted = _predicted(model)
        tp = sum(1 for g, p in zip(gold, predicted) if g == p == 1)
        tn = sum(1 for g, p in zip(gold, predicted) if g == p == 0)
        counts = [[tn, 250 - tn], [250 - tp, tp]]
        acc = (tp + tn) / N
        models[model] = {
            "dev": {"accuracy": acc, "macro_f1": acc - 0.01, "mcc": 2 * acc - 1.05,
                    "per_class": [{"label": "0", "precision": 0.5, "recall": tn / 250, "f1": 0.5, "support": 250,
                                   "predicted": tn + 250 - tp},
                                  {"label": "1", "precision": 0.5, "recall": tp / 250, "f1": 0.5, "support": 250,
                                   "predicted": tp + 250 - tn}],
                    "confusion_matrix": {"labels": ["0", "1"], "counts": counts}},
            "predictions": {"gold": gold, "predicted": predicted},
            "runtime": RUNTIME.get(model, {"engine": "torch", "precision": "fp32"}),
            "params": {"total": int(1e6 * size / 90)}, "flops_per_example": flops,
            "flops_basis": "expected" if model == "early_exit" else "full depth",
            "speed": {"latency_ms_p50": 1000 / thr, "latency_ms_p90": 1200 / thr, "throughput_examples_per_s": thr,
                      "rounds": {"throughput_examples_per_s": [0.9 * thr, thr, 0.95 * thr],
                                 "latency_ms_p50": [1000 / thr, 1100 / thr, 1050 / thr]}},
            "size_on_disk_bytes": int(size * 1e6),
            "inference_energy": {"energy_kwh_per_1000_examples": e1k, "co2e_kg_per_1000_examples": e1k / 1000}}
    return {"key": "k", "machine": {"cpu": "Test CPU 9000", "threads": 2, "torch": "2.13.0"},
            "protocol": {"latency": "batch 1", "throughput": "batch 32", "flops": "matmul"}, "models": models}


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """The hand-made run's report as ``greenlm run`` writes it (every format, figures included: seconds), written
    once for the tests below, which only read it."""
    from greenlm.pipeline.report_rows import write_report
    from greenlm.pipeline.schema import parse_recipe

    run = make_run(tmp_path_factory.mktemp("uncertainty"), measured=False)
    recipe = parse_recipe({"name": "hand", "task": "sst2", "teacher": "minilm", "measure": {"region": "FRA"},
                           "stages": {"finetune": {}, "distill": {"from": "finetune"},
                                      "quantize": {"from": "distill"}, "early_exit": {"from": "finetune"}}})
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    stages = [SimpleNamespace(name=m, method=v[0], status="ran", pricetag=pricetag(m, v[7]), folder=run / m)
              for m, v in MODELS.items()]
    returned = write_report(recipe, SimpleNamespace(name="sst2", eval_split="dev"), stages, _measurements(), run)
    return run, returned


def test_rows_carry_interval_difference_runtime_and_spread(report_run):
    run, returned = report_run
    rows = {r["model"]: r for r in json.loads((run / "report.json").read_text())["rows"]}
    teacher, lucky, distill = rows["finetune"], rows["early_exit"], rows["distill"]
    assert teacher["accuracy_ci95_low"] < 460 / N < teacher["accuracy_ci95_high"]
    assert teacher["accuracy_vs_teacher"] is None  # no difference from itself
    assert lucky["accuracy_vs_teacher"]["difference"] == pytest.approx(1 / N)
    assert lucky["within_noise_of_teacher"] is True
    assert distill["within_noise_of_teacher"] is False and distill["accuracy_vs_teacher"]["high"] < 0
    assert (rows["quantize"]["runtime"], rows["quantize"]["precision"]) == ("onnxruntime", "int8-dynamic")
    assert (teacher["runtime"], teacher["precision"]) == ("torch", "fp32")
    assert teacher["throughput_examples_per_s_min"] == pytest.approx(90.0)
    assert teacher["throughput_examples_per_s_max"] == pytest.approx(100.0) and teacher["speed_rounds"] == 3
    assert lucky["flops_basis"] == "expected"
    assert teacher["confusion_matrix"]["counts"] == [[210, 40], [0, 250]]  # its 40 misses are all class 0


def test_a_model_one_example_above_the_teacher_is_on_the_front_by_noise_only(report_run):
    run, _ = report_run
    report = json.loads((run / "report.json").read_text())
    rows = {r["model"]: r for r in report["rows"]}
    # early_exit (90 ex/s, 461/500) is slower than the teacher (100 ex/s, 460/500): on the front only by one example
    assert rows["early_exit"]["on_front"] and rows["early_exit"]["on_front_by_noise"]
    assert report["pareto_front_by_noise"]["throughput_examples_per_s"] == ["early_exit"]
    assert rows["distill"]["on_front"] and not rows["distill"]["on_front_by_noise"]  # faster: on it by speed
    md = (run / "report.md").read_text()
    assert "`early_exit` (=: by noise only)" in md and "`distill` (=" not in md


def test_every_format_shows_the_new_columns(report_run):
    run, returned = report_run
    md = (run / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    for title in ("runtime", "accuracy 95% CI", "macro-F1 %", "MCC", "vs teacher pp (95% CI)"):
        assert f"| {title} |" in header
    lines = md.splitlines()
    table = lines[lines.index(header) + 2:]
    table = table[:table.index("")]  # the models table only (the price tag has rows of the same names)
    line = {row.split("|")[1].strip(): row for row in table}
    assert "| onnxruntime int8-dynamic |" in line["quantize"] and "| torch fp32 |" in line["finetune"]
    assert "| 100.2 = |" in line["early_exit"]  # retained % within noise is marked
    assert "| 97.8 |" in line["distill"]  # a loss outside noise is not
    assert " exp. |" in line["early_exit"] and " exp. |" not in line["finetune"]
    assert "| 100.0 (90.0-100.0) |" in line["finetune"]  # throughput: best round, range over the rounds
    assert "| (reference) |" in line["finetune"]
    assert "## Per class (dev)" in md and "| true / predicted | 0 | 1 |" in md
    tex = (run / "report.tex").read_text()
    assert "onnxruntime int8-dynamic" in tex and "$^{=}$" in tex and "MCC" in tex and r"{\scriptsize exp.}" in tex
    html = (run / "report.html").read_text()
    assert 'id="per-class"' in html and "(= by noise only)" in html and "(reference)" in html
    if figs.available():
        assert 'id="fig-confusion_finetune"' in html and (run / "figures" / "confusion_quantize.csv").is_file()


def test_terminal_summary_names_runtime_and_marks_noise(report_run, capsys):
    from greenlm.report.terminal import print_report

    _, returned = report_run
    print_report(returned)
    out = capsys.readouterr().out
    assert "onnxruntime int8-dynamic" in out and "macro-F1" in out and "MCC" in out
    assert "100.2 =" in out and "within noise" in out


def test_an_older_run_without_predictions_still_reports(tmp_path):
    run = make_run(tmp_path)
    generate_report(run, ("md", "json", "tex", "html"), on_note=lambda _: None)
    rows = json.loads((run / "report.json").read_text())["rows"]
    assert all(r.get("accuracy_vs_teacher") is None and not r.get("on_front_by_noise") for r in rows)
    md = (run / "report.md").read_text()
    assert "## Per class" not in md and " = |" not in md


def test_model_card_states_interval_difference_runtime_and_expected_flops(report_run):
    run, _ = report_run
    card = (run / "early_exit" / "README.md").read_text()
    assert "| accuracy | 92.20 % (95% interval" in card
    assert "+0.20 pp (95% CI" in card and "within noise" in card
    assert "| runtime and precision | torch fp32 |" in card
    assert "FLOPs per example (forward, expected from the exits taken on dev)" in card
    quantize = (run / "quantize" / "README.md").read_text()
    assert "| runtime and precision | onnxruntime int8-dynamic |" in quantize and "outside noise" in quantize
    assert "expected from the exits" not in quantize
