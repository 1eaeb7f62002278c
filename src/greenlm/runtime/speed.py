"""Inference speed of a classifier on real inputs: latency at batch 1 and throughput at batch 32.

Every model compared is measured with the same inputs, the same threads and the same protocol
(``greenlm.measure.timing``), in one process: ratios (speedups) are only taken side by side.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from greenlm.data import EncodedSplit, collate, length_grouped_batches
from greenlm.measure.timing import percentile, time_callable, torch_threads


@dataclass(frozen=True)
class SpeedReport:
    latency_ms_p50: float  # batch 1, one example per call, median over examples
    latency_ms_p90: float
    throughput_examples_per_s: float  # batch `throughput_batch_size`, length-grouped, whole input set
    throughput_batch_size: int
    latency_examples: int
    throughput_examples: int
    threads: int
    order: str = "length"  # "length": sorted batches (greenlm); "given": the input order
    padded_to: int | None = None  # every input padded to this many tokens; None: per batch (dynamic)

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
                  latency_examples: int = 64, repeats: int = 3, threads: int | None = None,
                  order: str = "length", pad_to: int | None = None) -> SpeedReport:
    """``forward(batch_dict)`` runs the model on one collated batch (any runtime: torch, ONNX, ...).

    Latency: each of the first ``latency_examples`` inputs alone (batch 1), 1 warm-up pass, then
    ``repeats`` timed passes; p50/p90 over all timed calls (0 examples: no latency, fields None).
    Throughput: the whole input set in batches of ``batch_size``, best of ``repeats`` after a warm-up
    pass. ``order="length"`` groups inputs of similar length (greenlm's engine); ``"given"`` batches them
    in their order, as a plain loop over the data does. ``pad_to`` pads every input to that many tokens
    (what a fixed ``padding="max_length"`` does) instead of to the longest of its batch.
    """
    if order not in ("length", "given"):
        raise ValueError(f"order must be 'length' or 'given', got {order!r}")
    with torch_threads(threads):
        used_threads = torch.get_num_threads()
        singles = [_padded(collate(encoded, [i], pad_token_id), pad_to, pad_token_id)
                   for i in range(min(latency_examples, len(encoded)))]
        samples_ms: list[float] = []
        for batch in singles:
            stats = time_callable(lambda: forward(batch), runs=repeats, warmup_runs=1)
            samples_ms.append(stats.p50_ms)  # this example's median call time
        if order == "length":
            groups = length_grouped_batches(encoded.lengths(), batch_size, shuffle=False)
        else:
            groups = [list(range(i, min(i + batch_size, len(encoded)))) for i in range(0, len(encoded), batch_size)]
        batches = [_padded(collate(encoded, indices, pad_token_id), pad_to, pad_token_id) for indices in groups]

        def all_batches():
            run_batches(forward, batches)

        all_batches()  # warm-up
        best_s = min(_seconds(all_batches) for _ in range(repeats))

    return SpeedReport(
        latency_ms_p50=percentile(samples_ms, 50) if samples_ms else None,
        latency_ms_p90=percentile(samples_ms, 90) if samples_ms else None,
        throughput_examples_per_s=len(encoded) / best_s,
        throughput_batch_size=batch_size,
        latency_examples=len(singles),
        throughput_examples=len(encoded),
        threads=used_threads,
        order=order,
        padded_to=pad_to,
    )


def _padded(batch: dict, pad_to: int | None, pad_token_id: int) -> dict:
    """Drop the labels; with ``pad_to``, right-pad every tensor to ``pad_to`` tokens (ids with the pad id)."""
    batch.pop("labels", None)
    if pad_to is None:
        return batch
    width = batch["input_ids"].shape[1]
    if width > pad_to:
        raise ValueError(f"an input has {width} tokens, more than pad_to={pad_to}")
    return {name: torch.nn.functional.pad(t, (0, pad_to - width), value=pad_token_id if name == "input_ids" else 0)
            for name, t in batch.items()}


def torch_forward(model):
    """A ``forward(batch)`` for a torch classifier (eval mode)."""
    model.eval()

    def forward(batch):
        return model(**batch).logits

    return with_stream(forward, model)


def with_stream(forward, model):
    """Give ``forward`` a ``stream(batches) -> logits [N, K]`` (run in inference mode) where ``model`` predicts
    a sequence of batches better together than one at a time (early exit: rows that go on wait for the next
    batches' rows at each layer, see ``greenlm.models.early_exit``)."""
    predict = getattr(model, "predict_batches", None)
    if callable(predict):
        forward.stream = torch.inference_mode()(lambda batches: predict(batches)[0])
    return forward


def run_batches(forward, batches: list[dict]) -> list:
    """Run ``forward`` on every batch; through its ``stream`` (one call for all) where it has one.
    Returns each batch's logits, in order."""
    stream = getattr(forward, "stream", None)
    if stream is None:
        return [forward(batch) for batch in batches]
    logits = stream(batches)
    sizes = [len(batch["input_ids"]) for batch in batches]
    return list(logits.split(sizes)) if hasattr(logits, "split") else np.split(logits, np.cumsum(sizes)[:-1])


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


SIDE_BY_SIDE_PROTOCOL = ("side by side in one process on the same seeded inputs: rounds alternate the order (A B,"
                         " then B A), each model keeps its best latency and its best throughput")


def side_by_side(forwards: dict, inputs: EncodedSplit, *, pad_token_id: int, batch_size: int = 32,
                 latency_examples: int = 64, repeats: int = 3, threads: int | None = None, rounds: int = 2,
                 reference: str | None = None) -> dict:
    """Latency (batch 1) and throughput (batch ``batch_size``) of every model, timed in alternating rounds.

    ``forwards``: name -> ``forward(batch)`` (``torch_forward(model)``, a runtime...). Alternating the
    order blunts warm-up order and load changes on a shared machine; each model keeps its best figures.
    With ``reference`` (a name), every other model also gets ``throughput_speedup`` and
    ``latency_p50_speedup`` against it. Returns name -> figures (``SpeedReport.to_dict()``) and ``protocol``.
    """
    names = list(forwards)
    best: dict[str, dict] = {}
    for round_index in range(rounds):
        for name in (names if round_index % 2 == 0 else names[::-1]):
            report = measure_speed(forwards[name], inputs, pad_token_id=pad_token_id, batch_size=batch_size,
                                   latency_examples=latency_examples, repeats=repeats, threads=threads).to_dict()
            _keep_best(best, name, report)
    if reference is not None:
        base = best[reference]
        for name, report in best.items():
            if name != reference:
                report["throughput_speedup"] = round(report["throughput_examples_per_s"]
                                                     / base["throughput_examples_per_s"], 4)
                report["latency_p50_speedup"] = round(base["latency_ms_p50"] / report["latency_ms_p50"], 4)
    return {**best, "protocol": f"{SIDE_BY_SIDE_PROTOCOL}; {rounds} rounds"}


def _keep_best(best: dict[str, dict], name: str, report: dict) -> None:
    """Fold one timing of ``name`` into ``best``: the lowest latency p50 (with its p90), the highest throughput."""
    if name not in best:
        best[name] = dict(report)
        return
    kept = best[name]
    if report["latency_ms_p50"] is not None and (kept["latency_ms_p50"] is None
                                                 or report["latency_ms_p50"] < kept["latency_ms_p50"]):
        kept.update(latency_ms_p50=report["latency_ms_p50"], latency_ms_p90=report["latency_ms_p90"])
    kept["throughput_examples_per_s"] = max(kept["throughput_examples_per_s"], report["throughput_examples_per_s"])


def rotated(names: list, round_index: int) -> list:
    """The order of round ``round_index``: ``names`` rotated left by that many places (A B C, B C A, C A B, ...)."""
    if not names:
        return []
    shift = round_index % len(names)
    return list(names[shift:]) + list(names[:shift])


INTERLEAVED_PROTOCOL = ("interleaved rounds in one process: each round times every model once (1 warm-up pass, then"
                        " 1 timed pass), the order rotated by one model each round; each model keeps its best round")


def interleaved_speed(models: dict[str, tuple], *, batch_size: int = 32, latency_examples: int = 64, rounds: int = 3,
                      threads: int | None = None) -> dict[str, dict]:
    """Latency (batch 1) and throughput (batch ``batch_size``) of every model, in ``rounds`` interleaved rounds.

    ``models``: name -> ``(forward, inputs, pad_token_id)``; each model may have its own encoding of the same
    rows (its own tokenizer). Round r times every model once through ``measure_speed`` (``repeats=1``: one
    warm-up and one timed pass), in the order rotated by r; a load change on a shared machine then falls on
    every model alike instead of on whichever was timed last. Each model keeps its best figures (lowest p50
    latency with its p90, highest throughput: interference only ever slows a pass down, so the fastest round
    is the least disturbed one), and ``rounds``: each round's throughput and p50 latency, in round order.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    names = list(models)
    best: dict[str, dict] = {}
    history: dict[str, dict[str, list]] = {name: {"throughput_examples_per_s": [], "latency_ms_p50": []}
                                           for name in names}
    for round_index in range(rounds):
        for name in rotated(names, round_index):
            forward, inputs, pad_token_id = models[name]
            report = measure_speed(forward, inputs, pad_token_id=pad_token_id, batch_size=batch_size,
                                   latency_examples=latency_examples, repeats=1, threads=threads).to_dict()
            history[name]["throughput_examples_per_s"].append(report["throughput_examples_per_s"])
            history[name]["latency_ms_p50"].append(report["latency_ms_p50"])
            _keep_best(best, name, report)
    for name in names:
        best[name]["rounds"] = history[name]
    return best
