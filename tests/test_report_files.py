"""``greenlm report`` on hand-built run folders: every format, what each holds, incomplete runs, bad input."""

from __future__ import annotations

import csv
import html.parser
import io
import json
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _report_runs import FRONTS, INTENSITY_G_PER_KWH, MODELS, front_matter, make_run
from conftest import greenlm_in_process

from greenlm.common import GreenlmError
from greenlm.report import figures as figs
from greenlm.report.regenerate import FORMATS, generate_after_run, generate_report, parse_formats
from greenlm.report.rundata import INTERRUPTED, MEASURED, NOT_MEASURED, NOT_RUN, load_run

FIGURE_STEMS = {"accuracy_vs_throughput", "accuracy_vs_flops", "accuracy_vs_inference_energy", "accuracy_vs_size",
                "early_exit_early_exit", "breakdown", "pricetag"}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("report"))
    notes = []
    outcome = generate_report(run, FORMATS, on_note=notes.append)
    return run, outcome, notes


def test_every_format_is_written(full):
    run, outcome, notes = full
    assert notes == [] and outcome.notes == []
    names = {p.relative_to(run).as_posix() for p in outcome.files}
    for stem in FIGURE_STEMS:
        assert {f"figures/{stem}.png", f"figures/{stem}.svg", f"figures/{stem}.csv"} <= names
    assert {"report.md", "report.html", "report.json", "report.tex"} <= names
    assert {f"{m}/README.md" for m in MODELS} <= names
    assert all(p.is_file() and p.stat().st_size > 0 for p in outcome.files)


def test_pareto_fronts_in_report_json_and_figure_csv(full):
    run, outcome, _ = full
    saved = json.loads((run / "report.json").read_text())
    assert saved["pareto_front"] == FRONTS == outcome.fronts
    assert [r["model"] for r in saved["rows"]] == list(MODELS)
    assert all(r["report_status"] == MEASURED for r in saved["rows"])
    for stem, key in (("throughput", "throughput_examples_per_s"), ("flops", "flops_per_example"),
                      ("inference_energy", "inference_energy_kwh_per_1000"), ("size", "size_mb")):
        rows = list(csv.DictReader(io.StringIO((run / "figures" / f"accuracy_vs_{stem}.csv").read_text())))
        assert {r["model"] for r in rows if r["on_pareto_front"] == "1"} == set(FRONTS[key])
        for r in rows:  # the CSV holds the plotted data, unrounded
            assert float(r[key]) == pytest.approx(MODELS[r["model"]][{"throughput": 3, "flops": 4,
                                                                       "inference_energy": 5, "size": 6}[stem]])
            assert float(r["accuracy"]) == pytest.approx(MODELS[r["model"]][2])


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_figures_are_real_images_with_their_data(full):
    run, _, _ = full
    for stem in FIGURE_STEMS:
        width, height = _png_size(run / "figures" / f"{stem}.png")
        assert width >= 800 and height >= 300  # readable: 160 dpi, 5+ inches wide
        root = ET.fromstring((run / "figures" / f"{stem}.svg").read_bytes())
        assert root.tag.endswith("svg")
    # where parameters and FLOPs go: embeddings hold parameters but no FLOPs; FLOPs sit in attention + FFN
    rows = list(csv.DictReader(io.StringIO((run / "figures" / "breakdown.csv").read_text())))
    teacher = {(r["quantity"], r["module"]): float(r["value"]) for r in rows if r["model"] == "finetune"}
    assert teacher[("parameters", "embeddings")] > 0 and teacher[("flops", "embeddings")] == 0
    assert teacher[("flops", "attention")] + teacher[("flops", "ffn")] > 0.95 * sum(
        v for (q, _), v in teacher.items() if q == "flops")
    # the price tag by stage carries each stage's own figures
    tags = {r["stage"]: r for r in csv.DictReader(io.StringIO((run / "figures" / "pricetag.csv").read_text()))}
    assert float(tags["distill"]["energy_kwh"]) == pytest.approx(MODELS["distill"][7])
    # the early-exit curve: both splits, one chosen point per split
    curve = list(csv.DictReader(io.StringIO((run / "figures" / "early_exit_early_exit.csv").read_text())))
    assert {r["split"] for r in curve} == {"heldout", "dev"}
    assert sum(r["chosen"] == "1" for r in curve) == 2


