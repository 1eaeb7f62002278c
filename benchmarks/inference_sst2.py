"""Quantization and fast inference of the SST-2 teacher, against the peers, in one `greenlm bench` run.

1. `greenlm quantize TEACHER --task sst2` (int8-dynamic, accuracy-aware, tolerance 1.0 point) and
   `greenlm quantize ... --scheme bf16` write the quantized folders;
2. `greenlm bench TEACHER INT8 BF16 --task sst2` runs every runtime of every model on the same dev
   sentences in one process: the peers (transformers fp32 padded to 128 tokens, ONNX Runtime fp32
   and its own int8 dynamic quantization, batches in the given order) and greenlm's paths;
3. the figures and the issue's targets go into docs/benchmarks.md ("Quantization and inference").

    python benchmarks/inference_sst2.py                                  # the fine-tuned teacher
    python benchmarks/inference_sst2.py --teacher runs/my-teacher --threads 1 --no-doc

Targets (issue 7): int8 <= 1.0 point accuracy drop and >= 2x the fp32 throughput; greenlm's fastest
path >= 1.2x ONNX Runtime's int8 dynamic quantization fed the same batches in the given order, and
>= 3x transformers fp32 eager padded to 128 tokens; GFLOP/s of the fp32 path vs the fp32 peak.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402

TITLE = "Quantization and inference (issue 7)"


def greenlm(*args: str) -> str:
    command = ["greenlm", *args]
    print("$", shlex.join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    return shlex.join(command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="runs/teacher-sst2", help="fine-tuned SST-2 teacher folder")
    parser.add_argument("--work", default="runs/bench-inference", help="where the quantized folders and JSON go")
    parser.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: physical cores)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-examples", type=int, default=None, help="time on a sample (accuracy: whole dev set)")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    teacher = (ROOT / args.teacher) if not Path(args.teacher).is_absolute() else Path(args.teacher)
    if not (teacher / "metrics.json").is_file():
        sys.exit(f"{teacher} is not a finished fine-tuned model (no metrics.json); train it first"
                 " (greenlm train --task sst2 --model minilm --out runs/teacher-sst2)")
    work = ROOT / args.work
    work.mkdir(parents=True, exist_ok=True)
    threads = ["--threads", str(args.threads)] if args.threads else []
    commands = []
    int8, bf16 = work / "teacher-int8", work / "teacher-bf16"
    for out, scheme in ((int8, "int8-dynamic"), (bf16, "bf16")):
        commands.append(greenlm("quantize", str(teacher), "--task", "sst2", "--scheme", scheme, "--out", str(out),
                                *threads))
    result_file = work / "bench.json"
    sample = ["--max-examples", str(args.max_examples)] if args.max_examples else []
    commands.append(greenlm("bench", str(teacher), str(int8), str(bf16), "--task", "sst2", "--batch-sizes", "1,32",
                            "--rounds", str(args.rounds), "--repeats", str(args.repeats), *sample, *threads,
                            "--json", str(result_file)))
    result = json.loads(result_file.read_text())
    quantized = {name: json.loads((folder / "metrics.json").read_text())["quantize"]
                 for name, folder in (("int8", int8), ("bf16", bf16))}
    body = render(result, quantized, commands)
    print(body)
    if not args.no_doc:
        write_section(TITLE, body)
        print("updated docs/benchmarks.md")


def render(result: dict, quantized: dict, commands: list[str]) -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from greenlm.report.bench import bench_markdown

    rows = [r for r in result["results"] if r["status"] == "ok"]
    teacher = result["results"][0]["model"]
    by = {(r["model_index"], r["runtime"]): r for r in rows}
    fp32 = by[0, "torch-fp32"]
    int8 = by.get((1, "saved"))
    ours = [r for r in rows if r["kind"] == "greenlm"]
    fastest = max(ours, key=lambda r: r["throughput_examples_per_s"])

    def ratio(a, b):
        return a["throughput_examples_per_s"] / b["throughput_examples_per_s"]

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    lines = []
    q = quantized["int8"]
    drop = fp32["accuracy"] - int8["accuracy"]
    r_torch = ratio(int8, fp32)
    r_onnx = ratio(int8, by[0, "onnx-fp32"])
    lines.append(f"- int8 (`greenlm quantize`, {q['status']}, {'per-channel' if q.get('per_channel') else 'per-tensor'},"
                 f" {len(q.get('fp32_nodes') or [])} node(s) kept fp32): accuracy {int8['accuracy']:.2f}% vs fp32"
                 f" {fp32['accuracy']:.2f}% (drop {drop:+.2f} points, target <= 1.0: {verdict(drop <= 1.0)});"
                 f" throughput {r_torch:.2f}x PyTorch fp32 and {r_onnx:.2f}x ONNX Runtime fp32 with the same engine"
                 f" (target >= 2x: {verdict(min(r_torch, r_onnx) >= 2.0)}); size {int8['disk_mb']:.1f} MB vs"
                 f" {fp32['disk_mb']:.1f} MB.")
    vs_ort = ratio(fastest, by[0, "ort-int8"])
    vs_naive = ratio(fastest, by[0, "hf-eager-pad128"])
    lines.append(f"- greenlm's fastest path: `{fastest['runtime']}` of {fastest['model']} ({fastest['precision']},"
                 f" {fastest['throughput_examples_per_s']:.1f} ex/s, accuracy {fastest['accuracy']:.2f}%):"
                 f" {vs_ort:.2f}x ONNX Runtime int8 dynamic in the given order (target >= 1.2x: {verdict(vs_ort >= 1.2)}),"
                 f" {vs_naive:.2f}x transformers fp32 eager padded to 128 (target >= 3x: {verdict(vs_naive >= 3.0)}).")
    peak = result["matmul_peak_gflop_per_s"]
    for runtime in ("torch-fp32", "onnx-fp32", "hf-eager-pad128"):
        row = by[0, runtime]
        lines.append(f"- `{runtime}`: {row['gflop_per_s_executed']:.1f} GFLOP/s executed ({row['gflop_per_s_useful']:.1f}"
                     f" useful, padding excluded) = {100 * row['share_of_fp32_matmul_peak']:.1f}% of the measured fp32"
                     f" matrix-product peak ({peak['fp32']:.1f} GFLOP/s; bf16 peak {peak.get('bf16') or 0:.1f} GFLOP/s).")
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    cmd = "\n".join(f"    {c}" for c in commands)
    return f"""### Quantize, export and serve the SST-2 teacher (`benchmarks/inference_sst2.py`)

Commands (`python benchmarks/inference_sst2.py`):

{cmd}

Machine: {machine_line()}; bench threads: {result['machine']['threads']}. Date: {date}.
Model: `{teacher}` (MiniLM-L6-H384 fine-tuned on SST-2). Inputs: the {result['results'][0]['examples']} SST-2 dev
sentences (accuracy on all of them; timing on {result['results'][0]['timing_examples']}), batch 1 for latency, batch 32 for
throughput, {result['config']['rounds']} interleaved rounds of {result['config']['repeats']} passes, best round per runtime.
Timings were taken on a machine shared with other jobs: they are noisy, and only ratios within this one run
are meaningful.

{bench_markdown(result)}
Against the issue's targets:

{chr(10).join(lines)}
"""


if __name__ == "__main__":
    main()
