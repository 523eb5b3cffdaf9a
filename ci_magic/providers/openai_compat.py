"""The only module that imports ``openai``: streaming chat completions, errors translated to ours."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

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
from ..core.results import Usage, estimate_prompt_tokens, estimate_tokens
from ..core.settings import Frontend, how_to_set
from . import ENOUGH, Completion, Message, OneReply, OnText, Request, endpoint_label, enough_at, is_loopback

__all__ = ["OpenAIProvider", "discover_model", "endpoint_label", "is_loopback"]


class OpenAIProvider(OneReply):
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
        frontend: Frontend = "python",
    ) -> None:
        self.model = model
        self.endpoint = endpoint_label(base_url)
        self.local = is_loopback(base_url)
        self._frontend: Frontend = frontend
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._timeout_s = timeout_s
        # The client retries connection errors, 408/409/429 and 5xx with backoff honouring Retry-After.
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    def close(self) -> None:
        self._client.close()

    def complete_many(self, request: Request, on_text: OnText | None = None) -> list[Completion]:
        """One request with ``n`` where the endpoint honours it; servers that ignore ``n`` (llama.cpp's own,
        many proxies) answer one choice: that is remembered per endpoint and model, and the rest is drawn
        one request at a time."""
        where = (self.endpoint, self.model)
        found: list[Completion] = []
        if request.n > 1 and _N_SUPPORT.get(where) is not False:
            found = self._stream(request, on_text)
            _N_SUPPORT[where] = len(found) == request.n
        while len(found) < request.n:
            index = len(found)
            shifted = None if on_text is None else (lambda _i, text, index=index: on_text(index, text))
            seed = None if request.seed is None else request.seed + index
            found += self._stream(replace(request, n=1, seed=seed), shifted)
        return found

    def _stream(self, request: Request, on_text: OnText | None) -> list[Completion]:
        started = time.monotonic()
        pieces: dict[int, list[str]] = {}
        finish: dict[int, str] = {}
        usage: Usage | None = None
        try:
            # Typed as Any: the SDK's overloads enumerate OpenAI's own models and message classes, while we
            # speak to any compatible server with plain dicts.
            create: Any = self._client.chat.completions.create
            extra: dict[str, Any] = {} if request.seed is None else {"seed": request.seed}
            if request.n > 1:
                extra["n"] = request.n
            temperature = request.temperature
            stream = create(
                **extra,
                model=self.model,
                messages=request.messages,
                temperature=self._temperature if temperature is None else temperature,
                max_tokens=min(request.max_tokens or self._max_tokens, self._max_tokens),
                stream=True,
                stream_options={"include_usage": True},
            )
            with stream:
                for chunk in stream:
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                    for choice in chunk.choices:
                        index = int(choice.index or 0)
                        if not 0 <= index < request.n:
                            continue  # a server answering more choices than asked: not ours to keep
                        delta = choice.delta.content if choice.delta else None
                        pieces.setdefault(index, [])
                        if delta and request.enough is not None and request.n == 1:
                            before = "".join(pieces[index])
                            cut = enough_at(before + delta, len(before), request.enough)
                            if cut is not None:
                                delta = delta[: cut - len(before)]
                                finish[index] = ENOUGH
                        if delta:
                            pieces[index].append(delta)
                            if on_text is not None:
                                on_text(index, delta)
                        if choice.finish_reason and finish.get(index) != ENOUGH:
                            finish[index] = choice.finish_reason
                    if finish.get(0) == ENOUGH:
                        break  # leaving the stream closes the connection: the server stops generating
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
        texts = {i: "".join(p) for i, p in sorted(pieces.items())}
        if not any(texts.values()) and not finish:
            raise ProviderResponseError(
                f"The model server at {self.endpoint} closed the stream without sending a reply. "
                "The server may have crashed or a proxy cut the connection; try again."
            )
        seconds = time.monotonic() - started
        usages = _split_usage(usage, request.messages, list(texts.values()))
        # A choice that ends without a finish_reason was cut off: keep the text (it may hold code) but say so.
        return [
            Completion(text=t, usage=u, seconds=seconds, finish_reason=finish.get(i, "truncated"))
            for (i, t), u in zip(texts.items(), usages, strict=True)
        ]

    def _translate(self, exc: openai.APIError) -> ProviderError:
        where = f"the model server at {self.endpoint}"
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeout(
                f"{where} did not answer within {self._timeout_s:.0f} s. It may be overloaded or the model "
                f"may be too slow for this timeout; raise it ({how_to_set('request_timeout', self._frontend)}) "
                "or try again."
            )
        if isinstance(exc, openai.APIConnectionError):
            return ProviderUnreachable(
                f"Could not connect to {where}. Check the endpoint ({how_to_set('base_url', self._frontend)}) "
                "and that the server is running; nothing was sent."
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ProviderAuthError(
                f"{where} refused the API key (HTTP {exc.status_code}). Set a valid OPENAI_API_KEY; the key "
                "itself is never shown or logged.",
                exc.status_code,
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
                f"{how_to_set('model', self._frontend)}.",
                404,
            )
        if isinstance(exc, openai.APIStatusError):
            detail = _short(str(exc.message))
            return ProviderResponseError(
                f"{where} answered HTTP {exc.status_code}: {detail}", exc.status_code
            )
        return ProviderResponseError(f"{where} sent a reply we could not read: {_short(str(exc))}")


#: (endpoint, model) -> whether the server honours ``n`` (found out on the first vote, per process).
_N_SUPPORT: dict[tuple[str, str], bool] = {}


def _split_usage(usage: Usage | None, messages: list[Message], texts: list[str]) -> list[Usage]:
    """Usage per choice, as billed: the prompt once (on the first), the completion tokens shared out by text
    length so that they add up to what the server reported (estimated where it reported nothing)."""
    if usage is None:
        prompt = estimate_prompt_tokens(messages)
        return [
            Usage(prompt if i == 0 else 0, estimate_tokens(t), estimated=True) for i, t in enumerate(texts)
        ]
    weights = [max(1, estimate_tokens(t)) for t in texts]
    shares = [usage.completion_tokens * w // sum(weights) for w in weights]
    shares[0] += usage.completion_tokens - sum(shares)
    return [Usage(usage.prompt_tokens if i == 0 else 0, share) for i, share in enumerate(shares)]


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def discover_model(
    base_url: str | None, api_key: str, timeout_s: float = 10.0, frontend: Frontend = "python"
) -> str:
    """The first model a server lists: local servers usually serve exactly one."""
    label = endpoint_label(base_url)
    try:
        with openai.OpenAI(
            api_key=api_key, base_url=base_url, timeout=min(timeout_s, 10.0), max_retries=1
        ) as c:
            models = [m.id for m in c.models.list()]
    except openai.APIConnectionError:
        raise ProviderUnreachable(
            f"Could not connect to the model server at {label}. Check the endpoint "
            f"({how_to_set('base_url', frontend)}) and that the server is running; nothing was sent."
        ) from None
    except openai.APIError as exc:
        raise ProviderResponseError(
            f"The model server at {label} did not list its models ({_short(str(exc))}). Name one with "
            f"{how_to_set('model', frontend)}."
        ) from None
    if not models:
        raise ProviderResponseError(
            f"The model server at {label} lists no models; name one with {how_to_set('model', frontend)}."
        )
    return models[0]
