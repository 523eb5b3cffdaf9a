"""Model-side failures come out as clear ProviderErrors, never tracebacks or hangs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_magic.core.errors import (
    ProviderAuthError,
    ProviderRateLimited,
    ProviderResponseError,
    ProviderUnreachable,
)
from ci_magic.core.settings import Settings
from ci_magic.providers import ENOUGH, Request, enough_at
from ci_magic.providers.cache import CachedProvider, ReplyCache
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


def test_enough_ends_the_reply_at_the_line_it_names(fake: FakeModelServer) -> None:
    fake.add(Turn(reply="one\ntwo three\nfour\nfive\n", usage=(11, 9)))
    pieces: list[str] = []
    seen: list[str] = []

    def enough(text: str) -> bool:
        seen.append(text)
        return text.endswith("two three\n")

    request = Request(MESSAGES, enough=enough)
    [completion] = provider(fake).complete_many(request, lambda _i, piece: pieces.append(piece))
    assert completion.text == "".join(pieces) == "one\ntwo three\n"
    assert completion.finish_reason == ENOUGH and completion.usage.estimated  # the server's usage never came
    assert seen == ["one\n", "one\ntwo three\n"]  # asked at the end of each line, never past the cut


def test_enough_is_asked_at_every_line_of_a_piece_that_holds_several() -> None:
    text = "a\nb\nc\n"
    assert enough_at(text, 0, lambda t: t.endswith("b\n")) == 4
    assert enough_at(text, 2, lambda t: True) == 4  # lines that ended before `start` were asked already
    assert enough_at(text, 0, lambda t: False) is None and enough_at(text, 0, None) is None


def test_a_reply_ended_early_is_not_cached_and_a_cached_one_is_ended_alike(
    fake: FakeModelServer, tmp_path: Path
) -> None:
    cache = ReplyCache(tmp_path / "c")
    cached = CachedProvider(provider(fake), cache)
    at_two = Request(MESSAGES, enough=lambda t: t.endswith("two\n"))
    fake.add(Turn(reply="one\ntwo\nthree\n"), Turn(reply="one\ntwo\nthree\n"))
    assert cached.complete_many(at_two)[0].text == "one\ntwo\n"
    assert not list((tmp_path / "c").rglob("*.json"))  # the cut reply was not stored
    assert cached.complete_many(Request(MESSAGES))[0].text == "one\ntwo\nthree\n"  # asked the model: stored
    replayed = cached.complete_many(at_two)[0]
    assert replayed.cached and replayed.text == "one\ntwo\n" and replayed.finish_reason == ENOUGH
    assert len(fake.requests) == 2
