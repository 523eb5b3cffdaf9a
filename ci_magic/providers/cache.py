"""The replay cache: the same conversation with the same model and settings gets the same reply from disk.

"Run All" on a finished notebook then reproduces the same code without querying the model (the code still runs,
so outputs are recomputed). It is a :class:`~ci_magic.providers.Provider` wrapper, so a cached reply streams
through the same path (``on_text``) as a live one and the loop cannot tell the difference.

The key is a sha256 over the model, the endpoint label, the effective temperature, ``max_tokens`` and every
message of the conversation so far — which carries the system prompt, the question, the data description
(hence its hash) and, for repairs, the earlier replies and errors. Memory addresses are blanked first, so a
traceback that differs only by ``0x7f…`` still hits. Entries live under ``<cache root>/replies`` (see
:func:`ci_magic.core.paths.cache_root`; ``CI_MAGIC_REPLY_CACHE_DIR`` overrides just this folder), one JSON file
each; the folder is kept under a size bound by deleting the least recently used entries (by mtime, which a hit
refreshes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from ..core.paths import cache_root
from ..core.results import Usage
from . import ENOUGH, Completion, Enough, Message, OneReply, OnText, Provider, Request, enough_at

DEFAULT_MAX_MB = 200
#: Bump when the entry format or key recipe changes: old entries are then simply never hit.
KEY_VERSION = 1
#: A cached reply is replayed in pieces of about this many characters (the live view and panel animate).
REPLAY_CHUNK = 64

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def default_dir() -> Path:
    explicit = os.environ.get("CI_MAGIC_REPLY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return cache_root() / "replies"


def cache_key(
    model: str,
    endpoint: str,
    temperature: float,
    max_tokens: int,
    messages: list[Message],
    seed: int | None = None,
) -> str:
    payload: dict[str, Any] = {
        "v": KEY_VERSION,
        "model": model,
        "endpoint": endpoint,
        "temperature": round(float(temperature), 4),
        "max_tokens": max_tokens,
        "messages": [
            {"role": m.get("role", ""), "content": _ADDRESS.sub("0x…", m.get("content", ""))}
            for m in messages
        ],
    }
    if seed is not None:  # only when given, so replies cached before seeds existed keep their keys
        payload["seed"] = seed
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ReplyCache:
    """Replies on disk, one JSON file per key, bounded to ``max_mb`` (least recently used go first)."""

    def __init__(self, directory: str | Path | None = None, max_mb: float = DEFAULT_MAX_MB) -> None:
        self.directory = Path(directory) if directory is not None else default_dir()
        self.max_bytes = int(max_mb * 1024 * 1024)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            entry: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # missing, or half-written by a crashed process: a miss, never an error
        with contextlib.suppress(OSError):
            os.utime(path)  # a hit makes the entry recently used
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees a partial file, and concurrent writers of one key agree.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, ensure_ascii=False)
            os.replace(tmp, path)
        except OSError:
            return  # a read-only or full disk must not fail the ask; the reply is simply not cached
        self.prune()

    def entries(self) -> list[Path]:
        return [p for p in self.directory.glob("??/*.json") if p.is_file()]

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.entries())

    def prune(self) -> None:
        """Delete the least recently used entries until the folder is within its bound."""
        stats: list[tuple[float, int, Path]] = []
        for p in self.entries():
            with contextlib.suppress(OSError):
                st = p.stat()
                stats.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in stats)
        for _, size, p in sorted(stats, key=lambda s: s[0]):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                p.unlink()
                total -= size


class CachedProvider(OneReply):
    """A provider that answers from :class:`ReplyCache` when it can and records what the inner one says.

    ``fresh=True`` skips the lookup (the model is asked again) but still stores the new reply, so the next
    "Run All" replays the fresh answer. A completion served from disk says so (``Completion.cached``) and costs
    nothing, so its usage is zero tokens (the original counts are kept in the entry).
    """

    def __init__(
        self,
        inner: Provider,
        cache: ReplyCache,
        *,
        temperature: float = 0.0,
        max_tokens: int = 2048,
        fresh: bool = False,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self.model = inner.model
        self.endpoint = inner.endpoint
        self.local = inner.local
        self._temperature = temperature
        self._max_tokens = max_tokens
        self.fresh = fresh

    @staticmethod
    def _replay(
        entry: dict[str, Any], index: int, on_text: OnText | None, enough: Enough | None
    ) -> Completion:
        started = time.monotonic()
        text: str = entry["text"]
        finish = entry.get("finish_reason")
        if (cut := enough_at(text, 0, enough)) is not None:  # as the stream would have been cut
            text, finish = text[:cut], ENOUGH
        if on_text is not None:
            for i in range(0, len(text), REPLAY_CHUNK):
                on_text(index, text[i : i + REPLAY_CHUNK])
        return Completion(
            text=text,
            usage=Usage(0, 0),
            seconds=time.monotonic() - started,
            finish_reason=finish,
            cached=True,
        )

    def _store(self, key: str, completion: Completion) -> None:
        # A stream cut off by the network is a transient failure, not the model's answer: never replay it. Nor a
        # reply we ended (Request.enough): the next request may want all of it.
        if completion.finish_reason in ("truncated", ENOUGH):
            return
        self.cache.put(
            key,
            {
                "text": completion.text,
                "finish_reason": completion.finish_reason,
                "model": self.model,
                "prompt_tokens": completion.usage.prompt_tokens,
                "completion_tokens": completion.usage.completion_tokens,
                "seconds": round(completion.seconds, 3),
                "created": time.time(),
            },
        )

    def complete_many(self, request: Request, on_text: OnText | None = None) -> list[Completion]:
        """Each sample is cached under its own seed, so batched and one-by-one samples replay alike: from disk
        when every one is there, else all ``n`` from the model in one request."""
        effective = self._temperature if request.temperature is None else request.temperature
        limit = min(request.max_tokens or self._max_tokens, self._max_tokens)
        seeds = [None if request.seed is None else request.seed + i for i in range(request.n)]
        keys = [cache_key(self.model, self.endpoint, effective, limit, request.messages, s) for s in seeds]
        entries = [None if self.fresh else self.cache.get(k) for k in keys]
        if all(e is not None and isinstance(e.get("text"), str) for e in entries):
            return [
                self._replay(e, i, on_text, request.enough) for i, e in enumerate(entries) if e is not None
            ]
        completions = self.inner.complete_many(request, on_text)
        for key, completion in zip(keys, completions, strict=False):
            self._store(key, completion)
        return completions

    def close(self) -> None:
        self.inner.close()
