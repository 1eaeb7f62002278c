"""Issue 18 figure: the SST-2 MiniLM teacher converted to linear attention (swap, then fine-tune with distillation
from the original; Kasai et al. 2021), through the Python API (`greenlm.convert_attention`, the same stage as
`greenlm convert-attention`), one conversion per attention, the same training budget each.

The teacher is the `finetune` stage of a `greenlm run frontier` (MiniLM fine-tuned on SST-2, max_length 64); its
dev accuracy is measured again here with the same code. The best epoch of each conversion is chosen on the
validation split carved from train (never on dev). Each row has its price tag (time, energy: an estimate).

    python benchmarks/convert_attention_sst2.py --teacher runs/frontier-bench/frontier-sst2/finetune \
        --attentions rfa,performer,abc:k=32 --train-subset 16000 --epochs 2
writes the section "Converting the SST-2 teacher to linear attention (issue 18)".
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import machine_line, write_section  # noqa: E402


def main() -> None:
    import greenlm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="runs/frontier-bench/frontier-sst2/finetune")
    parser.add_argument("--attentions", default="rfa,performer,abc:k=32")
    parser.add_argument("--train-subset", type=int, default=16000)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--out", default="runs/convert-bench")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--section", default="Converting the SST-2 teacher to linear attention (issue 18)",
                        help="the docs/benchmarks.md section to write (another title keeps the first one)")
    args = parser.parse_args()
    subset = args.train_subset or None  # 0: every training row

    rows = []
    for attention in [a.strip() for a in args.attentions.split(",") if a.strip()]:
        name = attention.replace(":", "-").replace("=", "")
        result = greenlm.convert_attention(args.teacher, task="sst2", out=Path(args.out) / name, attention=attention,
                                           train_subset=subset, epochs=args.epochs,
                                           learning_rate=args.lr, progress=False)
        metrics = json.loads((Path(result.folder) / "metrics.json").read_text())
        tag = json.loads((Path(result.folder) / "pricetag.json").read_text())
        details = metrics["convert_attention"]
        rows.append({"attention": attention, "dev": metrics["splits"]["dev"]["accuracy"],
                     "teacher_dev": details["original"]["splits"]["dev"]["accuracy"],
                     "change": details["accuracy_change_points"]["dev"],
                     "after_swap": details["selection_accuracy_right_after_swap"],
                     "agreement": details["agreement_with_original"]["dev"],
                     "wall_s": tag.get("wall_s"), "energy_kwh": tag.get("energy_kwh"),
                     "energy_source": tag.get("energy_source")})
        print(json.dumps(rows[-1]), flush=True)
    if not rows:
        return
    command = "python benchmarks/convert_attention_sst2.py " + " ".join(sys.argv[1:])
    lines = [f"Command: `{command.strip()}` ({datetime.date.today().isoformat()}).", f"Machine: {machine_line()}.", "",
             f"Teacher: `{args.teacher}` (MiniLM fine-tuned on SST-2), dev accuracy {rows[0]['teacher_dev']:.4f}. Each "
             f"conversion: {subset or 'all the'} training rows, {args.epochs:g} epochs, lr {args.lr:g}, KD from the "
             "original (alpha 0.5, T 2), best epoch on the validation split carved from train.", "",
             "| attention | dev accuracy | change (points) | validation acc. right after the swap | agreement with the original (dev) | time (s) | energy (kWh) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        energy = f"{r['energy_kwh']:.2e}" if r["energy_kwh"] else "n/a"
        after = f"{r['after_swap']:.4f}" if r["after_swap"] is not None else "n/a"
        lines.append(f"| {r['attention']} | {r['dev']:.4f} | {r['change']:+.2f} | {after} | {r['agreement']:.4f} |"
                     f" {r['wall_s']:.0f} | {energy} |")
    met = [r["attention"] for r in rows if r["change"] >= -1.0]
    lines += ["", f"Target: within 1.0 point of the softmax model. Met by: {', '.join(met) or 'none'}.",
              f"Energy source: {rows[0]['energy_source']}."]
    body = "\n".join(lines)
    print(body)
    if not args.no_doc:
        write_section(args.section, body)


if __name__ == "__main__":
    main()
