"""Range checks every settings dataclass shares: numbers a machine can act on.

Each config's own ``__post_init__`` checks what its settings mean (a learning rate above 0, a sparsity below 1);
this module checks what every number must be, whatever it means: finite (``--epochs inf`` or a recipe value
``.nan`` would overflow or poison training), an integer a platform can hold, and a seed that NumPy and torch
accept (0 to 2**32 - 1).
"""

from __future__ import annotations

import dataclasses
import math

from greenlm.common.errors import GreenlmError

SEED_MAX = 2**32 - 1  # numpy.random.seed's range, the narrowest of the generators greenlm seeds
INT_ABS_MAX = 2**53  # beyond this a count is not a count: it also stops being exact as a float


def _name(field_name: str) -> str:
    return f"'{field_name}' (--{field_name.replace('_', '-')})"


def check_number(field_name: str, value) -> None:
    """Raise a one-line ``GreenlmError`` when ``value`` (a setting called ``field_name``) is no usable number."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise GreenlmError(f"setting {_name(field_name)} must be a finite number, got {value}")
    if isinstance(value, int) and abs(value) > INT_ABS_MAX:
        raise GreenlmError(f"setting {_name(field_name)} is too large ({str(value)[:24]}...); at most {INT_ABS_MAX}")
    if isinstance(value, int) and (field_name == "seed" or field_name.endswith("_seed")) \
            and not 0 <= value <= SEED_MAX:
        raise GreenlmError(f"setting {_name(field_name)} must be between 0 and {SEED_MAX}, got {value}")
    if isinstance(value, (list, tuple)):
        for item in value:
            check_number(field_name, item)


AUTO_LENGTH = "auto"  # a max_length setting: the length that covers most rows (greenlm.data.auto_max_length)


def max_length_setting(value, minimum: int, name: str = "max_length"):
    """A ``max_length`` setting as a command line or recipe gives it: a whole number of tokens (at least
    ``minimum``; text of digits counts), ``"auto"`` or None (the model's own). Returns the int, "auto" or None."""
    if value is None:
        return None
    if isinstance(value, str):
        word = value.strip().lower()
        if word == AUTO_LENGTH:
            return AUTO_LENGTH
        if not word.isdigit():
            raise GreenlmError(f"{name} must be a number of tokens or '{AUTO_LENGTH}', got {value!r}")
        value = int(word)
    if not isinstance(value, int) or isinstance(value, bool):
        raise GreenlmError(f"{name} must be a number of tokens or '{AUTO_LENGTH}', got {value!r}")
    if value < minimum:
        raise GreenlmError(f"{name} must be >= {minimum}")
    return value


def check_numbers(config) -> None:
    """``check_number`` on every field of the dataclass ``config``; call it first in its ``__post_init__``."""
    for f in dataclasses.fields(config):
        check_number(f.name, getattr(config, f.name))
