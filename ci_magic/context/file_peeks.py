"""A cheap look inside one file of the user's working folder, by kind: CSV header and an example row, Excel
sheets, Parquet/Arrow schema, JSON shape, PDF pages, image size, line counts.

Owns what each kind of file is called and what a look inside finds, as :class:`Bit` s that ``files.py`` joins
and drops to fit its budget. Cost is bounded by counts, never by file sizes: a peek reads a bounded prefix or
the format's metadata (a Parquet footer, an Arrow IPC footer, a zip directory, an image header); openpyxl only
below :data:`XLSX_STRINGS` of shared strings. The optional libraries (openpyxl, pyarrow, pypdf, Pillow) are
imported on first use; without one a look fails, leaving kind and size. A peek may raise on a malformed file:
the caller lists it by kind and size only.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import html
import importlib
import io
import json
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable
from datetime import date, time
from typing import Any, BinaryIO, NamedTuple

import pandas as pd

from ..core import untrusted_json
from .text import NAME_CHARS, VALUE_CHARS, quote

HEAD_BYTES = 64 * 1024  # the prefix a peek reads from a large text file
TINY_BYTES = 1_000_000  # below this a text file is read whole: lines counted, JSON parsed
PDF_BYTES = 200_000_000  # no page count above this
PDF_LENIENT_BYTES = 10_000_000  # pypdf's lenient mode re-reads a whole broken file: only for small ones
XLSX_STRINGS = 8_000_000  # openpyxl loads all shared strings even read-only: above this, sheet names only
# A workbook is a zip that openpyxl inflates part by part (styles, strings, a sheet's rows): a part declared
# larger than this, or compressed more than XLSX_RATIO to one (a zip bomb's mark), gets sheet names only.
# zipfile never inflates past a member's declared size, so the declaration bounds what is read.
XLSX_PART_BYTES = 64_000_000
XLSX_RATIO = 100
SNIFF_CHARS = 2048  # csv.Sniffer is quadratic in its input (quotes without an end): it sees this much at most
IPC_BATCHES = 100  # count_rows reads one message header per record batch
COLUMNS, SHEETS, HEAD_ROWS = 30, 20, 20
_PLAIN = re.compile(r"[\w\[\]<>,=/:.+ -]{1,40}")  # Arrow type names; others (nested field names) are quoted
_NUMBER = re.compile(r"\s*[-+]?(\d[\d,]*\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
_EXTENSION = re.compile(r"\.[a-z0-9]{1,8}")
_PIL = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".bmp": "BMP", ".webp": "WEBP",
        ".tif": "TIFF", ".tiff": "TIFF"}  # fmt: skip


class Bit(NamedTuple):
    """One fact about a file, as shown after its path."""

    text: str
    tier: int = 0  # 0 always shown; 1 header-like, dropped second; 2 example values, dropped first
    counted: bool = False  # a count of content: hidden at "schema"
    line: bool = False  # starts an indented line (a workbook's sheet)
    names: tuple[str, ...] = ()  # a header's column names, as pandas would read them


def kind_of(ext: str) -> str:
    """What a file with this (lower-case) extension is listed as."""
    # An unknown extension is part of the file name: named only when it is plainly an extension.
    known = _KINDS.get(ext)
    return known[0] if known else f"{ext[1:]} file" if _EXTENSION.fullmatch(ext) else "file"


def peek(fh: BinaryIO, size: int, ext: str, workbook: bool) -> list[Bit]:
    """What a look inside the open file finds (nothing for a kind never looked into); ``workbook``: whether
    openpyxl may open an Excel workbook (else its sheet names only). Raises on a malformed file."""
    peeker = _KINDS[ext][1] if ext in _KINDS else None
    peeker = _sheet_names if peeker is _excel and not workbook else peeker
    if peeker is None:
        return []
    with warnings.catch_warnings():  # libraries warn about odd files; not the user's error
        warnings.simplefilter("ignore")
        return peeker(fh, size, ext)


@functools.cache  # a failed import would otherwise be retried for every file
def _library(name: str) -> Any:
    """An optional library, or None: a look that needs a missing one fails, leaving kind and size."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def human(size: int) -> str:
    """A size in bytes as people read it: "950 B", "2.6 MB", "120 KB"."""
    value, units = float(size), ["B", "KB", "MB", "GB", "TB"]
    while value >= 1000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.0f} {units[0]}" if units[0] == "B" or value >= 100 else f"{value:.1f} {units[0]}"


