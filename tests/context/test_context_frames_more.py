"""Frames beyond pandas (polars, Arrow) and join keys between frames, as the model sees them."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ci_magic.context import joins
from ci_magic.context.frames import SAMPLE_ROWS, build_context, collect_frames
from ci_magic.context.joins import likely_joins
from ci_magic.core.errors import ContextError

pl = pytest.importorskip("polars")

ROOT = Path(__file__).resolve().parents[2]
MARKER = "ZZ-MARKER-7731"


def _exploding_lazy(calls: list[int]) -> Any:
    """A LazyFrame whose collection raises (and records that it ran); its schema is known without running."""

    def boom(s: Any) -> Any:
        calls.append(1)
        raise RuntimeError("collected")

    base = pl.LazyFrame({"user_id": [1, 2], "kind": ["a", "b"]})
    return base.with_columns(pl.col("user_id").map_batches(boom, return_dtype=pl.Int64))


# -- collecting -----------------------------------------------------------------------------------------------


def test_collects_polars_arrow_and_pandas_frames() -> None:
    ns = {
        "pdf": pd.DataFrame({"a": [1]}),
        "s": pd.Series([1.0]),
        "pldf": pl.DataFrame({"a": [1]}),
        "lazy": pl.LazyFrame({"a": [1]}),
        "tbl": pa.table({"a": [1]}),
        "pls": pl.Series("a", [1]),
        "n": 3,
        "_hidden": pl.DataFrame(),
    }
    assert set(collect_frames(ns)) == {"pdf", "s", "pldf", "lazy", "tbl"}
    assert list(collect_frames(ns, ["tbl", "lazy"])) == ["tbl", "lazy"]


def test_non_frames_are_refused_clearly() -> None:
    ns = {"n": 3, "pls": pl.Series("a", [1]), "t": pa.table({"a": [1]})}
    with pytest.raises(
        ContextError, match=r"'n', which is a int, not a pandas DataFrame or Series, a polars"
    ):
        collect_frames(ns, ["n"])
    with pytest.raises(ContextError, match=r"Series.*\.to_frame\(\)"):
        collect_frames(ns, ["pls"])
    with pytest.raises(ContextError, match="DataFrames available: t"):
        collect_frames(ns, ["missing"])


def test_polars_not_imported_when_the_user_has_not() -> None:
    script = textwrap.dedent(
        """
        import sys
        import pandas as pd
        from ci_magic.context.frames import build_context, collect_frames
        ns = {"a": pd.DataFrame({"id": [1, 2]}), "b": pd.DataFrame({"id": [2, 3]}), "x": 1}
        text = build_context(collect_frames(ns)).text
        assert "Likely join keys" in text, text
        collect_frames(ns, ["a"])
        assert "polars" not in sys.modules, "polars was imported"
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


# -- polars ---------------------------------------------------------------------------------------------------


def test_polars_frame_in_polars_terms() -> None:
    df = pl.DataFrame(
        {
            "units": [None, 5, 29, 1],
            "region": ["east", "west", "east", None],
            "when": [dt.datetime(2024, 1, 1), dt.datetime(2024, 3, 1), None, None],
            "ok": [True, False, True, True],
        }
    )
    text = build_context({"sales": df}).text
    assert text.startswith("sales: polars DataFrame, 4 rows × 4 columns")
    assert "'units': Int64, 1 null, range 1 … 29, e.g. 5, 29, 1" in text
    assert "'region': String, 1 null, 2 distinct, e.g. 'east', 'west'" in text
    assert "'when': Datetime(time_unit='us'" in text and "range '2024-01-01' … '2024-03-01'" in text
    assert "'ok': Boolean, e.g. True, False" in text
    assert "e.g." not in build_context({"sales": df}, level="stats").text


