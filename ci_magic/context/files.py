"""What the model is told about the files in the user's working folder: relative paths, sizes, kinds and a
cheap look inside (CSV header, Excel sheets, Parquet/Arrow schema, JSON shape, PDF pages, image size).

Owns the walk, the peeks and their budget. Cost is bounded by counts, never by file sizes: the walk stops at
``max_files`` files, ``max_depth`` folders down; a peek reads a bounded prefix or the format's metadata; only
the files the budget can show are opened, at most :data:`PEEK_FILES` looked inside (:data:`WORKBOOKS` with
openpyxl). ``detail`` caps what leaves the machine as for DataFrames: "schema" shows names, kinds, byte sizes,
column names and types; "stats" adds counts (rows, lines, items, pages, pixels); "samples" one example row per
CSV or sheet.

Folders are opened one component at a time with ``O_NOFOLLOW``, so nothing outside ``folder`` is reached.
Symbolic links are listed, never opened nor resolved (the sandbox shows the user's links to the code; their
targets are not ours to describe). Only regular files are opened (``O_NONBLOCK``); FIFOs, sockets and devices
are not listed; unreadable entries are skipped silently. POSIX only.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import html
import importlib
import io
import itertools
import json
import os
import re
import stat
import warnings
import zipfile
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import pandas as pd

from ..core.errors import ContextError
from ..core.results import estimate_tokens
from .frames import DETAIL_LEVELS
from .text import NAME_CHARS, VALUE_CHARS, quote

HEAD_BYTES = 64 * 1024  # the prefix a peek reads from a large text file
TINY_BYTES = 1_000_000  # below this a text file is read whole: lines counted, JSON parsed
PDF_BYTES = 200_000_000  # no page count above this
PDF_LENIENT_BYTES = 10_000_000  # pypdf's lenient mode re-reads a whole broken file: only for small ones
XLSX_STRINGS = 8_000_000  # openpyxl loads all shared strings even read-only: above this, sheet names only
IPC_BATCHES = 100  # count_rows reads one message header per record batch
PEEK_FILES = 300  # later files are listed by kind and size only, whatever the budget
WORKBOOKS = 5  # openpyxl takes 10-40 ms a workbook even read-only: later ones get sheet names only
DIR_ENTRIES = 10_000  # entries read from one folder: a million-file folder must not stall %%ask
COLUMNS, SHEETS, HEAD_ROWS, PATH_CHARS = 30, 20, 20, 160
SKIP_DIRS = frozenset({"node_modules", "__pycache__", ".ipynb_checkpoints", "site-packages"})
#: Not data the model should be told about: notebooks change with every save (and would change the
#: conversation the reply cache is keyed on), byte-compiled files are noise.
NOT_DATA = (".ipynb", ".pyc")
EMPTY = "The working folder has no files to show (hidden files, environments and caches are not listed)."
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
_PLAIN = re.compile(r"[\w\[\]<>,=/:.+ -]{1,40}")  # Arrow type names; others (nested field names) are quoted
_NUMBER = re.compile(r"\s*[-+]?(\d[\d,]*\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
_EXTENSION = re.compile(r"\.[a-z0-9]{1,8}")
_PIL = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".bmp": "BMP", ".webp": "WEBP",
        ".tif": "TIFF", ".tiff": "TIFF"}  # fmt: skip
_READERS = {".csv": "read_csv", ".xlsx": "read_excel", ".xlsm": "read_excel",
            ".parquet": "read_parquet", ".feather": "read_feather"}  # fmt: skip


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative, with "/"
    size: int  # bytes; 0 for a symbolic link
    kind: str
    description: str  # as in the text after "path: " (a workbook adds one indented line per sheet)


@dataclass(frozen=True)
class FilesContext:
    text: str
    tokens: int  # estimated
    files: list[FileEntry]  # the files the text describes, in its order
    truncated: bool  # files were left out: over the budget, max_files or max_depth


class _Bit(NamedTuple):
    text: str
    tier: int = 0  # 0 always shown; 1 header-like, dropped second; 2 example values, dropped first
    counted: bool = False  # a count of content: hidden at "schema"
    line: bool = False  # starts an indented line (a workbook's sheet)


class _File(NamedTuple):
    path: str  # relative, with "/"
    size: int
    link: bool
    kind: str = ""  # and bits: set by _look
    bits: tuple[_Bit, ...] = ()


def describe_files(
    folder: Path, *, budget_tokens: int, detail: str = "samples", max_depth: int = 3, max_files: int = 1000
) -> FilesContext:
    """Describe the files under ``folder`` (``max_depth`` folders down at most) within ``budget_tokens``.

    Over the budget, example rows go first, then headers, then files from the end of the listing (a last line
    counts them); the header and that line stay even when they alone exceed a tiny budget. Never raises
    because of the folder's contents."""
    if detail not in DETAIL_LEVELS:
        raise ContextError(f"detail must be one of {', '.join(DETAIL_LEVELS)}, not {detail!r}.")
    counts, top = detail != "schema", 2 if detail == "samples" else 1
    found: list[_File] = []
    looked: list[_File] = []  # opened and readable
    stopped = deep = False
    opened = 0  # found[opened:] were never opened
    try:
        root = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the folder itself may be a link
    except OSError:
        root = -1
    if root >= 0:
        try:
            found, stopped, deep = _walk(root, max_depth, max_files)
            spent = estimate_tokens(_header(found))
            books = 0  # workbooks opened with openpyxl
            for opened, entry in enumerate(found, 1):
                seen = _look(root, entry, opened <= PEEK_FILES, books < WORKBOOKS)
                books += seen is not None and seen.kind == "Excel workbook"
                looked += [seen] if seen else []
                spent += estimate_tokens(_line(entry.path, _body(seen.bits, 0, counts))) if seen else 0
                if spent > budget_tokens:
                    break  # not even this file fits bare: no later one can be shown, so none is opened
        finally:
            os.close(root)
    never, header = found[opened:], _header(found)

    def assemble(kept: list[_File], rest: list[_File], level: int) -> FilesContext:
        notes = [f"and {len(rest):,} more files (total {_human(sum(f.size for f in rest))})"] if rest else []
        notes += [f"the listing stopped at {max_files:,} files"] if stopped else []
        notes += [f"folders more than {_n(max_depth, 'level')} down are not listed"] if deep else []
        files = [FileEntry(f.path, f.size, f.kind, _body(f.bits, level, counts)) for f in kept]
        lines = [header if kept or rest else EMPTY, *(_line(e.path, e.description) for e in files)]
        text = "\n".join(lines + (["… " + "; ".join(notes)] if notes else []))
        return FilesContext(text, estimate_tokens(text), files, bool(rest) or stopped or deep)

    # Whole lines only: the levels with every file (when all could be looked at), then files from the end.
    plans = [(len(looked), level) for level in range(top, 0, -1) if not never]
    for keep, level in [*plans, *((keep, 0) for keep in range(len(looked), -1, -1))]:
        result = assemble(looked[:keep], looked[keep:] + never, level)
        if result.tokens <= budget_tokens:
            break
    return result


