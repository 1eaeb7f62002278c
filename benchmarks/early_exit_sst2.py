"""Early exit on SST-2 (issue 8): the speed/accuracy curve of a fine-tuned model with exits, timed on this CPU.

    python benchmarks/early_exit_sst2.py --model runs/teacher-sst2 [--student runs/<distilled>] \
        [--train-subset 8000] [--epochs 1] [--freeze-encoder] [--rounds 3]

For each model (the fine-tuned teacher, and optionally a distilled student):
  1. the ``early_exit`` stage (``greenlm.stage.run_stage("early_exit", ...)``, the same code as ``greenlm
     early-exit``) into ``<work>/<name>``: exits after every layer, calibrated, threshold chosen for
     ``--max-drop`` on held-out rows (resumes from ``<work>/.<name>.work`` if interrupted; reuses a finished
     folder; refuses a folder finished with other settings: delete it or give another ``--work``);
  2. on SST-2 dev: the curve over thresholds (accuracy and FLOPs per example, from the stage's curve.json),
     and at several thresholds (the chosen one, 1.0, and those nearest to ``--points`` FLOPs speedups) the
     real batched early exit: accuracy, mean exit layer, throughput at batch 32 (pooled across batches, and
     batch by batch) and latency at batch 1 (``greenlm.runtime.measure_speed``), timed side by side with the
     same model without exits, in this process, in alternating rounds (best throughput of each);
  3. ``<work>/<name>/benchmark.json`` and the section "## Early exit (issue 8)" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Early exit (issue 8)"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "runs" / "teacher-sst2", help="fine-tuned teacher folder")
    p.add_argument("--student", type=Path, default=None, help="a distilled student folder (optional)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "early-exit-sst2", help="where the models with exits go")
    p.add_argument("--train-subset", type=int, default=None, help="train the exits on N training rows (default all)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--freeze-encoder", action="store_true", help="train exits on a frozen encoder")
    p.add_argument("--loss", default="sum", choices=["sum", "weighted", "self_distill"])
    p.add_argument("--policy", default="max_prob", choices=["max_prob", "entropy", "patience"])
    p.add_argument("--max-drop", type=float, default=1.0, help="goal on held-out rows, accuracy points")
    p.add_argument("--points", default="1.5,2,2.5,3,4", help="FLOPs speedups whose nearest curve points are timed")
    p.add_argument("--speed-examples", type=int, default=872, help="dev rows timed (872 = all of SST-2 dev)")
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    p.add_argument("--threads", type=int, default=None, help="torch threads while timing (default: torch's)")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--report-only", action="store_true",
                   help="write the doc from the benchmark.json files of an earlier run (no training, no timing)")
    return p.parse_args()


def knobs_to_time(curve: list[dict], key: str, chosen, points: list[float]) -> list:
    knobs = [chosen]
    for target in points:
        near = min(curve, key=lambda p: (abs(p["flops_speedup"] - target), -p["accuracy"]))
        knobs.append(near[key])
    knobs.append(1.0 if key == "threshold" else max(p[key] for p in curve))
    out = []
    for k in knobs:
        if k not in out:
            out.append(k)
    return out


def bench_model(name: str, model_dir: Path, args, task) -> dict:
    from greenlm.compress.early_exit_config import EarlyExitConfig
    from greenlm.data import align_labels, encode_split
    from greenlm.models import load_classifier
    from greenlm.runtime import measure_speed, speed_inputs, torch_forward
    from greenlm.runtime.inference import predict_outputs
    from greenlm.stage import run_stage
    from greenlm.train import classification_metrics

    config = EarlyExitConfig(policy=args.policy, max_drop=args.max_drop, train_encoder=not args.freeze_encoder,
                             loss=args.loss, epochs=args.epochs, train_subset=args.train_subset,
                             measure_speed=False)  # timed below, more thoroughly
    out = args.work / name
    started = time.time()
    outcome = run_stage("early_exit", model_dir, task, config, out, progress=True, on_note=lambda n: print(f"note: {n}"),
                        command=f"benchmarks/early_exit_sst2.py ({name})")
    stage_s = time.time() - started
    metrics = outcome.metrics
    details = metrics["early_exit"]
    curve = json.loads((out / "curve.json").read_text())
    key = curve["knob"]
    dev_curve = curve["curves"]["dev"]
    knobs = knobs_to_time(dev_curve, key, curve["chosen"], [float(x) for x in args.points.split(",")])

    upstream = load_classifier(str(model_dir))
    with_exits = load_classifier(str(out))
    model, tokenizer = with_exits.model, with_exits.tokenizer
    max_length = model.config.greenlm["max_length"]
    dev_split = align_labels(task.split("dev"), task, with_exits.labels, name)
    dev = encode_split(dev_split, tokenizer, max_length)
    pad = tokenizer.pad_token_id
    inputs = speed_inputs(dev, max_examples=args.speed_examples)

    # Accuracy and exit layers of the real batched early exit at each timed knob (all of dev).
    rows = []
    for knob in knobs:
        model.set_policy(args.policy, **{key: knob})
        logits, layers = predict_outputs(model, dev, pad_token_id=pad)
        m = classification_metrics(dev.labels, logits.argmax(-1).tolist(), len(with_exits.labels))
        point = next(p for p in dev_curve if p[key] == knob)
        rows.append({key: knob, "chosen": knob == curve["chosen"], "accuracy": m["accuracy"],
                     "mean_exit_layer": round(float(layers.double().mean()), 3),
                     "flops_speedup": point["flops_speedup"], "timings": []})
    upstream_timings = []
    previous_threads = torch.get_num_threads()
    for _ in range(args.rounds):  # alternating rounds: upstream, then each threshold
        upstream_timings.append(measure_speed(torch_forward(upstream.model), inputs, pad_token_id=pad,
                                              threads=args.threads).to_dict())
        for row in rows:
            model.set_policy(args.policy, **{key: row[key]})
            row["timings"].append(measure_speed(torch_forward(model), inputs, pad_token_id=pad,
                                                threads=args.threads).to_dict())
            # The same model called batch by batch: rows that go on are not pooled across batches.
            row.setdefault("timings_per_batch", []).append(
                measure_speed(lambda batch: model(**batch).logits, inputs, pad_token_id=pad, threads=args.threads,
                              latency_examples=0).to_dict())
    torch.set_num_threads(previous_threads)

    def best(timings):
        return max(timings, key=lambda t: t["throughput_examples_per_s"])

    up = best(upstream_timings)
    upstream_acc = details["upstream"]["splits"]["dev"]["accuracy"]
    for row in rows:
        b = best(row["timings"])
        per_batch = best(row["timings_per_batch"])["throughput_examples_per_s"]
        row.update(throughput_per_batch_examples_per_s=round(per_batch, 1),
                   throughput_per_batch_speedup=round(per_batch / up["throughput_examples_per_s"], 3))
        row.update(throughput_examples_per_s=round(b["throughput_examples_per_s"], 1),
                   throughput_speedup=round(b["throughput_examples_per_s"] / up["throughput_examples_per_s"], 3),
                   latency_ms_p50=round(b["latency_ms_p50"], 2),
                   latency_speedup=round(up["latency_ms_p50"] / b["latency_ms_p50"], 3),
                   drop_points_vs_upstream=round(100 * (upstream_acc - row["accuracy"]), 2))
    model.set_policy(args.policy, **{key: curve["chosen"]})
    result = {
        "name": name, "model": str(model_dir), "out": str(out), "stage_seconds": round(stage_s, 1),
        "reused": outcome.reused, "upstream_accuracy": upstream_acc,
        "upstream_throughput_examples_per_s": round(up["throughput_examples_per_s"], 1),
        "upstream_latency_ms_p50": round(up["latency_ms_p50"], 2), "threads": up["threads"],
        "timed_examples": len(inputs), "rounds": args.rounds, "knob": key, "chosen": curve["chosen"],
        "goal": details["goal"], "heldout_chosen_point": details["heldout"]["chosen_point"],
        "train": details["train"], "calibration": details["calibration"], "rows": rows, "dev_curve": dev_curve,
        "num_layers": details["num_layers"], "policy": args.policy, "max_drop": args.max_drop,
    }
    (out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def rates(train: dict) -> str:
    if train["encoder_trained"]:
        return f"learning rates {train['learning_rate']} (encoder), {train.get('exit_learning_rate')} (exits)"
    return f"learning rate {train.get('exit_learning_rate') or train['learning_rate']} (exits)"


def markdown(results: list[dict], args, command: str) -> str:
    from greenlm.common.hardware import cpu_model

    load = os.getloadavg()
    lines = [
        SECTION,
        "",
        f"Command: `{command}`.",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        f"({results[0]['threads'] if results else '?'} threads while timing), Python {platform.python_version()}. "
        f"Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. Load average at the end: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min).",
        "",
        "A load average above the CPU count means other jobs shared the machine, and wall-clock figures are then",
        "noisy. Ratios are taken side by side in one process, alternating rounds, best throughput of each; FLOPs",
        "speedups (matmul convention, from the exits actually taken on dev) do not depend on the machine.",
        "Throughput is greenlm's batched early exit over the whole set (`predict_batches`: rows that go on wait for",
        "the next batches' rows at each layer, so layers run on full batches); \"batch by batch\" calls the model on",
        "each batch of 32 alone (rows that go on continue in a shrinking batch), as a server answering one request does.",
        "",
    ]
    for r in results:
        key = r["knob"]
        t = r["train"]
        lines += [
            f"### {r['name']}: `{r['model']}` ({r['num_layers']} layers)",
            "",
            f"Exits after every layer, trained {'with the encoder' if t['encoder_trained'] else 'on a frozen encoder'}"
            f" (loss `{t['loss']}`, {t['examples']} training rows, {t['steps']} steps, {rates(t)},"
            f" {t['train_seconds']:.0f} s of training), one temperature per exit fitted on held-out rows carved from"
            f" train; policy `{r.get('policy', args.policy)}`; {key} chosen on held-out rows for"
            f" `--max-drop {r.get('max_drop', args.max_drop)}`:"
            f" **{r['chosen']}** (held-out drop {r['heldout_chosen_point']['drop_points']} points, expected FLOPs"
            f" speedup {r['heldout_chosen_point']['flops_speedup']}x).",
            f"Without exits: dev accuracy {r['upstream_accuracy']:.4f}, throughput"
            f" {r['upstream_throughput_examples_per_s']} examples/s (batch 32, {r['timed_examples']} dev rows),"
            f" latency p50 {r['upstream_latency_ms_p50']} ms (batch 1).",
            "",
            f"| {key} | dev accuracy | drop vs no exits (points) | mean exit layer | FLOPs speedup |"
            " throughput ex/s (batch 32) | throughput speedup | batch by batch ex/s | batch by batch speedup |"
            " latency p50 ms (batch 1) | latency speedup |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in sorted(r["rows"], key=lambda x: x["flops_speedup"]):
            mark = " (chosen)" if row["chosen"] else ""
            lines.append(
                f"| {row[key]}{mark} | {row['accuracy']:.4f} | {row['drop_points_vs_upstream']:+.2f} |"
                f" {row['mean_exit_layer']} | {row['flops_speedup']:.2f}x | {row['throughput_examples_per_s']} |"
                f" {row['throughput_speedup']:.2f}x | {row.get('throughput_per_batch_examples_per_s', 'n/a')} |"
                f" {_x(row.get('throughput_per_batch_speedup'))} |"
                f" {row['latency_ms_p50']} | {row['latency_speedup']:.2f}x |"
            )
        ok = [row for row in r["rows"] if row["drop_points_vs_upstream"] <= 1.0]
        best = max(ok, key=lambda x: x["throughput_speedup"]) if ok else None
        chosen = next(row for row in r["rows"] if row["chosen"])
        verdict = ("met" if best and best["throughput_speedup"] >= 2.0 else "**missed**")
        lines += [
            "",
            f"Target (>= 2x throughput at batch 32 within 1.0 point of the model without exits, on dev"
            f"{'' if r['name'] == 'teacher' else '; the issue sets it for the teacher, this is for reference'}):"
            f" {verdict}."
            + (f" Best timed point within 1.0 point (picked on dev): {key} {best[key]}, {best['throughput_speedup']:.2f}x throughput,"
               f" {best['flops_speedup']:.2f}x FLOPs ({_x(best.get('throughput_per_batch_speedup'))} batch by batch),"
               f" drop {best['drop_points_vs_upstream']:+.2f} points." if best else "")
            + f" The threshold chosen on held-out rows gives {chosen['throughput_speedup']:.2f}x at"
              f" {chosen['drop_points_vs_upstream']:+.2f} points on dev.",
            "",
            f"Whole dev curve over {len(r['dev_curve'])} {key} values (accuracy, FLOPs speedup): "
            f"`{Path(r['out']).relative_to(ROOT) if Path(r['out']).is_relative_to(ROOT) else r['out']}/curve.csv`"
            " (held-out and dev), timings in `benchmark.json` beside it. A few points of it:",
            "",
            f"| {key} | dev accuracy | mean exit layer | FLOPs speedup |",
            "|---:|---:|---:|---:|",
        ]
        curve = sorted(r["dev_curve"], key=lambda p: p["flops_speedup"])
        step = max(1, len(curve) // 10)
        for p in curve[::step] + ([curve[-1]] if (len(curve) - 1) % step else []):
            lines.append(f"| {p[key]} | {p['accuracy']:.4f} | {p['mean_exit_layer']} | {p['flops_speedup']:.2f}x |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _x(ratio) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def write_section(doc: Path, body: str) -> None:
    """Replace this section of docs/benchmarks.md (up to the next "## " heading); touch nothing else."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    tmp = doc.with_suffix(".md.tmp-early-exit")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, doc)


def main() -> None:
    args = parse_args()
    from greenlm.data import load_task

    command = "python benchmarks/early_exit_sst2.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    task = load_task("sst2")
    models = [("teacher", args.model)] + ([("student", args.student)] if args.student else [])
    results = []
    for name, folder in models:
        if args.report_only:
            saved = json.loads((args.work / name / "benchmark.json").read_text())
            command = saved.get("command", command)
            results.append(saved)
            continue
        if not (folder / "metrics.json").is_file():
            sys.exit(f"{folder} is not a finished model folder (no metrics.json)")
        results.append(bench_model(name, folder, args, task))
        results[-1]["command"] = command.strip()
        (args.work / name / "benchmark.json").write_text(json.dumps(results[-1], indent=2) + "\n")
    body = markdown(results, args, command.strip())
    print(body)
    if not args.no_doc:
        write_section(args.doc, body)


if __name__ == "__main__":
    main()
