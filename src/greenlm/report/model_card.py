"""Model cards: a Hugging Face ``README.md`` for every model folder of a run.

The YAML header is what makes a shared model reusable by machines: the Hub's fields (``pipeline_tag``,
``datasets``, ``base_model``, ``metrics``, ``model-index`` with the dev results, ``co2_eq_emissions``
with emissions in grams as the Hub expects) plus a ``greenlm`` block with the price tag and the
efficiency figures, units in their names. The text below it is for people: how the model was
produced, what it costs to make and to run, how to load it, and what it cannot be trusted for.

Emissions in ``co2_eq_emissions`` are cumulative along the model's chain of stages (teacher
fine-tuning + each compression stage that led to it): what it took to produce this model from the
pre-trained checkpoint. Pre-training is not included (it was not measured here), and the card says so.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import greenlm
from greenlm.report.provenance import eval_split_of, selections
from greenlm.report.rundata import MEASURED, RunData, read_json_dict, stage_method
from greenlm.report.uncertainty import noise_sentence
from greenlm.report.tables import md_text

# bundled task -> (hub dataset id, config, display name, language)
_KNOWN_TASKS = {
    "sst2": ("nyu-mll/glue", "sst2", "GLUE SST-2", "en"),
    "rte": ("nyu-mll/glue", "rte", "GLUE RTE", "en"),
    "rt_polarity": ("cornell-movie-review-data/rotten_tomatoes", None, "Rotten Tomatoes", "en"),
}
_KNOWN_TEACHERS = {"minilm": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_METHOD_TAGS = {"finetune": ["fine-tuned"], "distill": ["knowledge-distillation"], "prune": ["pruning"],
                "quantize": ["quantization", "int8"], "early_exit": ["early-exit", "adaptive-computation"]}
_METHOD_WORDS = {"finetune": "fine-tuning", "distill": "distillation", "prune": "pruning",
                 "quantize": "quantization", "early_exit": "early exit"}


def _dataset(task: str) -> tuple[str | None, str | None, str, str | None]:
    """(hub id, config, display name, language) of a task spec, as far as it can be known."""
    if task in _KNOWN_TASKS:
        return _KNOWN_TASKS[task]
    spec = task[3:] if task.startswith("hf:") else task
    if task.startswith("hf:") or (_HUB_ID.match(spec) and not Path(spec).exists()):
        name, _, config = spec.partition(":")
        if name.startswith("glue/"):
            name, config = "nyu-mll/glue", name.split("/", 1)[1]
        return name, config or None, spec, None
    return None, None, Path(task).name or task, None  # a local folder or file: its name, no hub id


def _base_model(teacher: str) -> tuple[str | None, str | None]:
    """(hub id, license) of the recipe's teacher when it is a hub model; None for tiny or local models."""
    if teacher in _KNOWN_TEACHERS:
        return _KNOWN_TEACHERS[teacher]
    if _HUB_ID.match(teacher) and not Path(teacher).exists():
        return teacher, None
    return None, None


def _library(config: dict) -> str:
    fmt = (config.get("greenlm") or {}).get("format")
    if fmt is None:
        return "transformers"
    return "onnx" if fmt == "onnx" else "greenlm"


def _round(value, digits: int = 6):
    return None if value is None else round(float(value), digits)


# The Hub's names for greenlm's splits in model-index (greenlm's "dev" is the dataset's validation split).
_HUB_SPLIT_NAMES = {"dev": "validation"}


def reported_split(run: RunData, metrics: dict) -> str:
    """The split the card's figures come from: the run's (its report says), else the stage's own metrics.json."""
    return eval_split_of(run.report if run.report.get("eval_split") else metrics)


