"""Issue 16 figures: data maps, subset selection and the data audit (Swayamdipta et al. 2020, "Dataset Cartography").

Parts (``--parts``, comma-separated; each writes its result into ``--results`` (benchmarks/results/datamap_sst2.json)
and the section
"## Data maps and data audit (issue 16)" of docs/benchmarks.md is rewritten from every part done so far):

- ``audit``: ``greenlm data audit`` of every bundled task with the MiniLM tokenizer (truncation at 64 and 128
  tokens). Minutes.
- ``selection``: the teacher model (``--model``, default MiniLM) fine-tuned on the task's training rows
  (``--train-subset`` rows, or all) with ``record_dynamics``, then on ``--fraction`` (33%) of those rows chosen as
  ambiguous / random / easy / hard from its map; dev accuracy and the price tag's training energy of each, against
  the 100% run. The 100% run is also trained once without recording, which gives the recording overhead (wall
  time and energy, next to the recorder's own timing of its forward passes).
- ``mislabel``: ``--flip`` (10%) of the training labels flipped at random (seeded, the flipped rows known), the
  model trained on them with dynamics; the hard-to-learn region at the flip's size (the lowest-confidence rows,
  as many as were flipped) is compared with the flipped rows: precision and recall (equal at that size), recall
  within the 33% hard-to-learn region, and the AUROC of 1 - confidence as a detector of flipped labels.
- ``mislabel-train``: the same with ``dynamics_mode: train`` (the training pass's logits, one point per epoch):
  what the nearly free recording finds, and what it costs, beside the eval-mode figure.

    python benchmarks/datamap_sst2.py --parts audit
    python benchmarks/datamap_sst2.py --parts mislabel,mislabel-train --task rt_polarity --train-subset 3000 --epochs 2
    python benchmarks/datamap_sst2.py --parts selection,mislabel              # the issue's full SST-2 figures (hours)

Stages run through the stage shell (``greenlm.stage.run_stage``) into ``<work>/<run>``: a finished one is reused,
an interrupted one resumes. Settings, the machine and the date are written next to the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402

from greenlm.common import atomic_write_json  # noqa: E402
from greenlm.data import Task, bundled_task_names, load_task  # noqa: E402
from greenlm.datamap import compute_map, read_dynamics, region_labels, share_count  # noqa: E402

TITLE = "Data maps and data audit (issue 16)"
ROOT = Path(__file__).resolve().parents[1]


# ---- helpers ------------------------------------------------------------------------------------------------------


def subset_task(task: Task, n: int | None, seed: int, suffix: str = "") -> Task:
    """The task with ``n`` training rows drawn at random (kept in order); dev and test as they are."""
    if n is None or n >= len(task.split("train")):
        return task if not suffix else dataclasses.replace(task, name=task.name + suffix)
    train = task.split("train").subset(n, seed=seed)
    return dataclasses.replace(task, name=f"{task.name}-{n}{suffix}", splits={**task.splits, "train": train})


def flip_labels(task: Task, share: float, seed: int) -> tuple[Task, list[int]]:
    """``share`` of the training rows (seeded) given another label (the next one, cyclically)."""
    train = task.split("train")
    rng = np.random.Generator(np.random.PCG64(seed))
    flipped = sorted(int(i) for i in rng.permutation(len(train))[: share_count(share, len(train))])
    labels = list(train.labels)
    for i in flipped:
        labels[i] = (labels[i] + 1) % task.num_labels
    noisy = dataclasses.replace(train, labels=labels)
    return dataclasses.replace(task, name=f"{task.name}-flip{round(100 * share)}",
                               splits={**task.splits, "train": noisy}), flipped


def finetune(args, task: Task, out: Path, **settings):
    from greenlm.pipeline.finetune_config import FinetuneStageConfig
    from greenlm.stage import run_stage

    config = FinetuneStageConfig(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
                                 max_length=args.max_length, seed=args.seed, **settings)
    started = time.perf_counter()
    result = run_stage("finetune", args.model, task, config, out, progress=args.progress,
                       on_note=lambda note: print(f"note: {note}", file=sys.stderr), ledger=False)
    print(f"{out}: {result.status} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return result


def run_row(result) -> dict:
    tag = result.pricetag or {}
    train = result.metrics["train"]
    dynamics = result.metrics.get("dynamics") or {}
    return {
        "folder": str(result.folder),
        "rows": train["examples"],
        "dev_accuracy": result.metrics["splits"]["dev"]["accuracy"],
        "best_step": train["best_step"],
        "wall_s": tag.get("wall_s"),
        "energy_kwh": tag.get("energy_kwh"),
        "energy_source": tag.get("energy_source"),
        "train_seconds": train["train_seconds"],
        "record_seconds": dynamics.get("record_seconds"),
        "record_points": len(dynamics.get("points") or []) or None,
    }


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the ``positive`` rows (Mann-Whitney, ties averaged)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def settings_of(args) -> dict:
    return {"task": args.task, "model": args.model, "train_subset": args.train_subset, "epochs": args.epochs,
            "learning_rate": args.lr, "batch_size": args.batch_size, "max_length": args.max_length, "seed": args.seed}


# ---- the parts ----------------------------------------------------------------------------------------------------


def part_audit(args) -> dict:
    from greenlm.data.audit import audit_task
    from greenlm.models import load_tokenizer, resolve_model_source

    tokenizer = load_tokenizer(resolve_model_source("minilm").location)
    out = {"tokenizer": "minilm", "tasks": {}}
    for name in bundled_task_names():
        started = time.perf_counter()
        task = load_task(name)
        report = audit_task(task, tokenizer=tokenizer, max_length=128)
        short = audit_task(task, tokenizer=tokenizer, max_length=64)
        for split, s in report["splits"].items():
            s["tokens_64"] = short["splits"][split]["tokens"]
        report["seconds"] = round(time.perf_counter() - started, 1)
        out["tasks"][name] = report
        print(f"audit {name}: {report['seconds']} s", file=sys.stderr)
    return out


def part_selection(args) -> dict:
    task = subset_task(load_task(args.task), args.train_subset, args.seed)
    work = args.work / "selection"
    full = finetune(args, task, work / "full-dynamics", record_dynamics=True)
    plain = finetune(args, task, work / "full")
    runs = {"100% (with dynamics)": run_row(full), "100%": run_row(plain)}
    for region in ("ambiguous", "random", "easy", "hard"):
        spec = f"{region}:{args.fraction:g}"
        result = finetune(args, task, work / f"{region}-{args.fraction:g}", train_selection=spec,
                          selection_map=str(full.folder))
        runs[f"{round(100 * args.fraction)}% {region}"] = run_row(result)
    data_map = compute_map(read_dynamics(full.folder))
    regions = region_labels(data_map)
    return {"settings": {**settings_of(args), "fraction": args.fraction}, "train_rows": len(task.split("train")),
            "runs": runs, "regions": {r: regions.count(r) for r in sorted(set(regions))},
            "train_accuracy_at_points": data_map.train_accuracy()}


def part_mislabel(args, mode: str = "eval") -> dict:
    clean = subset_task(load_task(args.task), args.train_subset, args.seed)
    noisy, flipped = flip_labels(clean, args.flip, args.seed)
    folder = args.work / "mislabel" / (f"flip{round(100 * args.flip)}" + ("" if mode == "eval" else f"-{mode}"))
    result = finetune(args, noisy, folder, record_dynamics=True, **({} if mode == "eval" else {"dynamics_mode": mode}))
    dynamics = read_dynamics(result.folder)
    data_map = compute_map(dynamics)
    is_flipped = np.isin(np.asarray(data_map.guids), flipped)
    k = len(flipped)
    hardest = data_map.ranking("hard")[:k]
    found = int(is_flipped[hardest].sum())
    regions = np.asarray(region_labels(data_map))
    in_hard = regions == "hard-to-learn"
    by_region = {r: {"rows": int((regions == r).sum()), "flipped": int(is_flipped[regions == r].sum())}
                 for r in ("ambiguous", "hard-to-learn", "easy-to-learn", "other")}
    return {
        "settings": {**settings_of(args), "flip": args.flip, "dynamics_mode": mode},
        "train_rows": len(noisy.split("train")),
        "flipped": k,
        "precision_at_flip_size": found / k,
        "recall_at_flip_size": found / k,
        "recall_in_hard_region": float(is_flipped[in_hard].sum() / k),
        "hard_region_rows": int(in_hard.sum()),
        "auroc_one_minus_confidence": auroc(1 - data_map.confidence, is_flipped),
        "by_region": by_region,
        "run": run_row(result),
        "train_accuracy_at_points": data_map.train_accuracy(),
    }


# ---- the section of docs/benchmarks.md ----------------------------------------------------------------------------


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _sci(x, unit="") -> str:
    return "n/a" if x is None else f"{x:.3g}{unit}"


def render_audit(audit: dict) -> str:
    head = ("| task | split | rows | empty (skipped) | exact dup. rows | near dup. rows | texts with >1 label (rows) | non-text | other script"
            " | in train: near / exact / other label | majority label | > 64 tokens | > 128 tokens |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    lines = [head]
    for name, report in audit["tasks"].items():
        for split, s in report["splits"].items():
            c = report["contamination"].get(split)
            overlap = "—" if c is None else f"{c['near_rows']} / {c['exact_rows']} / {c['different_label_rows']}"
            lines.append(
                f"| {name} | {split} | {s['rows']:,} | {s['empty_rows_skipped']} | {s['exact_duplicates']['rows']} | {s['near_duplicates']['rows']} |"
                f" {s['conflicting_labels']['groups']} ({s['conflicting_labels']['rows']}) | {s['non_text_rows']['rows']} |"
                f" {s['scripts']['other_script_rows']} | {overlap} | {_pct(s['labels']['majority_share'])} |"
                f" {s['tokens_64']['truncated_rows']} | {s['tokens']['truncated_rows']} |")
    return "\n".join(lines)


def render(results: dict, command: str) -> str:
    parts = [f"Command: `{command}`. Machine: {machine_line()}. Date: {datetime.date.today().isoformat()}.",
             "Formulas, regions and thresholds: [docs/data.md](data.md)."]
    if "audit" in results:
        a = results["audit"]
        parts.append(f"### Data audit of the bundled tasks (`greenlm data audit --model minilm`)\n\n{render_audit(a)}\n\n"
                     "Near duplicates: rows equal to an earlier row after NFKC, case folding and punctuation folded to"
                     " spaces, not counted among the exact ones. 'In train': evaluation rows whose (normalised) text"
                     " occurs in train, and how many of those carry another label there. Token counts: MiniLM's"
                     " tokenizer, special tokens included; the rows longer than 64 / 128 tokens are those training at"
                     " that max_length truncates.")
    mislabel = [results[p] for p in ("mislabel", "mislabel-train") if p in results]
    if mislabel:
        m = mislabel[0]  # the eval-mode run when there is one (named by its mode below)
        first_mode = m["settings"].get("dynamics_mode", "eval")
        s, r = m["settings"], m["run"]
        by_region = ", ".join(f"{k} {v['flipped']}/{v['rows']}" for k, v in m["by_region"].items())
        table = []
        for x in mislabel:
            xr, mode = x["run"], x["settings"].get("dynamics_mode", "eval")
            table.append(
                f"| {mode} ({xr['record_points']} points) | {x['flipped']} | **{_pct(x['precision_at_flip_size'])}** |"
                f" {_pct(x['recall_in_hard_region'])} ({x['hard_region_rows']} rows) |"
                f" {x['auroc_one_minus_confidence']:.3f} | {_pct(xr['dev_accuracy'])} | {xr['record_seconds']:.1f} s"
                f" / {xr['train_seconds']:.0f} s = **+{_pct(xr['record_seconds'] / xr['train_seconds'])}** |")
        parts.append(
            f"### Mislabelled rows found by the map\n\n"
            f"{s['task']}, {m['train_rows']:,} training rows (seeded subset, seed {s['seed']}), {100 * s['flip']:.0f}%"
            f" of their labels flipped ({m['flipped']} rows, seeded); `{s['model']}` fine-tuned {s['epochs']:g} epochs,"
            f" lr {s['learning_rate']:g}, batch {s['batch_size']}, max_length {s['max_length']}, with"
            " `record_dynamics` in each dynamics mode (eval: a forward pass of its own at each record point; train:"
            " the training pass's logits, one point per epoch).\n\n"
            "| dynamics mode | flipped rows | hard-to-learn at the flip's size: precision = recall | recall within the 33%"
            " hard-to-learn region | AUROC of 1 - confidence | dev accuracy (trained on noisy labels) | recording:"
            " recorder's seconds / training steps' seconds |\n|---|---:|---:|---:|---:|---:|---:|\n" + "\n".join(table) +
            f"\n\nFlipped rows per region in {first_mode} mode (flipped / rows): {by_region}. A random pick of {m['flipped']}"
            f" rows would find {100 * s['flip']:.0f}% of them. Train accuracy (noisy labels) at the record points:"
            f" {', '.join(f'{100 * v:.1f}' for v in m['train_accuracy_at_points'])} % ({first_mode} mode). Recording cost: the recorder's"
            " own timing (eval: its forward passes over the training rows; train: copying each batch's logits and"
            f" saving them with each checkpoint), against the training steps of the same run; the {first_mode}-mode stage took"
            f" {_sci(r['wall_s'], ' s')} in all, {_sci(r['energy_kwh'], ' kWh')} ({r['energy_source']})."
            f" Load average (1, 5, 15 min) when each run ended: {', '.join(str(x.get('load_average_end')) for x in mislabel)}.")
    if "selection" in results:
        sel = results["selection"]
        s = sel["settings"]
        rows = []
        for name, r in sel["runs"].items():
            recording = "" if r["record_seconds"] is None else f"{r['record_seconds']:.0f} s ({r['record_points']} points)"
            rows.append(f"| {name} | {r['rows']:,} | {_pct(r['dev_accuracy'])} | {_sci(r['energy_kwh'], ' kWh')} |"
                        f" {_sci(r['wall_s'], ' s')} | {r['train_seconds']:.0f} s | {recording} |")
        full, plain = sel["runs"]["100% (with dynamics)"], sel["runs"]["100%"]
        wall = (full["wall_s"] / plain["wall_s"] - 1) if full["wall_s"] and plain["wall_s"] else None
        energy = (full["energy_kwh"] / plain["energy_kwh"] - 1) if full["energy_kwh"] and plain["energy_kwh"] else None
        parts.append(
            f"### Training on {100 * s['fraction']:.0f}% of the data, chosen by the map\n\n"
            f"{s['task']}, {sel['train_rows']:,} training rows{'' if s['train_subset'] is None else ' (seeded subset)'};"
            f" `{s['model']}`, {s['epochs']:g} epochs, lr {s['learning_rate']:g}, batch {s['batch_size']}, max_length"
            f" {s['max_length']}, seed {s['seed']}; the map is the 100% run's. Energy: the stage's price tag"
            f" ({full['energy_source']}).\n\n"
            "| training rows | rows | dev accuracy | energy | wall | training time | recording |\n"
            "|---|---:|---:|---:|---:|---:|---|\n" + "\n".join(rows) + "\n\n"
            f"Recording overhead of the 100% run: wall time {_pct(wall)}, energy {_pct(energy)} (the recorder's own"
            f" forward passes: {full['record_seconds']:.0f} s for {full['record_points']} points ="
            f" {_pct(full['record_seconds'] / full['train_seconds'])} of the training time).")
    todo = []
    full_sst2 = {"task": "sst2", "train_subset": None}
    for part, what in (("selection", "dev accuracy and training energy of 33% ambiguous / random / easy / hard vs 100%,"
                                     " and the recording overhead in wall time and energy (a twin run without recording)"),
                       ("mislabel", "the mislabel check (10% of the labels flipped)")):
        done = results.get(part, {}).get("settings") or {}
        if any(done.get(k) != v for k, v in full_sst2.items()):
            todo.append(f"{what} on all of SST-2 with the MiniLM teacher"
                        f" (`python benchmarks/datamap_sst2.py --parts {part}`; hours on this CPU)")
    if todo:
        parts.append("Not run yet: " + "; ".join(todo) + ".")
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="audit,selection,mislabel")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--train-subset", type=int, default=None, help="train on a seeded subset of this many rows")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=6e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fraction", type=float, default=0.33)
    parser.add_argument("--flip", type=float, default=0.10)
    parser.add_argument("--work", type=Path, default=Path("runs/datamap-bench"))
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "datamap_sst2.json",
                        help="every part's figures, kept in the repository (the section is rebuilt from them)")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results_file = args.results
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
        runner = {"audit": part_audit, "selection": part_selection, "mislabel": part_mislabel,
                  "mislabel-train": lambda a: part_mislabel(a, "train")}.get(part)
        if runner is None:
            parser.error(f"unknown part {part!r}")
        results[part] = runner(args)
        results[part]["load_average_end"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
        results.setdefault("commands", {})[part] = " ".join(["python", "benchmarks/datamap_sst2.py", *sys.argv[1:]])
        atomic_write_json(results_file, results)
    commands = results.get("commands") or {}
    command = "; ".join(f"{c}" for c in dict.fromkeys(commands.values()))
    body = render(results, command)
    print(body)
    if not args.no_doc:
        write_section(TITLE, body)


if __name__ == "__main__":
    main()
