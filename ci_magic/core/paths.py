"""Where ci_magic keeps files on disk: one cache root for replies, traces and models."""

from __future__ import annotations

import os
from pathlib import Path

#: Moves the whole cache (replies, traces, models, server registry).
CACHE_ENV = "CI_MAGIC_CACHE_DIR"


def cache_root() -> Path:
    """``$CI_MAGIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/ci_magic``, else ``~/.cache/ci_magic``.

    Read on every call, so a test or a notebook that sets the variable later is honoured."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ci_magic"
