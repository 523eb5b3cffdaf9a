"""polars DataFrames and LazyFrames, described with polars itself and in polars' dtype names.

Imported only once the user has imported polars (see :func:`.frames.frame_library`). Statistics come from
polars on the frame (or its evenly spaced sample); nothing is converted to pandas, which for a large frame
would cost more than the whole description. A LazyFrame is never collected: its plan may scan gigabytes or
fail, so only its schema is read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

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

POLARS_NOTE = "  (a polars object: use polars methods on it, not pandas ones)"
LAZY_HINT = "use polars lazy API (.filter/.group_by/... then .collect())"


def describe(name: str, obj: pl.DataFrame | pl.LazyFrame, level: str) -> FrameFacts:
    if isinstance(obj, pl.LazyFrame):
        return _describe_lazy(name, obj)
    rows = obj.height
    sample = obj.gather(even_positions(rows)) if rows > EXACT_ROWS else obj
    sampled = sample is not obj
    head = f"{name}: polars DataFrame, {rows:,} rows × {obj.width:,} columns"
    if sampled:
        head += f" (statistics from a {sample.height:,}-row sample)"
    # Said here, not in the system prompt: a small model told of polars in every ask writes polars for pandas.
    notes = (POLARS_NOTE, "  (no rows)") if rows == 0 else (POLARS_NOTE,)
    nulls = sample.null_count().row(0) if sample.width else ()  # one pass for all columns
    values, k = level != "schema", 3 if level == "samples" else 0
    columns = tuple(_column(sample.to_series(i), nulls[i], values, k) for i in range(sample.width))
    return FrameFacts(head, notes, columns, sampled)


def lazy_schema(obj: pl.LazyFrame) -> pl.Schema:
    """The schema without running the plan (``collect_schema`` since polars 1.0; ``.schema`` before)."""
    if hasattr(obj, "collect_schema"):
        return obj.collect_schema()
    return obj.schema


def schema(obj: pl.DataFrame | pl.LazyFrame) -> pl.Schema:
    return lazy_schema(obj) if isinstance(obj, pl.LazyFrame) else obj.schema


def key_kind(dtype: Any) -> str | None:
    """The join-key kind of a polars dtype (see :mod:`.joins`)."""
    if dtype.is_integer():
        return "integer"
    if dtype.is_float():
        return "float"
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
        return "string"
    return None


def key_values(obj: pl.DataFrame, position: int, kind: str, rows: int) -> np.ndarray[Any, Any]:
    """Up to ``rows`` evenly spaced non-null values of one column, as :mod:`.joins` compares them."""
    s = obj.to_series(position)
    if s.len() > rows:
        s = s.gather(even_positions(s.len(), rows))
    s = s.drop_nulls()
    if kind == "integer":
        return s.cast(pl.Int64).to_numpy()
    if kind == "float":
        return s.cast(pl.Float64).to_numpy()
    if kind == "datetime":  # UTC instants in ns, whatever the unit: pandas and Arrow columns compare equal
        return s.dt.epoch("ns").to_numpy()
    return np.asarray(s.cast(pl.String).to_list(), dtype=object)


def _describe_lazy(name: str, obj: pl.LazyFrame) -> FrameFacts:
    try:
        schema = lazy_schema(obj)
    except Exception as exc:  # e.g. a scan of a file that is gone: say so rather than fail the question
        head = f"{name}: polars LazyFrame (not collected; its schema could not be resolved: {type(exc).__name__})"
        return FrameFacts(head, (), ())
    head = f"{name}: polars LazyFrame (not collected), {len(schema):,} columns — {LAZY_HINT}"
    return FrameFacts(head, (), tuple(ColumnFacts(col, str(dtype)) for col, dtype in schema.items()))


def _column(s: pl.Series, nulls: int, values: bool, k: int) -> ColumnFacts:
    dtype = s.dtype
    if not values or nulls >= s.len():
        return ColumnFacts(s.name, str(dtype), nulls, s.len())
    present = s.drop_nulls()
    value_range: tuple[Any, Any] | None = None
    distinct: int | None = None
    try:
        if dtype.is_numeric() or dtype.is_temporal():
            value_range = (present.min(), present.max())
        elif dtype != pl.Boolean:
            distinct = present.n_unique()
    except Exception:  # Object and some nested dtypes have no min or n_unique; the column is still described
        pass
    first = present.head(EXAMPLE_SCAN).to_list() if (k or dtype == pl.String) else []
    as_text = dtype == pl.String and numbers_as_text(first)
    shown = examples(first, k) if k else ()
    dates = dtype == pl.String and dates_as_text(first)
    return ColumnFacts(
        s.name, str(dtype), nulls, s.len(), True, value_range, distinct, as_text, shown, dates_as_text=dates
    )
