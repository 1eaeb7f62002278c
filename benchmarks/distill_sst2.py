"""Distillation benchmark on SST-2: a 4-layer and a 2-layer narrow student of greenlm's fine-tuned MiniLM.

Distils the teacher with the ``distill`` stage (``greenlm.stage.run_stage``, the same code as
``greenlm distill``) into
  - ``4x312``: TinyBERT-4's shape, initialised from the mapped teacher layers (the default init);
  - ``2x256``: two narrow layers, same recipe;
  - ``2x256 random init``: the same student from random weights (which init is better);
  - ``... trimmed vocab``: each trained student with only the vocabulary rows the task's training
    text (and the augmented rows) use. With init "teacher" this equals training with
    ``trim_vocab=True``: a row no training token uses gets no gradient, and AdamW, clipping and every
    other quantity treat the kept rows identically, so it is cut from the trained student instead of
    trained again (the stage tests cover the ``trim_vocab`` path itself);
and asks the budget path (``target_speedup``) which shape it would pick, with its measured check.
The students share one augmented training set and one pass of teacher logits: this script computes them
once, before the students, with the stage's own functions and the students' settings (into
``<work>/.shared``, with their price tag), and seeds them into each student's work folder
(``<work>/.<student>.work/state``, under the stage's key so that the stage keeps them). Their cost is
reported once, added to the 2x256 row (the first student, which used to compute them itself). The
shared files are keyed by the teacher's content, the task and the settings they depend on, and the stage
checks each seeded file against the data it would compute it from, so a file that does not match is
recomputed, not misused (the script then says so). Because the work folder is there before the stage
starts, the stage's log says it is "resuming" each student: it resumes from the seeded files.
Then it times the teacher and every student side by side in this one process (same dev inputs,
same threads, two interleaved rounds, best of each) and writes the figures, the command, the
machine and the date into the "## Distillation (issue 5)" section of docs/benchmarks.md (and
everything into <work>/results.json).

    python benchmarks/distill_sst2.py --teacher runs/teacher-sst2 --work runs/distill-bench

Full-data distillation does not fit a shared 2-core CPU: by default the students learn from a random
subset of the SST-2 training sentences plus TinyBERT-style augmented copies (teacher word-embedding
neighbours), a short intermediate phase and a short prediction phase; the settings are written next
to the figures. Re-running reuses finished students and only re-times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from greenlm.common import atomic_write_json, atomic_write_text
from greenlm.common.hardware import cpu_model
from greenlm.compress import distill as distill_method
from greenlm.compress.distill import _choose_shape
from greenlm.compress.distill_config import DistillConfig
from greenlm.data import encode_split, load_task
from greenlm.measure import count_flops, count_params
from greenlm.models import load_classifier, save_classifier
from greenlm.models import students as st
from greenlm.runtime import measure_speed, speed_inputs, torch_forward
from greenlm.stage import StageContext, run_stage, stage_identity
from greenlm.stage.folders import artifact_hash, identity_key, read_stage_file
from greenlm.stage.workdir import KEY_FILE, STATE_DIR
from greenlm.train import evaluate

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Distillation (issue 5)"


def _config(args, **overrides) -> DistillConfig:
    base = dict(
        train_subset=args.train_subset, augment=args.augment, augment_copies=args.augment_copies,
        intermediate_epochs=args.intermediate_epochs, epochs=args.epochs, learning_rate=args.lr,
        intermediate_learning_rate=args.intermediate_lr, max_length=args.max_length, seed=args.seed,
    )
    base.update(overrides)
    return DistillConfig(**base)


# What every student computes alike from the teacher and the training text (the stage's cache file names).
SHARED = ("augmented.json", "teacher_logits.safetensors", "teacher_logits.json")
# The settings those files depend on (besides the teacher, the task and the tokenizer, which all students share).
SHARED_SETTINGS = ("train_subset", "augment", "augment_copies", "augment_prob", "augment_candidates",
                   "augment_mlm_model", "max_length", "seed")
SHARED_DONE = "shared.json"


def _shared_files(teacher_dir: Path, task, config: DistillConfig, shared: Path) -> dict:
    """Compute the augmented training text and the teacher's logits once, into ``shared``, exactly as the
    ``distill`` stage computes them for a student of ``config`` (same functions, same cache files); returns
    their price tag by phase (``augment``, ``teacher_logits``), kept in ``shared`` so that a re-run reuses it."""
    key = {"teacher_artifact_sha256": artifact_hash(teacher_dir), "task_fingerprint": task.fingerprint(),
           **{k: getattr(config, k) for k in SHARED_SETTINGS}}
    done = shared / SHARED_DONE
    needed = [f for f in SHARED if f != "augmented.json" or config.augment != "none"]
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("key") == key and all((shared / f).is_file() for f in needed):
            print(f"[shared] reused {shared}", flush=True)
            return saved["cost"]
    shutil.rmtree(shared, ignore_errors=True)
    note = lambda m: print(f"[shared] note: {m}", flush=True)  # noqa: E731
    ctx = StageContext(method="distill", task=task, source=str(teacher_dir), work_dir=shared, progress=False,
                       on_note=note)
    shared.mkdir(parents=True, exist_ok=True)
    loaded = distill_method._load_teacher(teacher_dir, task, config, ctx.note)
    teacher, tokenizer = loaded.model.eval(), loaded.tokenizer
    max_length = ctx.max_length(teacher, config.max_length)
    train_split = ctx.align(task.split("train"), list(loaded.labels), "the teacher")
    if config.train_subset is not None:
        train_split = train_split.subset(config.train_subset, seed=config.seed)
    print("[shared] augmenting the training text and computing the teacher's logits", flush=True)
    with ctx.phase("augment"):
        train_split, _ = distill_method._augmented_train(train_split, teacher, tokenizer, config, shared, ctx.note)
    train_data = encode_split(train_split, tokenizer, max_length)
    with ctx.phase("teacher_logits") as tag:
        logits = distill_method.teacher_logits(teacher, train_data, pad_token_id=tokenizer.pad_token_id)
        distill_method._add_flops(tag, teacher.config, train_data, len(train_data), train=False)
    from safetensors.torch import save_file

    save_file({"logits": logits.contiguous()}, str(shared / "teacher_logits.safetensors"))
    atomic_write_json(shared / "teacher_logits.json", {"data": distill_method._data_fingerprint(train_data)})
    cost = ctx.costs.to_dict()
    atomic_write_json(done, {"key": key, "cost": cost})
    return cost


def _seed(work_dir: Path, key: str, shared: Path) -> None:
    """Put the shared files into a student's work folder under the stage's ``key``: the stage's work folder
    holds ``key`` and ``state/``, and one whose key differs is removed when the stage claims it
    (``greenlm.stage.workdir.claim``), so without the key the seeded files would go."""
    key_file, state = work_dir / KEY_FILE, work_dir / STATE_DIR
    if work_dir.exists() and (not key_file.is_file() or key_file.read_text() != key):
        shutil.rmtree(work_dir)  # what the stage would do: state of other inputs cannot be resumed
    state.mkdir(parents=True, exist_ok=True)
    for file in SHARED:
        if (shared / file).is_file() and not (state / file).is_file():
            shutil.copyfile(shared / file, state / file)
    atomic_write_text(key_file, key)


def _distil(name: str, teacher: Path, task, config: DistillConfig, work: Path, shared: Path) -> dict:
    """Run the stage for one student (or reuse its finished folder), its work folder seeded from ``shared``.
    A folder finished with other settings is replaced."""
    out = work / name.replace(" ", "-")
    work_dir = work / f".{out.name}.work"
    key = identity_key(stage_identity("distill", config, task, teacher))
    finished = read_stage_file(out) if out.is_dir() else None
    if finished is None or finished.get("key") != key:
        _seed(work_dir, key, shared)
        print(f"[{name}] distilling: {config.to_dict()}", flush=True)
    started = time.perf_counter()
    result = run_stage("distill", teacher, task, config, out, work_dir=work_dir, replace=True, progress=False,
                       on_note=lambda m: print(f"[{name}] note: {m}", flush=True),
                       command=f"benchmarks/distill_sst2.py ({name})")
    metrics = result.metrics
    if result.reused:
        print(f"[{name}] reused {out}", flush=True)
        return metrics
    if "teacher_logits" in metrics["distill"]["cost"]["phases"]:
        print(f"[{name}] note: the seeded teacher logits did not match this student's data: the stage recomputed"
              " them, and its cost includes them", flush=True)
    print(f"[{name}] dev accuracy {metrics['splits']['dev']['accuracy']:.4f} in {time.perf_counter() - started:.0f} s",
          flush=True)
    return metrics


def _trimmed_copy(source: Path, out: Path, task, shared: Path) -> Path:
    """The trained student with only the vocabulary rows the (augmented) training text uses."""
    if (out / "config.json").is_file():
        return out
    loaded = load_classifier(str(source))
    cache = shared / "augmented.json"
    augmented = json.loads(cache.read_text())["split"]["text_a"] if cache.is_file() else []
    # the same text trim_vocab=True uses: the task's whole training text plus the augmented rows
    tokenizer, kept = st.trim_vocabulary(loaded.tokenizer, list(task.split("train").text_a) + augmented)
    st.trim_embeddings(loaded.model, kept)
    save_classifier(loaded.model, tokenizer, out)
    return out


def _time_side_by_side(models: dict[str, tuple], dev_split, max_length: int, rounds: int, examples: int) -> dict:
    """Throughput (batch 32) and latency (batch 1) of every model, interleaved rounds, best of each."""
    best: dict[str, dict] = {}
    for r in range(rounds):
        for name, (model, tokenizer) in models.items():
            encoded = speed_inputs(encode_split(dev_split, tokenizer, max_length), max_examples=examples)
            report = measure_speed(torch_forward(model), encoded, pad_token_id=tokenizer.pad_token_id, batch_size=32,
                                   latency_examples=64, repeats=3)
            print(f"  round {r + 1} {name}: {report.throughput_examples_per_s:.1f} ex/s, "
                  f"p50 {report.latency_ms_p50:.2f} ms", flush=True)
            old = best.get(name)
            if old is None or report.throughput_examples_per_s > old["throughput_examples_per_s"]:
                best[name] = {**report.to_dict(), "latency_ms_p50": min(report.latency_ms_p50,
                                                                       old["latency_ms_p50"] if old else 1e9)}
    return best


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    full = ROOT / "runs" / "teacher-sst2-full"  # the full-SST-2 teacher; runs/teacher-sst2 is a 10k-row one
    parser.add_argument("--teacher", type=Path, default=full if full.is_dir() else ROOT / "runs" / "teacher-sst2")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "distill-bench")
    parser.add_argument("--train-subset", type=int, default=8000)
    parser.add_argument("--augment", default="embedding")
    parser.add_argument("--augment-copies", type=int, default=2)
    parser.add_argument("--intermediate-epochs", type=float, default=1.0)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--intermediate-lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--target-speedup", type=float, default=6.0, help="budget for the shape-choice check")
    parser.add_argument("--speed-examples", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma list of variants to skip (random, trim, budget)")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if not (args.teacher / "metrics.json").is_file():
        sys.exit(f"teacher {args.teacher} is not finished (no metrics.json)")
    torch.manual_seed(0)
    task = load_task("sst2")
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    shared = args.work / ".shared"
    shared_cost = _shared_files(args.teacher, task, _config(args, student="2x256"), shared)
    results = {"2x256": _distil("2x256", args.teacher, task, _config(args, student="2x256"), args.work, shared)}
    results["4x312"] = _distil("4x312", args.teacher, task, _config(args, student="4x312"), args.work, shared)
    if "random" not in skip:
        results["2x256 random init"] = _distil("2x256 random init", args.teacher, task,
                                               _config(args, student="2x256", init="random"), args.work, shared)
    results = {k: results[k] for k in ("4x312", "2x256", "2x256 random init") if k in results}
    folders = {name: args.work / name.replace(" ", "-") for name in results}
    if "trim" not in skip:
        for name in ("4x312", "2x256"):
            folders[f"{name} trimmed vocab"] = _trimmed_copy(folders[name], args.work / f"{name}-trimmed-vocab", task,
                                                             shared)

    teacher = load_classifier(str(args.teacher))
    teacher_metrics = json.loads((args.teacher / "metrics.json").read_text())
    max_length = args.max_length
    budget = None
    if "budget" not in skip:
        cfg = _config(args, target_speedup=args.target_speedup)
        budget_work = args.work / ".budget"
        budget_work.mkdir(parents=True, exist_ok=True)
        shape, budget = _choose_shape(teacher.model, teacher.tokenizer, task.split("dev"), task.split("train"),
                                      max_length, cfg, budget_work, print)

    # Accuracy of every model on the full dev set (the teacher at the students' max_length).
    dev_split = task.split("dev")
    models = {"teacher (MiniLM 6x384)": (teacher.model.eval(), teacher.tokenizer)}
    for name, folder in folders.items():
        loaded = load_classifier(str(folder))
        models[name] = (loaded.model.eval(), loaded.tokenizer)
    rows = {}
    for name, (model, tokenizer) in models.items():
        encoded = encode_split(dev_split, tokenizer, max_length)
        acc = evaluate(model, encoded, pad_token_id=tokenizer.pad_token_id, num_labels=2)["accuracy"]
        unk = sum(r.count(tokenizer.unk_token_id) for r in encoded.input_ids) / max(1, sum(encoded.lengths()))
        rows[name] = {"accuracy": acc, "params": count_params(model)["total"], "vocab": len(tokenizer),
                      "dev_unk_rate": unk, "flops_per_example": count_flops(model, 32).infer_flops_per_example}
    print("timing side by side ...", flush=True)
    speed = _time_side_by_side(models, dev_split, max_length, args.rounds, args.speed_examples)

    teacher_name = next(iter(models))
    t_acc, t_tput = rows[teacher_name]["accuracy"], speed[teacher_name]["throughput_examples_per_s"]
    for name, row in rows.items():
        row.update(speed[name])
        row["accuracy_retained_pct"] = 100 * row["accuracy"] / t_acc
        row["speedup_x"] = row["throughput_examples_per_s"] / t_tput
        folder = args.teacher if name == teacher_name else folders[name]
        row["size_mb"] = _size_mb(folder)
        base = name.replace(" trimmed vocab", "")
        source = results.get(base)
        if source is not None:
            cost = source["distill"]["cost"]["total"]
            if base == "2x256":  # the shared augmentation and teacher logits are counted once, here
                cost = _add_costs(cost, shared_cost["total"])
            row["distill_wall_s"], row["distill_energy_kwh"] = cost["wall_s"], cost["energy_kwh"]
            row["distill_co2e_kg"], row["distill_flops"] = cost["co2e_kg"], cost["flops"]

    # The teacher's fine-tuning: FLOPs by formula (3 x forward per example), time from its metrics.
    train_info = teacher_metrics.get("train", {})
    mean_len = round(sum(encode_split(task.split("train").subset(4000), teacher.tokenizer, 128).lengths()) / 4000)
    per_example = count_flops(teacher.model, mean_len, train_steps=1, batch_size=1).train_flops_per_example
    teacher_cost = {"train_seconds": train_info.get("train_seconds"),
                    "examples_seen": (train_info.get("examples") or 0) * (train_info.get("epochs") or 0),
                    "mean_tokens": mean_len}
    teacher_cost["flops"] = per_example * teacher_cost["examples_seen"]
    powers = [r["distill_energy_kwh"] / r["distill_wall_s"] for r in rows.values()
              if r.get("distill_energy_kwh") and r.get("distill_wall_s")]
    if powers and teacher_cost["train_seconds"]:
        teacher_cost["energy_kwh_estimate"] = teacher_cost["train_seconds"] * sum(powers) / len(powers)

    results_file = args.work / "results.json"
    payload = {"rows": rows, "teacher_finetune": teacher_cost, "budget_choice": budget, "shared_cost": shared_cost,
               "args": vars(args) | {"teacher": str(args.teacher), "work": str(args.work)},
               "seconds": time.perf_counter() - started}
    atomic_write_json(results_file, payload)
    body = render(rows, teacher_cost, budget, args, results, shared_cost)
    print(body)
    if not args.no_doc:
        write_doc(body)


def _add_costs(a: dict, b: dict) -> dict:
    """Two cost totals added up; a figure either lacks stays unknown (None), as the stage's own totals do."""
    out = dict(a)
    for key in ("wall_s", "cpu_s", "energy_kwh", "co2e_kg", "flops"):
        x, y = a.get(key), b.get(key)
        out[key] = x + y if x is not None and y is not None else None
    return out


