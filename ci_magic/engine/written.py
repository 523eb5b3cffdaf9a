"""The files a question asks for, looked at once the run wrote them: is each what its name and the question say?

A small model "converts" a PDF by copying its bytes into report.txt, writes JSON Lines into a .json file, or keeps
``revenue`` where the question named the column ``total_revenue``. Each run ends without an error and the file
is wrong. :func:`problem` says why a written file cannot be the one asked for, from its bytes (read back out of
the sandbox, bounded; see :func:`~ci_magic.engine.loop.read_back`) and the question's words; the loop sends it
back as a repair, like an empty result. Headers are read by the same code that describes the user's files to the
model (context/file_peeks.py: bounded, bomb-checked), so a hostile file is parsed no further here than there.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import re
from pathlib import PurePosixPath

from ..context.file_peeks import peek
from ..core import untrusted_json
from . import prompts

#: The first bytes of file kinds a text file must not be (a copy of the input is the usual way in).
_MAGIC = (
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "zip (Excel, Word or zip)"),
    (b"\x89PNG", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF8", "GIF image"),
    (b"PAR1", "Parquet"),
    (b"ARROW1", "Arrow"),
)
_TEXT = {".txt", ".csv", ".tsv", ".md", ".json", ".jsonl", ".html", ".xml", ".yaml", ".yml", ".svg"}
#: What a binary file of each extension starts with.
_STARTS = {
    ".pdf": b"%PDF",
    ".xlsx": b"PK\x03\x04",
    ".docx": b"PK\x03\x04",
    ".pptx": b"PK\x03\x04",
    ".zip": b"PK\x03\x04",
    ".png": b"\x89PNG",
    ".jpg": b"\xff\xd8\xff",
    ".jpeg": b"\xff\xd8\xff",
    ".gif": b"GIF8",
    ".parquet": b"PAR1",
}
_TABLES = {".csv", ".tsv", ".xlsx", ".parquet"}
#: After "column(s)", up to the end of the sentence: where a question names the columns it wants.
_COLUMNS_PART = re.compile(r"\bcolumns?\b([^.;\n]*(?:\.\w+[^.;\n]*)*)", re.I)
#: A name given as a name: quoted, or snake_case (plain words are too often just words).
_NAMED = re.compile(r"""['"`]([^'"`\n]{1,60})['"`]|\b([A-Za-z]\w*_\w+)\b(?![./]\w)""")


def problem(name: str, data: bytes | None, question: str) -> str | None:
    """Why ``data``, written as ``name`` (a file the question asks for), cannot be that file, or None (also when
    it could not be read: no doubt then)."""
    if data is None:
        return None
    suffix = PurePosixPath(name).suffix.lower()
    why = _wrong_kind(suffix, data)
    if why is not None:
        return prompts.DOUBT_KIND.format(name=name, problem=why)
    if suffix == ".json":
        why = _not_json(data)
        if why is not None:
            return prompts.DOUBT_JSON.format(name=name, problem=why)
    if suffix in _TABLES:
        wanted = columns_named(question)
        have = _header(suffix, data)
        missing = [c for c in wanted if have is not None and c not in have]
        if missing and have is not None:
            return prompts.DOUBT_COLUMNS.format(
                name=name,
                have=", ".join(repr(c) for c in have[:20]),
                missing=", ".join(map(repr, missing)),
                rename=_renaming(missing, have, question),
            )
    return None


def columns_named(question: str) -> list[str]:
    """Column names the question gives after "column(s)": quoted or snake_case, file names left out."""
    found: list[str] = []
    for part in _COLUMNS_PART.finditer(question):
        for m in _NAMED.finditer(part.group(1)):
            name = (m.group(1) or m.group(2)).strip()
            if name and not re.search(r"\.\w{2,5}$", name) and name not in found:
                found.append(name)
    return found


def _renaming(missing: list[str], have: list[str], question: str) -> str:
    """The likeliest rename, as code: each missing name from the closest column the question does not name
    (``revenue`` → ``total_revenue`` when it asks for "region and total_revenue")."""
    # What the question lists as columns, its asides ("(the sum of revenue)") left out.
    said = re.sub(r"\([^)]*\)", " ", " ".join(p.group(1).lower() for p in _COLUMNS_PART.finditer(question)))
    spare = [c for c in have if not re.search(rf"\b{re.escape(c.lower())}\b", said)]
    pairs: dict[str, str] = {}
    for name in missing:
        close = difflib.get_close_matches(name, spare, n=1, cutoff=0.3) or spare[:1]
        if close:
            pairs[close[0]] = name
            spare.remove(close[0])
    pairs = pairs or {"old_name": missing[0]}
    return "result = result.rename(columns={" + ", ".join(f"{a!r}: {b!r}" for a, b in pairs.items()) + "})"


def _wrong_kind(suffix: str, data: bytes) -> str | None:
    found = next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)
    if suffix in _TEXT:
        if found is not None:
            return f"it holds a {found} file's bytes, not text"
        if b"\x00" in data[:4096]:
            return "it holds binary data, not text"
        return None
    start = _STARTS.get(suffix)
    if start is not None and data and not data.startswith(start):
        return f"it is not a valid {suffix} file" + (f" (its bytes are a {found} file's)" if found else "")
    return None


def _not_json(data: bytes) -> str | None:
    try:
        untrusted_json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return "it is not UTF-8 text"
    except ValueError as exc:
        lines = [line for line in data.splitlines() if line.strip()]
        if len(lines) > 1 and "Extra data" in str(exc):
            return "it holds one JSON value per line (JSON Lines), not one JSON document"
        return f"it does not parse: {str(exc)[:120]}"
    return None


def _header(suffix: str, data: bytes) -> list[str] | None:
    """The column names of a written table (every sheet's, for a workbook), or None when they cannot be read."""
    with contextlib.suppress(Exception):  # a file the describer cannot read raises no doubt
        bits = peek(io.BytesIO(data), len(data), suffix, workbook=True)
        names = [n for bit in bits for n in bit.names]
        return names or None
    return None
