"""The only module that imports ``openai``: streaming chat completions, errors translated to ours."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai

from ..core.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnreachable,
)
from ..core.results import CHARS_PER_TOKEN, Usage, estimate_tokens
from . import Completion, Message


def endpoint_label(base_url: str | None) -> str:
    """host[:port] of the endpoint, never the path or credentials, for provenance and messages."""
    if not base_url:
        return "api.openai.com"
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    return f"{host}:{parts.port}" if parts.port else host


class OpenAIProvider:
    """Chat completions from any OpenAI-compatible server, streamed."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        temperature: float = 0.0,
        max_tokens: int = 2048,
        max_retries: int = 2,
    ) -> None:
        self.model = model
        self.endpoint = endpoint_label(base_url)
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._timeout_s = timeout_s
        # The client retries connection errors, 408/409/429 and 5xx with backoff honouring Retry-After.
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    def close(self) -> None:
        self._client.close()

    def complete(
        self,
        messages: list[Message],
        on_text: Callable[[str], None] | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Completion:
        started = time.monotonic()
        pieces: list[str] = []
        usage: Usage | None = None
        finish: str | None = None
        try:
            # Typed as Any: the SDK's overloads enumerate OpenAI's own models and message classes, while we
            # speak to any compatible server with plain dicts.
            create: Any = self._client.chat.completions.create
            extra: dict[str, Any] = {} if seed is None else {"seed": seed}
            stream = create(
                **extra,
                model=self.model,
                messages=messages,
                temperature=self._temperature if temperature is None else temperature,
                max_tokens=self._max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            with stream:
                for chunk in stream:
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                    for choice in chunk.choices:
                        delta = choice.delta.content if choice.delta else None
                        if delta:
                            pieces.append(delta)
                            if on_text is not None:
                                on_text(delta)
                        if choice.finish_reason:
                            finish = choice.finish_reason
        except openai.APIError as exc:
            raise self._translate(exc) from None
        except httpx.TimeoutException:
            raise ProviderTimeout(
                f"The model server at {self.endpoint} stopped sending mid-reply for {self._timeout_s:.0f} s; "
                "the partial reply was discarded. Try again."
            ) from None
        except httpx.HTTPError as exc:
            raise ProviderResponseError(
                f"The connection to the model server at {self.endpoint} broke mid-reply ({type(exc).__name__}); "
                "the partial reply was discarded. Try again."
            ) from None
        text = "".join(pieces)
        if finish is None and not text:
            raise ProviderResponseError(
                f"The model server at {self.endpoint} closed the stream without sending a reply. "
                "The server may have crashed or a proxy cut the connection; try again."
            )
        if finish is None:
            # A stream that ends without a finish_reason was cut off: keep the text (it may hold code) but say so.
            finish = "truncated"
        if usage is None:
            prompt_chars = sum(len(m.get("content", "")) for m in messages)
            usage = Usage(prompt_chars // CHARS_PER_TOKEN, estimate_tokens(text), estimated=True)
        return Completion(text=text, usage=usage, seconds=time.monotonic() - started, finish_reason=finish)

    def _translate(self, exc: openai.APIError) -> ProviderError:
        where = f"the model server at {self.endpoint}"
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeout(
                f"{where} did not answer within {self._timeout_s:.0f} s. It may be overloaded or the model "
                "may be too slow for this timeout; raise it with %config Ask.request_timeout or try again."
            )
        if isinstance(exc, openai.APIConnectionError):
            return ProviderUnreachable(
                f"Could not connect to {where}. Check OPENAI_BASE_URL (or %config Ask.base_url) and that the "
                "server is running; nothing was sent."
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ProviderAuthError(
                f"{where} refused the API key (HTTP {exc.status_code}). Set a valid OPENAI_API_KEY; the key "
                "itself is never shown or logged."
            )
        if isinstance(exc, openai.RateLimitError):
            retry_after = _retry_after(exc.response.headers if exc.response is not None else {})
            hint = f" The server asks to wait {retry_after:.0f} s." if retry_after else ""
            return ProviderRateLimited(
                f"{where} is rate-limiting requests (HTTP 429) and our retries did not get through.{hint} "
                "Wait and re-run the cell.",
                retry_after=retry_after,
            )
        if isinstance(exc, openai.NotFoundError):
            return ProviderResponseError(
                f"{where} does not know the model {self.model!r} (HTTP 404). Choose another with "
                "%config Ask.model = '...', --model, or CI_MAGIC_MODEL."
            )
        if isinstance(exc, openai.APIStatusError):
            detail = _short(str(exc.message))
            return ProviderResponseError(f"{where} answered HTTP {exc.status_code}: {detail}")
        return ProviderResponseError(f"{where} sent a reply we could not read: {_short(str(exc))}")


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def discover_model(base_url: str | None, api_key: str, timeout_s: float = 10.0) -> str:
    """The first model a server lists: local servers usually serve exactly one."""
    label = endpoint_label(base_url)
    try:
        with openai.OpenAI(
            api_key=api_key, base_url=base_url, timeout=min(timeout_s, 10.0), max_retries=1
        ) as c:
            models = [m.id for m in c.models.list()]
    except openai.APIConnectionError:
        raise ProviderUnreachable(
            f"Could not connect to the model server at {label}. Check OPENAI_BASE_URL and that the server "
            "is running; nothing was sent."
        ) from None
    except openai.APIError as exc:
        raise ProviderResponseError(
            f"The model server at {label} did not list its models ({_short(str(exc))}). Name one with "
            "%config Ask.model, --model or CI_MAGIC_MODEL."
        ) from None
    if not models:
        raise ProviderResponseError(f"The model server at {label} lists no models; name one with --model.")
    return models[0]
