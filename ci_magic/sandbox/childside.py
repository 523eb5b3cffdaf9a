"""Moving values between kernels as Arrow IPC files and JSON: used by the parent *and* exec'd into the child.

The child gets this file's source exec'd into a private module (``_ci_child``) so it does not import the
ci_magic package. Nothing here pickles: frames travel as Arrow IPC (memory-mapped on read), scalars as
tagged JSON. Column and index labels travel positionally with their real labels in schema metadata, so
duplicate, non-string and tuple labels survive; columns Arrow rejects (mixed-type objects) are sent as strings
and reported.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import pandas as pd
import pyarrow as pa

META_KEY = b"ci_magic"
SCALARS = (bool, int, float, str, type(None))


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


def _decode_label(value: Any) -> Any:
    if isinstance(value, dict):
        if "tuple" in value:
            return tuple(_decode_label(x) for x in value["tuple"])
        if "float" in value:
            return float(value["float"])
        return value["str"]
    return value


def _as_text(value: Any) -> Any:
    try:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
    except TypeError:
        pass
    return str(value)


def frame_to_arrow(obj: Any, path: str) -> list[str]:
    """Write a DataFrame or Series to an Arrow IPC file; returns the labels of columns sent as strings."""
    is_series = isinstance(obj, pd.Series)
    frame = obj.to_frame(name="s0") if is_series else obj
    flat = frame.copy(deep=False)
    flat.columns = [f"c{i}" for i in range(frame.shape[1])]
    flat.index = flat.index.set_names([f"i{i}" for i in range(flat.index.nlevels)])
    stringified: list[Any] = []
    try:
        table = pa.Table.from_pandas(flat, preserve_index=None)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError):
        for i, name in enumerate(flat.columns):
            try:
                pa.array(flat[name], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError):
                flat[name] = flat[name].map(_as_text).astype(object)
                stringified.append(frame.columns[i])
        table = pa.Table.from_pandas(flat, preserve_index=None)
    meta = {
        "series": is_series,
        "series_name": _encode_label(obj.name) if is_series else None,
        "labels": [_encode_label(c) for c in frame.columns],
        "columns_name": _encode_label(frame.columns.name),
        "index_names": [_encode_label(n) for n in frame.index.names],
        "stringified": [_encode_label(c) for c in stringified],
    }
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()}
    )
    tmp = f"{path}.tmp{os.getpid()}"
    with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(tmp, path)  # readers never see a half-written file
    return stringified


def frame_from_arrow(path: str) -> Any:
    """Read what :func:`frame_to_arrow` wrote, memory-mapped."""
    with pa.memory_map(path, "r") as source:
        table = pa.ipc.open_file(source).read_all()
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    frame = table.to_pandas()
    if not meta:
        return frame
    frame.columns = pd.Index(
        [_decode_label(c) for c in meta["labels"]], name=_decode_label(meta["columns_name"])
    )
    frame.index = frame.index.set_names([_decode_label(n) for n in meta["index_names"]])
    if meta["series"]:
        series = frame.iloc[:, 0]
        series.name = _decode_label(meta["series_name"])
        return series
    return frame


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
    if isinstance(value, SCALARS):
        return {"type": type(value).__name__, "value": value}
    return None


def scalar_from_json(doc: dict[str, Any]) -> Any:
    kind, value = doc["type"], doc["value"]
    if kind == "timestamp":
        return pd.Timestamp(value)
    if kind == "float":
        return float(value)
    if kind in ("bool", "int", "str", "NoneType"):
        return value
    raise ValueError(f"unknown scalar type {kind!r}")


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


def process_count() -> str:
    """Processes in this PID namespace (the sandbox's own /proc): leftovers of fork bombs show up here."""
    return json.dumps(sum(name.isdigit() for name in os.listdir("/proc")))


def kind_of(value: Any) -> str | None:
    if isinstance(value, pd.DataFrame):
        return "frame"
    if isinstance(value, pd.Series):
        return "series"
    if scalar_to_json(value) is not None:
        return "scalar"
    return None


def list_values(namespace: dict[str, Any]) -> str:
    """JSON {name: [kind, cells]} of the public variables that could be brought back."""
    skip = {"In", "Out", "exit", "quit", "get_ipython", "pd", "np", "plt"}
    found = {}
    for name, value in list(namespace.items()):
        if name.startswith("_") or name in skip:
            continue
        kind = kind_of(value)
        if kind is not None:
            found[name] = [kind, int(getattr(value, "size", 1))]
    return json.dumps(found)


def export_values(names: list[str], namespace: dict[str, Any], directory: str) -> str:
    """Write each named value for the parent: frames to Arrow files, scalars inline. JSON per name."""
    out: dict[str, Any] = {}
    for name in names:
        if name not in namespace:
            out[name] = {"error": f"the code did not create a variable named {name!r}"}
            continue
        value = namespace[name]
        kind = kind_of(value)
        try:
            if kind in ("frame", "series"):
                path = os.path.join(directory, f"out-{name}.arrow")
                stringified = frame_to_arrow(value, path)
                out[name] = {"kind": kind, "path": path, "stringified": [str(s) for s in stringified]}
            elif kind == "scalar":
                out[name] = {"kind": kind, "json": scalar_to_json(value)}
            else:
                out[name] = {
                    "error": f"{name!r} is a {type(value).__name__}; only DataFrames, Series and plain "
                    "scalars can be brought back (no pickling)"
                }
        except Exception as exc:
            out[name] = {"error": f"could not export {name!r}: {type(exc).__name__}: {exc}"}
    return json.dumps(out)
