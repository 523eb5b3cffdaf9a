"""Compact, bounded descriptions of the user's DataFrames: the only data that leaves the machine.

Cost must not grow with rows: frames above :data:`EXACT_ROWS` are described from an evenly spread sample of
:data:`SAMPLE_ROWS` rows, and the text says so. Names and values are ``repr``-quoted and clipped so that text
inside the data (including prompt-injection attempts) reaches the model as quoted data, never as instructions.

pandas is described here; polars in :mod:`.frames_polars` and Arrow in :mod:`.frames_arrow`, each with the
library's own dtype names so the model writes code for the library the user holds. Every library reduces a
frame to the same :class:`FrameFacts` once, and the budget loop only re-renders them at lower detail.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pandas as pd

from ..core.errors import ContextError
from ..core.results import CHARS_PER_TOKEN, estimate_tokens
from .facts import (
    EXACT_ROWS,
    EXAMPLE_SCAN,
    SAMPLE_ROWS,
    ColumnFacts,
    Frame,
    FrameFacts,
    dates_as_text,
    even_positions,
    examples,
    frame_library,
    numbers_as_text,
    show,
)
from .text import NAME_CHARS
from .text import quote as _quote

__all__ = [
    "EXACT_ROWS",
    "EXAMPLE_SCAN",
    "SAMPLE_ROWS",
    "ColumnFacts",
    "Context",
    "Frame",
    "FrameFacts",
    "build_context",
    "collect_frames",
    "dates_as_text",
    "describe",
    "even_positions",
    "examples",
    "frame_library",
    "numbers_as_text",
    "render_column",
    "render_frame",
    "show",
]

if TYPE_CHECKING:
    import polars as pl

    from .joins import JoinKey

#: The privacy setting (``Ask.context_detail``) → the detail levels build_context may use, most detailed first.
#: "stats" keeps ranges, null and distinct counts but never shows an example value; "schema" only names and types.
DETAIL_LEVELS: dict[str, tuple[int, ...]] = {"samples": (2, 1, 0), "stats": (1, 0), "schema": (0,)}

_PandasFrame = TypeVar("_PandasFrame", pd.DataFrame, pd.Series)

_KINDS = "a pandas DataFrame or Series, a polars DataFrame or LazyFrame, or a pyarrow Table"


@dataclass(frozen=True)
class Context:
    text: str
    frames: dict[str, Frame]
    tokens: int  # estimated
    detail: int  # 2 = full, 1 = one example per column, 0 = schema only, -1 = columns clipped
    joins: tuple[JoinKey, ...] = ()  # the join keys the text names (none when the section did not fit)


def collect_frames(namespace: Mapping[str, Any], names: Sequence[str] | None = None) -> dict[str, Frame]:
    """The frames in ``namespace`` (see :func:`frame_library`): all public ones, or exactly ``names``."""
    if names is None:
        return {k: v for k, v in namespace.items() if not k.startswith("_") and frame_library(v) is not None}
    found: dict[str, Frame] = {}
    for name in names:
        if name not in namespace:
            available = ", ".join(sorted(collect_frames(namespace))) or "none"
            raise ContextError(
                f"--frames names {name!r}, but there is no variable of that name in the notebook. "
                f"DataFrames available: {available}."
            )
        value = namespace[name]
        if frame_library(value) is None:
            hint = " (a polars Series becomes a frame with .to_frame())" if _is_polars_series(value) else ""
            raise ContextError(
                f"--frames names {name!r}, which is a {type(value).__name__}, not {_KINDS}{hint}. "
                "Only frames are described to the model and copied to the sandbox."
            )
        found[name] = value
    return found


def build_context(frames: Mapping[str, Frame], budget_tokens: int = 2000, level: str = "samples") -> Context:
    """Describe ``frames`` within ``budget_tokens``, dropping detail before dropping columns.

    ``level`` ("samples" / "stats" / "schema", see :data:`DETAIL_LEVELS`) caps what may be shown at all. With
    several frames a section of likely join keys follows; it is the first thing dropped when over budget."""
    if not frames:
        text = "No DataFrames are loaded. Files in the working directory may be read directly."
        return Context(text, dict(frames), estimate_tokens(text), 2)
    from .joins import likely_joins, render_joins  # joins imports this module

    budget_chars = budget_tokens * CHARS_PER_TOKEN
    facts = [describe(name, obj, level) for name, obj in frames.items()]
    compare = level != "schema"  # at "schema" no value may be looked at, not even to compare key columns
    keys = tuple(likely_joins(frames, values=compare))
    section = render_joins(keys, overlap=compare)
    examples = level == "samples"
    for detail in DETAIL_LEVELS[level]:
        body = "\n\n".join(render_frame(f, detail, examples) for f in facts)
        # At each detail level the join section goes first: it only hints at what the descriptions state.
        if section and len(body) + 2 + len(section) <= budget_chars:
            text = f"{body}\n\n{section}"
            return Context(text, dict(frames), estimate_tokens(text), detail, keys)
        if len(body) <= budget_chars:
            return Context(body, dict(frames), estimate_tokens(body), detail)
    # Still too long at schema level: give each frame an equal share of columns.
    per_frame = max(1, budget_chars // len(facts))
    text = "\n\n".join(_clip_lines(render_frame(f, 0), per_frame) for f in facts)
    if len(text) > budget_chars:  # so many frames that even their headers do not fit
        text = _clip_frames([f.head for f in facts], budget_chars)
    return Context(text, dict(frames), estimate_tokens(text), -1)


def describe(name: str, obj: Frame, level: str = "samples") -> FrameFacts:
    """What may be said about one frame at privacy ``level``, in the frame's own library."""
    if isinstance(obj, pd.DataFrame | pd.Series):
        return _pandas_facts(name, obj, level)
    library = frame_library(obj)
    if library in ("polars", "polars-lazy"):
        from . import frames_polars  # only reached when the user has imported polars

        return frames_polars.describe(name, cast("pl.DataFrame | pl.LazyFrame", obj), level)
    if library == "arrow":
        from . import frames_arrow

        return frames_arrow.describe(name, obj, level)
    raise ContextError(f"{name!r} is a {type(obj).__name__}, not {_KINDS}.")