def card_metadata(run: RunData, row: dict) -> dict:
    """The YAML header of a model card (a dict ready for ``yaml.safe_dump``)."""
    stage = row["model"]
    config = run.stage_file(stage, "config.json") or {}
    metrics = run.stage_file(stage, "metrics.json") or {}
    record = run.stage_file(stage, "stage.json") or {}
    task = run.recipe.get("task") or run.report.get("task") or "task"
    dataset_id, dataset_config, dataset_name, language = _dataset(str(task))
    base, license_ = _base_model(str(run.recipe.get("teacher") or ""))
    chain = run.chain(stage)[::-1]  # finetune first
    methods = [stage_method(s, run.stages().get(s)) for s in chain]
    split = reported_split(run, metrics)
    reported = (metrics.get("splits") or {}).get(split) or {}
    accuracy = row.get("accuracy") if row.get("accuracy") is not None else reported.get("accuracy")
    macro_f1 = row.get("macro_f1") if row.get("macro_f1") is not None else reported.get("macro_f1")
    mcc = row.get("mcc") if row.get("mcc") is not None else reported.get("mcc")

    meta: dict = {}
    if language:
        meta["language"] = [language]
    if license_:
        meta["license"] = license_
    meta["library_name"] = _library(config)
    meta["pipeline_tag"] = "text-classification"
    meta["tags"] = ["greenlm", "text-classification"] + [t for m in methods for t in _METHOD_TAGS.get(m, [m])]
    if (config.get("greenlm") or {}).get("format") == "onnx":
        meta["tags"].append("onnx")
    meta["tags"] = list(dict.fromkeys(meta["tags"]))
    if dataset_id:
        meta["datasets"] = [dataset_id]
    if base:
        meta["base_model"] = base
        if methods[-1] == "quantize":
            meta["base_model_relation"] = "quantized"
        elif methods == ["finetune"]:
            meta["base_model_relation"] = "finetune"
    meta["metrics"] = ["accuracy", "f1", "matthews_correlation"]

    def result(split_name: str, figures: tuple) -> dict:
        entries = []
        for kind, name, value, args in zip(("accuracy", "f1", "matthews_correlation"), ("Accuracy", "Macro F1", "MCC"),
                                           figures, (None, {"average": "macro"}, None)):
            if value is not None:
                entry = {"type": kind, "value": _round(value), "name": name}
                if args:
                    entry["args"] = args
                entries.append(entry)
        dataset_entry = {"name": dataset_name, "type": dataset_id or str(run.report.get("task") or dataset_name),
                         "split": _HUB_SPLIT_NAMES.get(split_name, split_name)}
        if dataset_config:
            dataset_entry["config"] = dataset_config
        return {"task": {"type": "text-classification", "name": "Text Classification"}, "dataset": dataset_entry,
                "metrics": entries}

    # the reported split first, then the splits measured beside it (test, when the run reports on dev)
    others = [result(name, (m.get("accuracy"), m.get("macro_f1"), m.get("mcc")))
              for name, m in (row.get("other_splits") or {}).items()]
    meta["model-index"] = [{"name": f"{run.name}-{stage}", "results": [result(split, (accuracy, macro_f1, mcc)),
                                                                        *others]}]

    tags = [run.stage_file(s, "pricetag.json") or {} for s in chain]
    tag = run.stage_file(stage, "pricetag.json") or {}
    co2 = row.get("cumulative_co2e_kg")
    if co2 is None and tags and all(t.get("co2e_kg") is not None for t in tags):
        co2 = sum(t["co2e_kg"] for t in tags)
    if co2 is not None:
        meta["co2_eq_emissions"] = {
            "emissions": float(f"{co2 * 1000.0:.6g}"),  # grams, as the Hub expects (6 significant digits)
            "source": _emissions_source(tag),
            "training_type": " + ".join(_METHOD_WORDS.get(m, m) for m in methods),
            "geographical_location": _location(tag),
            "hardware_used": _hardware(tag),
        }
    energy = row.get("cumulative_energy_kwh")
    meta["greenlm"] = {
        "run": run.name,
        "stage": stage,
        "method": row.get("method"),
        "chain": chain,
        "report_status": row.get("report_status", MEASURED),
        "greenlm_version": greenlm.__version__,
        "artifact_sha256": record.get("artifact_sha256"),
        "params": row.get("params"),
        "flops_per_example": _round(row.get("flops_per_example"), 1),
        "size_mb": _round(row.get("size_mb"), 4),
        "latency_ms_p50": _round(row.get("latency_ms_p50"), 4),
        "throughput_examples_per_s": _round(row.get("throughput_examples_per_s"), 3),
        "speedup_x": _round(row.get("speedup_x"), 4),
        "compression_x": _round(row.get("compression_x"), 4),
        "performance_retained_pct": _round(row.get("performance_retained_pct"), 3),
        "stage_energy_kwh": row.get("stage_energy_kwh"),
        "stage_co2e_kg": row.get("stage_co2e_kg"),
        "stage_cost_usd": row.get("stage_cost_usd"),
        "cumulative_energy_kwh": energy,
        "cumulative_co2e_kg": co2,
        "cumulative_cost_usd": row.get("cumulative_cost_usd"),
        "inference_energy_kwh_per_1000": row.get("inference_energy_kwh_per_1000"),
        "energy_source": tag.get("energy_source"),
        "intensity_g_per_kwh": tag.get("intensity_g_per_kwh"),
        "intensity_source": tag.get("intensity_source"),
        "pue": tag.get("pue"),
    }
    return meta


