"""Inference speed of a classifier on real inputs: latency at batch 1 and throughput at batch 32.

Every model compared is measured with the same inputs, the same threads and the same protocol
(``greenlm.measure.timing``), in one process: ratios (speedups) are only taken side by side.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from greenlm.data import EncodedSplit, collate, length_grouped_batches
from greenlm.measure.timing import percentile, time_callable


@dataclass(frozen=True)
class SpeedReport:
    latency_ms_p50: float  # batch 1, one example per call, median over examples
    latency_ms_p90: float
    throughput_examples_per_s: float  # batch `throughput_batch_size`, length-grouped, whole input set
    throughput_batch_size: int
    latency_examples: int
    throughput_examples: int
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


def speed_inputs(encoded: EncodedSplit, max_examples: int = 256, seed: int = 0) -> EncodedSplit:
    """A fixed, seeded sample of real inputs: the same for every model measured."""
    if len(encoded) <= max_examples:
        return encoded
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(encoded), generator=generator)[:max_examples].tolist()
    return EncodedSplit(
        input_ids=[encoded.input_ids[i] for i in chosen],
        token_type_ids=None if encoded.token_type_ids is None else [encoded.token_type_ids[i] for i in chosen],
        labels=[encoded.labels[i] for i in chosen],
    )


@torch.inference_mode()
def measure_speed(forward, encoded: EncodedSplit, *, pad_token_id: int, batch_size: int = 32,
                  latency_examples: int = 64, repeats: int = 3, threads: int | None = None) -> SpeedReport:
    """``forward(batch_dict)`` runs the model on one collated batch (any runtime: torch, ONNX, ...).

    Latency: each of the first ``latency_examples`` inputs alone (batch 1), 1 warm-up pass, then
    ``repeats`` timed passes; p50/p90 over all timed calls. Throughput: the whole input set in
    length-grouped batches of ``batch_size`` (dynamic padding), best of ``repeats`` after a warm-up pass.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        used_threads = torch.get_num_threads()
        singles = [collate(encoded, [i], pad_token_id) for i in range(min(latency_examples, len(encoded)))]
        for batch in singles:
            batch.pop("labels", None)
        samples_ms: list[float] = []
        for batch in singles:
            stats = time_callable(lambda: forward(batch), runs=repeats, warmup_runs=1)
            samples_ms.append(stats.p50_ms)  # this example's median call time
        batches = []
        for indices in length_grouped_batches(encoded.lengths(), batch_size, shuffle=False):
            batch = collate(encoded, indices, pad_token_id)
            batch.pop("labels", None)
            batches.append(batch)

        def all_batches():
            for batch in batches:
                forward(batch)

        all_batches()  # warm-up
        best_s = min(_seconds(all_batches) for _ in range(repeats))
    finally:
        torch.set_num_threads(previous)

    return SpeedReport(
        latency_ms_p50=percentile(samples_ms, 50),
        latency_ms_p90=percentile(samples_ms, 90),
        throughput_examples_per_s=len(encoded) / best_s,
        throughput_batch_size=batch_size,
        latency_examples=len(singles),
        throughput_examples=len(encoded),
        threads=used_threads,
    )


def torch_forward(model):
    """A ``forward(batch)`` for a torch classifier (eval mode)."""
    model.eval()

    def forward(batch):
        return model(**batch).logits

    return forward


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
