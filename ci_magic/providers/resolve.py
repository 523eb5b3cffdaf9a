"""Pick the endpoint for a :class:`~ci_magic.core.settings.Settings`: remote when configured, else the local model."""

from __future__ import annotations

from typing import Any

from ..core.settings import DEFAULT_REMOTE_MODEL, Settings
from . import Completion, OneReply, OnText, Provider, Request

#: Local OpenAI-compatible servers accept any key; the client library insists on one.
PLACEHOLDER_KEY = "not-needed"


def make_provider(settings: Settings) -> Provider:
    """A provider for these settings. Only this function decides between remote and embedded."""
    from .openai_compat import OpenAIProvider, discover_model

    if settings.base_url or settings.api_key:
        api_key = settings.api_key or PLACEHOLDER_KEY
        model = settings.model
        if model is None:
            # A bare OpenAI key means api.openai.com; a custom server is asked what it serves.
            model = (
                discover_model(settings.base_url, api_key, settings.request_timeout_s, settings.frontend)
                if settings.base_url
                else DEFAULT_REMOTE_MODEL
            )
        return OpenAIProvider(
            model,
            api_key=api_key,
            base_url=settings.base_url,
            timeout_s=settings.request_timeout_s,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            frontend=settings.frontend,
        )
    return LocalProvider(settings)


class LocalProvider(OneReply):
    """The embedded model's server, looked up before every request.

    The shared server stops when idle, so an endpoint cached by a notebook can go stale; ``ensure_endpoint``
    costs about a millisecond when the server is up and restarts it when it is not.
    """

    local = True  # the model runs on this machine: no price per token

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._current: Any = None
        self._key: tuple[str, str] | None = None
        endpoint = self._endpoint()
        self.model = endpoint.model
        self.endpoint = f"embedded {endpoint.model}"

    def _endpoint(self) -> Any:
        from .. import local

        return local.ensure_endpoint(self._settings.model)

    def _client(self) -> Any:
        from .openai_compat import OpenAIProvider

        endpoint = self._endpoint()
        if self._key != (endpoint.base_url, endpoint.api_key):
            self.close()
            self._current = OpenAIProvider(
                endpoint.model,
                api_key=endpoint.api_key,
                base_url=endpoint.base_url,
                # CPU inference of a long reply is slow: never give up before five minutes.
                timeout_s=max(self._settings.request_timeout_s, 300.0),
                temperature=self._settings.temperature,
                max_tokens=self._settings.max_tokens,
                frontend=self._settings.frontend,
            )
            self._key = (endpoint.base_url, endpoint.api_key)
        return self._current

    def complete_many(self, request: Request, on_text: OnText | None = None) -> list[Completion]:
        # Our embedded server decodes the n samples together, in one batch (ci_magic/local/batch.py).
        found: list[Completion] = self._client().complete_many(request, on_text)
        return found

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
            self._key = None
