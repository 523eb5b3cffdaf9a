"""Likely join keys between the described frames: a short hint so the model merges on the right columns.

A pair is a candidate when two columns in different frames have the same name (case-insensitive, ignoring
``_``), or one frame's ``id`` meets another frame's ``<frame>_id``, and their types are compatible (both
integer-like, both text, both datetime). Unless only the schema may be used, the pair must also share values.

Values are compared through bounded samples: at most :data:`POOL_ROWS` evenly spaced rows per column, of which
the :data:`KEY_VALUES` distinct values with the smallest hashes are kept. Choosing by hash rather than by
position coordinates the two samples: a value kept on one side is kept on the other whenever it is there, so a
10,000-id dimension table and a fact table referencing it still overlap in their samples (two position-based
samples of 1,000 would share about a tenth of their values and the pair would be missed). Only an overlap
fraction ever leaves this module, never a value.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from .facts import even_positions, frame_library
from .text import NAME_CHARS, quote

if TYPE_CHECKING:
    import polars as pl

    from .facts import Frame

MAX_FRAMES = 20
MAX_COLUMNS = 200  # per frame
MAX_KEYS = 5
MAX_COMPARED = 40  # candidate pairs whose values are compared: bounds the cost when many names repeat
POOL_ROWS = 100_000  # rows read per column: dimension tables up to this size are compared exactly
POOL_BUDGET = 500_000  # values read over all columns, ~0.2 s of hashing even for text keys
KEY_VALUES = 1_000
MIN_OVERLAP = 0.2

_Sketch = tuple[np.ndarray[Any, np.dtype[np.uint64]], bool]  # smallest distinct hashes (sorted), complete?


@dataclass(frozen=True)
class JoinKey:
    left: str  # frame (variable) name
    left_column: Any  # column label (a Series: its name)
    right: str
    right_column: Any
    kind: str  # "integer" | "string" | "datetime"
    overlap: float | None  # share of the smaller sampled distinct set found in both; None: not compared
    left_ref: str  # how code names the column: "orders['customer_id']", or "s" for a Series
    right_ref: str


@dataclass(frozen=True)
class _Column:
    frame: str
    position: int
    label: Any
    kind: str  # "integer" | "float" | "string" | "datetime"
    ref: str

    @property
    def norm(self) -> str:
        return _norm(self.label)


def likely_joins(frames: Mapping[str, Frame], values: bool = True) -> list[JoinKey]:
    """At most :data:`MAX_KEYS` likely join keys among ``frames``, best first.

    ``values=False`` (privacy level "schema") decides on names and types alone and reads no value."""
    considered = dict(itertools.islice(frames.items(), MAX_FRAMES))
    if len(considered) < 2:
        return []
    columns = {name: _columns(name, obj) for name, obj in considered.items()}
    sketches = _Sketches(considered)
    found: list[tuple[tuple[int, int, int], JoinKey]] = []
    compared = 0
    # The strongest kind of name match first, so that it gets the value budget if that runs short.
    candidates = sorted(_candidates(columns, considered), key=lambda pair: pair[2])
    for order, (a, b, rank) in enumerate(candidates):
        integral = "float" in (a.kind, b.kind)  # float ids (ints with NaN) qualify only if their values do
        lazy = "polars-lazy" in (frame_library(considered[a.frame]), frame_library(considered[b.frame]))
        overlap: float | None = None
        if values and not lazy:
            if compared == MAX_COMPARED:
                continue
            compared += 1
            sa, sb = sketches.get(a), sketches.get(b)
            if sa is None or sb is None:
                continue
            overlap = _overlap(sa, sb)
            if overlap < MIN_OVERLAP:
                continue
        elif integral:
            continue
        kind = "integer" if integral else a.kind
        key = JoinKey(a.frame, a.label, b.frame, b.label, kind, overlap, a.ref, b.ref)
        # Overlap in 5% steps first, so that sampling noise does not outrank the kind of name match.
        found.append(((-round((overlap or 0.0) * 20), rank, order), key))
    found.sort(key=lambda item: item[0])
    return [key for _, key in found[:MAX_KEYS]]


def render_joins(keys: tuple[JoinKey, ...] | list[JoinKey], overlap: bool = True) -> str:
    """The section build_context appends; empty without keys. Names the columns, never shows values."""
    if not keys:
        return ""
    if overlap:
        title = (
            "Likely join keys (matching column names and types across frames; overlap = share of the smaller "
            "column's sampled distinct values also found in the other):"
        )
    else:
        title = "Possible join keys (matching column names and types across frames; values not compared):"
    lines = [title]
    for k in keys:
        share = "values not compared" if k.overlap is None else f"{k.overlap:.0%} overlap"
        lines.append(f"  {k.left_ref} ↔ {k.right_ref}: {k.kind}" + (f", {share}" if overlap else ""))
    return "\n".join(lines)


def _norm(label: Any) -> str:
    return str(label).strip().lower().replace("_", "")


def _id_names(frame: str) -> set[str]:
    """The normalised names another frame would give a reference to ``frame``'s ``id``."""
    base = _norm(frame)
    names = {base + "id"}
    if base.endswith("ies"):
        names.add(base[:-3] + "yid")
    elif base.endswith("s"):
        names.add(base[:-1] + "id")
    return names


