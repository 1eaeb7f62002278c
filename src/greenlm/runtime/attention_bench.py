"""``greenlm bench --seq-lens``: softmax against linear attention at growing input lengths.

For every length N, batch size B and attention kind, a random-weight encoder of a fixed shape (default MiniLM's
6 layers x 384 hidden, 12 heads, FFN 1,536; every kind gets the same weights bar its attention's own parts) runs
one forward pass over B x N random tokens (no padding, so softmax runs PyTorch's scaled-dot-product attention on
its fastest CPU path). ``scope="attention"`` times one self-attention layer alone instead of the encoder.

- time: the timing protocol (``greenlm.measure.timing``: 1 warm-up, ``runs`` timed passes, median and p90,
  threads pinned) in alternating rounds in one process, the order rotated each round (as
  ``greenlm.runtime.side_by_side``); each kind keeps its best median. Throughput = B·N / median (tokens/s).
- peak memory: one forward in a fresh Python process per configuration; Linux's peak resident set size is reset
  (``/proc/self/clear_refs`` = 5) once the model and inputs exist, so ``peak_mb_above_baseline`` = VmHWM after the
  forward minus VmRSS before it: what the forward itself adds (activations, attention buffers). Where the reset is
  not allowed, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process's lifetime peak) is used and the
  method says so. A configuration whose process fails (e.g. out of memory) is reported as such and not timed.
- crossover: per kind and batch size, the shortest measured length from which the kind is faster than softmax at
  every longer measured length.
- FLOPs: attention's share of one layer's forward FLOPs (multiply-add = 2), per kind, from the shape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field

from greenlm.common.numbers import check_numbers
from greenlm.common import GreenlmError
from greenlm.models.attention_spec import AttentionSpec, parse_attention_list
from greenlm.models.limits import check_sizes

SCOPES = ("model", "attention")
DEFAULT_ATTENTIONS = "softmax,rfa,performer,abc:k=32"
EAGER = "softmax-eager"  # a bench-only entry: transformers' eager softmax, which forms the N x N matrix


@dataclass(frozen=True)
class LengthBenchConfig:
    seq_lens: tuple[int, ...] = (128, 512, 2048, 8192)
    attentions: str = DEFAULT_ATTENTIONS  # comma-separated attention specs; "softmax-eager": the N x N softmax too
    batch_sizes: tuple[int, ...] = (1, 8)
    shape: str = "6x384"  # LAYERSxHIDDEN[xHEADS[xFFN]]; heads default to hidden/32, FFN to 4 x hidden (MiniLM: 6x384x12x1536)
    scope: str = "model"  # "model": the whole encoder | "attention": one self-attention layer
    runs: int = 3  # timed passes per round
    rounds: int = 2  # alternating rounds (each kind keeps its best)
    threads: int | None = None  # intra-op threads (default: torch's)
    memory: bool = True  # peak memory in a fresh process per configuration
    seed: int = 0

    def __post_init__(self):
        check_numbers(self)
        if not self.seq_lens or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.seq_lens):
            raise GreenlmError(f"--seq-lens must be whole numbers >= 1, e.g. 128,512,2048; got {self.seq_lens!r}")
        check_sizes("--seq-lens", positions=max(self.seq_lens))
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise GreenlmError(f"--batch-sizes must be whole numbers >= 1; got {self.batch_sizes!r}")
        if self.scope not in SCOPES:
            raise GreenlmError(f"bench scope must be one of {', '.join(SCOPES)}, got '{self.scope}'")
        if self.runs < 1 or self.rounds < 1:
            raise GreenlmError("bench runs and rounds must be >= 1")
        self.entries()
        self.dims()

    def entries(self) -> list[tuple[str, AttentionSpec, str]]:
        """(name, spec, attn_implementation) per compared attention; softmax through SDPA first (the reference)."""
        parts = [p.strip() for p in self.attentions.split(",") if p.strip()]
        eager = EAGER in parts
        rest = ",".join(p for p in parts if p != EAGER)
        specs = parse_attention_list(rest) if rest else []
        specs = [s for s in specs if s.kind != "softmax"]
        out = [("softmax", AttentionSpec(), "sdpa")]  # the reference every row is compared with
        if eager:
            out.append((EAGER, AttentionSpec(), "eager"))
        return out + [(s.describe(), s, "sdpa") for s in specs]

    def dims(self) -> dict:
        parts = self.shape.lower().split("x")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) not in (2, 3, 4) or min(values) < 1:
            raise GreenlmError(f"bench shape '{self.shape}' is not LAYERSxHIDDEN[xHEADS[xFFN]], e.g. 6x384x12x1536")
        layers, hidden = values[:2]
        heads = values[2] if len(values) > 2 else max(1, hidden // 32)
        ffn = values[3] if len(values) > 3 else 4 * hidden
        if hidden % heads:
            raise GreenlmError(f"bench shape: hidden {hidden} is not divisible by heads {heads}")
        check_sizes(f"bench shape '{self.shape}'", layers=layers, hidden=hidden, heads=heads, ffn=ffn)
        return {"layers": layers, "hidden": hidden, "heads": heads, "ffn": ffn}


# ---- building and running one configuration -------------------------------------------------------


def build(config: LengthBenchConfig, spec: AttentionSpec, max_tokens: int, impl: str = "sdpa"):
    """(module, make_inputs(batch, n)): the encoder (or one attention layer) with ``spec``'s attention, eval mode."""
    import torch
    from transformers import BertConfig, BertModel

    from greenlm.models.linear_attention import swap_attention

    d = config.dims()
    bert_config = BertConfig(vocab_size=30522, hidden_size=d["hidden"], num_hidden_layers=d["layers"],
                             num_attention_heads=d["heads"], intermediate_size=d["ffn"],
                             max_position_embeddings=max(512, max_tokens))
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = BertModel(bert_config, add_pooling_layer=False)
    model.set_attn_implementation(impl)
    swap_attention(model, spec)
    model.eval()
    if config.scope == "model":
        def inputs(batch, n):
            ids = torch.randint(1000, 30000, (batch, n), generator=torch.Generator().manual_seed(config.seed))
            return {"input_ids": ids}
        return model, inputs
    layer = model.encoder.layer[0].attention.self

    def inputs_attention(batch, n):
        return {"hidden_states": torch.randn(batch, n, d["hidden"], generator=torch.Generator().manual_seed(config.seed))}
    return layer, inputs_attention


