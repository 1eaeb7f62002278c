"""Does `greenlm flops --convention electra` reproduce ELECTRA's published FLOPs (Clark et al. 2020)?

Writes the configurations of the paper's models (its Table 6 hyperparameters) as config.json files,
runs the real `greenlm flops ... --convention electra --json` on each, and compares with the paper's
Table 1 (small and base models: train FLOPs, inference FLOPs for one length-128 input) and Table 2
(large models: train FLOPs). Target: within 3%.

    python benchmarks/electra_flops.py            # prints the table and updates docs/benchmarks.md
    python benchmarks/electra_flops.py --no-doc   # print only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Price tag (issue 4)"
MARK = "electra-flops"
V = 30522  # BERT's WordPiece vocabulary


def electra_config(h, layers, *, e=None, heads=None, inter=None, vocab=V, arch="ElectraForPreTraining"):
    """An ELECTRA-layout config (embedding width may differ from hidden): heads of 64 dims, FFN 4h."""
    return {
        "model_type": "electra", "architectures": [arch], "vocab_size": vocab, "hidden_size": h,
        "embedding_size": e or h, "num_hidden_layers": layers, "num_attention_heads": heads or max(h // 64, 1),
        "intermediate_size": inter or 4 * h, "max_position_embeddings": 512,
    }


def bert_config(h, layers, vocab=V, model_type="bert", positions=512):
    return {
        "model_type": model_type, "architectures": ["BertForMaskedLM"], "vocab_size": vocab, "hidden_size": h,
        "num_hidden_layers": layers, "num_attention_heads": h // 64, "intermediate_size": 4 * h,
        "max_position_embeddings": positions,
    }


# name, discriminator/MLM config, generator config or None, seq_len, batch, steps, paper train, paper infer@128
ROWS = [
    ("BERT-Small", electra_config(256, 12, e=128, arch="ElectraForMaskedLM"), None, 128, 128, 1_450_000, 1.4e18, 3.7e9, "Table 1"),
    ("BERT-Base", bert_config(768, 12), None, 512, 256, 1_000_000, 6.4e19, 2.9e10, "Table 1"),
    ("ELECTRA-Small", electra_config(256, 12, e=128), electra_config(64, 12, e=128, arch="ElectraForMaskedLM"), 128, 128, 1_000_000, 1.4e18, 3.7e9, "Table 1"),
    ("ELECTRA-Small, 50% trained", electra_config(256, 12, e=128), electra_config(64, 12, e=128, arch="ElectraForMaskedLM"), 128, 128, 500_000, 7.1e17, 3.7e9, "Table 1"),
    ("ELECTRA-Base", electra_config(768, 12), electra_config(256, 12, e=768, arch="ElectraForMaskedLM"), 512, 256, 766_000, 6.4e19, 2.9e10, "Table 1"),
    ("BERT-Large", bert_config(1024, 24), None, 512, 256, 1_000_000, 1.9e20, None, "Table 2"),
    ("RoBERTa-100K", bert_config(1024, 24, vocab=50265, model_type="roberta", positions=514), None, 512, 8000, 100_000, 6.4e20, None, "Table 2"),
    ("RoBERTa-500K", bert_config(1024, 24, vocab=50265, model_type="roberta", positions=514), None, 512, 8000, 500_000, 3.2e21, None, "Table 2"),
    ("ELECTRA-400K", electra_config(1024, 24), electra_config(256, 24, e=1024, arch="ElectraForMaskedLM"), 512, 2048, 400_000, 7.1e20, None, "Table 2"),
    ("ELECTRA-1.75M", electra_config(1024, 24), electra_config(256, 24, e=1024, arch="ElectraForMaskedLM"), 512, 2048, 1_750_000, 3.1e21, None, "Table 2"),
]

# The ELECTRA-Small rows of Table 1 are reproduced to 3 digits by a generator of hidden 128 (1/2 of
# the discriminator), not the 1/4 (hidden 64) of the paper's appendix and of the public script.
HYPOTHESIS = ("ELECTRA-Small, generator hidden 128 (hypothesis)", electra_config(256, 12, e=128),
              electra_config(128, 12, e=128, arch="ElectraForMaskedLM"), 128, 128, 1_000_000, 1.4e18, 3.7e9, "Table 1")


def greenlm_flops(folder: Path, *args: str) -> dict:
    cmd = [sys.executable, "-m", "greenlm", "flops", str(folder), "--convention", "electra", "--json", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"greenlm flops failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def script_layer_norm_gap(cfg: dict, s: int) -> float:
    """FLOPs the public script leaves out of one forward pass: it counts the post-attention layer
    norm as 5 FLOPs per token where greenlm counts 5 per element (5 x (h - 1) per token per layer)."""
    return cfg["num_hidden_layers"] * s * 5 * (cfg["hidden_size"] - 1)


def run(rows) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, disc, gen, s, batch, steps, paper_train, paper_infer, table) in enumerate(rows):
            folder = Path(tmp) / f"m{i}"
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps(disc))
            args = ["--seq-len", str(s), "--train-steps", str(steps), "--batch-size", str(batch)]
            if gen is not None:
                gfolder = Path(tmp) / f"g{i}"
                gfolder.mkdir()
                (gfolder / "config.json").write_text(json.dumps(gen))
                args += ["--pretraining", "electra", "--generator", str(gfolder)]
            else:
                args += ["--pretraining", "mlm"]
            train = greenlm_flops(folder, *args)
            infer = greenlm_flops(folder, "--seq-len", "128")["infer_flops"]
            gap = 2 * batch * steps * (script_layer_norm_gap(disc, s) + (script_layer_norm_gap(gen, s) if gen else 0))
            results.append({
                "model": name, "table": table, "seq_len": s, "batch": batch, "steps": steps,
                "train": train["train_flops"], "paper_train": paper_train, "script_train": train["train_flops"] - gap,
                "infer": infer, "paper_infer": paper_infer,
            })
    return results


def diff(ours, paper):
    return None if paper is None else 100.0 * (ours - paper) / paper


def render(results, hypothesis) -> str:
    lines = [
        "| model (paper table) | seq | batch x steps | train FLOPs: paper | greenlm | diff | infer FLOPs @128: paper | greenlm | diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results + [hypothesis]:
        d_train, d_infer = diff(r["train"], r["paper_train"]), diff(r["infer"], r["paper_infer"])
        flag = "" if abs(d_train) <= 3 and (d_infer is None or abs(d_infer) <= 3) else " **miss**"
        lines.append(
            f"| {r['model']} ({r['table']}){flag} | {r['seq_len']} | {r['batch']:,} x {r['steps']:,} | "
            f"{r['paper_train']:.1e} | {r['train']:.3e} | {d_train:+.1f}% | "
            + (f"{r['paper_infer']:.1e} | {r['infer']:.3e} | {d_infer:+.1f}% |" if r["paper_infer"] else "- | - | - |")
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def write_doc(body: str) -> None:
    """Replace this benchmark's block inside the `## Price tag (issue 4)` section; touch nothing else."""
    begin, end = f"<!-- {MARK}:begin -->", f"<!-- {MARK}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    elif SECTION in text:
        start = text.index(SECTION) + len(SECTION)
        nxt = text.find("\n## ", start)
        insert_at = len(text) if nxt < 0 else nxt
        text = text[:insert_at].rstrip("\n") + "\n\n" + block + "\n" + text[insert_at:]
    else:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{block}\n"
    tmp = DOC.with_suffix(".md.tmp")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, DOC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-doc", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()
    results = run(ROWS)
    (hypothesis,) = run([HYPOTHESIS])
    table = render(results, hypothesis)
    print(table)
    misses = [r["model"] for r in results if abs(diff(r["train"], r["paper_train"])) > 3
              or (r["paper_infer"] and abs(diff(r["infer"], r["paper_infer"])) > 3)]
    worst_script = max(abs(r["script_train"] - r["train"]) / r["train"] for r in results) * 100
    body = f"""### ELECTRA's FLOP tables (`benchmarks/electra_flops.py`)

Command: `python benchmarks/electra_flops.py`. For each row it writes the config.json of the paper's model
(ELECTRA's Table 6 hyperparameters; vocab 30,522, RoBERTa 50,265) and runs
`greenlm flops CONFIG --convention electra --seq-len S --train-steps T --batch-size B --pretraining mlm`
(BERT, RoBERTa) or `... --pretraining electra --generator GENERATOR` (ELECTRA), then `--seq-len 128` for inference.
Machine: {machine()}. Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d')} (FLOP counts do not depend on the machine).
Target: within 3% of the paper (Clark et al. 2020, Tables 1-2; paper figures have two significant digits).

{table}

Result: {len(results) - len(misses)} of {len(results)} rows within 3%{'; misses: ' + '; '.join(misses) if misses else ''}.
greenlm differs from ELECTRA's public `flops_computation.py` only by counting the post-attention layer norm per
element (the script: 5 FLOPs per token); that changes no row by more than {worst_script:.2f}%.
The ELECTRA-Small rows are the exception to the paper matching the script: with the generator of the paper's
appendix and of the script (hidden 64 = 1/4 of the discriminator) the script itself gives 1.29e18, 8% under the
paper's 1.4e18 (and 6.5e17 vs 7.1e17 at 50%). A generator of hidden 128 reproduces every ELECTRA-Small training
figure of Table 1 to the paper's precision (last row), so the table was probably computed with that generator;
greenlm keeps the documented 1/4 generator and reports the miss rather than tune to the table.
"""
    if not args.no_doc:
        write_doc(body)
        print(f"updated {DOC}")


if __name__ == "__main__":
    main()