def _candidates(
    columns: dict[str, list[_Column]], frames: Mapping[str, Frame]
) -> list[tuple[_Column, _Column, int]]:
    """(a, b, rank) with compatible kinds; rank 0: ``customer_id`` ↔ ``customers.id``, 1: same name,
    2: ``id`` ↔ ``id`` (two frames' own row ids usually overlap without being related)."""
    pairs: list[tuple[_Column, _Column, int]] = []
    names = list(columns)
    for i, left in enumerate(names):
        for right in names[i + 1 :]:
            if frames[left] is frames[right]:  # one frame under two names: every column would match itself
                continue
            by_name: dict[str, list[_Column]] = {}
            for col in columns[right]:
                by_name.setdefault(col.norm, []).append(col)
            for a in columns[left]:
                for b in by_name.get(a.norm, []):
                    pairs.append((a, b, 2 if a.norm == "id" else 1))
            for owner, other in ((left, right), (right, left)):
                ids = [c for c in columns[owner] if c.norm == "id"]
                refs = _id_names(owner)
                pairs += [(c, ids[0], 0) for c in columns[other] if ids and c.norm in refs]
    return [(a, b, rank) for a, b, rank in pairs if _compatible(a.kind, b.kind)]


def _compatible(a: str, b: str) -> bool:
    numeric = {"integer", "float"}
    return a == b or (a in numeric and b in numeric)


def _columns(name: str, obj: Frame) -> list[_Column]:
    library = frame_library(obj)
    listed: list[tuple[Any, str | None]] = []
    series = isinstance(obj, pd.Series)
    if isinstance(obj, pd.Series):
        listed = [(obj.name, _pandas_kind(obj.dtype))] if obj.name is not None else []
    elif isinstance(obj, pd.DataFrame):
        listed = [
            (c, _pandas_kind(d))
            for c, d in zip(obj.columns[:MAX_COLUMNS], obj.dtypes.iloc[:MAX_COLUMNS], strict=True)
        ]
    elif library in ("polars", "polars-lazy"):
        from . import frames_polars

        try:
            schema = frames_polars.schema(cast("pl.DataFrame | pl.LazyFrame", obj))
        except Exception:  # the plan cannot resolve its schema; it is described as such, with no columns
            return []
        listed = [(c, frames_polars.key_kind(d)) for c, d in itertools.islice(schema.items(), MAX_COLUMNS)]
    elif library == "arrow":
        from . import frames_arrow

        schema = obj.schema
        listed = [(f.name, frames_arrow.key_kind(f.type)) for f in itertools.islice(schema, MAX_COLUMNS)]
    return [
        _Column(name, i, label, kind, name if series else f"{name}[{quote(label, NAME_CHARS)}]")
        for i, (label, kind) in enumerate(listed)
        if kind is not None and _norm(label)
    ]


