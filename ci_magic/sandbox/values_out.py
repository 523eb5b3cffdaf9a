"""Values out of the local sandbox: frames through Arrow files in its outbox, scalars through JSON, never pickle.

The kernel's helper writes each frame into the outbox inside the sandbox's tmpfs; the parent opens the outbox
from outside (``host_process.py``), reads each file without following links and size-capped
(``host_files.py``), and checks it before building anything (``receive.py``). What cannot come back is a
warning, not an error: the answer is still shown.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

from ..core.errors import SandboxError, TransferError
from . import host_files, receive
from .kernel import ChildKernel
from .startup import CHILD_MODULE

MAX_CELLS_BACK = 200_000_000


def values(kernel: ChildKernel) -> dict[str, tuple[str, int]]:
    """{name: (kind, cells)} of the frames and scalars now defined in the kernel."""
    return receive.read_listing(kernel.evaluate(f"{CHILD_MODULE}.list_values(globals())"))


def fetch(
    kernel: ChildKernel,
    names: list[str],
    *,
    outbox: str,
    open_outbox: Callable[[], int],
    limit: int,
    warnings: list[str],
) -> dict[str, Any]:
    """Copy values out of the kernel: it exports them into ``outbox`` (its own path for the folder), read here
    through the descriptor ``open_outbox`` gives, at most ``limit`` bytes each."""
    names = [n for n in names if receive.valid_name(n)]
    if not names:
        return {}
    try:
        docs = kernel.evaluate(f"{CHILD_MODULE}.export_values({json.dumps(names)}, globals(), {outbox!r})")
    except SandboxError as exc:  # the sandbox's own exporter failed or answered garbage: nothing comes back
        warnings.append(f"No values could be brought back: {exc}")
        return {}
    try:
        fd = open_outbox()
    except (TransferError, OSError) as exc:
        warnings.append(f"No values could be brought back: {exc}")
        return {}

    def frame_bytes(name: str) -> bytes:
        filename = f"out-{name}.arrow"
        data = host_files.read_beneath(fd, filename, limit)
        with contextlib.suppress(OSError):
            os.unlink(filename, dir_fd=fd)
        return data

    try:
        return collect(docs, names, frame_bytes, limit, warnings)
    finally:
        os.close(fd)


def collect(
    docs: object, names: list[str], frame_bytes: Callable[[str], bytes], limit: int, warnings: list[str]
) -> dict[str, Any]:
    """The values the sandbox's exporter described in ``docs`` (its answer, not trusted): scalars from their
    JSON, frames from the Arrow bytes ``frame_bytes`` fetches; whatever fails becomes a warning naming it."""
    if not isinstance(docs, dict):
        warnings.append("No values could be brought back: the sandbox answered with something else.")
        return {}
    fetched: dict[str, Any] = {}
    for name in names:
        doc = docs.get(name)
        try:
            if not isinstance(doc, dict) or "error" in doc:
                error = doc.get("error") if isinstance(doc, dict) else None
                raise TransferError(str(error or f"{name!r} came back malformed")[:300])
            if doc.get("kind") == "scalar":
                fetched[name] = receive.read_scalar(doc.get("json"), name=name)
                continue
            data = frame_bytes(name)
            fetched[name] = receive.read_frame(data, name=name, max_bytes=limit, max_cells=MAX_CELLS_BACK)
        except TransferError as exc:
            warnings.append(str(exc))
    return fetched
