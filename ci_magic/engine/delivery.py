"""Files and values come back: what the working code wrote in the sandbox's folder is copied into the user's
folder, and the variables it created are brought back (:func:`bring_back`).

Rules users can trust:

- only the working attempt's files (the ones its run created or changed), never a failed attempt's or a
  rejected sample's;
- an existing file is never overwritten: the copy takes a free name (``q2 (2).csv``) and a note says so, unless
  overwriting was asked for (``--overwrite``, ``Ask.overwrite_files``) — and even then only a regular file;
- only regular files come out of the sandbox: a symlink, FIFO or device the code planted is never followed or
  read (the executor refuses them), and the destination is walked without following links either, so a link in
  the user's folder cannot send a copy elsewhere;
- a size cap per ask (``Settings.max_files_mb``): what does not fit is named in a note, not copied;
- a file never arrives as something that runs by being found there: the notebook's folder is first on the user
  kernel's ``sys.path``, and Python, IPython, Jupyter, pytest, pip and make load certain names from the folder
  they work in. A module, extension, path or config file (``pandas.py``, ``conftest.py``, ``x.so``, ``x.pth``,
  ``pyproject.toml``, ``jupyter_server_config.json``…), at any depth, is saved with ``.txt`` appended and a note:
  the user renames it to use it (hidden names never leave the sandbox at all).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ..core.errors import CIMagicError
from ..core.executor import Executor, Frame, Sink
from ..core.results import DeliveredFile
from ..sandbox.scan import assigned_names

#: Frames larger than this are not brought back automatically (only when named with ``keep``).
AUTO_KEEP_MAX_CELLS = 5_000_000

Keep = Sequence[str] | Literal["auto"] | None


def bring_back(
    executor: Executor, keep: Keep, before: set[str], frames: Mapping[str, Frame], code: str
) -> dict[str, Any]:
    """The variables to copy into the user's namespace: with "auto", only what the working code assigned (and
    not the frames sent in, nor what existed before the ask); with names, those; with None, nothing."""
    if keep is None:
        return {}
    if keep == "auto":
        # Only what the working code assigned: leftovers of failed attempts stay in the sandbox.
        created = assigned_names(code)
        names = [
            n
            for n, (_, cells) in executor.values().items()
            if n in created and n not in before and n not in frames and cells <= AUTO_KEEP_MAX_CELLS
        ]
        return executor.fetch(names) if names else {}
    return executor.fetch(list(keep))


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_FREE_NAMES = 100
MAX_FILES = 200
#: Suffixes Python imports or loads by finding them on a path (and IPython's scripts).
CODE_SUFFIXES = (
    ".py",
    ".pyw",
    ".pyc",
    ".pyo",
    ".pyd",
    ".pyi",
    ".so",
    ".pth",
    ".ipy",
    ".egg-link",
    ".dylib",
    ".dll",
)
#: Names tools load from the folder they run in.
TOOL_FILES = frozenset(
    {
        "pyproject.toml",
        "setup.cfg",
        "tox.ini",
        "pytest.ini",
        "makefile",
        "gnumakefile",
        "justfile",
        "noxfile.py",
    }
)
INERT_SUFFIX = ".txt"


class HashingSink:
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
        sink = HashingSink(None)
        executor.copy_file(rel, sink, left)
        return DeliveredFile(rel, sink.size, sink.digest.hexdigest())
    folder, name, note = _destination(dest, rel)
    inert = _inert(name)
    try:
        fd, chosen, renamed = _create(folder, inert, overwrite and inert == name)
        with os.fdopen(fd, "wb") as out:
            sink = HashingSink(out)
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
    twin = _look_alike(dest, saved)
    if twin is not None:
        note = (
            f"saved as {saved!r}, which looks like {twin!r} in your folder but is another name (Unicode "
            "characters that look alike): check which one you open"
        )
    elif inert != name:
        note = (
            f"saved as {saved!r}: Python, Jupyter or a tool would run a file named {name!r} found in your folder; "
            "rename it to use it"
        )
    elif renamed:
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


#: Letters of other scripts drawn like Latin ones (Unicode's confusables, the common part).
_CONFUSABLE = str.maketrans(
    "аеорсуххіјѕԁһӏԛԝаАВЕКМНОРСТХУІЈЅαβεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxxijsdhlqwaABEKMHOPCTXYIJSaBeikvoptuxABEZHIKMNOPTYX",
)


def _skeleton(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.translate(_CONFUSABLE).casefold()


def _look_alike(dest: Path, saved: str) -> str | None:
    """Another entry of the destination folder that looks the same as ``saved`` but is not the same name
    (Cyrillic "а" for Latin "a", a decomposed "é"): the user could take one for the other."""
    if saved.isascii():
        return None
    parent, _, name = saved.rpartition("/")
    try:
        names = os.listdir(dest / parent if parent else dest)
    except OSError:
        return None
    want = _skeleton(name)
    return next((n for n in sorted(names)[:10_000] if n != name and _skeleton(n) == want), None)


def _inert(name: str) -> str:
    """The name a file is saved under: with ``.txt`` appended when found in a folder it would run (see the
    module's docstring); case-insensitive, as the folder may be."""
    low = name.lower()
    loaded = (
        low.endswith(CODE_SUFFIXES)
        or ".so." in low  # versioned shared libraries: libx.so.1
        or low in TOOL_FILES
        or (low.startswith(("jupyter_", "ipython_")) and "config" in low)
        or low.startswith(("sitecustomize", "usercustomize", "__init__", "__main__"))
    )
    return name + INERT_SUFFIX if loaded else name


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
