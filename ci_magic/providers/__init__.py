"""Model providers. One code path: everything goes through an OpenAI-compatible chat endpoint.

:mod:`.openai_compat` is the only module that imports ``openai``; :mod:`.fake` is a scripted
OpenAI-compatible HTTP server on loopback for tests (ours and users'); :mod:`.resolve` picks the endpoint
(remote when a key/base URL is configured, otherwise the embedded local model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
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


#: Streams the fragments of each completion as they arrive: ``on_text(index, fragment)``.
OnText = Callable[[int, str], None]
#: Told the reply so far each time one of its lines ends; true: the reply has said enough (:attr:`Request.enough`).
Enough = Callable[[str], bool]
#: The finish_reason of a reply that ``enough`` ended.
ENOUGH = "enough"


def enough_at(text: str, start: int, enough: Enough | None) -> int | None:
    """Where ``text`` has said enough: the end of its first line, ending at or after ``start``, for which
    ``enough(text up to there)`` is true; None when none is. The same cut whatever pieces the text came in."""
    if enough is None:
        return None
    end = text.find("\n", start)
    while end != -1:
        if enough(text[: end + 1]):
            return end + 1
        end = text.find("\n", end + 1)
    return None


@dataclass(frozen=True)
class Request:
    """What one call to a model asks for: ``n`` independent completions of ``messages``.

    ``seed`` asks for reproducible sampling (servers that ignore it still work); the ``n`` samples of a vote get
    seeds ``seed``, ``seed + 1``…, which also keeps them apart in the reply cache. ``temperature`` and
    ``max_tokens`` (None: the provider's own) override the provider's settings for this call; ``max_tokens``
    caps a short step such as the answer in words. ``enough`` (one completion only) ends the reply early: the
    provider stops reading it at the end of the first line for which ``enough`` is true, tells the server so
    (it stops generating), and returns the text up to there with finish_reason ``"enough"``."""

    messages: list[Message]
    n: int = 1
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    enough: Enough | None = None


class Provider(Protocol):
    """Anything that turns chat messages into completions, streaming text as it arrives.

    The one method is :meth:`complete_many`; :class:`OneReply` adds ``complete`` for one reply.

    ``local`` is true for the embedded model and servers on loopback: they cost nothing per token (unless the
    price table names the model). ``close()`` releases connections; a wrapper closes what it wraps."""

    model: str
    endpoint: str  # host:port or a label; never contains credentials
    local: bool

    def complete_many(self, request: Request, on_text: OnText | None = None) -> list[Completion]:
        """``request.n`` completions, ``on_text(index, fragment)`` streaming each.

        One request with the OpenAI ``n`` parameter where the endpoint honours it (the prompt is paid once:
        the first completion carries the prompt tokens, each its own completion tokens — as billed), else
        ``n`` requests."""
        ...

    def close(self) -> None: ...


class OneReply:
    """Gives a provider that implements ``complete_many`` a ``complete`` for one reply."""

    def complete(
        self: Provider, messages: list[Message], on_text: Callable[[str], None] | None = None, **options: Any
    ) -> Completion:
        """One completion of ``messages``; ``options`` are :class:`Request`'s (``temperature``, ``seed``…)."""
        stream = None if on_text is None else (lambda _index, text: on_text(text))
        return self.complete_many(Request(messages, **options), stream)[0]


__all__ = [
    "ENOUGH",
    "LOOPBACK_HOSTS",
    "Completion",
    "Enough",
    "Message",
    "OnText",
    "OneReply",
    "Provider",
    "Request",
    "endpoint_label",
    "enough_at",
    "is_loopback",
]