def render_frame(facts: FrameFacts, detail: int, examples: bool = True) -> str:
    lines = [facts.head, *facts.notes]
    lines += ["  " + render_column(c, detail, facts.sampled, examples) for c in facts.columns]
    return "\n".join(lines)


def render_column(c: ColumnFacts, detail: int, sampled: bool, examples: bool = True) -> str:
    bits = [f"{_quote(c.label, NAME_CHARS)}: {c.dtype}"]
    if (detail >= 1 or not sampled) and c.nulls:
        bits.append(f"~{c.nulls / max(1, c.rows):.0%} null" if sampled else f"{c.nulls:,} null")
    if detail == 0 or not c.nonnull:
        return ", ".join(bits)
    if c.value_range is not None:
        lo, hi = c.value_range
        bits.append(f"{'sample ' if sampled else ''}range {show(lo)} … {show(hi)}")
    elif c.distinct is not None:
        bits.append(f"{'~' if sampled else ''}{c.distinct:,} distinct")
    if c.numbers_as_text:
        bits.append("numbers stored as text, not all plain (convert before arithmetic)")
    if c.dates_as_text:
        bits.append("dates stored as text (parse as dates before date arithmetic)")
    shown = c.examples[: 3 if detail >= 2 else 1] if examples else ()
    if shown:
        bits.append("e.g. " + ", ".join(shown))
    return ", ".join(bits)


def _is_polars_series(value: object) -> bool:
    pl = sys.modules.get("polars")
    return pl is not None and isinstance(value, getattr(pl, "Series", ()))


def _pandas_facts(name: str, obj: pd.DataFrame | pd.Series, level: str) -> FrameFacts:
    if isinstance(obj, pd.Series):
        part = _sample(obj)
        head, size = f"{name}: pandas Series, {len(obj):,} rows", len(part)
        columns: list[tuple[Any, Any, pd.Series]] = [(obj.name, obj.dtype, part)]
    else:
        rows = _sample(obj)
        head, size = f"{name}: pandas DataFrame, {obj.shape[0]:,} rows × {obj.shape[1]:,} columns", len(rows)
        columns = [(col, obj.dtypes.iloc[i], rows.iloc[:, i]) for i, col in enumerate(obj.columns)]
    sampled = size < len(obj)
    if sampled:
        head += f" (statistics from a {size:,}-row sample)"
    notes = []
    if not isinstance(obj.index, pd.RangeIndex):
        notes.append(f"  index: {_quote(obj.index.name, NAME_CHARS)} ({obj.index.dtype})")
    if len(obj) == 0:
        notes.append("  (no rows)")
    values, k = level != "schema", 3 if level == "samples" else 0
    return FrameFacts(
        head, tuple(notes), tuple(_pandas_column(c, d, p, values, k) for c, d, p in columns), sampled
    )


def _pandas_column(col: Any, dtype: Any, part: pd.Series, values: bool, k: int) -> ColumnFacts:
    nulls = int(part.isna().sum())
    present = part.dropna() if values else part.iloc[:0]
    if len(present) == 0:
        return ColumnFacts(col, str(dtype), nulls, len(part))
    value_range: tuple[Any, Any] | None = None
    distinct: int | None = None
    as_text = dates = False
    ordered = (
        pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype)
    ) and not pd.api.types.is_bool_dtype(dtype)
    if ordered and not isinstance(dtype, pd.CategoricalDtype):
        with contextlib.suppress(TypeError):
            value_range = (present.min(), present.max())
    elif not pd.api.types.is_bool_dtype(dtype):
        with contextlib.suppress(TypeError):  # unhashable cells (lists, dicts)
            distinct = int(present.nunique())
        first = list(present.iloc[:EXAMPLE_SCAN])
        as_text, dates = numbers_as_text(first), dates_as_text(first)
    shown = examples(present.iloc[:EXAMPLE_SCAN], k) if k else ()
    return ColumnFacts(
        col, str(dtype), nulls, len(part), True, value_range, distinct, as_text, shown, dates_as_text=dates
    )


def _sample(obj: _PandasFrame) -> _PandasFrame:
    n = len(obj)
    return obj if n <= EXACT_ROWS else obj.take(even_positions(n))


def _clip_lines(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    lines = text.splitlines()
    reserve = max(60, limit // 4)  # room for the list of column names that did not fit
    kept: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        if used + len(line) + 1 > limit - reserve and i > 0:
            rest = lines[i:]
            names = ", ".join(r.strip().split(":")[0] for r in rest)
            summary = f"  … {len(rest):,} more columns: {names}"
            kept.append(summary if len(summary) <= reserve else summary[: reserve - 1] + "…")
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept)


def _clip_frames(heads: list[str], limit: int) -> str:
    """Header lines only, as many as fit, then the names of the frames left out (clipped to ``limit``)."""
    kept: list[str] = []
    used = 0
    for i, head in enumerate(heads):
        rest = heads[i:]
        names = ", ".join(h.split(":")[0] for h in rest)
        summary = f"… {len(rest):,} more frames (columns not shown): {names}"
        if used + len(head) + 1 + min(len(summary), 80) > limit:
            kept.append(summary)
            break
        kept.append(head)
        used += len(head) + 1
    text = "\n".join(kept)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"