def _forward(module, inputs):
    import torch

    def run():
        with torch.inference_mode():
            return module(**inputs)
    return run


def _peak_memory(config: LengthBenchConfig, spec: AttentionSpec, batch: int, n: int, impl: str = "sdpa") -> dict:
    """One forward of one configuration in a fresh process: its memory figures, or the failure."""
    payload = json.dumps({"config": {**asdict(config), "seq_lens": list(config.seq_lens),
                                     "batch_sizes": list(config.batch_sizes)},
                          "spec": spec.describe(), "impl": impl, "batch": batch, "n": n})
    env = dict(os.environ)
    if config.threads is not None:
        env["OMP_NUM_THREADS"] = str(config.threads)
    try:
        done = subprocess.run([sys.executable, "-m", "greenlm.runtime.attention_bench", payload], capture_output=True,
                              text=True, timeout=3600, env=env)
    except subprocess.TimeoutExpired:
        return {"error": "the memory run took over an hour"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"error": f"exit code {done.returncode} ({last[:200]})"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _eager_too_big(impl: str, batch: int, n: int, dims: dict) -> str | None:
    """Why the eager N x N softmax is not run (its scores and probabilities above half this machine's memory)."""
    if impl != "eager":
        return None
    need = 2 * batch * dims["heads"] * n * n * 4  # fp32 scores and probabilities of one layer
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    if need > total / 2:
        return f"skipped: its N x N matrices need {need / 2**30:.1f} GiB, over half of this machine's {total / 2**30:.0f} GiB"
    return None


def _memory_worker(payload: dict) -> dict:
    import resource

    import torch

    raw = payload["config"]
    config = LengthBenchConfig(**{**raw, "seq_lens": tuple(raw["seq_lens"]), "batch_sizes": tuple(raw["batch_sizes"])})
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    spec, batch, n = AttentionSpec.parse(payload["spec"]), payload["batch"], payload["n"]
    module, make_inputs = build(config, spec, n, payload.get("impl", "sdpa"))
    inputs = make_inputs(batch, n)
    _forward(module, make_inputs(1, min(n, 8)))()  # lazy initialisation outside the measurement
    baseline_kb = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        method = "VmHWM after reset (/proc/self/clear_refs)"
    except OSError:
        method = "ru_maxrss (lifetime peak of the process)"
    _forward(module, inputs)()
    if method.startswith("VmHWM"):
        peak_kb = _status_kb("VmHWM")
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mb": round(peak_kb / 1024, 1), "baseline_mb": round(baseline_kb / 1024, 1),
            "peak_mb_above_baseline": round((peak_kb - baseline_kb) / 1024, 1), "memory_method": method}


