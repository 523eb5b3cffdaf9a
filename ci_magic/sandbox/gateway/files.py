"""Files between the user's folder and a kernel on the gateway, which shares no filesystem with us.

In: the files the code names — string literals that are plain relative paths to regular files of the user's
folder, reached without following any link, hidden names and tool folders never — are copied into the kernel's
working folder when new or changed, at most :data:`MAX_FILES_BYTES` per run. Out: the kernel lists what the
code wrote (size and time, so a run's changes are known), and one file at a time streams back, size-capped. The
kernel's answers are distrusted: paths are checked, sizes capped, and only regular files are ever read there.
"""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path
from typing import Any

from ...core import untrusted_json
from ...core.errors import TransferError
from ...core.executor import Sink
from .. import host_files
from ..isolation import SKIPPED_DIRS
from . import child
from .kernel import RemoteKernel

#: The user's files sent for one run, together.
MAX_FILES_BYTES = 200 * 1024 * 1024
#: Entries of a listing the parent accepts.
MAX_LISTED = 20_000

Listing = dict[str, tuple[int, int]]


def plain_relative(text: str) -> str | None:
    """``text`` as a normalised relative path inside a folder ('./a//b' -> 'a/b'), or None when it is absolute,
    climbs out, names something hidden or a tool folder, or is not a plausible path."""
    if not 0 < len(text) <= 1024 or "\x00" in text or "\n" in text or text.startswith(("/", "~")):
        return None
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." or p.startswith(".") or p in SKIPPED_DIRS for p in parts):
        return None
    return "/".join(parts)


def named_files(code: str) -> list[str]:
    """Relative paths the code spells out as string literals (candidates; the caller checks they exist)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            rel = plain_relative(node.value)
            if rel is not None:
                found[rel] = None
    return list(found)


class UserFiles:
    """The user's files a kernel holds (by size, time and inode, so a change is sent again)."""

    def __init__(self, user_dir: Path) -> None:
        self.user_dir = user_dir
        self.sent: dict[str, tuple[int, int, int]] = {}

    def reset(self) -> None:
        """A new kernel holds none of them."""
        self.sent.clear()

    def send(self, kernel: RemoteKernel, code: str, warnings: list[str]) -> list[str]:
        """Put the files ``code`` names into the kernel's folder; returns the message ids to commit."""
        wanted = named_files(code)
        if not wanted:
            return []
        try:
            base = os.open(self.user_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return []
        puts: list[str] = []
        total = 0
        try:
            for rel in wanted:
                st = _lstat_beneath(base, rel)
                if st is None or not stat.S_ISREG(st.st_mode):
                    continue  # not a file of the folder, or reached through a link: never sent
                key = (st.st_size, st.st_mtime_ns, st.st_ino)
                if self.sent.get(rel) == key:
                    continue
                if total + st.st_size > MAX_FILES_BYTES:
                    warnings.append(
                        f"{rel!r} was not copied to the sandbox: the files of one run may total "
                        f"{MAX_FILES_BYTES // 2**20} MB."
                    )
                    continue
                try:
                    data = host_files.read_beneath(base, rel, MAX_FILES_BYTES - total)
                except TransferError as exc:
                    warnings.append(str(exc))
                    continue
                puts += kernel.put("file", rel, memoryview(data), child.CHUNK)
                total += len(data)
                self.sent[rel] = key
        finally:
            os.close(base)
        return puts


def _lstat_beneath(base: int, rel: str) -> os.stat_result | None:
    parts = rel.split("/")
    try:
        folder = host_files.open_dir_beneath(base, "/".join(parts[:-1])) if len(parts) > 1 else os.dup(base)
    except (OSError, TransferError):
        return None
    try:
        return os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(folder)


def parse_listing(text: Any) -> Listing:
    """{path: (size, mtime_ns)} from the kernel's JSON; entries that are not well-formed are dropped."""
    try:
        doc = untrusted_json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    found: Listing = {}
    for path, info in list(doc.items())[:MAX_LISTED]:
        if (
            isinstance(path, str)
            and plain_relative(path) == path
            and isinstance(info, list)
            and len(info) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63 for n in info)
        ):
            found[path] = (info[0], info[1])
    return found


def listing(kernel: RemoteKernel) -> Listing:
    """What the code wrote in the kernel's folder now ({} when the kernel cannot say)."""
    try:
        replies = kernel.request({"op": "files"}, timeout=30.0, max_bytes=16 << 20)
    except TransferError:
        return {}
    return parse_listing(next((d.get("json") for d, _ in replies if d.get("op") == "files"), None))


def copy_file(kernel: RemoteKernel, path: str, out: Sink, limit: int) -> int:
    """Stream one file the code wrote into ``out``: a regular file only (checked by the kernel, which opens
    nothing through a link), at most ``limit`` bytes (checked here). Returns the bytes copied."""
    if plain_relative(path) != path:
        raise TransferError(f"refused the path {path[:200]!r}: it must be a plain relative path.")
    copied = 0
    finished = False

    def each(data: dict[str, Any], buffers: list[bytes]) -> None:
        nonlocal copied, finished
        op = data.get("op")
        if op == "error":
            raise TransferError(
                f"{path!r} could not be read from the sandbox ({str(data.get('message'))[:300]})."
            )
        if op == "chunk" and data.get("name") == path and not finished:
            for piece in buffers:
                copied += len(piece)
                if copied > limit:
                    raise TransferError(
                        f"refused {path!r}: it is over the transfer limit of {limit:,} bytes."
                    )
                out.write(piece)
        finished = finished or op == "read_done"

    kernel.request(
        {"op": "read", "path": path, "limit": limit},
        timeout=max(60.0, limit / 20e6),
        max_bytes=limit + (1 << 20),
        each=each,
    )
    if not finished:
        raise TransferError(f"{path!r} could not be read from the sandbox (the answer was incomplete).")
    return copied


__all__ = [
    "MAX_FILES_BYTES",
    "UserFiles",
    "copy_file",
    "listing",
    "named_files",
    "parse_listing",
    "plain_relative",
]
