"""The column names of a frame of any kind the context describes (pandas, polars DataFrame or LazyFrame, pyarrow
Table), as strings: what the repair hints, the privacy redaction and the file descriptions compare against."""

from __future__ import annotations

from collections.abc import Mapping

from ..core.executor import Frame


def columns(frames: Mapping[str, Frame]) -> dict[str, list[str]]:
    """The column names of every frame that has them (pandas, polars and Arrow alike), as strings."""
    found = {}
    for name, frame in frames.items():
        # An Arrow table's .columns are its arrays; its names are .column_names (pandas and polars: .columns).
        names = getattr(frame, "column_names", None)
        if names is None and callable(
            getattr(frame, "collect_schema", None)
        ):  # a polars LazyFrame: no warning
            names = frame.collect_schema().names()
        if names is None:
            names = getattr(frame, "columns", None)
        if names is not None:
            found[name] = [str(c) for c in list(names)[:5000]]
    return found
