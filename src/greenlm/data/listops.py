"""ListOps-style long-input classification, generated from a seed: ``--task listops:train=2000,dev=500,min_length=500``.

ListOps (Nangia & Bowman 2018), as used at long lengths in Long Range Arena (Tay et al. 2021, sec. 3.1): a nested
expression over the digits 0-9 whose label is its value (10 classes)::

    [MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]   -> 5

Operators: ``MAX``, ``MIN``, ``MED`` (the lower median of the arguments, sorted(values)[(n - 1) // 2]) and
``SM`` (sum modulo 10). Every list has 2..``max_args`` arguments, nesting is at most ``max_depth`` deep (LRA: 10 and
10). Lengths are counted in the generator's tokens (``[MAX``, ``7``, ``]``); a BERT WordPiece tokenizer splits
``[MAX`` in two, so model tokens run about 1.5x longer.

How an expression is drawn: a target length L is drawn uniformly from [min_length, max_length]; a list with budget
L takes ``[OP`` and ``]`` and splits the rest at random cut points among its arguments; an argument whose share is
below 4 tokens (or at the depth limit) is a digit, else a nested list with that share as its budget. Drawn
expressions outside [min_length, max_length] are redrawn. Everything comes from ``random.Random(seed)``
(train from ``seed``, dev from ``seed + 1``), so the same settings give the same task on every machine.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from greenlm.common import GreenlmError

OPERATORS = ("MAX", "MIN", "MED", "SM")
PREFIX = "listops"


@dataclass(frozen=True)
class ListOpsSpec:
    train: int = 2000  # training rows
    dev: int = 500  # dev rows
    min_length: int = 500  # generator tokens per expression, at least
    max_length: int = 2000  # and at most
    max_depth: int = 10
    max_args: int = 10
    seed: int = 0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or (value < 0 if name == "seed" else value < 1):
                raise GreenlmError(f"listops setting {name} must be a whole number >= {0 if name == 'seed' else 1},"
                                   f" got {value!r}")
        if self.min_length > self.max_length:
            raise GreenlmError(f"listops: min_length {self.min_length} is above max_length {self.max_length}")
        if self.max_args < 2:
            raise GreenlmError("listops: max_args must be >= 2")

    @classmethod
    def parse(cls, text: str) -> ListOpsSpec:
        """``listops`` or ``listops:train=2000,dev=500,min_length=500,max_length=2000,seed=0``."""
        _, _, body = text.partition(":")
        known = set(asdict(cls()))
        values = {}
        for item in filter(None, (p.strip() for p in body.split(","))):
            key, eq, value = item.partition("=")
            if not eq or key.strip() not in known:
                raise GreenlmError(f"listops setting '{item}' is not key=value with a key of {sorted(known)}")
            try:
                values[key.strip()] = int(value)
            except ValueError:
                raise GreenlmError(f"listops setting {key.strip()} must be a whole number, got '{value}'") from None
        return cls(**values)


def evaluate(op: str, values: list[int]) -> int:
    if op == "MAX":
        return max(values)
    if op == "MIN":
        return min(values)
    if op == "MED":
        return sorted(values)[(len(values) - 1) // 2]
    if op == "SM":
        return sum(values) % 10
    raise ValueError(f"unknown ListOps operator {op!r}")


def _expression(rng: random.Random, budget: int, depth: int, spec: ListOpsSpec) -> tuple[list[str], int]:
    """(tokens, value) of one list using about ``budget`` tokens."""
    op = rng.choice(OPERATORS)
    inner = budget - 2  # "[OP" and "]"
    n_args = max(2, min(spec.max_args, inner if depth + 1 >= spec.max_depth else rng.randint(2, spec.max_args)))
    cuts = sorted(rng.randint(0, max(0, inner)) for _ in range(n_args - 1))
    shares = [b - a for a, b in zip([0, *cuts], [*cuts, max(0, inner)])]
    tokens, values = [f"[{op}"], []
    for share in shares:
        if share >= 4 and depth + 1 < spec.max_depth:
            sub, value = _expression(rng, share, depth + 1, spec)
            tokens.extend(sub)
        else:
            value = rng.randrange(10)
            tokens.append(str(value))
        values.append(value)
    tokens.append("]")
    return tokens, evaluate(op, values)


def generate(n: int, spec: ListOpsSpec, seed: int) -> tuple[list[str], list[int]]:
    """``n`` expressions (space-separated tokens) and their values."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        for _attempt in range(1000):
            tokens, value = _expression(rng, rng.randint(spec.min_length, spec.max_length), 0, spec)
            if spec.min_length <= len(tokens) <= spec.max_length:
                break
        else:
            raise GreenlmError(f"listops: could not draw an expression of {spec.min_length}-{spec.max_length} tokens"
                               f" with max_depth {spec.max_depth} and max_args {spec.max_args}")
        texts.append(" ".join(tokens))
        labels.append(value)
    return texts, labels


def parse_value(text: str) -> int:
    """The value of an expression in text form (the check of a generated label)."""
    stack: list[tuple[str, list[int]]] = []
    result = None
    for token in text.split():
        if token.startswith("["):
            stack.append((token[1:], []))
        elif token == "]":
            op, values = stack.pop()
            result = evaluate(op, values)
            if stack:
                stack[-1][1].append(result)
        else:
            stack[-1][1].append(int(token))
    if stack or result is None:
        raise ValueError("unbalanced ListOps expression")
    return result


def listops_task(spec: ListOpsSpec | str):
    """The task (train and dev splits, labels "0".."9")."""
    from greenlm.data.tasks import Task, TaskSplit

    spec = ListOpsSpec.parse(spec) if isinstance(spec, str) else spec
    splits = {}
    for offset, (name, n) in enumerate((("train", spec.train), ("dev", spec.dev))):
        texts, labels = generate(n, spec, spec.seed + offset)
        splits[name] = TaskSplit(text_a=texts, text_b=None, labels=labels)
    return Task(name="listops", labels=tuple(str(d) for d in range(10)), text_fields=("text",), splits=splits,
                credit=f"generated by greenlm.data.listops ({', '.join(f'{k}={v}' for k, v in asdict(spec).items())});"
                       " ListOps: Nangia & Bowman 2018; long form: Long Range Arena, Tay et al. 2021")
