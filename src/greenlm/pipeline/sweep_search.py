"""The search space of ``greenlm sweep``: ``--search`` text parsed into distributions, checked against the recipe.

Grammar: ``PATH=DIST(ARGS)`` with DIST one of

    uniform(low, high)      a float, uniformly
    loguniform(low, high)   a float, uniformly in log space (low > 0): learning rates
    int(low, high)          a whole number in [low, high]
    logint(low, high)       a whole number, log-uniformly (low >= 1)
    choice(a, b, ...)       one of the values (numbers, true/false, null or text)
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass

from greenlm.common import GreenlmError

DISTRIBUTIONS = ("uniform", "loguniform", "int", "logint", "choice")
_EXAMPLE = "stages.distill.learning_rate=loguniform(1e-5,1e-3)"
_PATH_PART = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class SearchParam:
    """One searched recipe field and the distribution its values are drawn from."""

    path: str  # recipe key path, as --set takes it: stages.distill.learning_rate
    kind: str  # one of DISTRIBUTIONS
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()
    text: str = ""  # as written on the command line

    def distribution(self):
        import optuna

        if self.kind in ("uniform", "loguniform"):
            return optuna.distributions.FloatDistribution(self.low, self.high, log=self.kind == "loguniform")
        if self.kind in ("int", "logint"):
            return optuna.distributions.IntDistribution(self.low, self.high, log=self.kind == "logint")
        return optuna.distributions.CategoricalDistribution(list(self.choices))

    def example_value(self):
        return self.choices[0] if self.kind == "choice" else self.low


def _bad(text: str, why: str) -> GreenlmError:
    return GreenlmError(f"--search '{text}': {why}")


def _number(token: str, text: str, *, whole: bool):
    try:
        if whole:
            value = int(token)
        else:
            value = float(token)
            if not math.isfinite(value):
                raise ValueError
        return value
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise _bad(text, f"'{token}' is not {kind}") from None


def _choice_value(token: str, text: str):
    """A choice as written: a number, true/false, null, or text (quotes optional)."""
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    lowered = token.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~"):
        return None
    for convert in (int, float):
        try:
            value = convert(token)
            if isinstance(value, float) and not math.isfinite(value):
                raise _bad(text, f"'{token}' is not a finite number")
            return value
        except ValueError:
            continue
    return token


def parse_search(text: str) -> SearchParam:
    """``stages.distill.learning_rate=loguniform(1e-5,1e-3)`` -> SearchParam; errors name the bad token."""
    raw = text.strip()
    path, eq, rest = raw.partition("=")
    path, rest = path.strip(), rest.strip()
    if not eq or not path:
        raise _bad(text, f"write it as key.path=distribution(args), e.g. {_EXAMPLE}")
    for part in path.split("."):
        if not _PATH_PART.match(part):
            raise _bad(text, f"'{part or '(empty)'}' is not a key in the path '{path}'; keys are letters, digits,"
                             " '_' or '-' separated by dots")
    if path == "name":
        raise _bad(text, "the run name is set by the sweep (one per trial) and cannot be searched")
    head = re.match(r"^([A-Za-z_]+)\s*", rest)
    name = head.group(1) if head else ""
    if not name and rest.startswith("("):
        raise _bad(text, f"the distribution is missing before '{rest}'; write one of {', '.join(DISTRIBUTIONS)},"
                         f" e.g. {_EXAMPLE}")
    if not name:
        token = rest.split("(")[0].strip() or rest or "(nothing)"
        raise _bad(text, f"'{token}' is not a distribution; write one of {', '.join(DISTRIBUTIONS)} with its arguments,"
                         f" e.g. {_EXAMPLE}")
    if name.lower() not in DISTRIBUTIONS:
        close = difflib.get_close_matches(name.lower(), DISTRIBUTIONS, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise _bad(text, f"unknown distribution '{name}'{hint}; use one of {', '.join(DISTRIBUTIONS)}")
    kind = name.lower()
    after = rest[head.end():]
    if not after.startswith("("):
        raise _bad(text, f"'{after or 'end of text'}' after '{name}': expected '(' and the arguments,"
                         f" e.g. {kind}(1, 4)")
    if not after.endswith(")"):
        tail = after[1:].split(",")[-1].strip() or after
        raise _bad(text, f"missing ')' after '{tail}'")
    inner = after[1:-1]
    if "(" in inner or ")" in inner:
        raise _bad(text, f"unbalanced parentheses in '{after}'")
    tokens = [t.strip() for t in inner.split(",")]
    for i, token in enumerate(tokens):
        if not token:
            raise _bad(text, f"argument {i + 1} of {kind}(...) is empty")
    if kind == "choice":
        values = tuple(_choice_value(t, text) for t in tokens)
        if len(set(map(repr, values))) != len(values):
            raise _bad(text, "choice(...) lists a value twice")
        return SearchParam(path, kind, choices=values, text=raw)
    if len(tokens) != 2:
        raise _bad(text, f"{kind} takes 2 arguments (low, high), got {len(tokens)}")
    whole = kind in ("int", "logint")
    low, high = (_number(t, text, whole=whole) for t in tokens)
    if not low < high:
        raise _bad(text, f"low ({tokens[0]}) must be below high ({tokens[1]})")
    if kind == "loguniform" and low <= 0:
        raise _bad(text, f"loguniform needs low > 0, got '{tokens[0]}'")
    if kind == "logint" and low < 1:
        raise _bad(text, f"logint needs low >= 1, got '{tokens[0]}'")
    return SearchParam(path, kind, low, high, text=raw)


def yaml_scalar(value) -> str:
    """A value as ``--set`` text that YAML reads back as the same value (1e-05 -> '1.0e-05': PyYAML reads
    an exponent without a dot as text)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    return json.dumps(str(value))  # quoted: a choice "1" stays text


def check_search(recipe_spec: str | None, overrides: list[str], params: list[SearchParam]) -> None:
    """Every searched path must be a field the recipe accepts, with the values the search can give."""
    from greenlm.pipeline.recipes import load_recipe

    seen = set()
    for param in params:
        if param.path in seen:
            raise _bad(param.text, f"'{param.path}' is searched twice")
        seen.add(param.path)
        values = list(param.choices) if param.kind == "choice" else [param.low, param.high]
        for value in values:
            try:
                load_recipe(recipe_spec, [*overrides, f"{param.path}={yaml_scalar(value)}"])
            except GreenlmError as err:
                raise _bad(param.text, str(err)) from None
