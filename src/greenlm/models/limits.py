"""The largest encoder greenlm builds from a size someone typed: a typo (hidden=65536, --max-positions 1000000000,
--vocab-size 1000000000, --student 2x9999999) is refused in one line before it tries to allocate terabytes, runs for
hours or makes the tokenizer library abort the process.

The bounds are far above every model greenlm is for: BERT-large has 24 layers, hidden size 1024, 16 heads, an FFN of
4096, 30,522 tokens and 512 positions; long-input work here goes to 8,192 tokens (docs/attention.md).
"""

from __future__ import annotations

from greenlm.common import GreenlmError

ENCODER_MAX = {"layers": 48, "hidden": 4096, "heads": 64, "ffn": 16384, "vocab": 250_000, "positions": 65_536}
MAX_PARAMETERS = 500_000_000


def encoder_parameters(layers: int, hidden: int, ffn: int, vocab: int, positions: int) -> int:
    """Weights of a BERT-style encoder, near enough to refuse a huge one: attention 4 h^2 and FFN 2 h f per layer,
    token and position embeddings (vocab + positions) x h."""
    return layers * (4 * hidden * hidden + 2 * hidden * ffn) + (vocab + positions) * hidden


def check_sizes(what: str, **sizes: int) -> None:
    """Each size (a key of ``ENCODER_MAX``: layers, hidden, heads, ffn, vocab, positions) at most its bound; else one
    line naming ``what`` (e.g. "student shape '2x9999999'")."""
    for name, value in sizes.items():
        most = ENCODER_MAX[name]
        if value is not None and value > most:
            raise GreenlmError(f"{what}: {name} {value:,} is above the {most:,} greenlm builds; is it a typo?")


def check_parameters(what: str, parameters: int) -> None:
    if parameters > MAX_PARAMETERS:
        raise GreenlmError(f"{what} would have about {parameters / 1e6:,.0f}M parameters; greenlm builds at most"
                           f" {MAX_PARAMETERS / 1e6:,.0f}M from a typed size")
