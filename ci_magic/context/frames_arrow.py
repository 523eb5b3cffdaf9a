"""pyarrow Tables, described with pyarrow.compute and in Arrow's type names (``int64``, ``timestamp[us]``).

Nothing is converted to pandas: counts and ranges are Arrow kernels over the table (or its evenly spaced sample
above :data:`.frames.EXACT_ROWS` rows), and only the few values shown as examples become Python objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .facts import (
    EXACT_ROWS,
    EXAMPLE_SCAN,
    ColumnFacts,
    FrameFacts,
    dates_as_text,
    even_positions,
    examples,
    numbers_as_text,
)

#: The system prompt names no frame library but pandas: the note rides with the frame that needs it.
ARROW_NOTE = "  (a pyarrow object: use pyarrow.compute on it, or .to_pandas() for pandas methods)"


def describe(name: str, obj: pa.Table, level: str) -> FrameFacts:
    rows = obj.num_rows
    sample = obj.take(even_positions(rows)) if rows > EXACT_ROWS else obj
    sampled = sample is not obj
    head = f"{name}: pyarrow Table, {rows:,} rows × {obj.num_columns:,} columns"
    if sampled:
        head += f" (statistics from a {sample.num_rows:,}-row sample)"
    notes = (ARROW_NOTE, "  (no rows)") if rows == 0 else (ARROW_NOTE,)
    values, k = level != "schema", 3 if level == "samples" else 0
    columns = tuple(
        _column(label, sample.column(i), values, k) for i, label in enumerate(sample.column_names)
    )
    return FrameFacts(head, notes, columns, sampled)


def key_kind(kind: Any) -> str | None:
    """The join-key kind of an Arrow type (see :mod:`.joins`)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "datetime"
    if _is_text(kind):
        return "string"
    return None


def key_values(obj: pa.Table, position: int, kind: str, rows: int) -> np.ndarray[Any, Any]:
    """Up to ``rows`` evenly spaced non-null values of one column, as :mod:`.joins` compares them."""
    col = obj.column(position)
    if len(col) > rows:
        col = col.take(even_positions(len(col), rows))
    col = pc.drop_null(col)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if kind == "integer":
        return np.asarray(col.cast(pa.int64()).to_numpy())
    if kind == "float":
        return np.asarray(col.cast(pa.float64()).to_numpy())
    if kind == "datetime":  # UTC instants in ns, whatever the unit: pandas and polars columns compare equal
        tz = col.type.tz if pa.types.is_timestamp(col.type) else None
        return np.asarray(col.cast(pa.timestamp("ns", tz=tz)).cast(pa.int64()).to_numpy())
    return np.asarray(col.cast(pa.string()).to_pylist(), dtype=object)


def _is_text(kind: Any) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def _column(label: str, col: pa.ChunkedArray, values: bool, k: int) -> ColumnFacts:
    kind = col.type
    nulls = col.null_count  # kept in the array's metadata: free
    rows = len(col)
    if not values or nulls >= rows:
        return ColumnFacts(label, str(kind), nulls, rows)
    value_range: tuple[Any, Any] | None = None
    distinct: int | None = None
    ordered = (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_temporal(kind)
    )
    try:
        if ordered:
            bounds = pc.min_max(col).as_py()
            value_range = (bounds["min"], bounds["max"])
        elif not pa.types.is_boolean(kind):
            distinct = int(pc.count_distinct(col).as_py())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        pass  # nested and extension types lack these kernels; the column is still described
    text = _is_text(kind)
    first = pc.drop_null(col).slice(0, EXAMPLE_SCAN).to_pylist() if (k or text) else []
    as_text = text and numbers_as_text(first)
    shown = examples(first, k) if k else ()
    dates = text and dates_as_text(first)
    return ColumnFacts(
        label, str(kind), nulls, rows, True, value_range, distinct, as_text, shown, dates_as_text=dates
    )