def _header(found: list[_File]) -> str:
    # The example names a real file: a small model copies examples, so it must not name one that is not there.
    ours = [
        (r, f.path) for f in found if not f.link and (r := _READERS.get(os.path.splitext(f.path)[1].lower()))
    ]
    example = f", e.g. pd.{ours[0][0]}({quote(ours[0][1], PATH_CHARS)})" if ours else ""
    return f"Files in the working folder (relative paths; read them directly{example}):"


def _line(path: str, body: str) -> str:
    return f"- {quote(path, PATH_CHARS)}: {body}"


def _body(bits: Iterable[_Bit], level: int, counts: bool) -> str:
    """Per line: facts joined by ", ", then header and example each after "; " (dropping them reads well)."""
    lines: list[list[_Bit]] = []
    for b in bits:
        if not lines or b.line:
            lines.append([])
        lines[-1] += [b] if b.tier <= level and (counts or not b.counted) else []
    texts = [
        [", ".join(b.text for b in line if not b.tier), *(b.text for b in line if b.tier)] for line in lines
    ]
    return "\n    ".join("; ".join(filter(None, parts)) for parts in texts)


def _walk(root: int, max_depth: int, max_files: int) -> tuple[list[_File], bool, bool]:
    """Files breadth first (a folder's own files before its subfolders'), each folder sorted by name; and
    whether the listing stopped at ``max_files`` and whether deeper folders were left out."""
    found: list[_File] = []
    stopped = deep = False
    queue: deque[str] = deque([""])
    while queue and len(found) <= max_files:
        prefix = queue.popleft()
        try:
            folder = _open(root, prefix)
        except OSError:
            continue  # unreadable, or replaced by a link since it was listed
        try:
            with os.scandir(folder) as it:
                entries = sorted(itertools.islice(it, DIR_ENTRIES), key=lambda e: (e.name.lower(), e.name))
            stopped |= len(entries) == DIR_ENTRIES
            # "~$name.xlsx" is the lock file Office keeps beside an open workbook, not data.
            for e in (e for e in entries if not e.name.startswith((".", "~$")) and e.name not in SKIP_DIRS):
                with contextlib.suppress(OSError):  # vanished since the listing
                    if e.is_symlink():
                        found.append(_File(prefix + e.name, 0, True))
                    elif e.is_dir(follow_symlinks=False) and not _is_venv(folder, e.name):
                        deep |= prefix.count("/") >= max_depth
                        queue.extend([f"{prefix}{e.name}/"] * (prefix.count("/") < max_depth))
                    elif e.is_file(follow_symlinks=False) and not e.name.endswith(NOT_DATA):
                        # FIFOs, sockets, devices: never listed nor opened.
                        found.append(_File(prefix + e.name, e.stat(follow_symlinks=False).st_size, False))
                if len(found) > max_files:
                    break
        except OSError:
            pass
        finally:
            os.close(folder)
    return found[:max_files], stopped or len(found) > max_files, deep


