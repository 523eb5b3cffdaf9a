"""Rebuild a GGUF from its PyPI part packages into the cache dir, verified, once.

The part packages are located with :func:`importlib.util.find_spec` only: none of their code runs.
A cached file is trusted only through a sidecar written after a full size+sha256 check, so a file cut
short by a crash, a full disk or a hand edit is rebuilt instead of being handed to llama.cpp.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..core.errors import ProviderConfigError
from ..core.paths import CACHE_ENV as CACHE_ENV  # the model cache lives under the one cache root
from ..core.paths import cache_root as cache_root
from .models import ModelSpec

_CHUNK = 8 * 1024 * 1024


class ModelPartsMissing(ProviderConfigError):
    """Some part packages of a catalogue model are not installed."""


class ModelCorrupt(ProviderConfigError):
    """The installed parts do not add up to the expected file."""


def models_dir() -> Path:
    return cache_root() / "models"


@contextlib.contextmanager
def file_lock(path: Path, *, waiting_message: str | None = None) -> Iterator[None]:
    """An exclusive ``flock`` on *path*; the kernel drops it if the holder dies, so it never goes stale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting_message:
                print(waiting_message, file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def find_parts(spec: ModelSpec) -> list[Path]:
    """Paths of all part files, in order, or :class:`ModelPartsMissing` naming every missing package."""
    importlib.invalidate_caches()
    found: list[Path] = []
    missing: list[str] = []
    for index in range(1, spec.parts + 1):
        module_spec = importlib.util.find_spec(spec.module(index))
        locations = list(module_spec.submodule_search_locations or []) if module_spec else []
        candidates = [Path(loc) / spec.part_relpath(index) for loc in locations]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            missing.append(spec.package(index))
        else:
            found.append(path)
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ModelPartsMissing(
            f"The local model {spec.name!r} is not installed: {len(missing)} of its {spec.parts} part "
            f"packages are missing ({shown}). Install them with\n\n    {spec.install_hint}\n\n"
            "or point OPENAI_BASE_URL / OPENAI_API_KEY at a hosted model, or CI_MAGIC_GGUF at a .gguf file."
        )
    return found


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def is_verified(path: Path, spec: ModelSpec) -> bool:
    """True only if a completed verification recorded exactly this file (same size, mtime and hash)."""
    try:
        stat = path.stat()
        record = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and stat.st_size == spec.size
        and record.get("size") == stat.st_size
        and record.get("mtime_ns") == stat.st_mtime_ns
        and record.get("sha256") == spec.sha256
    )


def _write_sidecar(path: Path, sha256: str) -> None:
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
    tmp = _sidecar(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, _sidecar(path))


class _Progress:
    """A one-line bar on a terminal; elsewhere (logs, notebooks) a start line, quarters and a done line."""

    def __init__(self, label: str, total: int, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label, self.total, self.done = label, max(total, 1), 0
        self.started = self.last_draw = time.monotonic()
        self.quarter = 0
        if not self.tty:
            self._line(f"{label}: {total / 2**20:,.0f} MiB ...")

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def update(self, n: int) -> None:
        self.done += n
        frac = min(self.done / self.total, 1.0)
        now = time.monotonic()
        if self.tty and (now - self.last_draw > 0.1 or frac >= 1.0):
            self.last_draw = now
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r{self.label} [{bar:<30}] {frac:6.1%}")
            self.stream.flush()
        elif not self.tty and int(frac * 4) > self.quarter and frac < 1.0:
            self.quarter = int(frac * 4)
            self._line(f"{self.label}: {self.quarter * 25}%")

    def close(self, ok: bool) -> None:
        if self.tty:
            self.stream.write("\n")
        if ok:
            self._line(f"{self.label}: done in {time.monotonic() - self.started:.1f} s")


def _hash_file(path: Path, progress: _Progress) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            progress.update(len(chunk))
    return digest.hexdigest()


def _concatenate(spec: ModelSpec, parts: list[Path], target: Path, stream: IO[str] | None) -> None:
    free = shutil.disk_usage(target.parent).free
    if free < spec.size + 64 * 2**20:
        raise ProviderConfigError(
            f"Not enough disk space in {target.parent} to assemble {spec.name!r}: it needs "
            f"{spec.size / 2**30:.2f} GiB, {free / 2**30:.2f} GiB are free. Set {CACHE_ENV} to a roomier dir."
        )
    digest = hashlib.sha256()
    written = 0
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    progress = _Progress(f"Assembling {spec.name}", spec.size, stream)
    ok = False
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > spec.size:
                            break  # already wrong: stop writing a file we will throw away
                        digest.update(chunk)
                        out.write(chunk)
                        progress.update(len(chunk))
                if written > spec.size:
                    break
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        if written != spec.size or sha != spec.sha256:
            what = f"{written} bytes" if written != spec.size else f"sha256 {sha}"
            raise ModelCorrupt(
                f"The installed parts of {spec.name!r} do not make up the expected model (got {what}, "
                f"expected {spec.size} bytes with sha256 {spec.sha256}). Reinstall them with\n\n"
                f'    pip install --force-reinstall "ci-magic[{spec.extra}]"'
            )
        os.replace(tmp, target)
        _write_sidecar(target, sha)
        ok = True
    finally:
        progress.close(ok)
        tmp.unlink(missing_ok=True)


def assemble(spec: ModelSpec, *, stream: IO[str] | None = None) -> Path:
    """Return the path of the verified GGUF for *spec*, building it from the part packages if needed."""
    target = models_dir() / spec.filename
    if is_verified(target, spec):
        return target
    lock = target.with_name(target.name + ".lock")
    with file_lock(lock, waiting_message=f"Waiting for another process assembling {spec.name} ..."):
        if is_verified(target, spec):  # the process we waited for did the work
            return target
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            stale.unlink(missing_ok=True)  # left by a crashed assembler; we hold the lock, so not in use
        if target.exists() and target.stat().st_size == spec.size:
            # Right size but no valid sidecar (copied in, or sidecar lost): a hash is cheaper than a rebuild.
            progress = _Progress(f"Verifying {spec.name}", spec.size, stream)
            sha = _hash_file(target, progress)
            progress.close(sha == spec.sha256)
            if sha == spec.sha256:
                _write_sidecar(target, sha)
                return target
        parts = find_parts(spec)
        target.unlink(missing_ok=True)
        _sidecar(target).unlink(missing_ok=True)
        _concatenate(spec, parts, target, stream)
        return target
