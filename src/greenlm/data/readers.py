"""Read TSV, CSV and JSON-lines files into columns, with the line number of every row.

Formats (chosen by file suffix, ``.gz`` allowed on top):
- ``.tsv``: header line, tab-separated, **no quoting** (a ``"`` is data; a field never holds a tab or newline).
- ``.csv``: header line, standard CSV quoting (the ``csv`` module), so quoted fields may hold commas and newlines.
- ``.jsonl``: one JSON object per line; blank lines are ignored.

Files are decoded as strict UTF-8 (a leading byte-order mark is dropped). Every problem is a
``GreenlmError`` that names the file and, where there is one, the line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from greenlm.common import GreenlmError
from greenlm.common.inputs import decode_utf8, read_input
from greenlm.data.tasks import UNLABELED, TaskSplit

FORMATS = ("tsv", "csv", "jsonl")


class _Missing:
    """A JSON-lines row that lacks a key the first row had."""

    def __repr__(self):
        return "<missing>"


MISSING = _Missing()


@dataclass
class Table:
    """Rows of one file (or one split of a hub dataset) as columns.

    ``line_numbers[i]`` is the line where row ``i`` starts; None when rows have no lines (hub data).
    """

    source: str  # what error messages call it: a path, or "hf:glue/sst2 [validation]"
    columns: list[str]
    data: dict[str, list]  # column -> one value per row (str for TSV/CSV; any JSON value for JSONL)
    line_numbers: list[int] | None = None

    def __len__(self) -> int:
        if self.line_numbers is not None:
            return len(self.line_numbers)
        return len(next(iter(self.data.values()))) if self.data else 0

    def where(self, row: int) -> str:
        """``path:line`` of a row, for error messages."""
        if self.line_numbers is None:
            return f"{self.source} row {row + 1}"
        return f"{self.source}:{self.line_numbers[row]}"


def file_format(path: str | Path) -> str | None:
    """``tsv``, ``csv`` or ``jsonl`` from the suffix (``.gz`` ignored); None if it is none of them."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    return suffix if suffix in FORMATS else None


def read_table(path: str | Path, data: bytes | None = None, *, display: str | None = None) -> Table:
    """Read one data file. ``data`` (the raw bytes) may be given when the file is not on disk (package data)."""
    display = display or str(path)
    fmt = file_format(path)
    if fmt is None:
        raise GreenlmError(f"{display}: unknown file type; use .tsv, .csv or .jsonl (optionally .gz)")
    if data is None:
        data = read_input(path, what=f".{fmt} file")  # regular files only: a FIFO or /dev/zero never ends
    if str(path).lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise GreenlmError(
                f"{display}: not a readable gzip file ({err}); re-compress it or give the plain file"
            ) from None
    text = decode_utf8(data, display)
    if not text.strip():
        raise GreenlmError(f"{display} is empty; it needs a header line and at least one row")
    reader = {"tsv": _read_tsv, "csv": _read_csv, "jsonl": _read_jsonl}[fmt]
    table = reader(text, display)
    if len(table) == 0:
        raise GreenlmError(f"{display} has no rows (only a header); add at least one row")
    return table


def _check_header(columns: list[str], display: str) -> list[str]:
    columns = [c.strip() for c in columns]
    if any(not c for c in columns):
        raise GreenlmError(f"{display}:1: header has an empty column name ({columns}); name every column")
    seen = set()
    for c in columns:
        if c in seen:
            raise GreenlmError(f"{display}:1: column {c!r} appears twice in the header; rename one")
        seen.add(c)
    return columns


def _read_tsv(text: str, display: str) -> Table:
    lines = text.split("\n")
    header = _check_header(lines[0].rstrip("\r").split("\t"), display)
    width = len(header)
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            continue  # blank line (e.g. the one after the final newline)
        fields = line.split("\t")
        if len(fields) != width:
            raise GreenlmError(
                f"{display}:{number}: {len(fields)} tab-separated fields but the header has {width} "
                f"({', '.join(header)}); TSV has no quoting, so a text must not contain a tab"
            )
        rows.append(fields)
        line_numbers.append(number)
    return _table_from_rows(display, header, rows, line_numbers)