def _pandas_kind(dtype: Any) -> str | None:
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return None
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype):  # includes object columns, whose non-text values are skipped
        return "string"
    return None


def _values(col: _Column, obj: Frame) -> np.ndarray[Any, Any]:
    library = frame_library(obj)
    if library == "polars":
        from . import frames_polars

        return frames_polars.key_values(obj, col.position, col.kind, POOL_ROWS)  # type: ignore[arg-type]
    if library == "arrow":
        from . import frames_arrow

        return frames_arrow.key_values(obj, col.position, col.kind, POOL_ROWS)
    s = obj if isinstance(obj, pd.Series) else obj.iloc[:, col.position]  # type: ignore[union-attr]
    if len(s) > POOL_ROWS:
        s = s.iloc[even_positions(len(s), POOL_ROWS)]
    s = s.dropna()
    if col.kind == "integer":
        return s.to_numpy(dtype=np.int64)
    if col.kind == "float":
        return s.to_numpy(dtype=np.float64)
    if col.kind == "datetime":  # UTC instants in ns, like the polars and Arrow columns
        return np.asarray(pd.DatetimeIndex(s).as_unit("ns").asi8)
    if pd.api.types.is_object_dtype(s.dtype):  # mixed cells: only the text ones can match text keys
        return np.asarray([v for v in s if isinstance(v, str)], dtype=object)
    return s.astype(str).to_numpy(dtype=object)


class _Sketches:
    """Column sketches, each computed once, within :data:`POOL_BUDGET` values read in all."""

    def __init__(self, frames: Mapping[str, Frame]) -> None:
        self.frames = frames
        self.cache: dict[tuple[str, int], _Sketch | None] = {}
        self.left = POOL_BUDGET

    def get(self, col: _Column) -> _Sketch | None:
        """The column's smallest :data:`KEY_VALUES` distinct value hashes; None when it cannot be a key or
        the budget is spent."""
        where = (col.frame, col.position)
        if where in self.cache:
            return self.cache[where]
        obj = self.frames[col.frame]
        rows = min(POOL_ROWS, _height(obj))
        if rows > self.left:
            return None  # not cached: a smaller column may still fit
        self.left -= rows
        self.cache[where] = _sketch(col, obj)
        return self.cache[where]


def _height(obj: Frame) -> int:
    if isinstance(obj, pd.DataFrame | pd.Series):
        return len(obj)
    height = getattr(obj, "height", None)  # polars; Arrow says num_rows
    return int(height) if height is not None else int(getattr(obj, "num_rows", 0))


def _sketch(col: _Column, obj: Frame) -> _Sketch | None:
    try:
        values = _values(col, obj)
        if col.kind == "float":  # integer-like only if every sampled value is a whole, exact number
            if not (np.all(np.isfinite(values)) and np.all(values == np.round(values))):
                return None
            if values.size and np.abs(values).max() > 2**53:
                return None
            values = values.astype(np.int64)
        # pandas' hash is deterministic across processes (unlike hash() on str), so the description, and the
        # reply cache keyed on it, is the same on every run. Hashing before de-duplicating is the cheap order.
        hashes = np.unique(pd.util.hash_array(values, categorize=False))
    except Exception:  # a column that cannot be read as keys is not a key; describing must not fail
        return None
    return hashes[:KEY_VALUES], hashes.size <= KEY_VALUES


def _overlap(a: _Sketch, b: _Sketch) -> float:
    """|A ∩ B| / min(|A|, |B|), estimated from the two bottom-k hash sketches.

    Below the smaller of the incomplete sketches' largest hashes, each sketch holds every distinct value its
    column sample has, so comparing there is exact for that slice of hash space and unbiased for the rest."""
    ha, hb = a[0], b[0]
    if not ha.size or not hb.size:
        return 0.0
    limits = [h[-1] for h, complete in (a, b) if not complete]
    if limits:
        tau = min(limits)
        ha, hb = ha[ha <= tau], hb[hb <= tau]
    smaller = min(ha.size, hb.size)
    if smaller == 0:
        return 0.0
    return float(np.intersect1d(ha, hb, assume_unique=True).size / smaller)
