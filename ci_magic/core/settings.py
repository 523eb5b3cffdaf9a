"""The frozen settings object the core runs on.

Traitlets live only at the IPython edge (:mod:`ci_magic.notebook.magic`); the CLI and the Python API build the same
object from arguments and the environment, so every entry point resolves configuration one way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import UsageError

#: The model name used when an OpenAI-compatible endpoint is configured but no model was chosen.
DEFAULT_REMOTE_MODEL = "gpt-4o-mini"

#: Substrings that mark an environment variable as secret: never passed to the child kernel.
SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE", "SESSION")


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to the child kernel."""

    memory_mb: int = 4096  # RLIMIT_AS; below ~1 GiB `import pandas, pyarrow` fails
    timeout_s: float = 60.0  # wall time for one execution before interrupt
    interrupt_grace_s: float = 3.0  # after SIGINT, how long before the kernel is restarted
    max_output_bytes: int = 1_000_000  # per stream; the tail is kept
    max_processes: int = 256  # RLIMIT_NPROC (per user, so generous)
    max_file_mb: int = 1024  # RLIMIT_FSIZE
    network: bool = False  # allow the child to reach the network
    isolation: bool = (
        True  # namespaces + read-only filesystem view where the OS allows (see sandbox/isolation.py)
    )

    def __post_init__(self) -> None:
        if self.memory_mb < 1024:
            raise UsageError(
                f"memory limit {self.memory_mb} MB is too small: pandas and pyarrow need about 1 GiB of "
                "address space to import. Use 1024 MB or more."
            )
        if self.timeout_s <= 0:
            raise UsageError(f"timeout must be positive, got {self.timeout_s}.")


@dataclass(frozen=True)
class Settings:
    """Everything one ask needs to know, resolved and validated once."""

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    attempts: int = 3
    samples: int = 1  # independent answers per ask; more than one votes (ci_magic/vote.py)
    context_tokens: int = 2000
    request_timeout_s: float = 120.0
    temperature: float = 0.0
    max_tokens: int = 2048
    limits: Limits = field(default_factory=Limits)
    # What the data description may contain: "schema" | "stats" | "samples" (see context.DETAIL_LEVELS).
    context_detail: str = "samples"
    reply_cache: bool = False  # replay identical conversations from disk (ci_magic/cache.py)
    cache_max_mb: float = 200.0

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= 20:
            raise UsageError(f"attempts must be between 1 and 20, got {self.attempts}.")
        if not 1 <= self.samples <= 15:
            raise UsageError(f"samples must be between 1 and 15, got {self.samples}.")
        if self.context_tokens < 100:
            raise UsageError(f"the context budget must be at least 100 tokens, got {self.context_tokens}.")
        if self.max_tokens < 16:
            raise UsageError(f"max_tokens must be at least 16, got {self.max_tokens}.")
        if self.context_detail not in ("schema", "stats", "samples"):
            raise UsageError(
                f'context_detail must be "schema", "stats" or "samples", got {self.context_detail!r}.'
            )

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed; ``None`` values are ignored so callers can pass options through."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Resolve from ``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` and ``CI_MAGIC_MODEL``; explicit overrides win."""
        env = os.environ if environ is None else environ
        base = cls(
            model=env.get("CI_MAGIC_MODEL") or None,
            base_url=env.get("OPENAI_BASE_URL") or None,
            api_key=env.get("OPENAI_API_KEY") or None,
        )
        return base.with_(**overrides)


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper.startswith("OPENAI") or any(marker in upper for marker in SECRET_MARKERS)
