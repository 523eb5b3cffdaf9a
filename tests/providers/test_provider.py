"""Model-side failures come out as clear ProviderErrors, never tracebacks or hangs."""

from __future__ import annotations

import pytest

from ci_magic.core.errors import (
    ProviderAuthError,
    ProviderRateLimited,
    ProviderResponseError,
    ProviderUnreachable,
)
from ci_magic.core.settings import Settings
from ci_magic.providers.fake import FakeModelServer, Turn
from ci_magic.providers.openai_compat import OpenAIProvider, discover_model
from ci_magic.providers.resolve import make_provider

MESSAGES = [{"role": "user", "content": "hi"}]


def provider(server: FakeModelServer, key: str = "k") -> OpenAIProvider:
    return OpenAIProvider("fake-model", api_key=key, base_url=server.base_url, timeout_s=5, max_retries=1)


def test_streams_text_and_reports_usage(fake: FakeModelServer) -> None:
    fake.add(Turn(reply="hello there world", usage=(11, 3)))
    pieces: list[str] = []
    completion = provider(fake).complete(MESSAGES, on_text=pieces.append)
    assert "".join(pieces) == completion.text == "hello there world" and len(pieces) == 3
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 3)
    assert fake.requests[0]["stream"] is True


def test_unreachable_server() -> None:
    p = OpenAIProvider("m", api_key="k", base_url="http://127.0.0.1:9/v1", timeout_s=2, max_retries=0)
    with pytest.raises(ProviderUnreachable, match="Could not connect"):
        p.complete(MESSAGES)


def test_bad_key_is_named_but_never_shown() -> None:
    with FakeModelServer(api_key="right") as server, pytest.raises(ProviderAuthError) as info:
        provider(server, key="wrong-secret-key").complete(MESSAGES)
    assert "HTTP 401" in str(info.value) and "wrong-secret-key" not in str(info.value)


def test_rate_limit_reports_retry_after(fake: FakeModelServer) -> None:
    fake.add(*[Turn(status=429, reply="slow down", headers={"Retry-After": "0"})] * 2)
    with pytest.raises(ProviderRateLimited, match="HTTP 429"):
        provider(fake).complete(MESSAGES)
    assert len(fake.requests) == 2  # the client retried once, honouring Retry-After


def test_truncated_stream_keeps_text_and_says_so(fake: FakeModelServer) -> None:
    fake.add(Turn(reply="```python\nprint(1)\nprint(2)\n```", truncate=True))
    completion = provider(fake).complete(MESSAGES)
    assert completion.finish_reason == "truncated" and completion.text


def test_unknown_model(fake: FakeModelServer) -> None:
    fake.add(Turn(status=404, reply="model not found"))
    with pytest.raises(ProviderResponseError, match="does not know the model"):
        provider(fake).complete(MESSAGES)


def test_model_is_discovered_from_the_server(fake: FakeModelServer) -> None:
    assert discover_model(fake.base_url, "k") == "fake-model"
    p = make_provider(Settings(base_url=fake.base_url))
    assert p.model == "fake-model" and p.endpoint.startswith("127.0.0.1:")


def test_slow_server_times_out_without_hanging(fake: FakeModelServer) -> None:
    from ci_magic.core.errors import ProviderTimeout

    fake.add(*[Turn(reply="late", delay_s=3)] * 2)
    p = OpenAIProvider("fake-model", api_key="k", base_url=fake.base_url, timeout_s=0.5, max_retries=0)
    with pytest.raises(ProviderTimeout, match="did not answer within"):
        p.complete(MESSAGES)


def test_a_50_kb_reply_is_handled(fake: FakeModelServer) -> None:
    from ci_magic.engine.extract import extract_code

    reply = "Let me explain. " * 2000 + "\n```python\nprint('ok')\n```\n" + "More words. " * 1500
    assert len(reply) > 50_000
    fake.add(reply)
    completion = provider(fake).complete(MESSAGES)
    assert completion.text == reply and extract_code(completion.text) == "print('ok')\n"
