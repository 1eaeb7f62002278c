"""What ``greenlm bench`` measures: the runtime names and groups, and its settings (``BenchConfig``).

Plain Python (no torch); the runtimes are described in ``greenlm.runtime.bench``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from greenlm.common.numbers import check_numbers
from greenlm.common import GreenlmError

PEERS = ("hf-eager-pad128", "ort-fp32", "ort-int8")
GREENLM_RUNTIMES = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "saved")
ALL_RUNTIMES = PEERS + GREENLM_RUNTIMES
ALIASES = {"torch": ("torch-fp32", "torch-bf16"), "onnx": ("onnx-fp32", "onnx-int8"), "peers": PEERS,
           "greenlm": GREENLM_RUNTIMES, "all": ALL_RUNTIMES}
DEFAULT_RUNTIMES = ALL_RUNTIMES
NAIVE_PAD_TO = 128


def expand_runtimes(names) -> tuple[str, ...]:
    """``torch,onnx,peers`` -> the runtime names, in order, without repeats."""
    out: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        group = ALIASES.get(name, (name,))
        for item in group:
            if item not in ALL_RUNTIMES:
                raise GreenlmError(f"unknown runtime {name!r}; use runtimes {', '.join(ALL_RUNTIMES)}"
                                   f" or groups {', '.join(ALIASES)}")
            if item not in out:
                out.append(item)
    if not out:
        raise GreenlmError("no runtime given; e.g. --runtimes peers,torch,onnx")
    return tuple(out)


@dataclass(frozen=True)
class BenchConfig:
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES  # runtime names (see module doc), in row order
    batch_sizes: tuple[int, ...] = (1, 32)  # 1: latency; each size > 1: throughput
    split: str = "dev"  # the task split every runtime predicts (accuracy) and is timed on
    max_examples: int | None = None  # timing inputs: a seeded sample of the split (None: all of it)
    latency_examples: int = 64  # inputs timed one at a time
    repeats: int = 3  # timed passes per round (after a warm-up pass)
    rounds: int = 3  # interleaved rounds; each runtime keeps its best
    threads: int | None = None  # intra-op threads for every runtime (None: physical cores)
    naive_pad_to: int = NAIVE_PAD_TO  # tokens the naive peer pads every input to
    max_length: int | None = None  # truncation (None: the model's saved max_length, else 128)
    energy: bool = True  # energy per 1,000 examples from a PriceTag around the accuracy pass
    pue: float | None = None  # data-centre PUE for the energy figure (None: 1.0, the machine's own)
    seed: int = 0

    def __post_init__(self):
        check_numbers(self)
        if not self.batch_sizes or any(not isinstance(b, int) or b < 1 for b in self.batch_sizes):
            raise GreenlmError(f"batch sizes must be positive whole numbers, got {list(self.batch_sizes)}")
        for name in ("latency_examples", "repeats", "rounds", "naive_pad_to", "max_examples", "threads", "max_length"):
            value = getattr(self, name)
            if value is not None and value < 1:  # None: the default; 0 is no default, but a mistake
                raise GreenlmError(f"bench: {name} must be at least 1, got {value}")
        expand_runtimes(self.runtimes)

    def to_dict(self) -> dict:
        return asdict(self)
