"""Model providers. One code path: everything goes through an OpenAI-compatible chat endpoint.

:mod:`.openai_compat` is the only module that imports ``openai``; :mod:`.fake` is a scripted
OpenAI-compatible HTTP server on loopback for tests (ours and users'); :mod:`.resolve` picks the endpoint
(remote when a key/base URL is configured, otherwise the embedded local model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..core.results import Usage

Message = dict[str, str]


@dataclass
class Completion:
    text: str
    usage: Usage
    seconds: float
    finish_reason: str | None = None


class Provider(Protocol):
    """Anything that turns chat messages into a completion, streaming text as it arrives.

    ``seed`` asks for reproducible sampling (servers that ignore it still work); independent samples of one
    question for a vote differ by seed, which also keeps them apart in the reply cache."""

    model: str
    endpoint: str  # host:port or a label; never contains credentials

    def complete(
        self,
        messages: list[Message],
        on_text: Callable[[str], None] | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion: ...


__all__ = ["Completion", "Message", "Provider"]