def test_figures_are_reproducible(full, tmp_path):
    run, _, _ = full
    again = generate_report(run, ("figures",), tmp_path, on_note=lambda _: None)
    for path in again.files:
        if path.suffix in (".svg", ".csv"):
            assert path.read_bytes() == (run / "figures" / path.name).read_bytes(), path.name


def test_markdown_report(full):
    run, _, _ = full
    text = (run / "report.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| ") and " | " in line]
    assert sum(line.split(" | ")[0] in {f"| {m}" for m in MODELS} for line in table) >= len(MODELS)
    for link in re.findall(r"\]\((figures/[^)]+)\)", text):
        assert (run / link).is_file(), link
    assert "accuracy vs throughput: `finetune`, `distill`, `quantize`" in text
    assert "finetune/README.md" in text and "report.html" in text


def _tex_rows(tex: str) -> tuple[str, list[str]]:
    body = tex[tex.index("\\midrule") + len("\\midrule"): tex.index("\\bottomrule")]
    header = tex[tex.index("\\toprule") + len("\\toprule"): tex.index("\\midrule")]
    return header, [line for line in body.strip().splitlines() if line.strip()]


def _unescaped(text: str, char: str) -> int:
    return len(re.findall(r"(?<!\\)" + re.escape(char), text))


def test_latex_table_is_balanced_booktabs(full):
    run, _, _ = full
    tex = (run / "report.tex").read_text()
    code = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert _unescaped(code, "{") == _unescaped(code, "}")
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{([^}]+)\}", code):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack.pop() == env
    assert stack == []
    assert code.index("\\toprule") < code.index("\\midrule") < code.index("\\bottomrule")
    assert "\\hline" not in code  # booktabs rules only
    spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", code).group(1)
    header, rows = _tex_rows(code)
    assert len(rows) == len(MODELS)
    assert len(header.strip().splitlines()) == 2  # names, then units
    for line in [*header.strip().splitlines(), *rows]:
        assert line.endswith("\\\\")
        assert _unescaped(line, "&") == len(spec) - 1, line
        assert _unescaped(line, "$") % 2 == 0
    assert "early\\_exit" in code and "\\textbf{92.00}" in code  # escaped names; best accuracy in bold
    assert "\\label{tab:greenlm-hand}" in code


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex (texlive); the text checks above still run")
def test_latex_table_compiles_and_fits_the_page(full, tmp_path):
    run, _, _ = full
    (tmp_path / "report.tex").write_text((run / "report.tex").read_text())
    (tmp_path / "paper.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
                                        "\\begin{document}\n\\input{report.tex}\n\\end{document}\n")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:]
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log and (tmp_path / "paper.pdf").stat().st_size > 1000


def test_model_cards_hold_every_hub_field(full):
    run, _, _ = full
    for model, spec in MODELS.items():
        readme = (run / model / "README.md").read_text()
        meta = front_matter(readme)
        assert meta["pipeline_tag"] == "text-classification"
        assert meta["datasets"] == ["nyu-mll/glue"] and meta["language"] == ["en"]
        assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["license"] == "apache-2.0"
        (result,) = meta["model-index"][0]["results"]
        assert result["task"]["type"] == "text-classification"
        assert result["dataset"] == {"name": "GLUE SST-2", "type": "nyu-mll/glue", "split": "validation",
                                     "config": "sst2"}
        metrics = {m["type"]: m["value"] for m in result["metrics"]}
        assert metrics["accuracy"] == pytest.approx(spec[2])
        assert set(metrics) == {"accuracy", "f1", "matthews_correlation"}
        co2 = meta["co2_eq_emissions"]
        chain = [model]
        while MODELS[chain[-1]][1]:
            chain.append(MODELS[chain[-1]][1])
        grams = sum(MODELS[s][7] for s in chain) * INTENSITY_G_PER_KWH
        assert co2["emissions"] == pytest.approx(grams, rel=1e-5)  # grams, along the whole chain
        assert co2["geographical_location"].startswith("FRA")
        assert "Test CPU 9000" in co2["hardware_used"]
        assert "estimate:tdp-utilisation" in co2["source"] and "test table" in co2["source"]
        assert co2["training_type"].startswith("fine-tuning")
        assert meta["greenlm"]["stage"] == model and meta["greenlm"]["throughput_examples_per_s"] == spec[3]
        for section in ("## How it was produced", "## Evaluation", "## Price tag", "## How to use", "## Limits"):
            assert section in readme
        assert f"{model} note for the card" in readme  # the stage's own notes become limits
    quantize = front_matter((run / "quantize" / "README.md").read_text())
    assert quantize["library_name"] == "onnx" and quantize["base_model_relation"] == "quantized"
    assert quantize["co2_eq_emissions"]["training_type"] == "fine-tuning + distillation + quantization"
    assert front_matter((run / "distill" / "README.md").read_text())["library_name"] == "transformers"