def _emissions_source(tag: dict) -> str:
    parts = [f"greenlm {greenlm.__version__} price tag"]
    if tag.get("energy_source"):
        parts.append(f"energy: {tag['energy_source']}")
    if tag.get("intensity_source"):
        year = f", {tag['intensity_year']}" if tag.get("intensity_year") else ""
        parts.append(f"carbon intensity: {tag['intensity_source']}{year}")
    if tag.get("pue") is not None:
        parts.append(f"PUE {tag['pue']}")
    return "; ".join(parts)


def _location(tag: dict) -> str:
    region = tag.get("intensity_region")
    kind = tag.get("intensity_kind")
    if region and kind:
        return f"{region} ({kind} average grid)" if kind in ("country", "us-state") else f"{region} ({kind})"
    return region or "unknown (no carbon-intensity region given)"


def _hardware(tag: dict) -> str:
    machine = tag.get("machine") or {}
    parts = []
    if machine.get("cpu_model"):
        cpus = machine.get("logical_cpus")
        parts.append(f"{machine['cpu_model']}" + (f" ({cpus} logical CPUs)" if cpus else ""))
    gpus = ((tag.get("energy_details") or {}).get("gpus")) or []
    if gpus:
        parts.append(", ".join(str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in gpus))
    return "; ".join(parts) or "unknown"


