"""Command-line options generated from a method's config dataclass: defaults and help live in one place.

Each field of the config becomes ``--field-name`` (the recipe's name, dashes for underscores) with the
field's default, and its help is the comment written beside the field (or on the line above it) in
the dataclass. Older short names stay as aliases (``--lr`` for ``--learning-rate``). Types map as:
``str``/``int``/``float`` as they are; ``bool`` a ``--x/--no-x`` switch; ``bool | None`` the words
``auto|on|off``; ``list[int] | None`` a comma-separated list (or ``all``); ``int | str`` (a number or a word
such as ``auto``) is read as text and the config turns it into a number.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import tokenize
import types
import typing
from typing import Annotated, Optional

import typer

from greenlm.common import GreenlmError

TRI_STATE = {"auto": None, "on": True, "off": False}


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the comment beside it (or, when it has none, the comment lines right above it) in the source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment wins over its base's
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        docs.update(_comments_by_field(source, {f.name for f in dataclasses.fields(klass)}))
    return docs


def _comments_by_field(source: str, names: set[str]) -> dict[str, str]:
    lines = source.splitlines()
    comments: dict[int, str] = {}  # line number (0-based) -> comment text
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0] - 1] = tok.string.lstrip("#").strip()
    out = {}
    for i, line in enumerate(lines):
        stripped = line.strip()
        name = stripped.split(":", 1)[0].strip()
        if name not in names or ":" not in stripped or stripped.startswith("#"):
            continue
        text = comments.get(i) if not lines[i].lstrip().startswith("#") else None
        above = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# -"):
            above.insert(0, comments[j])
            j -= 1
        parts = [text] if text else above
        if parts:
            out[name] = " ".join(parts)
    return out


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _is_optional(hint) -> tuple[bool, object]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return True, args[0]
    return False, hint


def config_parameters(cls: type, *, aliases: dict[str, tuple[str, ...]] | None = None,
                      exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per field of ``cls`` (bar ``exclude``), ready for a Typer command's signature."""
    aliases = aliases or {}
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    params = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        optional, inner = _is_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = docs.get(f.name, f.name.replace("_", " "))
        help_text = help_text[:1].upper() + help_text[1:]
        names = [option_name(f.name), *aliases.get(f.name, ())]
        if inner is bool and optional:  # auto | on | off
            annotation, default = str, next(k for k, v in TRI_STATE.items() if v is default)
            help_text += " [auto|on|off]"
        elif typing.get_origin(inner) is list:
            annotation = Optional[str]
            default = None if default is None else ",".join(str(v) for v in default)
            help_text += " (comma-separated, or 'all')"
        elif typing.get_origin(inner) in (typing.Union, types.UnionType) and str in typing.get_args(inner):
            # a number or a word (max_length: 128 or auto); unset stays unset (None: the model's own)
            annotation, default = Optional[str], None if default is None else str(default)
        elif inner is bool:
            names = [f"{option_name(f.name)}/--no-{f.name.replace('_', '-')}",
                     *(f"{a}/--no-{a[2:]}" for a in aliases.get(f.name, ()))]
            annotation = bool
        else:
            annotation = Optional[inner] if optional else inner
        option = typer.Option(*names, help=help_text, show_default=default is not None)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[annotation, option]))
    return params


def config_from_options(cls: type, values: dict):
    """Build ``cls`` from the options' values (undoing the tri-state and list encodings); validation is the config's."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        optional, inner = _is_optional(hints[f.name])
        if inner is bool and optional:
            if value not in TRI_STATE:
                raise GreenlmError(f"{option_name(f.name)} must be auto, on or off, got '{value}'")
            value = TRI_STATE[value]
        elif typing.get_origin(inner) is list:
            value = _int_list(value, option_name(f.name))
        kwargs[f.name] = value
    return cls(**kwargs)


def _int_list(value: str | None, option: str) -> list[int] | None:
    if value is None or value.strip().lower() in ("", "all"):
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise GreenlmError(f"{option} '{value}' must be whole numbers separated by commas, e.g. 2,4,6") from None