def _read_csv(text: str, display: str) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        header = _check_header(header, display)
        width = len(header)
        rows: list[list[str]] = []
        line_numbers: list[int] = []
        start = reader.line_num + 1
        for fields in reader:
            if fields:  # csv yields [] for a blank line
                if len(fields) != width:
                    raise GreenlmError(
                        f"{display}:{start}: {len(fields)} fields but the header has {width} ({', '.join(header)}); "
                        "quote fields that contain commas"
                    )
                rows.append(fields)
                line_numbers.append(start)
            start = reader.line_num + 1
    except csv.Error as err:
        raise GreenlmError(f"{display}:{reader.line_num}: malformed CSV ({err})") from None
    return _table_from_rows(display, header, rows, line_numbers)


def _table_from_rows(display: str, header: list[str], rows: list[list[str]], line_numbers: list[int]) -> Table:
    columns = [list(col) for col in zip(*rows)] if rows else [[] for _ in header]
    return Table(display, header, dict(zip(header, columns)), line_numbers)


def _read_jsonl(text: str, display: str) -> Table:
    objects: list[dict] = []
    line_numbers: list[int] = []
    decoder = json.JSONDecoder()
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = decoder.decode(line)
        except json.JSONDecodeError as err:
            raise GreenlmError(
                f"{display}:{number}: not valid JSON ({err.msg} at column {err.colno}); one object per line"
            ) from None
        if not isinstance(obj, dict):
            raise GreenlmError(
                f"{display}:{number}: expected a JSON object like {{\"text\": ..., \"label\": ...}}, "
                f"got {type(obj).__name__}"
            )
        objects.append(obj)
        line_numbers.append(number)
    columns: dict[str, None] = {}
    for obj in objects:
        for key in obj:
            columns.setdefault(key, None)
    data = {key: [obj.get(key, MISSING) for obj in objects] for key in columns}
    return Table(display, list(columns), data, line_numbers)


def read_prediction_lines(
    stream: Iterable[str | bytes], pair: bool | None = None, *, source: str = "<input>"
) -> TaskSplit:
    """Texts to predict on, one per line (or a tab-separated pair per line) -> ``TaskSplit`` with labels -1.

    ``stream``: lines as ``str`` or ``bytes`` (pass ``sys.stdin.buffer`` to get exact line numbers for
    bad UTF-8). ``pair=None`` decides from the input: pairs if every non-blank line holds a tab, single
    texts if none does, an error if it is mixed. Blank lines are skipped; a pair with an empty side, or
    with more than one tab, is refused with its line number.
    """
    lines: list[tuple[int, str]] = []
    number, raw = 0, ""
    try:
        for number, raw in enumerate(stream, start=1):
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8")
            line = raw.rstrip("\r\n")
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            if line.strip():
                lines.append((number, line))
    except UnicodeDecodeError:
        # A bytes line is decoded here, so `number` is its line; a text stream decodes ahead in chunks.
        where = f"{source}:{number}" if isinstance(raw, bytes) else f"{source} (after line {number})"
        raise GreenlmError(f"{where}: not valid UTF-8; give UTF-8 text") from None
    if not lines:
        raise GreenlmError(f"{source}: no text to predict on; give one text (or text<TAB>text pair) per line")
    if pair is None:
        tabbed = [("\t" in line) for _, line in lines]
        if any(tabbed) and not all(tabbed):
            first_single = lines[tabbed.index(False)][0]
            first_pair = lines[tabbed.index(True)][0]
            raise GreenlmError(
                f"{source}: line {first_pair} holds a tab-separated pair but line {first_single} a single text; "
                "give either one text per line or a text<TAB>text pair on every line"
            )
        pair = all(tabbed)
    if not pair:
        return TaskSplit(text_a=[line for _, line in lines], text_b=None, labels=[UNLABELED] * len(lines))
    text_a: list[str] = []
    text_b: list[str] = []
    for number, line in lines:
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise GreenlmError(
                f"{source}:{number}: expected two non-empty texts separated by one tab "
                "(this model takes sentence pairs)"
            )
        text_a.append(parts[0])
        text_b.append(parts[1])
    return TaskSplit(text_a=text_a, text_b=text_b, labels=[UNLABELED] * len(lines))


def read_prediction_file(path: str | Path, pair: bool | None = None) -> TaskSplit:
    """``read_prediction_lines`` on a UTF-8 file."""
    data = read_input(path, what="input file")
    text = decode_utf8(data, str(path))
    return read_prediction_lines(text.split("\n"), pair, source=str(path))
