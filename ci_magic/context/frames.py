"""Compact, bounded descriptions of the user's DataFrames: the only data that leaves the machine.

Cost must not grow with rows: frames above :data:`EXACT_ROWS` are described from an evenly spread sample of
:data:`SAMPLE_ROWS` rows, and the text says so. Names and values are ``repr``-quoted and clipped so that text
inside the data (including prompt-injection attempts) reaches the model as quoted data, never as instructions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import ContextError
from ..core.results import CHARS_PER_TOKEN

EXACT_ROWS = 100_000
SAMPLE_ROWS = 2_000
VALUE_CHARS = 40
NAME_CHARS = 80

Frame = pd.DataFrame | pd.Series

#: The privacy setting (``Ask.context_detail``) → the detail levels build_context may use, most detailed first.
#: "stats" keeps ranges, null and distinct counts but never shows an example value; "schema" only names and types.
DETAIL_LEVELS: dict[str, tuple[int, ...]] = {"samples": (2, 1, 0), "stats": (1, 0), "schema": (0,)}


@dataclass(frozen=True)
class Context:
    text: str
    frames: dict[str, Frame]
    tokens: int  # estimated
    detail: int  # 2 = full, 1 = one example per column, 0 = schema only, -1 = columns clipped


def collect_frames(namespace: Mapping[str, Any], names: Sequence[str] | None = None) -> dict[str, Frame]:
    """The DataFrames/Series in ``namespace``: all public ones, or exactly ``names``."""
    if names is None:
        return {
            k: v
            for k, v in namespace.items()
            if not k.startswith("_") and isinstance(v, pd.DataFrame | pd.Series)
        }
    found: dict[str, Frame] = {}
    for name in names:
        if name not in namespace:
            available = ", ".join(sorted(collect_frames(namespace))) or "none"
            raise ContextError(
                f"--frames names {name!r}, but there is no variable of that name in the notebook. "
                f"DataFrames available: {available}."
            )
        value = namespace[name]
        if not isinstance(value, pd.DataFrame | pd.Series):
            raise ContextError(
                f"--frames names {name!r}, which is a {type(value).__name__}, not a pandas DataFrame or "
                "Series. Only frames are described to the model and copied to the sandbox."
            )
        found[name] = value
    return found


def build_context(frames: Mapping[str, Frame], budget_tokens: int = 2000, level: str = "samples") -> Context:
    """Describe ``frames`` within ``budget_tokens``, dropping detail before dropping columns.

    ``level`` ("samples" / "stats" / "schema", see :data:`DETAIL_LEVELS`) caps what may be shown at all."""
    if not frames:
        text = "No DataFrames are loaded. Files in the working directory may be read directly."
        return Context(text, dict(frames), estimate_tokens(text), 2)
    budget_chars = budget_tokens * CHARS_PER_TOKEN
    samples = {name: _sample(obj) for name, obj in frames.items()}
    text = ""
    examples = level == "samples"
    for detail in DETAIL_LEVELS[level]:
        text = "\n\n".join(
            _describe(name, obj, samples[name], detail, examples) for name, obj in frames.items()
        )
        if len(text) <= budget_chars:
            return Context(text, dict(frames), estimate_tokens(text), detail)
    # Still too long at schema level: give each frame an equal share of columns.
    per_frame = max(1, budget_chars // max(1, len(frames)))
    parts = [_clip_lines(_describe(n, o, samples[n], 0), per_frame) for n, o in frames.items()]
    text = "\n\n".join(parts)
    return Context(text, dict(frames), estimate_tokens(text), -1)


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _sample(obj: Frame) -> Frame:
    n = len(obj)
    if n <= EXACT_ROWS:
        return obj
    # Evenly spaced positions: deterministic, cheap (no permutation of n), and covers the whole range.
    positions = np.linspace(0, n - 1, SAMPLE_ROWS).astype(np.int64)
    return obj.take(positions)


def _quote(value: Any, limit: int = VALUE_CHARS) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        text = f"{value:.6g}"  # full float reprs waste tokens and say nothing more about the data
    elif isinstance(value, pd.Timestamp | pd.Timedelta):
        text = repr(str(value).removesuffix(" 00:00:00"))
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(name: str, obj: Frame, sample: Any, detail: int, examples: bool = True) -> str:
    sampled = sample is not obj
    if isinstance(obj, pd.Series):
        rows, head = len(obj), f"{name}: Series, {len(obj):,} rows"
        columns: list[tuple[Any, pd.Series, pd.Series]] = [(obj.name, obj, sample)]
    else:
        rows, head = len(obj), f"{name}: DataFrame, {obj.shape[0]:,} rows × {obj.shape[1]:,} columns"
        columns = [(col, obj.iloc[:, i], sample.iloc[:, i]) for i, col in enumerate(obj.columns)]
    if sampled:
        head += f" (statistics from a {len(sample):,}-row sample)"
    lines = [head]
    if not isinstance(obj.index, pd.RangeIndex):
        lines.append(f"  index: {_quote(obj.index.name, NAME_CHARS)} ({obj.index.dtype})")
    if rows == 0:
        lines.append("  (no rows)")
    for col, full, part in columns:
        lines.append("  " + _describe_column(col, full, part, detail, sampled, examples))
    return "\n".join(lines)


def _describe_column(
    col: Any, full: pd.Series, part: pd.Series, detail: int, sampled: bool, examples: bool = True
) -> str:
    bits = [f"{_quote(col, NAME_CHARS)}: {full.dtype}"]
    if detail >= 1 or not sampled:
        nulls = int(part.isna().sum())
        if nulls:
            share = nulls / max(1, len(part))
            bits.append(f"~{share:.0%} null" if sampled else f"{nulls:,} null")
    if detail == 0:
        return ", ".join(bits)
    values = part.dropna()
    if len(values) == 0:
        return ", ".join(bits)
    dtype = full.dtype
    ordered = (
        pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype)
    ) and not pd.api.types.is_bool_dtype(dtype)
    if ordered and not isinstance(dtype, pd.CategoricalDtype):
        try:
            lo, hi = values.min(), values.max()
            bits.append(f"{'sample ' if sampled else ''}range {_quote(lo)} … {_quote(hi)}")
        except TypeError:
            pass
    elif not pd.api.types.is_bool_dtype(dtype):
        try:
            unique = values.nunique()
            bits.append(f"{'~' if sampled else ''}{unique:,} distinct")
        except TypeError:  # unhashable cells (lists, dicts)
            pass
        if _numbers_as_text(values):
            bits.append("numbers stored as text, not all plain (convert before arithmetic)")
    shown = _examples(values, 3 if detail >= 2 else 1) if examples else []
    if shown:
        bits.append("e.g. " + ", ".join(shown))
    return ", ".join(bits)


_LEADING_NUMBER = re.compile(r"\s*[-+]?[\d.,]*\d")


def _numbers_as_text(values: pd.Series) -> bool:
    """Text cells that mostly begin with a number but do not all parse as one ("1,234", "630[495-801]"):
    the commonest reason analysis code fails on a CSV, worth a word before the model writes ``astype(int)``."""
    head = [v for v in values.iloc[:500] if isinstance(v, str)]
    if len(head) < max(1, len(values.iloc[:500]) // 2):
        return False
    numeric = sum(1 for v in head if _LEADING_NUMBER.match(v))
    if numeric < 0.8 * len(head):
        return False
    plain = pd.to_numeric(pd.Series(head), errors="coerce").notna().sum()
    return bool(plain < len(head))


def _examples(values: pd.Series, k: int) -> list[str]:
    seen: list[str] = []
    # Look only at the first few hundred values: examples must stay cheap on wide frames.
    for value in values.iloc[:500]:
        text = _quote(value)
        if text not in seen:
            seen.append(text)
            if len(seen) == k:
                break
    return seen


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
