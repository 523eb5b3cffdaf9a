"""What the model is told about the files in the user's working folder: relative paths, sizes, kinds and a
cheap look inside (CSV header, Excel sheets, Parquet/Arrow schema, JSON shape, PDF pages, image size).

Owns the walk and the budget; what a look inside each kind of file finds is ``file_peeks.py``'s. Cost is
bounded by counts, never by file sizes: the walk stops at ``max_files`` files, ``max_depth`` folders down; a
peek reads a bounded prefix or the format's metadata; only the files the budget can show are opened, at most
:data:`PEEK_FILES` looked inside (:data:`WORKBOOKS` with openpyxl). ``detail`` caps what leaves the machine as for DataFrames: "schema" shows names, kinds, byte sizes,
column names and types; "stats" adds counts (rows, lines, items, pages, pixels); "samples" one example row per
CSV or sheet.

Folders are opened one component at a time with ``O_NOFOLLOW``, so nothing outside ``folder`` is reached.
Symbolic links are listed, never opened nor resolved (the sandbox shows the user's links to the code; their
targets are not ours to describe). Only regular files are opened (``O_NONBLOCK``); FIFOs, sockets and devices
are not listed; unreadable entries are skipped silently. POSIX only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..core.errors import ContextError
from ..core.results import estimate_tokens
from .file_peeks import Bit, human, kind_of, peek, quantity
from .frames import DETAIL_LEVELS
from .text import quote

PEEK_FILES = 300  # later files are listed by kind and size only, whatever the budget
WORKBOOKS = 5  # openpyxl takes 10-40 ms a workbook even read-only: later ones get sheet names only
DIR_ENTRIES = 10_000  # entries read from one folder: a million-file folder must not stall %%ask
PATH_CHARS = 160  # a longer path is shown clipped
SKIP_DIRS = frozenset({"node_modules", "__pycache__", ".ipynb_checkpoints", "site-packages"})
#: Not data the model should be told about: notebooks change with every save (and would change the
#: conversation the reply cache is keyed on), byte-compiled files are noise.
NOT_DATA = (".ipynb", ".pyc")
EMPTY = "The working folder has no files to show (hidden files, environments and caches are not listed)."
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
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


class _File(NamedTuple):
    path: str  # relative, with "/"
    size: int
    link: bool
    kind: str = ""  # and bits: set by _look
    bits: tuple[Bit, ...] = ()


def describe_files(
    folder: Path,
    *,
    budget_tokens: int,
    detail: str = "samples",
    max_depth: int = 3,
    max_files: int = 1000,
    loaded: Mapping[str, Sequence[str]] | None = None,
) -> FilesContext:
    """Describe the files under ``folder`` (``max_depth`` folders down at most) within ``budget_tokens``.

    ``loaded`` maps the DataFrames already described to their column names: a table whose header names the
    same columns (the file the frame was read from, most often) is said to have that frame's columns instead of
    listing them and an example row again — prompt tokens that bought nothing.

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
                seen = _same_as_loaded(_look(root, entry, opened <= PEEK_FILES, books < WORKBOOKS), loaded)
                books += seen is not None and seen.kind == "Excel workbook"
                looked += [seen] if seen else []
                spent += estimate_tokens(_line(entry.path, _body(seen.bits, 0, counts))) if seen else 0
                if spent > budget_tokens:
                    break  # not even this file fits bare: no later one can be shown, so none is opened
        finally:
            os.close(root)
    never, header = found[opened:], _header(found)

    def assemble(kept: list[_File], rest: list[_File], level: int) -> FilesContext:
        notes = [f"and {len(rest):,} more files (total {human(sum(f.size for f in rest))})"] if rest else []
        notes += [f"the listing stopped at {max_files:,} files"] if stopped else []
        notes += [f"folders more than {quantity(max_depth, 'level')} down are not listed"] if deep else []
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


def _same_as_loaded(f: _File | None, loaded: Mapping[str, Sequence[str]] | None) -> _File | None:
    """``f`` with a header naming a loaded frame's columns said by that frame's name (its example row dropped)."""
    if f is None or not loaded:
        return f
    bits = list(f.bits)
    for i, b in enumerate(bits):
        name = next((n for n, cols in loaded.items() if b.names and list(b.names) == list(cols)), None)
        if name is not None:
            bits[i] = Bit(f"the columns of the DataFrame {name} described above", 1)
            if i + 1 < len(bits) and bits[i + 1].tier == 2 and not bits[i + 1].line:
                del bits[i + 1]
            break
    return f._replace(bits=tuple(bits))


def _header(found: list[_File]) -> str:
    # The example names a real file: a small model copies examples, so it must not name one that is not there.
    ours = [
        (r, f.path) for f in found if not f.link and (r := _READERS.get(os.path.splitext(f.path)[1].lower()))
    ]
    example = f", e.g. pd.{ours[0][0]}({quote(ours[0][1], PATH_CHARS)})" if ours else ""
    return f"Files in the working folder (relative paths; read them directly{example}):"


def _line(path: str, body: str) -> str:
    return f"- {quote(path, PATH_CHARS)}: {body}"


def _body(bits: Iterable[Bit], level: int, counts: bool) -> str:
    """Per line: facts joined by ", ", then header and example each after "; " (dropping them reads well)."""
    lines: list[list[Bit]] = []
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
        return f._replace(kind="symbolic link", bits=(Bit("symbolic link (not opened)"),))
    ext = os.path.splitext(f.path)[1].lower()
    kind = kind_of(ext)
    bits = [Bit(kind), Bit(human(f.size))]
    try:
        with os.fdopen(_open(root, f.path, _FILE_FLAGS), "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # the listing's stat may be stale
                return None
            if inside and f.size:
                bits += peek(fh, f.size, ext, workbook)
    except PermissionError:
        return None
    except Exception:  # a malformed file or a library's surprise: listed by kind and size only
        bits = bits[:2]
    return f._replace(kind=kind, bits=tuple(bits))