def test_model_cards_parse_with_huggingface_hub(full):
    hub = pytest.importorskip("huggingface_hub")
    run, _, _ = full
    card = hub.ModelCard((run / "distill" / "README.md").read_text())
    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) == {"accuracy", "f1", "matthews_correlation"}
    assert results["accuracy"].metric_value == pytest.approx(MODELS["distill"][2])
    assert all(r.dataset_type == "nyu-mll/glue" and r.dataset_config == "sst2" and r.dataset_split == "validation"
               and r.task_type == "text-classification" for r in results.values())
    assert results["f1"].metric_args == {"average": "macro"}
    assert card.data.co2_eq_emissions["emissions"] > 0


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.rows, self.links, self.csp = [], 0, [], None
        self._in_table = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "table" and attrs.get("id") == "models-table":
            self._in_table = True
        if tag == "tr" and self._in_table and "data-model" in attrs:
            self.rows += 1
        if tag in ("a", "link", "script") and (attrs.get("href") or attrs.get("src")):
            self.links.append(attrs.get("href") or attrs.get("src"))
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy":
            self.csp = attrs["content"]


def test_html_is_self_contained(full):
    run, _, _ = full
    text = (run / "report.html").read_text()
    page = _Page()
    page.feed(text)
    assert len(page.images) == len(FIGURE_STEMS) and page.rows == len(MODELS)
    assert all(img["src"].startswith("data:image/png;base64,") and img.get("alt") for img in page.images)
    assert all(link.startswith("data:") for link in page.links)  # no network, no files beside it
    assert page.csp.startswith("default-src 'none'")
    assert '<meta name="viewport"' in text
    assert "http://" not in text.replace("http://www.w3.org", "")


def test_incomplete_run_reports_what_exists_and_marks_the_rest(tmp_path):
    run = make_run(tmp_path, measured=False)
    (run / ".work" / "quantize").mkdir(parents=True)
    import shutil

    shutil.rmtree(run / "quantize")
    shutil.rmtree(run / "early_exit")
    notes = []
    outcome = generate_report(run, FORMATS, on_note=notes.append)
    data = load_run(run)
    status = {r["model"]: r["report_status"] for r in data.rows}
    assert status == {"finetune": NOT_MEASURED, "distill": NOT_MEASURED, "quantize": INTERRUPTED,
                      "early_exit": NOT_RUN}
    distill = next(r for r in data.rows if r["model"] == "distill")
    assert distill["accuracy"] == pytest.approx(0.90) and distill["params"] > 0
    assert distill["performance_retained_pct"] == pytest.approx(100 * 0.90 / 0.92)
    assert distill["cumulative_energy_kwh"] == pytest.approx(MODELS["finetune"][7] + MODELS["distill"][7])
    assert distill["throughput_examples_per_s"] is None
    assert any(".work/quantize" in n and "resumes" in n for n in notes)
    assert any("early_exit" in n and "did not run" in n for n in notes)
    md = (run / "report.md").read_text()
    assert "Incomplete run" in md and "| quantize (interrupted) |" in md and "| early_exit (not run) |" in md
    assert "$^\\dagger$" in (run / "report.tex").read_text()
    assert (run / "finetune" / "README.md").is_file() and not (run / "quantize").exists()
    assert "not measured" in (run / "distill" / "README.md").read_text()
    names = {p.name for p in outcome.files}
    assert "pricetag.png" in names and "accuracy_vs_throughput.png" not in names  # nothing measured to plot


def test_stage_rerun_after_the_report_is_not_reported_with_stale_figures(tmp_path):
    run = make_run(tmp_path)
    record = json.loads((run / "distill" / "stage.json").read_text())
    record["finished_at_unix"] = 4_000_000_000  # finished after report.json was written
    (run / "distill" / "stage.json").write_text(json.dumps(record))
    status = {r["model"]: r["report_status"] for r in load_run(run).rows}
    assert status["distill"] == NOT_MEASURED and status["finetune"] == MEASURED


