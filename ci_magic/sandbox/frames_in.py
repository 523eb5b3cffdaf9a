"""Frames into a sandbox: which were sent and whether they changed since, and the local sandbox's inbox.

Both sandboxes remember each frame they sent (a shallow snapshot that keeps its arrays alive, and a content
version), so an unchanged frame is not sent again. The local sandbox writes frames as Arrow IPC files into the
parent's private inbox, which the sandbox sees read-only, and has the kernel load them from there; after a
restart, or for a ``pristine`` retry, they are reloaded from the same files.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..core.errors import TransferError
from . import isolation, transfer
from .startup import CHILD_MODULE

if TYPE_CHECKING:  # the gateway sandbox uses the versions, not the local kernel
    from .kernel import ChildKernel

#: How long a failed reload of frames waits before its one more try.
RELOAD_RETRY_S = 0.5
#: pandas >= 3 always copies on write: an in-place edit of a frame whose buffers we also reference gives the
#: frame new arrays. So "same arrays as when sent" means "same content", checked in microseconds.
COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3


def check_name(name: str) -> None:
    if not name.isidentifier():
        raise TransferError(
            f"{name!r} is not a valid Python name, so it cannot be a variable in the sandbox."
        )


def write_frame(name: str, obj: Any, path: Path, warnings: list[str]) -> None:
    """The frame as an Arrow IPC file at ``path`` (what both sandboxes send); a TransferError if it cannot be."""
    try:
        stringified = transfer.frame_to_arrow(obj, str(path))
    except Exception as exc:
        raise TransferError(
            f"The frame {name!r} could not be copied into the sandbox ({type(exc).__name__}: {exc}). "
            "Convert unusual column types (e.g. with .astype(str)) and try again."
        ) from exc
    if stringified:
        warnings.append(
            f"{name}: columns {', '.join(map(repr, stringified))} hold mixed types and were sent to the sandbox "
            "as strings."
        )


@dataclass
class Sent:
    """A frame as it was sent."""

    snapshot: Any  # shallow copy: keeps the arrays (and their ids) alive, triggers CoW
    version: tuple[Any, ...]


def version(obj: Any) -> tuple[Any, ...]:
    """Content version of a frame: changes whenever a value, label, dtype or the index changes."""
    if not isinstance(obj, pd.DataFrame | pd.Series):
        # Arrow tables are immutable, polars frames nearly so: identity and shape (a lazy frame, a plan, has
        # no shape, and asking for its schema may run part of it: identity alone).
        return (type(obj).__name__, id(obj), str(getattr(obj, "shape", "")))
    labels = tuple(map(repr, obj.columns)) if isinstance(obj, pd.DataFrame) else (repr(obj.name),)
    dtypes = tuple(map(str, obj.dtypes)) if isinstance(obj, pd.DataFrame) else (str(obj.dtype),)
    if COPY_ON_WRITE:
        content: Any = tuple(id(a) for a in obj._mgr.arrays)
    else:  # without copy-on-write only a full hash notices in-place edits
        try:
            content = hash(pd.util.hash_pandas_object(obj, index=True).to_numpy().tobytes())
        except TypeError:  # unhashable cells (lists, dicts): always resend
            content = object()
    return (type(obj).__name__, obj.shape, labels, dtypes, id(obj.index), content)


def session_base() -> str:
    """/dev/shm when we may write there (frames are written and read at memory speed), else the temp dir."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else tempfile.gettempdir()


class Inbox:
    """The local sandbox's frames: Arrow files in the parent's ``folder``, loaded by the kernel from there."""

    def __init__(self, folder: Path, isolated: bool) -> None:
        self.folder = folder
        self.isolated = isolated
        self.sent: dict[str, Sent] = {}

    def path(self, name: str) -> str:
        """Where the kernel finds the frame ``name``."""
        return f"{isolation.INBOX}/{name}.arrow" if self.isolated else str(self.folder / f"{name}.arrow")

    def send(
        self, kernel: ChildKernel, frames: Mapping[str, Any], warnings: list[str], force: bool = False
    ) -> list[str]:
        """Make the kernel hold these frames under these names; returns the names actually (re)sent."""
        spec: dict[str, str] = {}
        sent: dict[str, Sent] = {}
        for name, obj in frames.items():
            check_name(name)
            held = self.sent.get(name)
            if not force and held is not None and version(obj) == held.version:
                continue
            write_frame(name, obj, self.folder / f"{name}.arrow", warnings)
            spec[name] = self.path(name)
            snapshot = obj.copy(deep=False) if isinstance(obj, pd.DataFrame | pd.Series) else obj
            sent[name] = Sent(snapshot, version(obj))
        if not spec:
            return []
        errors = kernel.evaluate(f"{CHILD_MODULE}.load_frames({json.dumps(spec)}, globals())")
        if errors:
            detail = "; ".join(f"{k}: {v}" for k, v in dict(errors).items())[:1000]
            raise TransferError(f"The sandbox could not load the frames it was sent ({detail}).")
        self.sent.update(sent)
        return list(spec)

    def restore(self, kernel: ChildKernel, names: set[str] | None = None) -> dict[str, str]:
        """Reload frames the kernel holds from their Arrow files (all of them after a restart). Returns those
        that could not be reloaded, with why: they are forgotten here, so the next run that names them sends
        them afresh (and says so if that fails too)."""
        spec = {name: self.path(name) for name in self.sent if names is None or name in names}
        failed: dict[str, str] = {}
        for wait in (0.0, RELOAD_RETRY_S):
            if not spec:
                break
            # Right after a restart the last processes of a fork bomb may still hold the process slots the
            # loader's threads need: one more try, a moment later.
            time.sleep(wait)
            failed = dict(kernel.evaluate(f"{CHILD_MODULE}.load_frames({json.dumps(spec)}, globals())"))
            spec = {name: spec[name] for name in failed}
        for name in failed:
            self.sent.pop(name, None)
        return failed
