"""Files come back: what the working code wrote in the sandbox's folder is copied into the user's folder.

Rules users can trust:

- only the working attempt's files (the ones its run created or changed), never a failed attempt's or a
  rejected sample's;
- an existing file is never overwritten: the copy takes a free name (``q2 (2).csv``) and a note says so, unless
  overwriting was asked for (``--overwrite``, ``Ask.overwrite_files``) — and even then only a regular file;
- only regular files come out of the sandbox: a symlink, FIFO or device the code planted is never followed or
  read (the executor refuses them), and the destination is walked without following links either, so a link in
  the user's folder cannot send a copy elsewhere;
- a size cap per ask (``Settings.max_files_mb``): what does not fit is named in a note, not copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path, PurePosixPath

from .errors import CIMagicError
from .executor import Executor, Sink
from .results import DeliveredFile

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_FREE_NAMES = 100
MAX_FILES = 200


class _Hashing:
    """A writable that hashes and counts what passes through."""

    def __init__(self, out: Sink | None) -> None:
        self.out, self.digest, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)


def deliver(
    executor: Executor, paths: list[str], dest: Path | None, *, overwrite: bool, cap_bytes: int
) -> list[DeliveredFile]:
    """Copy ``paths`` (from the working run) out of the executor into ``dest``; with ``dest`` None, only
    describe them (size and hash), which is what the Python API does unless given a folder."""
    delivered: list[DeliveredFile] = []
    left = cap_bytes
    for rel in sorted(paths)[:MAX_FILES]:
        if not _safe_relative(rel):
            delivered.append(DeliveredFile(rel, 0, "", note="not copied: the name leaves the working folder"))
            continue
        try:
            delivered.append(_one(executor, rel, dest, overwrite, left))
        except CIMagicError as exc:  # TransferError: not a regular file, over the cap, sandbox gone
            delivered.append(DeliveredFile(rel, 0, "", note=f"not copied: {exc}"))
            continue
        except OSError as exc:  # the user's folder: read-only, full, no free name
            delivered.append(DeliveredFile(rel, 0, "", note=f"not copied: {exc.strerror or exc}"))
            continue
        left -= delivered[-1].bytes
    if len(paths) > MAX_FILES:
        delivered.append(DeliveredFile("…", 0, "", note=f"{len(paths) - MAX_FILES} more files not copied"))
    return delivered


def _one(executor: Executor, rel: str, dest: Path | None, overwrite: bool, left: int) -> DeliveredFile:
    if dest is None:
        sink = _Hashing(None)
        executor.copy_file(rel, sink, left)
        return DeliveredFile(rel, sink.size, sink.digest.hexdigest())
    folder, name, note = _destination(dest, rel)
    try:
        fd, chosen, renamed = _create(folder, name, overwrite)
        with os.fdopen(fd, "wb") as out:
            sink = _Hashing(out)
            try:
                executor.copy_file(rel, sink, left)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(chosen, dir_fd=folder)  # no half-copied file is left behind
                raise
    finally:
        os.close(folder)
    parent = str(PurePosixPath(rel).parent) if note is None else "."
    saved = chosen if parent == "." else f"{parent}/{chosen}"
    if renamed:
        note = f"saved as {saved!r}: a file named {rel!r} already exists in your folder"
    return DeliveredFile(rel, sink.size, sink.digest.hexdigest(), saved, note)


def _safe_relative(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return (
        bool(parts)
        and not rel.startswith("/")
        and ".." not in parts
        and all(p not in ("", ".") for p in parts)
    )


def _destination(dest: Path, rel: str) -> tuple[int, str, str | None]:
    """The folder (an open descriptor) and name a file goes to: its own subfolder when that can be made or
    entered without following a link, else the top of ``dest`` (with a note)."""
    parts = PurePosixPath(rel).parts
    top = os.open(dest, _DIR)
    fd = os.dup(top)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            nxt = os.open(part, _DIR, dir_fd=fd)  # ELOOP when the user's folder has a link there
            os.close(fd)
            fd = nxt
    except OSError:
        os.close(fd)
        return top, parts[-1], f"saved in the top folder: {'/'.join(parts[:-1])!r} could not be used"
    os.close(top)
    return fd, parts[-1], None


def _split_extension(name: str) -> tuple[str, str, str]:
    """("q2", ".", "csv"); "data.tar.gz" keeps its double extension; a name without one stays whole."""
    for double in (".tar.gz", ".tar.bz2", ".tar.xz"):
        if name.endswith(double) and len(name) > len(double):
            return name[: -len(double)], ".", double[1:]
    stem, dot, suffix = name.rpartition(".")
    return (stem, dot, suffix) if stem else (name, "", "")


def _create(folder: int, name: str, overwrite: bool) -> tuple[int, str, bool]:
    """A new file (never following a link), or the existing regular file when overwriting is allowed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    if overwrite:
        try:
            st = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            return (
                os.open(name, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder),
                name,
                False,
            )
    stem, dot, suffix = _split_extension(name)
    for i in range(1, MAX_FREE_NAMES + 1):
        candidate = name if i == 1 else f"{stem} ({i}){dot}{suffix}"
        try:
            return os.open(candidate, flags, 0o644, dir_fd=folder), candidate, i > 1
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for {name!r}")
