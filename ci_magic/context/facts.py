"""What may be said about a frame, whatever its library: the facts computed once per ask, and the small
helpers every library's describer shares (sampling positions, example values, numbers stored as text).

``frames.py`` renders these facts within the budget; ``frames_polars.py`` and ``frames_arrow.py`` compute them
for their libraries; ``joins.py`` samples with the same positions. None of them imports another's renderer.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pandas as pd

from .text import VALUE_CHARS
from .text import quote as _quote

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

EXACT_ROWS = 100_000
SAMPLE_ROWS = 2_000
EXAMPLE_SCAN = 500  # values looked at for examples and the numbers-as-text check: cheap on wide frames

# A string alias so that neither polars nor pyarrow is imported to define it.
Frame: TypeAlias = "pd.DataFrame | pd.Series | pl.DataFrame | pl.LazyFrame | pa.Table"


@dataclass(frozen=True)
class ColumnFacts:
    """Everything one column line may say, computed once; which parts are shown depends on the detail."""

    label: Any
    dtype: str  # in the library's own spelling
    nulls: int = 0
    rows: int = 0  # rows the counts were taken over (the sample's, when sampled)
    nonnull: bool = False  # a value was looked at; without one, nothing past the null count is said
    value_range: tuple[Any, Any] | None = None
    distinct: int | None = None
    numbers_as_text: bool = False
    examples: tuple[str, ...] = ()  # already quoted, at most 3
    dates_as_text: bool = False


@dataclass(frozen=True)
class FrameFacts:
    head: str  # "sales: pandas DataFrame, 244 rows × 5 columns"
    notes: tuple[str, ...]  # indented lines before the columns: the index, "(no rows)"
    columns: tuple[ColumnFacts, ...]
    sampled: bool = False


def frame_library(obj: object) -> str | None:
    """Which library's frame ``obj`` is ("pandas", "polars", "polars-lazy", "arrow"); None for anything else.

    polars and pyarrow are looked up in ``sys.modules``, never imported: a user who has not imported polars
    cannot hold a polars frame, and importing it just to check would slow every ``%%ask``."""
    if isinstance(obj, pd.DataFrame | pd.Series):
        return "pandas"
    pl = sys.modules.get("polars")
    if pl is not None:
        if isinstance(obj, getattr(pl, "LazyFrame", ())):
            return "polars-lazy"
        if isinstance(obj, getattr(pl, "DataFrame", ())):
            return "polars"
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(obj, getattr(pa, "Table", ())):
        return "arrow"
    return None


def even_positions(n: int, k: int = SAMPLE_ROWS) -> np.ndarray[Any, np.dtype[np.int64]]:
    """``k`` evenly spaced row positions in ``range(n)``: deterministic, cheap (no permutation of n), and
    covering the whole range, so sorted or time-ordered data is sampled from end to end."""
    return np.linspace(0, n - 1, k).astype(np.int64)


def show(value: Any, limit: int = VALUE_CHARS) -> str:
    """A value as quoted data; Python values from polars and Arrow shown as the pandas path shows them."""
    return _quote(_plain(value), limit)


def examples(values: Iterable[Any], k: int) -> tuple[str, ...]:
    """The first ``k`` distinct (as shown) values among the first :data:`EXAMPLE_SCAN` non-null ones."""
    seen: list[str] = []
    for i, value in enumerate(values):
        if len(seen) == k or i == EXAMPLE_SCAN:
            break
        text = show(value)
        if text not in seen:
            seen.append(text)
    return tuple(seen)


_LEADING_NUMBER = re.compile(r"\s*[-+]?[\d.,]*\d")
_CLOCK = re.compile(r"\d:[0-5]\d\b")
#: A date (with an optional time) written as text: '2017-05-15', '15/05/2017', '15-May-2017', 'May 15, 2017'.
_DATE = re.compile(
    r"\s*(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{1,2}[- /][A-Za-z]{3,9}[- /]\d{2,4}"
    r"|[A-Za-z]{3,9} \d{1,2},? \d{4})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\S*)?\s*"
)


def numbers_as_text(first: Sequence[Any]) -> bool:
    """Given the first non-null values of a column: text cells that mostly begin with a number but do not all
    parse as one ("1,234", "630[495-801]"). The commonest reason analysis code fails on a CSV, worth a word
    before the model writes ``astype(int)``."""
    head = [v for v in first[:EXAMPLE_SCAN] if isinstance(v, str)]
    if len(head) < max(1, len(first[:EXAMPLE_SCAN]) // 2) or dates_as_text(head):
        return False
    # A clock time ('09:15:59', '2014.03.23_20:24:00_TAI') begins with digits too, but it is no number: told
    # "convert before arithmetic", the model strips it down to one.
    numeric = sum(1 for v in head if _LEADING_NUMBER.match(v) and not _CLOCK.search(v))
    if numeric < 0.8 * len(head):
        return False
    plain = pd.to_numeric(pd.Series(head), errors="coerce").notna().sum()
    return bool(plain < len(head))


def dates_as_text(first: Sequence[Any]) -> bool:
    """Given the first non-null values of a column: text cells that are mostly dates ('15-May-2017'). Said so
    the model parses them as dates rather than treating them as numbers or plain strings."""
    head = [v for v in first[:EXAMPLE_SCAN] if isinstance(v, str)]
    if len(head) < max(1, len(first[:EXAMPLE_SCAN]) // 2):
        return False
    return sum(1 for v in head if _DATE.fullmatch(v)) >= 0.8 * len(head)


def _plain(value: Any) -> Any:
    """polars and Arrow hand back Python datetimes, dates and Decimals; their reprs
    (``datetime.datetime(2024, 1, 1, 0, 0)``) cost tokens and differ from what pandas frames show."""
    if isinstance(value, dt.datetime | dt.date) and not isinstance(value, pd.Timestamp):
        try:
            return pd.Timestamp(value)
        except (ValueError, OverflowError):  # outside the range pandas can represent
            return str(value)
    if isinstance(value, dt.timedelta) and not isinstance(value, pd.Timedelta):
        return pd.Timedelta(value)
    if isinstance(value, dt.time):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value