def test_out_dir_leaves_the_run_untouched(tmp_path):
    run = make_run(tmp_path / "runs")
    before = sorted((p.relative_to(run).as_posix(), p.stat().st_mtime_ns) for p in run.rglob("*"))
    out = tmp_path / "elsewhere"
    generate_report(run, FORMATS, out, on_note=lambda _: None)
    after = sorted((p.relative_to(run).as_posix(), p.stat().st_mtime_ns) for p in run.rglob("*"))
    assert before == after
    assert (out / "report.html").is_file() and (out / "cards" / "distill" / "README.md").is_file()


def test_without_matplotlib_the_report_is_written_with_a_note(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    monkeypatch.setattr(figs, "available", lambda: False)
    notes = []
    outcome = generate_report(run, FORMATS, on_note=notes.append)
    assert any("matplotlib is not installed" in n for n in notes)
    assert not (run / "figures").exists()
    assert "matplotlib is not installed" in (run / "report.md").read_text()
    assert "matplotlib is not installed" in (run / "report.html").read_text()
    assert (run / "report.tex").is_file() and len([p for p in outcome.files if p.name == "README.md"]) == 4


def test_end_of_run_hook_never_fails_the_run(tmp_path, monkeypatch):
    import greenlm.report.regenerate as regenerate

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(regenerate, "generate_report", broken)
    lines = []
    generate_after_run(tmp_path, lines.append)
    assert len(lines) == 1 and "disk on fire" in lines[0] and "greenlm report" in lines[0]


def test_not_a_run_folder_says_what_is_missing(tmp_path):
    run = make_run(tmp_path / "runs")
    cases = [
        (tmp_path / "missing", "does not exist"),
        (run / "distill", f"give the run folder above it: {run}"),
        (tmp_path / "runs", "holds runs, it is not one"),
        (run / "distill" / "metrics.json", "is a file"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((empty, "no recipe.yaml"))
    recipes_only = tmp_path / "recipes"
    recipes_only.mkdir()
    (recipes_only / "recipe.yaml").write_text("name: x\nstages: {finetune: {}}\n")
    cases.append((recipes_only, "no run.log, no finished stage"))
    nothing_done = tmp_path / "nothing"
    nothing_done.mkdir()
    (nothing_done / "recipe.yaml").write_text("name: x\nstages: {finetune: {}}\n")
    (nothing_done / "run.log").write_text("")
    cases.append((nothing_done, "has no finished stage yet"))
    for path, needle in cases:
        with pytest.raises(GreenlmError) as info:
            load_run(path)
        assert needle in str(info.value), (path, str(info.value))


def test_formats_parse():
    assert parse_formats(None) == FORMATS and parse_formats("all") == FORMATS
    assert parse_formats("md, html,md") == ("md", "html")
    with pytest.raises(GreenlmError, match="did you mean 'html'"):
        parse_formats("md,htm")


def test_cli_report_and_its_errors(tmp_path):
    run = make_run(tmp_path / "runs")
    ok = greenlm_in_process("report", str(run), "--format", "md,tex")  # the entry point, in this process
    assert ok.returncode == 0, ok.stderr
    assert str(run / "report.tex") in ok.stdout and not (run / "report.html").exists()
    bad = greenlm_in_process("report", str(run / "distill"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [f"greenlm: error: '{run / 'distill'}' is one stage of a run (it has"
                                               f" stage.json, no recipe.yaml); give the run folder above it: {run}"]


def test_card_without_carbon_intensity_says_so(tmp_path):
    run = make_run(tmp_path, measured=False)
    tag = json.loads((run / "finetune" / "pricetag.json").read_text())
    tag["co2e_kg"] = None
    (run / "finetune" / "pricetag.json").write_text(json.dumps(tag))
    generate_report(run, ("cards",), on_note=lambda _: None)
    teacher = (run / "finetune" / "README.md").read_text()
    assert "co2_eq_emissions" not in front_matter(teacher) and "CO2e could not be computed" in teacher
    # the student's chain includes the teacher: its cumulative CO2e is unknown too, never a partial sum
    assert "co2_eq_emissions" not in front_matter((run / "distill" / "README.md").read_text())