def quantity(count: int, noun: str) -> str:
    """A count with its noun: "1 row", "1,234 rows"."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _values(values: list[Any], limit: int = VALUE_CHARS) -> str:
    # Dates as a frame's Timestamps are ('2024-01-01'), not datetime.datetime(2024, 1, 1, 0, 0).
    plain = [
        pd.Timestamp(v) if isinstance(v, date) else v.isoformat() if isinstance(v, time) else v
        for v in values
    ]
    shown = ", ".join(quote(v, limit) for v in plain[:COLUMNS])
    return shown + (f", … {len(values) - COLUMNS:,} more" if len(values) > COLUMNS else "")


def _number(value: Any) -> bool:
    if isinstance(value, str):
        return _NUMBER.fullmatch(value) is not None
    return isinstance(value, int | float | date) and not isinstance(value, bool)


def _table(rows: Iterable[tuple[int, list[Any]]]) -> tuple[list[Bit], bool]:
    """Header (tier 1) and one example row (tier 2) from the first rows (numbered from 1), and whether a
    header was recognised. Title rows above a table are skipped: the header is the first row at least half as
    full as the fullest. A first row holding a number may be data: it is shown only where examples may be."""
    kept = [(n, row) for n, row in rows if any(v not in (None, "") for v in row)]
    filled = [sum(v not in (None, "") for v in row) for _, row in kept]
    kept = kept[next((i for i, k in enumerate(filled) if 2 * k >= max(filled)), 0) :]
    for _, row in kept[:2]:
        while row[-1] in (None, ""):
            row.pop()
    if not kept:
        return [], False
    (number, first), below = kept[0], kept[1][1] if len(kept) > 1 else []
    if any(map(_number, first)):
        return [
            Bit(f"{quantity(len(first), 'column')}, no header row recognised", 1),
            Bit(f"first row: {_values(first)}", 2),
        ], False
    where = f"columns (header in row {number})" if number > 1 else "columns"
    example = [Bit(f"e.g. row: {_values(below)}", 2)] if below else []
    # pandas names a blank header cell "Unnamed: <position>": so does a loaded frame's column.
    names = tuple(str(v) if v not in (None, "") else f"Unnamed: {i}" for i, v in enumerate(first))
    return [Bit(f"{where}: {_values(first, NAME_CHARS)}", 1, names=names), *example], True


def _line_count(data: bytes) -> int:
    data = data.rstrip(b"\r\n")  # trailing blank lines are no rows
    return data.count(b"\n") + 1 if data else 0


def _csv(fh: BinaryIO, size: int, ext: str) -> list[Bit]:
    tiny = size < TINY_BYTES
    data = fh.read(TINY_BYTES if tiny else HEAD_BYTES)
    lines = data[:HEAD_BYTES].decode("utf-8-sig", errors="replace").split("\n", HEAD_ROWS)[:HEAD_ROWS]
    if not tiny and 1 < len(lines) < HEAD_ROWS:
        lines.pop()  # the prefix cut the last line
    sample = "\n".join(lines)
    try:  # on a small sample: the sniffer's cost grows with the square of its input
        dialect: Any = csv.Sniffer().sniff(_sniff_sample(sample), delimiters=",;\t|")
    except csv.Error:
        dialect = None
    if dialect is not None:
        # Names and values as pandas reads them: read_csv keeps the space after a delimiter (' WINDSPEED'), and
        # a description without it has the model write a name that is not there.
        dialect.skipinitialspace = False
    rows = list(
        enumerate(csv.reader(io.StringIO(sample), dialect) if dialect else csv.reader(io.StringIO(sample)), 1)
    )
    table, header = _table(rows)
    bits = []
    if ext == ".txt":  # prose unless the first rows split alike on the sniffed delimiter
        widths = [len(row) for _, row in rows[:3] if row]
        if not (dialect and len(widths) > 1 and min(widths) == max(widths) > 1):
            return [Bit(quantity(_line_count(data), "line"), counted=True)] if tiny else []
        bits.append(Bit("delimited table"))
    if tiny and rows:  # quoted fields may hold line breaks: then the count is approximate
        bits.append(
            Bit(("~" if b'"' in data else "") + quantity(_line_count(data) - header, "row"), counted=True)
        )
    delimiter = dialect.delimiter if dialect else ("\t" if ext == ".tsv" else ",")
    return [*bits, Bit(f"delimiter {quote(delimiter)}", 1), *table]


def _sniff_sample(sample: str) -> str:
    """At most SNIFF_CHARS, ending at a line break when there is one within them."""
    if len(sample) <= SNIFF_CHARS:
        return sample
    cut = sample.rfind("\n", 0, SNIFF_CHARS)
    return sample[: cut if cut > 0 else SNIFF_CHARS]


def _sheet_names(fh: BinaryIO, size: int, ext: str) -> list[Bit]:
    """Sheet names from the workbook part alone: no cell and no shared string is read."""
    with zipfile.ZipFile(fh) as z, z.open("xl/workbook.xml") as book:
        names = re.findall(rb'<(?:\w+:)?sheet\b[^>]*?\bname="([^"]*)"', book.read(TINY_BYTES))
    return _sheets([html.unescape(n.decode(errors="replace")) for n in names], lambda _: [])


def _excel(fh: BinaryIO, size: int, ext: str) -> list[Bit]:
    with zipfile.ZipFile(fh) as z:  # reads the zip directory only
        parts = z.infolist()
    fh.seek(0)
    strings = sum(i.file_size for i in parts if i.filename == "xl/sharedStrings.xml")
    inflated = any(
        i.file_size > XLSX_PART_BYTES or i.file_size > XLSX_RATIO * max(i.compress_size, 1024) for i in parts
    )
    if strings > XLSX_STRINGS or inflated:
        return _sheet_names(fh, size, ext)
    wb = _library("openpyxl").load_workbook(fh, read_only=True, data_only=True)  # streams rows on demand
    try:
        return _sheets(wb.sheetnames, lambda name: _sheet(wb[name]))
    finally:
        wb.close()


def _sheets(names: list[str], look: Callable[[str], list[Bit]]) -> list[Bit]:
    # pd.read_excel(path) quietly reads the first sheet only: a common wrong answer when there are more.
    more = " (pd.read_excel reads only the first; sheet_name=None reads all, as a dict by name)"
    bits = [Bit(quantity(len(names), "sheet") + (more if len(names) > 1 else ""))]
    for name in names[:SHEETS]:
        bits.append(Bit(f"sheet {quote(name, NAME_CHARS)}", line=True))
        with contextlib.suppress(Exception):  # a chart sheet, or one the library cannot read: still named
            bits += look(name)
    return bits + ([Bit(f"… {len(names) - SHEETS:,} more sheets", line=True)] if len(names) > SHEETS else [])


def _sheet(ws: Any) -> list[Bit]:
    rows = [(i, list(r)) for i, r in enumerate(ws.iter_rows(max_row=HEAD_ROWS, values_only=True), 1)]
    used = max((i for i, r in rows if any(v is not None for v in r)), default=0)
    # read_only takes the size from the sheet's <dimension>, which some writers set to "A1" whatever it holds.
    dims = ws.max_row and ws.max_column and ws.max_row >= used
    size = (
        [Bit(f"{quantity(ws.max_row, 'row')} × {quantity(ws.max_column, 'column')}", counted=True)]
        if dims
        else []
    )
    return size + _table(rows)[0]


def _schema(schema: Any) -> Bit:
    fields = [schema.field(i) for i in range(min(len(schema), COLUMNS))]
    # Nested types hold field names: quoted unless plainly a type.
    shown = [
        f"{quote(f.name, NAME_CHARS)}: {t if _PLAIN.fullmatch(t := str(f.type)) else quote(t)}"
        for f in fields
    ]
    return Bit(
        "columns: " + ", ".join(shown + [f"… {len(schema) - COLUMNS:,} more"] * (len(schema) > COLUMNS)), 1
    )


def _parquet(fh: BinaryIO, size: int, ext: str) -> list[Bit]:
    pf = _library("pyarrow.parquet").ParquetFile(fh)  # reads the footer only
    return [Bit(quantity(pf.metadata.num_rows, "row"), counted=True), _schema(pf.schema_arrow)]


def _ipc(fh: BinaryIO, size: int, ext: str) -> list[Bit]:
    reader = _library("pyarrow.ipc").open_file(fh)  # reads the footer: schema and record batch offsets
    # count_rows reads each batch's message header, never its (maybe compressed) body.
    cheap = hasattr(reader, "count_rows") and reader.num_record_batches <= IPC_BATCHES
    return ([Bit(quantity(reader.count_rows(), "row"), counted=True)] if cheap else []) + [
        _schema(reader.schema)
    ]


def _keys(value: Any, label: str) -> list[Bit]:
    return (
        [Bit(f"{label}: {_values(list(value), NAME_CHARS)}", 1)] if isinstance(value, dict) and value else []
    )


def _json(fh: BinaryIO, size: int, ext: str) -> list[Bit]:
    if size < TINY_BYTES:
        value = untrusted_json.loads(fh.read())
        if not isinstance(value, list):
            return [Bit("object"), *_keys(value, "keys")] if isinstance(value, dict) else [Bit("one value")]
        first = value[0] if value else None
        shape = "array of objects" if isinstance(first, dict) else "array"
        return [
            Bit(shape),
            Bit(quantity(len(value), "item"), counted=True),
            *_keys(first, "keys of the first"),
        ]
    head = fh.read(HEAD_BYTES).decode(errors="replace").lstrip("\ufeff")
    array = re.match(r"\s*\[\s*(?=\{)", head)  # a large file: its prefix, and its first element when it fits
    if array is None:
        return [Bit({"[": "array", "{": "object"}.get(head.lstrip()[:1], "JSON"))]
    with contextlib.suppress(ValueError):
        if not untrusted_json.nesting_within(head.encode(), whole=False):
            raise ValueError("nested too deep")
        return [
            Bit("array of objects"),
            *_keys(json.JSONDecoder().raw_decode(head, array.end())[0], "keys of the first"),
        ]
    return [Bit("array of objects")]


def _jsonl(fh: BinaryIO, size: int, ext: str) -> list[Bit]:
    tiny = size < TINY_BYTES
    data = fh.read(TINY_BYTES if tiny else HEAD_BYTES)
    try:
        first = untrusted_json.loads(data.lstrip().split(b"\n", 1)[0])
    except ValueError:  # a first line longer than the prefix
        first = None
    return [Bit(quantity(_line_count(data), "line"), counted=True)] * tiny + _keys(
        first, "keys of the first line"
    )


def _pdf(fh: BinaryIO, size: int, ext: str) -> list[Bit]:
    if size > PDF_BYTES:
        return []
    reader = _library("pypdf").PdfReader(fh, strict=size > PDF_LENIENT_BYTES)
    return [
        Bit("encrypted")
        if reader.is_encrypted
        else Bit(quantity(reader.get_num_pages(), "page"), counted=True)
    ]


def _image(fh: BinaryIO, size: int, ext: str) -> list[Bit]:
    with _library("PIL.Image").open(fh, formats=[_PIL[ext]]) as im:  # reads the header only
        return [Bit(im.mode), Bit(f"{im.width:,}×{im.height:,} pixels", counted=True)]


def _lines(fh: BinaryIO, size: int, ext: str) -> list[Bit]:
    return [Bit(quantity(_line_count(fh.read()), "line"), counted=True)] if size < TINY_BYTES else []


_KINDS: dict[str, tuple[str, Callable[[BinaryIO, int, str], list[Bit]] | None]] = {
    ".csv": ("CSV", _csv), ".tsv": ("TSV", _csv), ".txt": ("text", _csv), ".parquet": ("Parquet", _parquet),
    ".xlsx": ("Excel workbook", _excel), ".xlsm": ("Excel workbook", _excel), ".xls": ("Excel 97-2003", None),
    ".feather": ("Feather", _ipc), ".arrow": ("Arrow IPC", _ipc), ".ipc": ("Arrow IPC", _ipc),
    ".json": ("JSON", _json), ".jsonl": ("JSON Lines", _jsonl), ".ndjson": ("JSON Lines", _jsonl),
    ".pdf": ("PDF", _pdf), **{ext: (f"{fmt} image", _image) for ext, fmt in _PIL.items()},
    ".py": ("Python", _lines), ".md": ("Markdown", _lines), ".sql": ("SQL", _lines), ".r": ("R", _lines),
    ".ipynb": ("notebook", None),  # other extensions are named as they are: "zip file", "h5 file"
}  # fmt: skip
