"""YAML as greenlm reads recipes and task files: safe, and bounded in what it can expand to.

``yaml.safe_load`` runs no code, but two small documents still hurt: an alias bomb (``a: &a [x, x]``,
``b: &b [*a, *a]``, ... ten levels make 2**10 times the text once walked, thirty make a billion) and deep
nesting (``[[[[...]]]]``), which exhausts the recursion of the parser or of whatever walks the result. Here
the text size is bounded by the caller's reader, recursion errors become one line, and the loaded value is
walked once with a budget of values and depth, counting each alias every time it is used, as any later
consumer (a copy, a hash, JSON) would.
"""

from __future__ import annotations

from greenlm.common import GreenlmError

MAX_VALUES = 200_000  # every scalar, list and mapping, aliases counted where they are used
MAX_DEPTH = 64  # nesting of lists and mappings


def check_bounded(value, where: str, *, max_values: int = MAX_VALUES, max_depth: int = MAX_DEPTH) -> None:
    """Refuse (one line) a loaded value with more than ``max_values`` values or ``max_depth`` levels."""
    stack = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > max_values:
            raise GreenlmError(f"{where}: expands to more than {max_values:,} values (aliases repeated inside"
                               " aliases?); write it out plainly")
        if depth > max_depth:
            raise GreenlmError(f"{where}: nested more than {max_depth} levels deep")
        if isinstance(item, dict):
            stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, (list, tuple)):
            stack.extend((part, depth + 1) for part in item)


def load_yaml(text: str, where: str, loader=None):
    """``yaml.load`` with ``loader`` (default ``yaml.SafeLoader``), then ``check_bounded``; YAML errors propagate."""
    import yaml

    try:
        value = yaml.load(text, Loader=loader or yaml.SafeLoader)  # noqa: S506 (a safe loader is always used)
    except RecursionError:
        raise GreenlmError(f"{where}: nested too deeply to read") from None
    check_bounded(value, where)
    return value
