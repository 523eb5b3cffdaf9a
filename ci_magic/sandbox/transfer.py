"""Moving values between kernels as Arrow IPC files and JSON: used by the parent *and* exec'd into the child.

The child gets this file's source exec'd into a private module (``_ci_child``) so it does not import the
ci_magic package. Nothing here pickles: frames travel as Arrow IPC, scalars as tagged JSON. Column and index
labels travel positionally with their real labels, the index and the pandas dtypes in our own schema metadata
(``META_KEY``), which is read strictly; pyarrow's own "pandas" metadata is ignored, so a file written by the
sandbox cannot steer the conversion. Columns Arrow rejects (mixed-type objects) are sent as strings and
reported. Polars frames and Arrow tables travel as themselves (``kind`` in the metadata).

What the parent does with files the sandbox wrote (size caps, validation) is in ``receive.py``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import pandas as pd
import pyarrow as pa

META_KEY = b"ci_magic"
SCALARS = (bool, int, float, str, type(None))
#: pandas dtypes restored by name after the Arrow conversion (others come back as Arrow maps them).
EXTENSION_DTYPES = frozenset(
    {
        *(f"{s}Int{b}" for s in ("", "U") for b in (8, 16, 32, 64)),
        "Float32",
        "Float64",
        "boolean",
        "string",
    }
)
MAX_SCALAR_TEXT = 1_000_000


def _encode_label(label: Any) -> Any:
    if isinstance(label, tuple):
        return {"tuple": [_encode_label(x) for x in label]}
    if isinstance(label, bool | int | str) or label is None:
        return label
    if isinstance(label, float):
        return {"float": repr(label)}
    if hasattr(label, "item"):
        return _encode_label(label.item())
    return {"str": str(label)}


def _decode_label(value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict) and depth < 8:
        if isinstance(value.get("tuple"), list):
            return tuple(_decode_label(x, depth + 1) for x in value["tuple"])
        if isinstance(value.get("float"), str):
            return float(value["float"])
        if isinstance(value.get("str"), str):
            return value["str"]
        raise ValueError("malformed label")
    if isinstance(value, bool | int | str) or value is None:
        return value
    raise ValueError("malformed label")


def _as_text(value: Any) -> Any:
    try:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
    except TypeError:
        pass
    return str(value)


def library_of(obj: Any) -> str | None:
    """ "pandas", "polars", "polars-lazy" or "arrow" for the frames we move; None for anything else."""
    if isinstance(obj, pd.DataFrame | pd.Series):
        return "pandas"
    if isinstance(obj, pa.Table):
        return "arrow"
    polars = sys.modules.get("polars")
    if polars is not None:
        if isinstance(obj, polars.DataFrame):
            return "polars"
        if isinstance(obj, polars.LazyFrame):
            return "polars-lazy"
    return None


def _write(table: pa.Table, meta: dict[str, Any], path: str) -> None:
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    tmp = f"{path}.tmp{os.getpid()}"
    with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.chmod(tmp, 0o644)  # the sandbox user may differ from ours (root mode): it must be able to read it
    os.replace(tmp, path)  # readers never see a half-written file


def frame_to_arrow(obj: Any, path: str) -> list[Any]:
    """Write a frame (pandas, polars or Arrow) to an Arrow IPC file; returns labels of columns sent as strings."""
    library = library_of(obj)
    if library in ("polars", "polars-lazy"):
        frame = obj.collect() if library == "polars-lazy" else obj
        _write(frame.to_arrow(), {"kind": library}, path)
        return []
    if library == "arrow":
        _write(obj, {"kind": "arrow"}, path)
        return []
    is_series = isinstance(obj, pd.Series)
    frame = obj.to_frame(name="s0") if is_series else obj
    flat = frame.copy(deep=False)
    flat.columns = [f"c{i}" for i in range(frame.shape[1])]
    ranged = isinstance(frame.index, pd.RangeIndex)
    if not ranged:
        flat.index = flat.index.set_names([f"i{i}" for i in range(flat.index.nlevels)])
    stringified: list[Any] = []
    try:
        table = pa.Table.from_pandas(flat, preserve_index=not ranged)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError):
        for i, name in enumerate(flat.columns):
            try:
                pa.array(flat[name], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError):
                flat[name] = flat[name].map(_as_text).astype(object)
                stringified.append(frame.columns[i])
        table = pa.Table.from_pandas(flat, preserve_index=not ranged)
    index: dict[str, Any]
    if ranged:
        r = frame.index
        index = {"range": [int(r.start), int(r.stop), int(r.step)], "names": [_encode_label(r.name)]}
    else:
        index = {"levels": frame.index.nlevels, "names": [_encode_label(n) for n in frame.index.names]}
    meta = {
        "kind": "series" if is_series else "frame",
        "series_name": _encode_label(obj.name) if is_series else None,
        "labels": [_encode_label(c) for c in frame.columns],
        "columns_name": _encode_label(frame.columns.name),
        "index": index,
        "dtypes": [str(t) for t in frame.dtypes],
        "stringified": [_encode_label(c) for c in stringified],
    }
    _write(table, meta, path)
    return stringified


def read_meta(table: pa.Table) -> dict[str, Any]:
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None or len(raw) > 50_000_000:
        raise ValueError("the file carries no (or oversized) ci_magic metadata")
    meta = json.loads(raw)
    if not isinstance(meta, dict) or meta.get("kind") not in (
        "frame",
        "series",
        "polars",
        "polars-lazy",
        "arrow",
    ):
        raise ValueError("malformed ci_magic metadata")
    return meta


def table_to_frame(table: pa.Table) -> Any:
    """The frame :func:`frame_to_arrow` wrote, from its Arrow table. Raises ValueError on metadata that does
    not describe this table (the caller turns it into a clear error)."""
    meta = read_meta(table)
    kind = meta["kind"]
    plain = table.replace_schema_metadata(None)
    if kind == "arrow":
        return plain
    if kind in ("polars", "polars-lazy"):
        import polars

        frame: Any = polars.from_arrow(plain)
        return frame.lazy() if kind == "polars-lazy" else frame
    labels = [_decode_label(c) for c in meta["labels"]]
    dtypes = meta.get("dtypes") or [None] * len(labels)
    index = meta["index"]
    ranged = "range" in index
    n_index = 0 if ranged else int(index["levels"])
    if plain.num_columns != len(labels) + n_index or len(dtypes) != len(labels):
        raise ValueError("the metadata does not match the table's columns")
    frame = plain.to_pandas()  # columns c0…, then the index columns i0…
    for i, name in enumerate(dtypes):
        if isinstance(name, str) and name in EXTENSION_DTYPES:
            # Nullable integers etc. come back exactly (Arrow → float64 would round large values).
            dtype: Any = pd.api.types.pandas_dtype(name)
            frame[f"c{i}"] = dtype.__from_arrow__(plain.column(i))
    if ranged:
        start, stop, step = (int(x) for x in index["range"])
        idx = pd.RangeIndex(start, stop, step, name=_decode_label(index["names"][0]))
        if len(idx) != plain.num_rows:
            raise ValueError("the index does not match the number of rows")
        frame.index = idx
    else:
        keys = [f"i{j}" for j in range(n_index)]
        frame = frame.set_index(keys)
        frame.index = frame.index.set_names([_decode_label(n) for n in index["names"]])
    frame.columns = pd.Index(labels, name=_decode_label(meta["columns_name"]))
    if meta["kind"] == "series":
        series = frame.iloc[:, 0]
        series.name = _decode_label(meta["series_name"])
        return series
    return frame


def frame_from_arrow(path: str) -> Any:
    """Read what :func:`frame_to_arrow` wrote, memory-mapped (used by the child on the parent's files)."""
    with pa.memory_map(path, "r") as source:
        table = pa.ipc.open_file(source).read_all()
    return table_to_frame(table)


def scalar_to_json(value: Any) -> dict[str, Any] | None:
    """Tagged JSON for a plain scalar, or None when the value is not one."""
    if hasattr(value, "item") and not isinstance(value, pd.Series | pd.DataFrame):
        try:
            value = value.item()
        except (ValueError, TypeError, AttributeError):
            return None
    if isinstance(value, pd.Timestamp):
        return {"type": "timestamp", "value": value.isoformat()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"type": "float", "value": repr(value)}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return {"type": "bigint", "value": str(value)} if len(str(value)) <= 4000 else None
    if isinstance(value, str) and len(value) > MAX_SCALAR_TEXT:
        return None
    if isinstance(value, SCALARS):
        return {"type": type(value).__name__, "value": value}
    return None


# ---- used only inside the child -------------------------------------------------------------------------


def load_frames(spec: dict[str, str], namespace: dict[str, Any]) -> str:
    """Bind each name to the frame in its Arrow file. Returns JSON {name: error} for failures."""
    errors = {}
    for name, path in spec.items():
        try:
            namespace[name] = frame_from_arrow(path)
        except Exception as exc:  # reported to the parent, which decides
            errors[name] = f"{type(exc).__name__}: {exc}"
    return json.dumps(errors)


def kind_of(value: Any) -> str | None:
    library = library_of(value)
    if library == "pandas":
        return "series" if isinstance(value, pd.Series) else "frame"
    if library is not None:
        return library
    if scalar_to_json(value) is not None:
        return "scalar"
    return None


def _cells(value: Any) -> int:
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and shape:
        return int(math.prod(int(n) for n in shape))
    width = getattr(value, "width", None)  # a LazyFrame: columns known, rows not
    return int(width) if isinstance(width, int) else 1


def list_values(namespace: dict[str, Any]) -> str:
    """JSON {name: [kind, cells]} of the public variables that could be brought back."""
    skip = {"In", "Out", "exit", "quit", "get_ipython", "pd", "np", "plt", "pl"}
    found = {}
    for name, value in list(namespace.items()):
        if name.startswith("_") or name in skip or not name.isidentifier():
            continue
        kind = kind_of(value)
        if kind is not None:
            try:
                found[name] = [kind, _cells(value)]
            except Exception:  # a lazy frame whose schema cannot be resolved: not offered
                continue
    return json.dumps(found)


def export_values(names: list[str], namespace: dict[str, Any], directory: str) -> str:
    """Write each named value for the parent: frames to ``out-<name>.arrow``, scalars inline. JSON per name."""
    out: dict[str, Any] = {}
    for name in names:
        if name not in namespace:
            out[name] = {"error": f"the code did not create a variable named {name!r}"}
            continue
        value = namespace[name]
        kind = kind_of(value)
        try:
            if kind is None:
                out[name] = {
                    "error": f"{name!r} is a {type(value).__name__}; only DataFrames, Series, polars frames, "
                    "Arrow tables and plain scalars can be brought back (no pickling)"
                }
            elif kind == "scalar":
                out[name] = {"kind": kind, "json": scalar_to_json(value)}
            else:
                stringified = frame_to_arrow(value, os.path.join(directory, f"out-{name}.arrow"))
                out[name] = {"kind": kind, "stringified": [str(s) for s in stringified]}
        except Exception as exc:
            out[name] = {"error": f"could not export {name!r}: {type(exc).__name__}: {exc}"}
    return json.dumps(out)
