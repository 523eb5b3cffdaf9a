"""Frames in and values out of a kernel on the gateway, as bytes in comm messages (see ``child.py``).

In: a frame is written as an Arrow IPC file by ``transfer.frame_to_arrow`` (the same file the local sandbox
uses), then sent from the page cache in chunks; a commit asks the kernel to bind what it received and to say
what failed. Out: the kernel runs ``_ci_child.export_values`` into a private folder and streams each frame's
file back in chunks; the docs it answers with and the bytes are read by ``receive.py``'s distrustful readers,
within the transfer limit. Nothing is pickled either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from ...core import untrusted_json
from ...core.errors import SandboxError, TransferError
from .. import receive
from ..frames_in import check_name, write_frame
from ..values_out import collect
from . import child
from .kernel import RemoteKernel


def put_frame(kernel: RemoteKernel, name: str, obj: Any, scratch: Path, warnings: list[str]) -> list[str]:
    """Send one frame's Arrow bytes (not yet bound); returns the message ids for :func:`commit`."""
    check_name(name)
    path = scratch / f"{name}.arrow"
    write_frame(name, obj, path, warnings)
    try:
        with pa.memory_map(str(path), "r") as source:  # sent from the page cache, not copied first
            return kernel.put("frame", name, memoryview(source.read_buffer()), child.CHUNK)
    finally:
        path.unlink(missing_ok=True)


def commit(kernel: RemoteKernel, bind: list[str], puts: list[str], warnings: list[str]) -> None:
    """Bind frames the kernel holds; TransferError naming those that failed (file errors are warnings)."""
    replies = kernel.request({"op": "commit", "bind": bind}, timeout=120.0, max_bytes=1 << 20, forget=puts)
    errors = next((d.get("errors") for d, _ in replies if d.get("op") == "committed"), None)
    if not isinstance(errors, dict):
        raise TransferError("The sandbox did not confirm the frames and files it was sent.")
    failed = {str(k)[:200]: str(v)[:300] for k, v in list(errors.items())[:20]}
    frames = {k: v for k, v in failed.items() if k in bind}
    for name, problem in failed.items():
        if name not in frames:
            warnings.append(f"The file {name!r} could not be copied to the sandbox ({problem}).")
    if frames:
        detail = "; ".join(f"{k}: {v}" for k, v in frames.items())[:1000]
        raise TransferError(f"The sandbox could not load the frames it was sent ({detail}).")


def values(kernel: RemoteKernel) -> dict[str, tuple[str, int]]:
    """{name: (kind, cells)} of the frames and scalars the kernel holds."""
    replies = kernel.request({"op": "list"}, timeout=30.0, max_bytes=64 << 20)
    return receive.read_listing(next((d.get("json") for d, _ in replies if d.get("op") == "listing"), None))


def fetch(kernel: RemoteKernel, names: list[str], limit: int, warnings: list[str]) -> dict[str, Any]:
    """Copy values out: frames as Arrow bytes, scalars as JSON, both checked; what fails is a warning."""
    names = [n for n in names if receive.valid_name(n)]
    if not names:
        return {}
    try:
        replies = kernel.request(
            {"op": "export", "names": names, "limit": limit},
            timeout=max(120.0, limit / 20e6),
            max_bytes=len(names) * limit + (64 << 20),
        )
    except SandboxError as exc:
        warnings.append(f"No values could be brought back: {exc}")
        return {}
    chunks: dict[str, list[bytes]] = {}
    done: set[str] = set()
    refused: dict[str, str] = {}
    docs_text: Any = None
    for data, buffers in replies:
        op, name = data.get("op"), data.get("name")
        if op == "exported":
            docs_text = data.get("docs")
        elif isinstance(name, str) and name in names and name not in done:
            if op == "chunk":
                chunks.setdefault(name, []).extend(buffers)
                if data.get("last") is True:
                    done.add(name)
            elif op == "chunk_error":
                refused[name] = str(data.get("message"))[:300]
    try:
        docs = untrusted_json.loads(docs_text) if isinstance(docs_text, str) else None
    except ValueError:
        docs = None

    def frame_bytes(name: str) -> bytes:
        if name in refused or name not in done:
            raise TransferError(f"{name!r} could not be brought back ({refused.get(name, 'incomplete')}).")
        return b"".join(chunks.pop(name))

    return collect(docs, names, frame_bytes, limit, warnings)


__all__ = ["commit", "fetch", "put_frame", "values"]