def _is_venv(parent: int, name: str) -> bool:
    probes = [f"{name}/pyvenv.cfg"] + ([f"{name}/bin/python"] if name in ("venv", "env") else [])
    return any(os.access(p, os.F_OK, dir_fd=parent, follow_symlinks=False) for p in probes)


def _open(root: int, path: str, flags: int = _DIR_FLAGS) -> int:
    # One component at a time with O_NOFOLLOW: a folder swapped for a link after the listing cannot lead out.
    fd, parts = os.dup(root), [p for p in path.split("/") if p]
    for i, part in enumerate(parts, 1):
        try:
            child = os.open(part, flags if i == len(parts) else _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _look(root: int, f: _File, inside: bool, workbook: bool) -> _File | None:
    """``f`` with its kind and what a look inside found; None when it cannot be read (it is not listed)."""
    if f.link:
        return f._replace(kind="symbolic link", bits=(_Bit("symbolic link (not opened)"),))
    ext = os.path.splitext(f.path)[1].lower()
    # An unknown extension is part of the file name: named only when it is plainly an extension.
    kind, peeker = _KINDS.get(ext, (f"{ext[1:]} file" if _EXTENSION.fullmatch(ext) else "file", None))
    peeker = _sheet_names if peeker is _excel and not workbook else peeker
    bits = [_Bit(kind), _Bit(_human(f.size))]
    try:
        with os.fdopen(_open(root, f.path, _FILE_FLAGS), "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # the listing's stat may be stale
                return None
            if peeker is not None and inside and f.size:
                with warnings.catch_warnings():  # libraries warn about odd files; not the user's error
                    warnings.simplefilter("ignore")
                    bits += peeker(fh, f.size, ext)
    except PermissionError:
        return None
    except Exception:  # a malformed file or a library's surprise: listed by kind and size only
        bits = bits[:2]
    return f._replace(kind=kind, bits=tuple(bits))


@functools.cache  # a failed import would otherwise be retried for every file
def _library(name: str) -> Any:
    """An optional library, or None: a look that needs a missing one fails, leaving kind and size."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _human(size: int) -> str:
    value, units = float(size), ["B", "KB", "MB", "GB", "TB"]
    while value >= 1000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.0f} {units[0]}" if units[0] == "B" or value >= 100 else f"{value:.1f} {units[0]}"


def _n(count: int, noun: str) -> str:
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


def _table(rows: Iterable[tuple[int, list[Any]]]) -> tuple[list[_Bit], bool]:
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
            _Bit(f"{_n(len(first), 'column')}, no header row recognised", 1),
            _Bit(f"first row: {_values(first)}", 2),
        ], False
    where = f"columns (header in row {number})" if number > 1 else "columns"
    example = [_Bit(f"e.g. row: {_values(below)}", 2)] if below else []
    return [_Bit(f"{where}: {_values(first, NAME_CHARS)}", 1), *example], True


def _line_count(data: bytes) -> int:
    data = data.rstrip(b"\r\n")  # trailing blank lines are no rows
    return data.count(b"\n") + 1 if data else 0


def _csv(fh: BinaryIO, size: int, ext: str) -> list[_Bit]:
    tiny = size < TINY_BYTES
    data = fh.read(TINY_BYTES if tiny else HEAD_BYTES)
    lines = data[:HEAD_BYTES].decode("utf-8-sig", errors="replace").split("\n", HEAD_ROWS)[:HEAD_ROWS]
    if not tiny and 1 < len(lines) < HEAD_ROWS:
        lines.pop()  # the prefix cut the last line
    sample = "\n".join(lines)
    try:  # on a bounded sample: the sniffer's cost grows with its input
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = None
    rows = list(
        enumerate(csv.reader(io.StringIO(sample), dialect) if dialect else csv.reader(io.StringIO(sample)), 1)
    )
    table, header = _table(rows)
    bits = []
    if ext == ".txt":  # prose unless the first rows split alike on the sniffed delimiter
        widths = [len(row) for _, row in rows[:3] if row]
        if not (dialect and len(widths) > 1 and min(widths) == max(widths) > 1):
            return [_Bit(_n(_line_count(data), "line"), counted=True)] if tiny else []
        bits.append(_Bit("delimited table"))
    if tiny and rows:  # quoted fields may hold line breaks: then the count is approximate
        bits.append(_Bit(("~" if b'"' in data else "") + _n(_line_count(data) - header, "row"), counted=True))
    delimiter = dialect.delimiter if dialect else ("\t" if ext == ".tsv" else ",")
    return [*bits, _Bit(f"delimiter {quote(delimiter)}", 1), *table]


def _sheet_names(fh: BinaryIO, size: int, ext: str) -> list[_Bit]:
    """Sheet names from the workbook part alone: no cell and no shared string is read."""
    with zipfile.ZipFile(fh) as z, z.open("xl/workbook.xml") as book:
        names = re.findall(rb'<(?:\w+:)?sheet\b[^>]*?\bname="([^"]*)"', book.read(TINY_BYTES))
    return _sheets([html.unescape(n.decode(errors="replace")) for n in names], lambda _: [])


def _excel(fh: BinaryIO, size: int, ext: str) -> list[_Bit]:
    with zipfile.ZipFile(fh) as z:  # reads the zip directory only
        strings = sum(i.file_size for i in z.infolist() if i.filename == "xl/sharedStrings.xml")
    fh.seek(0)
    if strings > XLSX_STRINGS:
        return _sheet_names(fh, size, ext)
    wb = _library("openpyxl").load_workbook(fh, read_only=True, data_only=True)  # streams rows on demand
    try:
        return _sheets(wb.sheetnames, lambda name: _sheet(wb[name]))
    finally:
        wb.close()


def _sheets(names: list[str], look: Callable[[str], list[_Bit]]) -> list[_Bit]:
    bits = [_Bit(_n(len(names), "sheet"))]
    for name in names[:SHEETS]:
        bits.append(_Bit(f"sheet {quote(name, NAME_CHARS)}", line=True))
        with contextlib.suppress(Exception):  # a chart sheet, or one the library cannot read: still named
            bits += look(name)
    return bits + ([_Bit(f"… {len(names) - SHEETS:,} more sheets", line=True)] if len(names) > SHEETS else [])


def _sheet(ws: Any) -> list[_Bit]:
    rows = [(i, list(r)) for i, r in enumerate(ws.iter_rows(max_row=HEAD_ROWS, values_only=True), 1)]
    used = max((i for i, r in rows if any(v is not None for v in r)), default=0)
    # read_only takes the size from the sheet's <dimension>, which some writers set to "A1" whatever it holds.
    dims = ws.max_row and ws.max_column and ws.max_row >= used
    size = [_Bit(f"{_n(ws.max_row, 'row')} × {_n(ws.max_column, 'column')}", counted=True)] if dims else []
    return size + _table(rows)[0]


def _schema(schema: Any) -> _Bit:
    fields = [schema.field(i) for i in range(min(len(schema), COLUMNS))]
    # Nested types hold field names: quoted unless plainly a type.
    shown = [
        f"{quote(f.name, NAME_CHARS)}: {t if _PLAIN.fullmatch(t := str(f.type)) else quote(t)}"
        for f in fields
    ]
    return _Bit(
        "columns: " + ", ".join(shown + [f"… {len(schema) - COLUMNS:,} more"] * (len(schema) > COLUMNS)), 1
    )


def _parquet(fh: BinaryIO, size: int, ext: str) -> list[_Bit]:
    pf = _library("pyarrow.parquet").ParquetFile(fh)  # reads the footer only
    return [_Bit(_n(pf.metadata.num_rows, "row"), counted=True), _schema(pf.schema_arrow)]


def _ipc(fh: BinaryIO, size: int, ext: str) -> list[_Bit]:
    reader = _library("pyarrow.ipc").open_file(fh)  # reads the footer: schema and record batch offsets
    # count_rows reads each batch's message header, never its (maybe compressed) body.
    cheap = hasattr(reader, "count_rows") and reader.num_record_batches <= IPC_BATCHES
    return ([_Bit(_n(reader.count_rows(), "row"), counted=True)] if cheap else []) + [_schema(reader.schema)]


def _keys(value: Any, label: str) -> list[_Bit]:
    return (
        [_Bit(f"{label}: {_values(list(value), NAME_CHARS)}", 1)] if isinstance(value, dict) and value else []
    )


def _json(fh: BinaryIO, size: int, ext: str) -> list[_Bit]:
    if size < TINY_BYTES:
        value = json.loads(fh.read())
        if not isinstance(value, list):
            return [_Bit("object"), *_keys(value, "keys")] if isinstance(value, dict) else [_Bit("one value")]
        first = value[0] if value else None
        shape = "array of objects" if isinstance(first, dict) else "array"
        return [_Bit(shape), _Bit(_n(len(value), "item"), counted=True), *_keys(first, "keys of the first")]
    head = fh.read(HEAD_BYTES).decode(errors="replace").lstrip("\ufeff")
    array = re.match(r"\s*\[\s*(?=\{)", head)  # a large file: its prefix, and its first element when it fits
    if array is None:
        return [_Bit({"[": "array", "{": "object"}.get(head.lstrip()[:1], "JSON"))]
    with contextlib.suppress(ValueError):
        return [
            _Bit("array of objects"),
            *_keys(json.JSONDecoder().raw_decode(head, array.end())[0], "keys of the first"),
        ]
    return [_Bit("array of objects")]


def _jsonl(fh: BinaryIO, size: int, ext: str) -> list[_Bit]:
    tiny = size < TINY_BYTES
    data = fh.read(TINY_BYTES if tiny else HEAD_BYTES)
    try:
        first = json.loads(data.lstrip().split(b"\n", 1)[0])
    except ValueError:  # a first line longer than the prefix
        first = None
    return [_Bit(_n(_line_count(data), "line"), counted=True)] * tiny + _keys(first, "keys of the first line")


def _pdf(fh: BinaryIO, size: int, ext: str) -> list[_Bit]:
    if size > PDF_BYTES:
        return []
    reader = _library("pypdf").PdfReader(fh, strict=size > PDF_LENIENT_BYTES)
    return [
        _Bit("encrypted") if reader.is_encrypted else _Bit(_n(reader.get_num_pages(), "page"), counted=True)
    ]


def _image(fh: BinaryIO, size: int, ext: str) -> list[_Bit]:
    with _library("PIL.Image").open(fh, formats=[_PIL[ext]]) as im:  # reads the header only
        return [_Bit(im.mode), _Bit(f"{im.width:,}×{im.height:,} pixels", counted=True)]


def _lines(fh: BinaryIO, size: int, ext: str) -> list[_Bit]:
    return [_Bit(_n(_line_count(fh.read()), "line"), counted=True)] if size < TINY_BYTES else []


_KINDS: dict[str, tuple[str, Callable[[BinaryIO, int, str], list[_Bit]] | None]] = {
    ".csv": ("CSV", _csv), ".tsv": ("TSV", _csv), ".txt": ("text", _csv), ".parquet": ("Parquet", _parquet),
    ".xlsx": ("Excel workbook", _excel), ".xlsm": ("Excel workbook", _excel), ".xls": ("Excel 97-2003", None),
    ".feather": ("Feather", _ipc), ".arrow": ("Arrow IPC", _ipc), ".ipc": ("Arrow IPC", _ipc),
    ".json": ("JSON", _json), ".jsonl": ("JSON Lines", _jsonl), ".ndjson": ("JSON Lines", _jsonl),
    ".pdf": ("PDF", _pdf), **{ext: (f"{fmt} image", _image) for ext, fmt in _PIL.items()},
    ".py": ("Python", _lines), ".md": ("Markdown", _lines), ".sql": ("SQL", _lines), ".r": ("R", _lines),
    ".ipynb": ("notebook", None),  # other extensions are named as they are: "zip file", "h5 file"
}  # fmt: skip