def test_large_polars_frame_sampled_with_polars_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pandas(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("converted to pandas")

    monkeypatch.setattr(pl.DataFrame, "to_pandas", no_pandas)
    big = pl.DataFrame({"a": np.arange(300_000), "b": np.tile(["1,234", "12"], 150_000)})
    text = build_context({"big": big}).text
    assert (
        f"big: polars DataFrame, 300,000 rows × 2 columns (statistics from a {SAMPLE_ROWS:,}-row sample)"
        in text
    )
    assert "'a': Int64, sample range 0 … 299999" in text
    assert "~2 distinct" in text and "numbers stored as text" in text


def test_lazyframe_is_never_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_collect(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("collected")

    calls: list[int] = []
    events = _exploding_lazy(calls)
    monkeypatch.setattr(pl.LazyFrame, "collect", no_collect)
    other = pl.DataFrame({"user_id": [1, 2, 3]})
    for level in ("samples", "stats", "schema"):
        ctx = build_context({"events": events, "users": other}, level=level)
        assert "events: polars LazyFrame (not collected), 2 columns — use polars lazy API" in ctx.text
        assert "'user_id': Int64\n  'kind': String" in ctx.text
        assert "rows" not in ctx.text.split("\n\n")[0]  # no row count: that would need a collect
        assert "events['user_id'] ↔ users['user_id']: integer" in ctx.text
    assert calls == []


def test_lazy_scans_of_missing_files(tmp_path: Path) -> None:
    missing = tmp_path / "gone.parquet"
    declared = pl.scan_parquet(missing, schema={"a": pl.Int64, "b": pl.String})
    text = build_context({"declared": declared}).text
    assert "declared: polars LazyFrame (not collected), 2 columns" in text and "'b': String" in text
    unknown = pl.scan_parquet(missing)
    text = build_context({"unknown": unknown, "declared": declared}).text
    assert (
        "unknown: polars LazyFrame (not collected; its schema could not be resolved: FileNotFoundError)"
        in text
    )


# -- Arrow ----------------------------------------------------------------------------------------------------


def test_arrow_table_in_arrow_terms() -> None:
    t = pa.table(
        {
            "n": pa.array([3, None, 7], pa.int64()),
            "s": pa.array(["a", "b", "a"], pa.string()),
            "ts": pa.array([dt.datetime(2024, 1, 2), None, dt.datetime(2024, 5, 6)], pa.timestamp("us")),
        }
    )
    text = build_context({"t": t}).text
    assert text.startswith("t: pyarrow Table, 3 rows × 3 columns")
    assert "'n': int64, 1 null, range 3 … 7, e.g. 3, 7" in text
    assert "'s': string, 2 distinct, e.g. 'a', 'b'" in text
    assert "'ts': timestamp[us], 1 null, range '2024-01-02' … '2024-05-06'" in text


def test_large_arrow_table_is_sampled() -> None:
    t = pa.table({"a": np.arange(250_000)})
    text = build_context({"t": t}).text
    assert f"(statistics from a {SAMPLE_ROWS:,}-row sample)" in text and "sample range 0 … 249999" in text


def test_mixed_namespace() -> None:
    ns = {
        "p": pd.DataFrame({"k": [1, 2]}),
        "q": pl.DataFrame({"k": [2, 3]}),
        "r": pa.table({"k": [3, 4]}),
        "z": pl.LazyFrame({"k": [1]}),
    }
    text = build_context(collect_frames(ns)).text
    for head in (
        "p: pandas DataFrame, 2 rows",
        "q: polars DataFrame, 2 rows",
        "r: pyarrow Table, 2 rows",
        "z: polars LazyFrame",
    ):
        assert head in text


# -- join keys ------------------------------------------------------------------------------------------------


def test_join_keys_across_libraries() -> None:
    rng = np.random.default_rng(0)
    customers = pl.DataFrame({"id": np.arange(1, 20_001), "Region": ["n", "s"] * 10_000})
    orders = pd.DataFrame({"customer_id": rng.integers(1, 20_001, 300_000), "region": ["n"] * 300_000})
    keys = likely_joins({"orders": orders, "customers": customers})
    assert [(k.left_ref, k.right_ref, k.kind) for k in keys[:2]] == [
        ("orders['customer_id']", "customers['id']", "integer"),
        ("orders['region']", "customers['Region']", "string"),
    ]
    # A 20,000-id dimension and a 300,000-row fact table: coordinated (hash-chosen) samples still overlap.
    assert keys[0].overlap is not None and keys[0].overlap > 0.8
    ctx = build_context({"orders": orders, "customers": customers})
    assert "orders['customer_id'] ↔ customers['id']: integer, 100% overlap" in ctx.text
    assert ctx.joins == tuple(keys)


def test_no_key_for_disjoint_values_or_incompatible_types() -> None:
    a = pd.DataFrame({"code": [1, 2, 3], "name": ["x", "y", "z"], "when": pd.to_datetime(["2024-01-01"] * 3)})
    b = pl.DataFrame({"code": [10, 20, 30], "name": [1, 2, 3], "when": ["2024-01-01"] * 3})
    assert likely_joins({"a": a, "b": b}) == []  # 'code' shares no value; the others differ in type
    assert "join keys" not in build_context({"a": a, "b": b}).text
    # On names and types alone (privacy level "schema") only the type check can rule a pair out.
    assert [k.left_column for k in likely_joins({"a": a, "b": b}, values=False)] == ["code"]
    assert "a['code'] ↔ b['code']: integer" in build_context({"a": a, "b": b}, level="schema").text


def test_overlap_threshold_and_float_ids() -> None:
    ids = pd.DataFrame({"user_id": [1.0, 2.0, np.nan, 4.0]})  # ints with a missing value: float64 in pandas
    users = pa.table({"user_id": pa.array(range(1, 21), pa.int32())})
    keys = likely_joins({"ids": ids, "users": users})
    assert [(k.kind, k.overlap) for k in keys] == [("integer", 1.0)]
    prices = pd.DataFrame({"user_id": [1.5, 2.0]})  # not integer-like
    assert likely_joins({"prices": prices, "users": users}) == []
    few = pd.DataFrame({"user_id": list(range(1, 5)) + list(range(100, 116))})  # 4 of 20 shared: exactly 0.2
    assert [k.overlap for k in likely_joins({"few": few, "users": users})] == [0.2]
    fewer = pd.DataFrame({"user_id": list(range(1, 4)) + list(range(100, 117))})
    assert likely_joins({"fewer": fewer, "users": users}) == []


def test_id_and_frame_id_naming_and_datetimes() -> None:
    categories = pd.DataFrame({"id": [1, 2, 3]})
    items = pl.DataFrame({"category_id": [1, 1, 3], "day": [dt.date(2024, 1, 1)] * 3})
    days = pd.DataFrame({"DAY": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    keys = likely_joins({"categories": categories, "items": items, "days": days})
    refs = {(k.left_ref, k.right_ref, k.kind) for k in keys}
    assert ("items['category_id']", "categories['id']", "integer") in refs
    assert ("items['day']", "days['DAY']", "datetime") in refs


def test_join_keys_bounded() -> None:
    frames = {f"f{i}": pd.DataFrame({f"c{j}": [1, 2, 3] for j in range(10)}) for i in range(30)}
    keys = likely_joins(frames)
    assert len(keys) == 5
    assert {k.left for k in keys} | {k.right for k in keys} <= {f"f{i}" for i in range(20)}
    same = pd.DataFrame({"k": [1, 2]})
    assert likely_joins({"a": same, "b": same}) == []  # one frame under two names


def test_series_is_named_as_itself() -> None:
    s = pd.Series([1, 2, 3], name="store_id")
    stores = pl.DataFrame({"store_id": [1, 2, 3]})
    assert [(k.left_ref, k.right_ref) for k in likely_joins({"s": s, "stores": stores})] == [
        ("s", "stores['store_id']")
    ]


# -- privacy and budget ---------------------------------------------------------------------------------------


def test_marker_value_never_shown_below_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    a = pd.DataFrame({"token": [MARKER, "b", "c"]})
    b = pl.DataFrame({"token": [MARKER, "b", "d"]})
    c = pa.table({"token": [MARKER, "e", "b"]})
    frames = {"a": a, "b": b, "c": c}
    assert MARKER in build_context(frames, level="samples").text
    stats = build_context(frames, level="stats").text
    assert MARKER not in stats and "a['token'] ↔ b['token']: string, 67% overlap" in stats

    def no_values(*args: Any) -> Any:
        raise AssertionError("values read at schema level")

    monkeypatch.setattr(joins, "_values", no_values)
    schema = build_context(frames, level="schema")
    assert MARKER not in schema.text and "overlap" not in schema.text and "distinct" not in schema.text
    assert "Possible join keys" in schema.text and "a['token'] ↔ b['token']: string" in schema.text
    assert all(k.overlap is None for k in schema.joins)


def test_join_section_dropped_first() -> None:
    frames = {"a": pd.DataFrame({"k": [1, 2], "v": ["x", "y"]}), "b": pl.DataFrame({"k": [1, 2]})}
    full = build_context(frames, budget_tokens=10_000)
    assert full.detail == 2 and full.joins and "Likely join keys" in full.text
    body = full.text.split("\n\nLikely join keys")[0]
    tight = build_context(frames, budget_tokens=len(body) // 4 + 1)
    assert tight.detail == 2 and tight.joins == () and "join keys" not in tight.text
    assert tight.text == body


@pytest.mark.parametrize("count", [30, 400])
def test_budget_respected_with_many_frames(count: int) -> None:
    libs = [
        lambda i: pd.DataFrame({"id": [i], f"name_{i}": ["x" * 50]}),
        lambda i: pl.DataFrame({"id": [i], f"value_{i}": [1.5]}),
        lambda i: pa.table({"id": [i], f"when_{i}": [dt.datetime(2024, 1, 1)]}),
    ]
    frames = {f"frame_{i}": libs[i % 3](i) for i in range(count)}
    for budget in (100, 300, 1000):
        ctx = build_context(frames, budget_tokens=budget)
        assert ctx.tokens <= budget, (budget, ctx.tokens)
        assert ctx.text.startswith("frame_0: pandas DataFrame")


def test_clock_times_are_not_called_numbers_stored_as_text() -> None:
    df = pd.DataFrame(
        {
            "cases": ["630308[495000-801000]", "0", "1,234"],
            "time": ["09:15:59", "09:16:59", "10:01:00"],
            "stamp": ["2014.03.23_20:24:00_TAI", "2014.03.23_20:36:00_TAI", "2014.03.23_21:00:00_TAI"],
        }
    )
    lines = {line.split(":")[0].strip(): line for line in build_context({"df": df}).text.splitlines()}
    assert "numbers stored as text" in lines["'cases'"]
    assert "numbers stored as text" not in lines["'time'"] and "numbers" not in lines["'stamp'"]
