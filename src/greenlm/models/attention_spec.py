"""Which attention a model runs, as text: ``softmax``, ``rfa``, ``performer``, ``t2r`` or ``abc``, with options.

    softmax                                   the model's own (exact) attention
    rfa:features=64,redraw=fixed,seed=0       Random Feature Attention (Peng et al. 2021), 2 x 64 features
    performer:features=128                    FAVOR+ (Choromanski et al. 2021), 128 positive features
    t2r:features=32                           T2R (Kasai et al. 2021), a learned ReLU feature map of 32 features
    abc:k=32                                  ABC with 32 memory slots (Peng et al. 2022)

Options (key=value, separated by commas):
    features     feature-map size per head (rfa: random projections, phi has 2x this many entries; performer: random
                 features; t2r: learned features), 1 to 16,384
    redraw       fixed (drawn once from ``seed``, saved with the model) | per_forward (a fresh draw at every
                 training forward, Performer's redrawing; evaluation always uses the saved draw)
    seed         seed of the first draw (layer i draws from seed + i; t2r: of the learned map's initialisation),
                 0 to 2**32 - 1
    orthogonal   1 (orthogonal random features, the default) | 0 (independent Gaussian rows)
    k            abc's memory slots, 1 to 16,384

Plain Python (no torch): the command line parses ``--attention`` at start-up. The formulas are in
``greenlm.models.attention_kernels``.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass

from greenlm.common import GreenlmError
from greenlm.common.numbers import SEED_MAX

KINDS = ("softmax", "rfa", "performer", "t2r", "abc")
LINEAR_KINDS = KINDS[1:]
REDRAW = ("fixed", "per_forward")
# kind -> options it takes (with defaults in AttentionSpec)
OPTIONS = {
    "softmax": (),
    "rfa": ("features", "redraw", "seed", "orthogonal"),
    "performer": ("features", "redraw", "seed", "orthogonal"),
    "t2r": ("features", "seed"),
    "abc": ("k",),
}
OPTION_NAMES = ("features", "redraw", "seed", "orthogonal", "k")
DEFAULT_FEATURES = {"rfa": 64, "performer": 128, "t2r": 32}
# Feature maps and abc memories cost memory x features per head and position: papers use 16-256; a typo such as
# features=99999999 would try to allocate for minutes before failing, so sizes stop here.
MAX_FEATURES = 16_384


@dataclass(frozen=True)
class AttentionSpec:
    kind: str = "softmax"
    features: int | None = None  # rfa / performer / t2r: feature-map size (None: the kind's default)
    redraw: str = "fixed"
    seed: int = 0
    orthogonal: bool = True
    k: int = 32  # abc: memory slots

    def __post_init__(self):
        if self.kind not in KINDS:
            near = difflib.get_close_matches(str(self.kind), KINDS, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise GreenlmError(f"unknown attention '{self.kind}'{hint}; known: {', '.join(KINDS)}")
        if self.kind in DEFAULT_FEATURES and self.features is None:
            object.__setattr__(self, "features", DEFAULT_FEATURES[self.kind])
        if self.kind in DEFAULT_FEATURES and (_not_int(self.features) or not 1 <= self.features <= MAX_FEATURES):
            raise GreenlmError(f"attention {self.kind}: features must be a whole number from 1 to {MAX_FEATURES},"
                               f" got {self.features!r}")
        if _not_int(self.k) or not 1 <= self.k <= MAX_FEATURES:
            raise GreenlmError(f"attention abc: memory size k must be a whole number from 1 to {MAX_FEATURES},"
                               f" got {self.k!r}")
        if self.redraw not in REDRAW:
            raise GreenlmError(f"attention {self.kind}: redraw must be one of {', '.join(REDRAW)}, got '{self.redraw}'")
        if _not_int(self.seed) or not 0 <= self.seed <= SEED_MAX:
            raise GreenlmError(f"attention {self.kind}: seed must be a whole number from 0 to {SEED_MAX},"
                               f" got {self.seed!r}")

    @property
    def linear(self) -> bool:
        return self.kind != "softmax"

    @classmethod
    def parse(cls, text: str | AttentionSpec | dict | None) -> AttentionSpec:
        """``kind`` or ``kind:key=value,...``; an AttentionSpec or its dict pass through."""
        if text is None:
            return cls()
        if isinstance(text, AttentionSpec):
            return text
        if isinstance(text, dict):
            return cls.from_dict(text)
        kind, _, body = str(text).strip().partition(":")
        kind = kind.strip().lower()
        cls(kind=kind)  # an unknown kind is named first
        values: dict = {}
        for item in filter(None, (part.strip() for part in body.replace(";", ",").split(","))):
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or key not in OPTIONS[kind]:
                takes = ", ".join(OPTIONS[kind]) or "no options"
                raise GreenlmError(f"attention {kind}: setting '{item}' is not key=value with a key it takes ({takes})")
            values[key] = _convert(kind, key, value)
        return cls(kind=kind, **values)

    def to_dict(self) -> dict:
        """Only the settings the kind uses (what config.json and metrics record)."""
        full = asdict(self)
        return {"kind": self.kind, **{key: full[key] for key in OPTIONS[self.kind]}}

    @classmethod
    def from_dict(cls, data: dict) -> AttentionSpec:
        unknown = set(data) - {"kind", *OPTION_NAMES}
        if unknown:
            raise GreenlmError(f"attention settings have unknown keys {sorted(unknown)}")
        return cls(**data)

    def describe(self) -> str:
        """The text form, parseable again: ``rfa:features=64,redraw=fixed,seed=0,orthogonal=1``."""
        options = self.to_dict()
        options.pop("kind")
        body = ",".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in options.items())
        return f"{self.kind}:{body}" if body else self.kind


def parse_attention_list(text: str) -> list[AttentionSpec]:
    """``softmax,rfa,performer:features=64,abc:k=32``: a new entry starts at each known kind."""
    specs: list[str] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        head = part.partition(":")[0].strip().lower()
        if "=" in head and specs:  # an option of the previous entry
            specs[-1] += f",{part}"
        else:
            specs.append(part)
    if not specs:
        raise GreenlmError(f"--attention must name at least one of {', '.join(KINDS)}")
    return [AttentionSpec.parse(s) for s in specs]


def _not_int(value) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _convert(kind: str, key: str, value: str):
    if key == "redraw":
        return value
    if key == "orthogonal":
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise GreenlmError(f"attention {kind}: orthogonal must be 1 or 0, got '{value}'")
    try:
        return int(value)
    except ValueError:
        raise GreenlmError(f"attention {kind}: {key} must be a whole number, got '{value}'") from None
