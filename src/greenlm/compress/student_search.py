"""The student's shape by budget: shapes ranked by counted FLOPs, the first whose measured throughput ratio to
the teacher (batch 32, real inputs, this machine) reaches the target speedup; the choice is cached."""

from __future__ import annotations

import statistics
from pathlib import Path

from greenlm.common import atomic_write_json, read_json_cache
from greenlm.compress.distill_config import DistillConfig
from greenlm.data import TaskSplit, encode_split
from greenlm.models import students as st


def _choose_shape(teacher, teacher_tokenizer, dev_split: TaskSplit | None, train_split: TaskSplit, max_length: int,
                  config: DistillConfig, work_dir: Path, on_note) -> tuple[st.StudentShape, dict]:
    """A shape within the budget by FLOPs, confirmed by a measured throughput ratio (batch 32, real inputs)."""
    from greenlm.runtime import measure_speed, speed_inputs, torch_forward

    cache = work_dir / "shape.json"
    key = {"target_speedup": config.target_speedup, "max_flops": config.max_flops}
    saved = read_json_cache(cache)
    if saved is not None:
        if saved.get("key") == key:
            return st.StudentShape(**{k: saved["shape"][k] for k in ("layers", "hidden", "heads", "ffn")}), saved
    inputs = speed_inputs(encode_split(dev_split if dev_split is not None else train_split, teacher_tokenizer,
                                       max_length), max_examples=128)
    seq_len = int(statistics.median(inputs.lengths()))
    ranked = st.rank_shapes_by_budget(teacher.config, seq_len, target_speedup=config.target_speedup,
                                      max_flops=config.max_flops)
    pad = teacher_tokenizer.pad_token_id
    measure = lambda model: measure_speed(torch_forward(model), inputs, pad_token_id=pad, batch_size=32,  # noqa: E731
                                          latency_examples=16, repeats=3)
    teacher_speed = measure(teacher)
    tried, chosen = [], None
    step = max(1, len(ranked) // 8)
    for shape, flops in ranked[: 4 * step : step]:  # at most 4 measurements, further down the list each time
        candidate = st.build_student(teacher, shape, init="random", layer_map=[1] * shape.layers)
        speed = measure(candidate)
        ratio = speed.throughput_examples_per_s / teacher_speed.throughput_examples_per_s
        tried.append({"shape": shape.describe(), "flops_per_example": flops,
                      "flop_speedup": None, "measured_speedup": round(ratio, 3),
                      "latency_ms_p50": round(speed.latency_ms_p50, 3)})
        if config.target_speedup is None or ratio >= config.target_speedup:
            chosen = shape
            break
    if chosen is None:
        best = max(tried, key=lambda t: t["measured_speedup"])
        chosen = next(s for s, _ in ranked if s.describe() == best["shape"])
        on_note(f"no shape reached a measured {config.target_speedup}x on this machine; took {chosen.describe()}"
                f" ({best['measured_speedup']}x measured)")
    from greenlm.measure import count_flops

    teacher_flops = count_flops(teacher.config, seq_len).infer_flops_per_example
    for t in tried:
        t["flop_speedup"] = round(teacher_flops / t["flops_per_example"], 3)
    info = {"key": key, "shape": chosen.to_dict(), "seq_len": seq_len, "teacher_flops_per_example": teacher_flops,
            "teacher_throughput_examples_per_s": round(teacher_speed.throughput_examples_per_s, 2),
            "threads": teacher_speed.threads, "tried": tried}
    atomic_write_json(cache, info)
    on_note(f"student shape by budget: {chosen.describe()} ({tried[-1]['measured_speedup']}x measured,"
            f" {tried[-1]['flop_speedup']}x by FLOPs at {seq_len} tokens)")
    return chosen, info
