"""Model providers. One code path: everything goes through an OpenAI-compatible chat endpoint.

:mod:`.openai_compat` is the only module that imports ``openai``; :mod:`.fake` is a scripted
OpenAI-compatible HTTP server on loopback for tests (ours and users'); :mod:`.resolve` picks the endpoint
(remote when a key/base URL is configured, otherwise the embedded local model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from ..core.results import Usage

Message = dict[str, str]

#: Host names of this machine: a server there costs nothing per token.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def endpoint_label(base_url: str | None) -> str:
    """host[:port] of the endpoint, never the path or credentials, for provenance and messages."""
    if not base_url:
        return "api.openai.com"
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    return f"{host}:{parts.port}" if parts.port else host


def is_loopback(base_url: str | None) -> bool:
    """Whether the endpoint is a server on this machine (``127.x``, ``localhost``, ``::1``)."""
    if not base_url:
        return False
    host = urlsplit(base_url).hostname or ""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


@dataclass
class Completion:
    text: str
    usage: Usage
    seconds: float
    finish_reason: str | None = None
    cached: bool = False  # replayed from the reply cache (providers/cache.py): no model was asked


class Provider(Protocol):
    """Anything that turns chat messages into a completion, streaming text as it arrives.

    ``seed`` asks for reproducible sampling (servers that ignore it still work); independent samples of one
    question for a vote differ by seed, which also keeps them apart in the reply cache. ``max_tokens`` caps one
    reply below the provider's own limit (a short step such as the answer in words).

    ``local`` is true for the embedded model and servers on loopback: they cost nothing per token (unless the
    price table names the model). ``close()`` releases connections; a wrapper closes what it wraps."""

    model: str
    endpoint: str  # host:port or a label; never contains credentials
    local: bool

    def complete(
        self,
        messages: list[Message],
        on_text: Callable[[str], None] | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
    ) -> Completion: ...

    def complete_many(
        self,
        messages: list[Message],
        n: int,
        on_text: Callable[[int, str], None] | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> list[Completion]:
        """``n`` independent completions of one conversation (samples for a vote), seeds ``seed``, ``seed+1``…

        One request with the OpenAI ``n`` parameter where the endpoint honours it (the prompt is paid once:
        the first completion carries the prompt tokens, each its own completion tokens — as billed), else
        ``n`` requests (:func:`one_by_one`). ``on_text(index, fragment)`` streams each completion."""
        ...

    def close(self) -> None: ...


def one_by_one(
    provider: Provider,
    messages: list[Message],
    n: int,
    on_text: Callable[[int, str], None] | None = None,
    temperature: float | None = None,
    seed: int | None = None,
) -> list[Completion]:
    """``n`` completions as ``n`` requests, seeds ``seed``, ``seed + 1``…: for endpoints without ``n``."""
    found = []
    for i in range(n):
        stream = None if on_text is None else (lambda text, i=i: on_text(i, text))
        found.append(provider.complete(messages, stream, temperature, None if seed is None else seed + i))
    return found


__all__ = [
    "LOOPBACK_HOSTS",
    "Completion",
    "Message",
    "Provider",
    "endpoint_label",
    "is_loopback",
    "one_by_one",
]
