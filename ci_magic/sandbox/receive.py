"""What comes back from the sandbox, distrusted: every value the parent takes is checked before it is built.

The sandbox can write any bytes into its outbox and answer bookkeeping requests with any text. So:

- frames are read as bytes (already size-capped and symlink-safe, see ``host_files.read_beneath``), never
  memory-mapped (the sandbox could truncate a mapped file and crash the parent with SIGBUS, or change a
  frame after it arrived); the Arrow file's metadata is read first (``ipc_limits.py``): a compressed file is
  refused, its declared rows × columns and the memory its conversion would take are checked against the limit
  before anything is materialised, then the whole table is validated (offsets, UTF-8) before pandas sees it;
- scalars and listings are JSON with strict types and sizes;
- every failure is a :class:`~ci_magic.core.errors.TransferError` with a clear message, never a bare
  exception, a hang or an allocation storm.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd
import pyarrow as pa

from ..core import untrusted_json
from ..core.errors import TransferError
from . import ipc_limits, transfer

#: Bytes per row a column costs once converted, beyond its Arrow buffers (object arrays: a pointer and an
#: object per value; nested values much more).
_ROW_COST_OBJECT = 64
_ROW_COST_NESTED = 256
MAX_COLUMNS = 100_000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
KINDS = frozenset({"frame", "series", "polars", "polars-lazy", "arrow", "scalar"})


def _conversion_cost(schema: pa.Schema, rows: int) -> int:
    """Memory the conversion to pandas may allocate beyond the file's own bytes."""
    cost = 0
    for field in schema:
        t = field.type
        if pa.types.is_null(t) or pa.types.is_boolean(t):
            cost += rows * 8  # becomes an object or bool array whatever the file size
        elif pa.types.is_nested(t):
            cost += rows * _ROW_COST_NESTED
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            cost += rows * 16  # Arrow-backed strings: offsets may be widened
        else:
            try:
                cost += rows * max(1, t.bit_width // 8)
            except ValueError:  # not fixed-width: binary, views (polars' strings and bytes), dictionaries…
                cost += rows * _ROW_COST_OBJECT
    return cost


def read_frame(data: bytes, *, name: str, max_bytes: int, max_cells: int) -> Any:
    """The frame in an Arrow IPC file the sandbox wrote, or TransferError."""
    try:
        found = ipc_limits.declared(data)  # from the metadata alone: nothing decompressed or built yet
        reader = pa.ipc.open_file(pa.py_buffer(data))
        schema = reader.schema
        columns = len(schema)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise TransferError(f"{name!r} came back as an unreadable Arrow file ({_short(exc)}).") from None
    if found.compressed:
        raise TransferError(
            f"{name!r} came back as a compressed Arrow file, which ci_magic never writes; it was not read."
        )
    rows = found.rows
    if columns > MAX_COLUMNS or rows * max(1, columns) > max_cells:
        raise TransferError(
            f"{name!r} is too large to bring back ({rows:,} rows × {columns:,} columns; the limit is "
            f"{max_cells:,} cells). Reduce it in the sandbox first (filter or aggregate)."
        )
    if _conversion_cost(schema, rows) + len(data) > max_bytes:
        raise TransferError(
            f"{name!r} would take more than {max_bytes // 2**20:,} MB in your kernel; reduce it in the "
            "sandbox first (filter, aggregate or select columns)."
        )
    if not untrusted_json.nesting_within((schema.metadata or {}).get(transfer.META_KEY, b"")):
        # Read by json.loads in transfer.py (which runs in the sandbox too): measured here first.
        raise TransferError(f"{name!r} came back with malformed metadata (nested too deep); it was not read.")
    try:
        table = reader.read_all()
        table.validate(full=True)
        return transfer.table_to_frame(table)
    except Exception as exc:  # malformed metadata, offsets, dtypes: all one answer
        raise TransferError(
            f"{name!r} could not be brought back ({type(exc).__name__}: {_short(exc)})."
        ) from None


def read_scalar(doc: Any, *, name: str) -> Any:
    """A scalar from its tagged JSON, with strict types."""
    if not isinstance(doc, dict):
        raise TransferError(f"{name!r} came back malformed.")
    kind, value = doc.get("type"), doc.get("value")
    try:
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
            return value
        if kind == "bigint" and isinstance(value, str) and len(value) <= 4000:
            return int(value)
        if kind == "float" and isinstance(value, float | int | str) and not isinstance(value, bool):
            number = float(value)
            if isinstance(value, str) and not (math.isnan(number) or math.isinf(number)):
                raise ValueError("only non-finite floats travel as text")
            return number
        if kind == "str" and isinstance(value, str) and len(value) <= transfer.MAX_SCALAR_TEXT:
            return value
        if kind == "NoneType" and value is None:
            return None
        if kind == "timestamp" and isinstance(value, str) and len(value) <= 100:
            return pd.Timestamp(value)
    except (ValueError, OverflowError, TypeError) as exc:
        raise TransferError(f"{name!r} came back malformed ({_short(exc)}).") from None
    raise TransferError(f"{name!r} came back as an unexpected value type.")


def read_listing(text: Any, *, limit: int = 10_000) -> dict[str, tuple[str, int]]:
    """{name: (kind, cells)} from the sandbox's answer; entries that are not well-formed are dropped."""
    try:
        doc = untrusted_json.loads(text) if isinstance(text, str) else text
    except ValueError:
        raise TransferError("The sandbox answered a listing of its variables with malformed JSON.") from None
    if not isinstance(doc, dict):
        raise TransferError("The sandbox answered a listing of its variables with something else.")
    found: dict[str, tuple[str, int]] = {}
    for name, entry in list(doc.items())[:limit]:
        if (
            not (isinstance(name, str) and _NAME.match(name))
            or not isinstance(entry, list)
            or len(entry) != 2
        ):
            continue
        kind, cells = entry
        if kind in KINDS and isinstance(cells, int) and not isinstance(cells, bool) and 0 <= cells < 2**62:
            found[name] = (kind, cells)
    return found


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