def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise GreenlmError(f"/proc/self/status has no {field_name}")


# ---- FLOPs ------------------------------------------------------------------------------------------------


def layer_flops_per_token(spec: AttentionSpec, n: int, dims: dict) -> dict:
    """Forward FLOPs per token of one layer (2 per multiply-add): the attention mixing and everything else."""
    from greenlm.measure.flops import token_mixing_flops

    h, heads, ffn = dims["hidden"], dims["heads"], dims["ffn"]
    dense = 2 * (4 * h * h + 2 * h * ffn)  # q, k, v, output projections and the two FFN matrices
    mixing = token_mixing_flops(spec.to_dict(), n, heads, h // heads, h) / n  # scores and sum, or the linear kind's
    return {"attention_flops_per_token": mixing, "layer_flops_per_token": mixing + dense,
            "attention_share_of_flops": round(mixing / (mixing + dense), 4)}


# ---- the benchmark ----------------------------------------------------------------------------------------


@dataclass
class _Row:
    attention: str
    kind: str
    batch: int
    seq_len: int
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    tokens_per_s: float | None = None
    us_per_token: float | None = None
    speedup_vs_softmax: float | None = None
    memory: dict = field(default_factory=dict)
    memory_ratio_vs_softmax: float | None = None
    flops: dict = field(default_factory=dict)


def length_bench(config: LengthBenchConfig, *, on_note=print) -> dict:
    """Rows for every (length, batch, attention), the crossover lengths, the machine and protocol; PyTorch runs on
    ``config.threads`` threads meanwhile and on the caller's count again afterwards."""
    from greenlm.measure.timing import torch_threads

    with torch_threads(config.threads):
        return _length_bench(config, on_note)


def _length_bench(config: LengthBenchConfig, on_note) -> dict:
    import torch

    from greenlm.common.hardware import cpu_model
    from greenlm.measure.timing import time_callable
    from greenlm.runtime.speed import rotated

    entries, dims = config.entries(), config.dims()
    max_tokens = max(config.seq_lens)
    modules = {name: build(config, s, max_tokens, impl) for name, s, impl in entries}
    rows: list[_Row] = []
    for n in sorted(config.seq_lens):
        for batch in config.batch_sizes:
            group = {name: _Row(name, s.kind, batch, n, flops=layer_flops_per_token(s, n, dims))
                     for name, s, _ in entries}
            for name, spec, impl in entries:
                too_big = _eager_too_big(impl, batch, n, dims)
                if too_big:
                    group[name].memory = {"error": too_big}
                elif config.memory:
                    group[name].memory = _peak_memory(config, spec, batch, n, impl)
            live = [name for name in group if "error" not in group[name].memory]
            best: dict[str, tuple[float, float]] = {}
            for round_index in range(config.rounds):
                for name in rotated(live, round_index):
                    module, make_inputs = modules[name]
                    stats = time_callable(_forward(module, make_inputs(batch, n)), runs=config.runs, warmup_runs=1,
                                          threads=config.threads)
                    if name not in best or stats.p50_ms < best[name][0]:
                        best[name] = (stats.p50_ms, stats.p90_ms)
            for name, (p50, p90) in best.items():
                row = group[name]
                row.latency_ms_p50, row.latency_ms_p90 = round(p50, 3), round(p90, 3)
                row.tokens_per_s = round(batch * n / (p50 / 1000), 1)
                row.us_per_token = round(1000 * p50 / (batch * n), 3)
            reference = group["softmax"]
            for row in group.values():
                if row is not reference and row.latency_ms_p50 and reference.latency_ms_p50:
                    row.speedup_vs_softmax = round(reference.latency_ms_p50 / row.latency_ms_p50, 3)
                base, mine = reference.memory.get("peak_mb_above_baseline"), row.memory.get("peak_mb_above_baseline")
                if row is not reference and base and mine:
                    row.memory_ratio_vs_softmax = round(base / mine, 3)
            rows.extend(group.values())
            on_note(f"length {n}, batch {batch}: " + ", ".join(
                f"{r.attention.split(':')[0]} {r.latency_ms_p50} ms" for r in group.values()))
    return {
        "config": {**asdict(config), "seq_lens": list(config.seq_lens), "batch_sizes": list(config.batch_sizes),
                   "dims": dims},
        "rows": [asdict(r) for r in rows],
        "crossover": crossover(rows, [name for name, _, _ in entries[1:]], config.batch_sizes),
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "protocol": (f"{config.scope} forward, fp32, no padding; 1 warm-up + {config.runs} timed passes per round,"
                     f" {config.rounds} alternating rounds, best median kept; peak memory of one forward in a fresh"
                     " process"),
    }


def crossover(rows, names, batch_sizes) -> dict:
    """name -> batch -> the shortest measured length from which it beats softmax at every longer length (None: never)."""
    out: dict = {}
    for name in names:
        out[name] = {}
        for batch in batch_sizes:
            mine = sorted((r.seq_len, r.speedup_vs_softmax) for r in rows if r.attention == name and r.batch == batch)
            length = None
            for seq_len, speedup in reversed(mine):
                if speedup is None or speedup <= 1.0:
                    break
                length = seq_len
            out[name][str(batch)] = length
    return out


def length_table(result: dict) -> str:
    """The result as a Markdown table."""
    lines = ["| length | batch | attention | p50 ms | tokens/s | µs/token | speedup vs softmax | peak MB (forward) |"
             " memory ratio vs softmax | attention share of FLOPs |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        mem = r["memory"].get("peak_mb_above_baseline", r["memory"].get("error", ""))
        lines.append(f"| {r['seq_len']} | {r['batch']} | {r['attention']} | {r['latency_ms_p50']} | {r['tokens_per_s']} |"
                     f" {r['us_per_token']} | {r['speedup_vs_softmax'] or ''} | {mem} |"
                     f" {r['memory_ratio_vs_softmax'] or ''} | {r['flops'].get('attention_share_of_flops', '')} |")
    lines.append("")
    for name, by_batch in result["crossover"].items():
        parts = ", ".join(f"batch {b}: {n if n is not None else 'not within the measured lengths'}"
                          for b, n in by_batch.items())
        lines.append(f"- crossover of {name}: {parts}")
    return "\n".join(lines)


if __name__ == "__main__":  # the memory worker: one configuration, one JSON line on stdout
    print(json.dumps(_memory_worker(json.loads(sys.argv[1]))))
