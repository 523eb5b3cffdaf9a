"""The sandbox's files read from the host: nothing the code planted there is followed or trusted.

The code in the sandbox can write any file it can reach, so the parent reads files inside the sandbox's tmpfs
(through ``/proc/<pid>/root``, see ``host_process.py``, or the session's own folder without isolation) walking
one component at a time with ``O_NOFOLLOW``: a planted symlink, FIFO or device is never followed or opened, a
hard link is refused, and every read is size-capped. Listings are bounded in count and depth.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from dataclasses import dataclass

from ..core.errors import TransferError
from ..core.executor import Sink

_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(relative: str) -> list[str]:
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or not parts:
        raise TransferError(f"refused the path {relative[:200]!r}: it must stay inside the sandbox's folder.")
    return parts


def open_dir_beneath(base_fd: int, relative: str) -> int:
    """A directory below ``base_fd``, reached without following any symlink."""
    fd = os.dup(base_fd)
    try:
        for part in _parts(relative):
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except OSError:
        os.close(fd)
        raise
    return fd


def copy_beneath(base_fd: int, relative: str, out: Sink, limit: int) -> int:
    """Copy a regular file below ``base_fd`` into ``out``: no symlink followed, no FIFO or device opened, a
    hard link to something else refused, at most ``limit`` bytes (TransferError otherwise). Returns its size."""
    parts = _parts(relative)
    folder = open_dir_beneath(base_fd, "/".join(parts[:-1])) if len(parts) > 1 else os.dup(base_fd)
    try:
        try:
            st = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        except OSError as exc:
            raise TransferError(
                f"{relative!r} could not be read from the sandbox ({exc.strerror})."
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise TransferError(f"refused {relative!r}: it is not a regular file.")
        if st.st_size > limit:
            raise TransferError(
                f"refused {relative!r}: {st.st_size:,} bytes is over the transfer limit of {limit:,} bytes."
            )
        fd = os.open(parts[-1], _OPEN_FLAGS, dir_fd=folder)
    finally:
        os.close(folder)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the stat and the open
            raise TransferError(f"refused {relative!r}: it is not a regular file.")
        if st.st_nlink > 1:  # a second name for a file: without isolation it could be one of the user's
            raise TransferError(f"refused {relative!r}: it is a hard link to another file.")
        # One buffer for the whole file, as cp does: a fresh bytes object per read costs page faults that made
        # the copy several times slower than cp (benchmarks/files_back.py).
        buffer = memoryview(bytearray(_CHUNK))
        size = 0
        while True:
            got = os.readv(fd, [buffer[: min(_CHUNK, limit + 1 - size)]])
            if not got:
                return size
            size += got
            if size > limit:
                raise TransferError(
                    f"refused {relative!r}: it grew over the transfer limit while being read."
                )
            out.write(buffer[:got])
    finally:
        os.close(fd)


def read_beneath(base_fd: int, relative: str, limit: int) -> bytes:
    """The bytes of a regular file below ``base_fd`` (see :func:`copy_beneath`)."""
    buffer = io.BytesIO()
    copy_beneath(base_fd, relative, buffer, limit)
    return buffer.getvalue()


@dataclass(frozen=True)
class FileInfo:
    path: str  # relative, '/'-separated
    size: int
    mtime_ns: int
    inode: tuple[int, int]  # (device, inode): a file replaced by another is a change


def list_files(
    base_fd: int, *, max_files: int = 20_000, max_depth: int = 8, skip: frozenset[str] = frozenset()
) -> dict[str, FileInfo]:
    """Regular files below ``base_fd`` (hidden names and mount points of the user's files skipped; symlinks,
    FIFOs, sockets and devices never listed), bounded in count and depth. ``skip``: top-level names not even
    looked at (the user's own entries, known to be read-only binds)."""
    found: dict[str, FileInfo] = {}
    base_dev = os.fstat(base_fd).st_dev
    stack: list[tuple[int, str, int]] = [(os.dup(base_fd), "", 0)]
    try:
        while stack:
            fd, prefix, depth = stack.pop()
            names = []
            with contextlib.suppress(OSError), os.scandir(fd) as entries:
                for entry in entries:  # a folder of a million entries is read only as far as the cap
                    names.append(entry.name)
                    if len(names) > max_files:
                        break
            for name in sorted(names):
                if name.startswith(".") or len(found) >= max_files or (not prefix and name in skip):
                    continue
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue
                if st.st_dev != base_dev:
                    continue  # a read-only bind of the user's own file or folder: not something the code wrote
                rel = f"{prefix}{name}"
                if stat.S_ISREG(st.st_mode):
                    found[rel] = FileInfo(rel, st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino))
                elif stat.S_ISDIR(st.st_mode) and depth < max_depth:
                    with contextlib.suppress(OSError):
                        stack.append((os.open(name, _DIR_FLAGS, dir_fd=fd), f"{rel}/", depth + 1))
            os.close(fd)
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return found