def _num(value, fmt: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{format(value, fmt)}{unit}"


def _details(metrics: dict, method: str) -> list[tuple[str, str]]:
    """The scalar settings and results a compression method recorded about itself (metrics.json[method])."""
    details = metrics.get(method)
    if not isinstance(details, dict):
        return []
    out = []
    for key, value in details.items():
        if isinstance(value, (str, int, float, bool)) and key not in ("flops_convention",):
            out.append((key, str(value)))
    return out[:16]


def _interval(row: dict) -> str:
    """`` (95% interval 89.11-92.89 %)`` after the accuracy, when the measuring pass kept the predictions."""
    if row.get("accuracy_ci95_low") is None or row.get("accuracy_ci95_high") is None:
        return ""
    return f" (95% interval {100 * row['accuracy_ci95_low']:.2f}-{100 * row['accuracy_ci95_high']:.2f} %)"


def _runtime(row: dict) -> str:
    return " ".join(str(row[k]) for k in ("runtime", "precision") if row.get(k)) or "n/a"


def _flops_basis(row: dict, split: str) -> str:
    return f", expected from the exits taken on {split}" if row.get("flops_basis") == "expected" else ""


def model_card(run: RunData, row: dict) -> str:
    """The README.md of one model folder: YAML metadata, then the human part."""
    meta = card_metadata(run, row)
    stage = row["model"]
    metrics = run.stage_file(stage, "metrics.json") or {}
    record = run.stage_file(stage, "stage.json") or {}
    config = run.stage_file(stage, "config.json") or {}
    chain = meta["greenlm"]["chain"]
    task = run.report.get("task") or run.recipe.get("task")
    labels = (config.get("greenlm") or {}).get("labels") or list((config.get("id2label") or {}).values())
    method = row.get("method") or stage
    teacher = run.recipe.get("teacher")
    split = reported_split(run, metrics)
    reported = (metrics.get("splits") or {}).get(split) or {}
    g = meta["greenlm"]
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines += [f"# {run.name}-{stage}", ""]
    what = {"finetune": f"`{teacher}` fine-tuned", "distill": "a student distilled from the fine-tuned teacher",
            "prune": "a structurally pruned model", "quantize": "a quantized model",
            "early_exit": "a model with early exits"}.get(method, f"a `{method}` model")
    command = run.recipe.get("command")  # set for a folder made by a single command, outside `greenlm run`
    made_by = f"`{command}`" if command else f"run `{run.name}`, stage `{stage}`"
    lines += [f"A text classifier for `{task}` (labels: {', '.join(map(md_text, labels)) or 'n/a'}): {what}, produced by"
              f" greenlm ({made_by}).", ""]
    if command:
        lines += [f"> Made by `{command}` on its own: its speed, FLOPs and inference energy are not in this card."
                  f" Measure them with `greenlm bench {row.get('folder') or stage} --task {task}`, or produce the"
                  " model inside `greenlm run` to get every column.", ""]
    elif row.get("report_status", MEASURED) != MEASURED:
        lines += [f"> This model was not measured ({row['report_status']}): its speed, FLOPs and inference energy"
                  " are missing below. Run `greenlm run` with the same recipe to measure it.", ""]

    lines += ["## How it was produced", ""]
    for i, name in enumerate(chain, 1):
        body = run.stages().get(name) or {}
        m = stage_method(name, body)
        if m == "finetune":
            lines.append(f"{i}. `{name}`: fine-tuned `{teacher}` on the `{task}` training split.")
        else:
            lines.append(f"{i}. `{name}`: {_METHOD_WORDS.get(m, m)} of `{body.get('from') or body.get('source')}`.")
    lines.append("")
    details = _details(metrics, method)
    if details:
        lines += ["What this stage recorded about itself:", "", "| | |", "|---|---|",
                  *[f"| {k} | {v} |" for k, v in details], ""]
    settings = (record.get("identity") or {}).get("settings")
    if settings:
        lines += ["<details><summary>All settings of this stage (recipe section)</summary>", "", "```yaml",
                  yaml.safe_dump({stage: {"type": method, **settings}}, sort_keys=False).rstrip(), "```", "",
                  "</details>", ""]

    examples = row.get("examples") if row.get("examples") is not None else reported.get("examples", "n/a")
    lines += ["## Evaluation", "",
              f"On the `{task}` {split} split ({examples} examples):", "",
              "| metric | value |", "|---|---:|",
              f"| accuracy | {_num(None if row.get('accuracy') is None else 100 * row['accuracy'], '.2f', ' %')}"
              f"{_interval(row)} |",
              f"| macro F1 | {_num(row.get('macro_f1'), '.4f')} |",
              f"| MCC | {_num(row.get('mcc'), '.4f')} |",
              f"| performance retained vs the teacher | {_num(row.get('performance_retained_pct'), '.1f', ' %')} |",
              f"| difference from the teacher (paired, 95% interval) | {noise_sentence(row) or 'n/a'} |",
              f"| runtime and precision | {_runtime(row)} |",
              f"| parameters | {_num(row.get('params'), ',')} |",
              f"| compression vs the teacher | {_num(row.get('compression_x'), '.2f', 'x')} |",
              f"| FLOPs per example (forward{_flops_basis(row, split)}) | {_num(row.get('flops_per_example'), ',.0f')} |",
              f"| latency p50, batch 1 | {_num(row.get('latency_ms_p50'), '.2f', ' ms')} |",
              f"| throughput, batch 32 | {_num(row.get('throughput_examples_per_s'), ',.1f', ' examples/s')} |",
              f"| speedup vs the teacher | {_num(row.get('speedup_x'), '.2f', 'x')} |",
              f"| size on disk | {_num(row.get('size_mb'), '.2f', ' MB')} |", ""]
    for name, m in (row.get("other_splits") or {}).items():  # test, when the run reports on dev
        interval = ("" if m.get("accuracy_ci95_low") is None else
                    f" (95% interval {100 * m['accuracy_ci95_low']:.2f}-{100 * m['accuracy_ci95_high']:.2f} %)")
        accuracy_pct = None if m.get("accuracy") is None else 100 * m["accuracy"]
        lines += [f"On the `{task}` {name} split ({m.get('examples', 'n/a')} examples), measured once after every"
                  f" choice was made: accuracy {_num(accuracy_pct, '.2f', ' %')}{interval}, macro F1"
                  f" {_num(m.get('macro_f1'), '.4f')}, MCC {_num(m.get('mcc'), '.4f')}.", ""]
    machine = run.report.get("machine") or {}
    if machine:
        lines += [f"Speed measured on {machine.get('cpu') or 'n/a'}, {machine.get('threads') or '?'} thread(s),"
                  " every model of the run in one process on the same inputs.", ""]

    lines += ["## Price tag", "", "| | energy kWh | CO2e kg | cost USD |", "|---|---:|---:|---:|"]
    for name in chain:
        t = run.stage_file(name, "pricetag.json") or {}
        lines.append(f"| stage `{name}` | {_num(t.get('energy_kwh'), '.3g')} | {_num(t.get('co2e_kg'), '.3g')}"
                     f" | {_num(t.get('cost_usd'), '.3g')} |")
    lines.append(f"| **producing this model** | {_num(g['cumulative_energy_kwh'], '.3g')}"
                 f" | {_num(g['cumulative_co2e_kg'], '.3g')} | {_num(g['cumulative_cost_usd'], '.3g')} |")
    lines.append(f"| running it, per 1,000 examples | {_num(row.get('inference_energy_kwh_per_1000'), '.3g')}"
                 f" | {_num(row.get('inference_co2e_kg_per_1000'), '.3g')} | |")
    lines.append("")
    co2 = meta.get("co2_eq_emissions")
    if co2:
        lines += [f"Source: {co2['source']}. Location: {co2['geographical_location']}."
                  f" Hardware: {co2['hardware_used']}. Pre-training of the base model is not included.", ""]
    else:
        lines += ["CO2e could not be computed (no carbon intensity for this run); energy is given where measured.", ""]

    lines += ["## How to use", "", "```python", "from greenlm.models import load_classifier", "",
              f'loaded = load_classifier("{row.get("folder") or stage}")',
              "# loaded.model, loaded.tokenizer, loaded.labels", "```", ""]
    if meta["library_name"] == "transformers":
        lines += ["It is a plain Transformers folder too:", "", "```python",
                  "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
                  f'model = AutoModelForSequenceClassification.from_pretrained("{row.get("folder") or stage}")',
                  "```", ""]
    else:
        fmt = (config.get('greenlm') or {}).get('format')
        if meta["library_name"] == "onnx":
            lines += [f"Its format (`{fmt}`) is loaded by greenlm with onnxruntime.", ""]
        else:
            lines += [f"Its format (`{fmt}`) is loaded by greenlm, as above. Plain Transformers cannot load it right"
                      " (its weights are reshaped, carry exit heads or use another attention), so its config.json"
                      f" names model type `{config.get('model_type')}` and Transformers refuses it rather than build a"
                      " different model. To serve it without greenlm, export it: `greenlm export FOLDER --out DIR`"
                      " writes an ONNX graph that ONNX Runtime runs.", ""]

    lines += ["## Limits", "",
              f"- Evaluated on one task (`{task}` {split}, {examples} examples"
              + "".join(f"; {name}, {m.get('examples', 'n/a')} examples" for name, m in
                        (row.get("other_splits") or {}).items())
              + "); accuracy on other text (domains, lengths, languages) is unknown.",
              _choice_limit(metrics, split),
              "- It inherits what the teacher and the training data hold, biases included; nothing here measures them.",
              "- Speed and energy figures are for the machine above and change with hardware, threads and batch size;"
              " an `estimate:` energy source is a model of power, not a meter reading."]
    for note in (metrics.get(method) or {}).get("notes", []) if isinstance(metrics.get(method), dict) else []:
        if isinstance(note, str):
            lines.append(f"- {note}")
    lines.append("")
    return "\n".join(lines)


def _choice_limit(metrics: dict, split: str) -> str:
    """The card's line on whether the stage's choices (best epoch, thresholds) saw the reported split."""
    choices = selections({"stage": metrics}, split)
    if choices and all(c.get("split") for c in choices) and not any(c["on_reported_split"] for c in choices):
        on = ", ".join(f"`{s}`" for s in dict.fromkeys(str(c.get("split")) for c in choices))
        return (f"- This stage's choices among checkpoints or settings were made on {on}, rows kept apart from"
                f" `{split}`, so the `{split}` figures were not tuned on.")
    return (f"- Stages may have used the `{split}` split to choose among their own checkpoints or settings, so its"
            " accuracy can be slightly optimistic; a held-out split gives the figure to publish.")


def folder_card(folder: Path, *, method: str, task: str, source: str, command: str, final: Path | None = None) -> str:
    """The model card of a folder made by one command (``greenlm train/distill/prune/...``), from its own
    ``metrics.json`` and ``pricetag.json``; there was no measuring pass, so speed columns are absent.
    ``final``: where the folder will be, when the card is written before it is moved into place."""
    folder = Path(folder)
    final = Path(final) if final is not None else folder
    name = final.name
    metrics = read_json_dict(folder / "metrics.json") or {}
    tag = read_json_dict(folder / "pricetag.json") or {}
    reported = (metrics.get("splits") or {}).get(eval_split_of(metrics)) or {}
    row = {"model": name, "method": method, "report_status": MEASURED, "folder": str(final),
           "accuracy": reported.get("accuracy"), "macro_f1": reported.get("macro_f1"), "mcc": reported.get("mcc"),
           "stage_energy_kwh": tag.get("energy_kwh"), "stage_co2e_kg": tag.get("co2e_kg"),
           "stage_cost_usd": tag.get("cost_usd"), "cumulative_energy_kwh": tag.get("energy_kwh"),
           "cumulative_co2e_kg": tag.get("co2e_kg"), "cumulative_cost_usd": tag.get("cost_usd")}
    run = RunData(run_dir=folder.parent, name=name,
                  recipe={"task": task, "teacher": source, "command": command,
                          "stages": {name: {"type": method, "source": source}}},
                  report={"task": task, "rows": [row]}, measurements=None, folders={name: folder})
    return model_card(run, row)