def render(rows: dict, teacher_cost: dict, budget: dict | None, args, results: dict, shared_cost: dict) -> str:
    cmd = "python benchmarks/distill_sst2.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    one = results["4x312"]
    data = one["distill"]["data"]
    lines = [
        f"Command: `{cmd}` ({date}; machine: {machine}; Python {platform.python_version()}).",
        "",
        f"Teacher: `{args.teacher}` (all-MiniLM-L6-v2 fine-tuned by `greenlm train` on the full SST-2 train set)."
        f" Students learn from {args.train_subset} random SST-2 training sentences plus"
        f" {data['augmentation'].get('augmented_rows', 0)} augmented copies ({args.augment}, {args.augment_copies} per"
        f" sentence, p=0.4, K=15): {data['train_rows']} rows, max length {args.max_length};"
        f" {args.intermediate_epochs:g} epoch(s) of TinyBERT intermediate-layer loss (lr {args.intermediate_lr:g}),"
        f" then {args.epochs:g} epoch(s) of soft targets (T=1, lr {args.lr:g}); best prediction epoch by dev accuracy"
        " (as the teacher's fine-tuning does). Accuracy: the full SST-2 dev set (872 sentences)."
        f" Speed: {args.speed_examples} dev sentences, batch 32 (throughput, length-grouped) and batch 1"
        f" (latency p50), every model in this one process, {args.rounds} interleaved rounds, best of each."
        " The machine was shared with other jobs while this ran: timings are noisy, ratios taken side by side.",
        "",
        "| model | dev acc % | % of teacher | params | size MB | vocab | FLOPs/ex (32 tok) | throughput ex/s (b=32) | speedup x | latency p50 ms (b=1) | distil wall s | distil kWh | distil CO2e kg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
        lines.append(
            f"| {name} | {100 * r['accuracy']:.2f} | {r['accuracy_retained_pct']:.1f} | {r['params'] / 1e6:.2f} M |"
            f" {r['size_mb']:.1f} | {r['vocab']} | {r['flops_per_example'] / 1e6:.0f} M |"
            f" {r['throughput_examples_per_s']:.0f} | {r['speedup_x']:.2f} | {r['latency_ms_p50']:.2f} |"
            f" {fmt(r.get('distill_wall_s'), '.0f')} | {fmt(r.get('distill_energy_kwh'), '.2e')} |"
            f" {fmt(r.get('distill_co2e_kg'), '.2e')} |"
        )
    lines.append("")
    checks = []
    for name, acc_goal, speed_goal in (("4x312", 99.0, 2.0), ("2x256", 97.0, 6.0)):
        r = rows[name]
        ok = r["accuracy_retained_pct"] >= acc_goal and r["speedup_x"] >= speed_goal
        checks.append(f"{name}: {r['accuracy_retained_pct']:.1f}% of the teacher (goal >= {acc_goal:g}%) at"
                      f" {r['speedup_x']:.2f}x (goal >= {speed_goal:g}x): {'met' if ok else 'MISSED'}")
    lines += ["Targets of issue 5: " + "; ".join(checks) + ".", ""]
    shared = shared_cost["phases"]
    shared_s = sum(shared.get(k, {}).get("wall_s", 0.0) for k in ("augment", "teacher_logits"))
    shared_kwh = sum(shared.get(k, {}).get("energy_kwh") or 0.0 for k in ("augment", "teacher_logits"))
    lines.append(f"Augmentation and the teacher's logits, computed once and reused by every student,"
                 f" took {shared_s:.0f} s and {shared_kwh:.2e} kWh (included in the 2x256 row only).")
    if "2x256 random init" in rows:
        a, b = rows["2x256"]["accuracy"], rows["2x256 random init"]["accuracy"]
        lines.append(f"Initialisation (2x256): from the teacher {100 * a:.2f}% vs random {100 * b:.2f}%"
                     f" -> {'teacher' if a >= b else 'random'} is better here.")
    for name in ("4x312", "2x256"):
        trimmed = rows.get(f"{name} trimmed vocab")
        if trimmed:
            full = rows[name]
            lines.append(f"Vocabulary trimming ({name}): {full['vocab']} -> {trimmed['vocab']} tokens,"
                         f" {full['params'] / 1e6:.2f} M -> {trimmed['params'] / 1e6:.2f} M parameters,"
                         f" {full['size_mb']:.1f} -> {trimmed['size_mb']:.1f} MB, dev accuracy"
                         f" {100 * full['accuracy']:.2f}% -> {100 * trimmed['accuracy']:.2f}%"
                         f" ([UNK] rate on dev {trimmed['dev_unk_rate']:.4f}).")
    lines.append("")
    tc = teacher_cost
    energy = f"{tc['energy_kwh_estimate']:.2e} kWh" if tc.get("energy_kwh_estimate") else "energy n/a"
    lines.append(
        f"Teacher fine-tuning for comparison: {tc['examples_seen']:.0f} example passes, {tc['flops']:.2e} FLOPs"
        f" (3 x forward at its mean {tc['mean_tokens']} tokens), {tc['train_seconds'] or 0:.0f} s of training;"
        f" {energy} (estimate: its training time x the mean power greenlm's estimator measured during the"
        " distillations on this machine, comparable for teachers trained before `greenlm train` wrote a price tag)."
        " Distillation kWh/CO2e are"
        " the stage's own price tag (estimate:tdp-utilisation; CO2e needs a region: n/a when none was set);"
        " distillation FLOPs: 4x312 "
        f"{rows['4x312'].get('distill_flops') or 0:.2e}, 2x256 "
        f"{rows['2x256'].get('distill_flops') or 0:.2e} (student training + teacher passes)."
    )
    if budget:
        tried = ", ".join(f"{t['shape']}: {t['flop_speedup']}x by FLOPs / {t['measured_speedup']}x measured"
                          for t in budget["tried"])
        lines += ["", f"Budget path (`target_speedup={args.target_speedup:g}`): {tried}; chose"
                      f" {budget['shape']['spec']} (FLOPs at the dev median of {budget['seq_len']} tokens)."]
    return "\n".join(lines)


def write_doc(body: str) -> None:
    """Replace the body of this benchmark's section of docs/benchmarks.md; touch nothing else."""
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    block = f"{SECTION}\n\n{body.rstrip()}\n"
    if SECTION in text:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + block + ("" if nxt < 0 else "\n" + text[nxt + 1:])
    else:
        text = text.rstrip("\n") + "\n\n" + block
    tmp = DOC.with_suffix(".md.distill.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, DOC)


if __name__ == "__main__":
    main()
