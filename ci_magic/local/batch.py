"""The OpenAI ``n`` parameter for the embedded server: several chat samples decoded together in one batch.

llama-cpp-python's server ignores ``n``. This module owns what serving ``n > 1`` on ``POST /v1/chat/completions``
takes: a multi-sequence context for the Llama the app already loaded (:func:`install`), the prompt rendered by
llama-cpp-python's own chat handler (:func:`prepare`), the batched decode (:func:`generate`) and the HTTP side
(:class:`BatchedCompletion`: SSE chunks or one JSON reply). The prompt is evaluated once, in sequence 0, which
stays llama-cpp-python's prefix cache; sample *i* runs in sequence *i + 1*, sharing the prompt's KV cells (one
unified cache, ``llama_memory_seq_cp``), and each step decodes one token of every running sample in a single
``llama_decode``. Requests with ``n == 1`` go to llama-cpp-python's own handler, unchanged.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import random
import sys
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import anyio
import llama_cpp
from fastapi import Depends, FastAPI
from llama_cpp import Llama
from llama_cpp import _internals as internals
from llama_cpp.server import app as llama_app
from llama_cpp.server.errors import RouteErrorHandler
from llama_cpp.server.types import CreateChatCompletionRequest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

MAX_N = 8
CHAT_PATH = "/v1/chat/completions"
_UTF8 = codecs.getincrementaldecoder("utf-8")
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


class BatchError(Exception):
    """A request we refuse (or fail), answered with an OpenAI-style error body."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.code = param, code

    def response(self, status: int = 400) -> JSONResponse:
        kind = "invalid_request_error" if status < 500 else "internal_server_error"
        return JSONResponse(
            {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}, status
        )


def refusal(body: CreateChatCompletionRequest, max_n: int = MAX_N) -> BatchError | None:
    """Why *body* cannot be served with its ``n`` (checked before taking the model), or None."""
    n = 1 if body.n is None else body.n
    if not 1 <= n <= max_n:
        return BatchError(f"n must be between 1 and {max_n} on this server, got {n}.", param="n")
    # These need a grammar, logits or sampler state per sequence, which this path does not keep: refusing
    # beats ignoring them.
    options = ("logprobs", "top_logprobs", "grammar", "logit_bias", "min_tokens", "response_format")
    named = [k for k in (*options, "tool_choice", "function_call", "mirostat_mode") if getattr(body, k)]
    if n > 1 and named:
        return BatchError(f"{', '.join(named)} cannot be combined with n > 1 on this server.", param=named[0])
    return None


class _Rendered(Exception):
    """Carries the keyword arguments the chat handler passed to create_completion."""


class _RenderOnly:
    """The Llama as its chat handler sees it: real in every attribute but ``create_completion``, which hands
    back its arguments instead of generating. So the template, tokenization and stop words are exactly those
    of the n = 1 path, whichever handler (the GGUF's Jinja template or a named format) the model uses."""

    def __init__(self, llama: Llama) -> None:
        self._llama = llama

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def create_completion(self, **kwargs: Any) -> Any:
        raise _Rendered(kwargs)


@dataclass(frozen=True)
class Plan:
    prompt: list[int]
    seeds: list[int]  # one per sample: len(seeds) is n
    max_tokens: int
    stop: list[str]
    sampling: dict[str, Any]  # what the chat handler passed to create_completion (temperature, top_p, ...)


def prepare(llama: Llama, body: CreateChatCompletionRequest) -> Plan:
    """Render and tokenize the request as llama-cpp-python's route would, and fix each sample's seed."""
    request = body.model_dump(exclude={"n", "logit_bias_type", "user", "min_tokens"})  # as its route does
    try:
        Llama.create_chat_completion(cast(Llama, _RenderOnly(llama)), **request)
        raise RuntimeError("the chat handler returned without calling create_completion")
    except _Rendered as rendered:
        call: dict[str, Any] = rendered.args[0]
    if any(call.get(k) is not None for k in ("grammar", "logits_processor", "logit_bias")):
        raise BatchError("this request needs a grammar or logit processing, which n > 1 does not support.")
    prompt, n_ctx = list(call["prompt"]), llama.n_ctx()
    if len(prompt) >= n_ctx:
        raise BatchError(
            f"This model's maximum context length is {n_ctx} tokens, however the messages take "
            f"{len(prompt)} tokens. Please reduce the length of the messages.",
            param="messages",
            code="context_length_exceeded",
        )
    max_tokens = call.get("max_tokens") or 0  # as in Llama._create_completion: <= 0 means up to n_ctx
    max_tokens = min(max_tokens if max_tokens > 0 else n_ctx, n_ctx - len(prompt))
    stop = call.get("stop") or []
    base = call["seed"] if call.get("seed") is not None else random.getrandbits(32)
    # seed, seed + 1, ...: sample i draws as an n = 1 request with seed + i would (their texts part only where
    # batched float rounding tips a choice).
    seeds = [(base + i) & 0xFFFFFFFF for i in range(body.n or 1)]
    return Plan(prompt, seeds, max_tokens, [stop] if isinstance(stop, str) else list(stop), call)


def _sampler(llama: Llama, s: dict[str, Any], seed: int) -> Any:
    """A sampler chain built as Llama._init_sampler builds it (mirostat aside: refused), with this seed."""
    lc, temp, n_vocab = llama_cpp, float(s.get("temperature") or 0.0), llama.n_vocab()
    penalties = (s["repeat_penalty"], s["frequency_penalty"] or 0.0, s["presence_penalty"] or 0.0)
    parts = [lc.llama_sampler_init_penalties(n_vocab, llama.last_n_tokens_size, *penalties)]
    if temp < 0:
        parts.append(lc.llama_sampler_init_dist(seed))
    elif temp == 0:
        parts.append(lc.llama_sampler_init_greedy())
    else:
        parts += [
            lc.llama_sampler_init_top_k(s.get("top_k", 40)),
            lc.llama_sampler_init_typical(s.get("typical_p", 1.0), 1),
            lc.llama_sampler_init_top_p(s.get("top_p", 0.95), 1),
            lc.llama_sampler_init_min_p(s.get("min_p", 0.05), 1),
            lc.llama_sampler_init_temp(temp),
            lc.llama_sampler_init_dist(seed),
        ]
    chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
    for part in parts:
        lc.llama_sampler_chain_add(chain, part)
    return chain


class Delta(NamedTuple):
    choice: int
    text: str
    finish: str | None  # "stop" or "length" once the sample is done
    tokens: int  # completion tokens of this sample so far


@dataclass
class _Sample:
    index: int
    sampler: Any
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0  # characters of text already handed out
    finish: str | None = None
    # Incremental, so a character split over two tokens goes out once complete, never as two halves.
    utf8: codecs.IncrementalDecoder = field(default_factory=lambda: _UTF8("replace"))

    def end(self, reason: str) -> Delta:
        self.finish, self.text = reason, self.text + self.utf8.decode(b"", final=True)
        text, self.sent = self.text[self.sent :], len(self.text)
        return Delta(self.index, text, reason, len(self.tokens))

    def push(self, token: int, piece: bytes, eog: bool, plan: Plan) -> Delta | None:
        if eog:  # as in llama-cpp-python, the end-of-generation token is neither text nor counted
            return self.end("stop")
        self.tokens.append(token)
        since = max(0, len(self.text) - max((len(s) for s in plan.stop), default=0) + 1)
        self.text += self.utf8.decode(piece)
        hits = [i for s in plan.stop if s and (i := self.text.find(s, since)) >= 0]
        if hits:
            self.text, self.utf8 = self.text[: min(hits)], _UTF8("replace")  # bytes after the stop: dropped
            return self.end("stop")
        if len(self.tokens) >= plan.max_tokens:
            return self.end("length")
        # Hold back a tail that may be the start of a stop string: it must never reach the client.
        held = max((k for s in plan.stop for k in range(1, len(s)) if self.text.endswith(s[:k])), default=0)
        if (ready := len(self.text) - held) <= self.sent:
            return None
        text, self.sent = self.text[self.sent : ready], ready
        return Delta(self.index, text, None, len(self.tokens))


def _fill(batch: Any, rows: list[tuple[int, int, int, bool]]) -> None:
    """Rows of (token, position, sequence id, wants logits)."""
    batch.n_tokens = len(rows)
    for j, (token, pos, seq, logits) in enumerate(rows):
        batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.logits[j] = token, pos, 1, logits
        batch.seq_id[j][0] = seq


def _keep_prefix(llama: Llama, memory: Any, prompt: list[int]) -> int:
    """Reuse what sequence 0 (llama-cpp-python's own prefix cache) holds of the prompt; drop all else."""
    cached = llama.input_ids[: llama.n_tokens].tolist()
    keep = next((i for i, (a, b) in enumerate(zip(cached, prompt, strict=False)) if a != b), len(cached))
    keep = min(keep, len(prompt) - 1)  # the last prompt token is decoded again: its logits start every sample
    if not llama_cpp.llama_memory_seq_rm(memory, -1, keep, -1):  # -1: every sequence
        llama_cpp.llama_memory_clear(memory, True)
        keep = 0
    llama.n_tokens = keep
    return keep


def generate(llama: Llama, plan: Plan) -> Generator[list[Delta], None, None]:
    """Decode the plan's samples together, yielding each step's new text (an empty list per prompt chunk).

    Run it under the app's model lock. Closing the generator stops it at once and leaves the context as
    llama-cpp-python expects: sequence 0 holding ``llama.input_ids[:llama.n_tokens]``, no other sequence.
    """
    lc, ctx, prompt = llama_cpp, llama.ctx, plan.prompt
    memory, vocab = lc.llama_get_memory(ctx), lc.llama_model_get_vocab(llama.model)
    batch = lc.llama_batch_init(max(llama.n_batch, len(plan.seeds)), 0, 1)
    samples = [_Sample(i, _sampler(llama, plan.sampling, seed)) for i, seed in enumerate(plan.seeds)]
    try:
        done, last = _keep_prefix(llama, memory, prompt), len(prompt) - 1
        while done < len(prompt):  # one chunk per step, so a disconnect is noticed between chunks
            # The last token always alone, as when llama-cpp-python replays a cached prompt: the first logits,
            # and so the samples of a seed, do not depend on how much of the prompt was cached.
            chunk = prompt[done : min(done + llama.n_batch, last)] or prompt[last:]
            _fill(batch, [(t, done + j, 0, done + j == last) for j, t in enumerate(chunk)])
            if (rc := lc.llama_decode(ctx, batch)) != 0:
                raise RuntimeError(f"llama_decode failed on the prompt ({rc})")
            llama.input_ids[done : done + len(chunk)] = chunk
            llama.n_tokens = done = done + len(chunk)
            yield []
        for s in samples:
            lc.llama_memory_seq_cp(memory, 0, s.index + 1, -1, -1)
        row = dict.fromkeys(range(len(samples)), -1)  # each sample's logits row; -1: the prompt's last token
        running = samples
        while running:
            deltas = []
            for s in running:
                token = lc.llama_sampler_sample(s.sampler, ctx, row[s.index])
                eog = lc.llama_vocab_is_eog(vocab, token)
                if (delta := s.push(token, b"" if eog else llama.detokenize([token]), eog, plan)) is not None:
                    deltas.append(delta)
                if s.finish is not None:  # it leaves the batch and frees its cells for the others
                    lc.llama_memory_seq_rm(memory, s.index + 1, -1, -1)
            running = [s for s in running if s.finish is None]
            while running:
                _fill(
                    batch,
                    [(s.tokens[-1], len(prompt) + len(s.tokens) - 1, s.index + 1, True) for s in running],
                )
                if (rc := lc.llama_decode(ctx, batch)) != 1:
                    break
                # No free KV cell for every sample: end the longest, as reaching n_ctx would have.
                longest = max(running, key=lambda s: len(s.tokens))
                deltas.append(longest.end("length"))
                lc.llama_memory_seq_rm(memory, longest.index + 1, -1, -1)
                running.remove(longest)
            if running and rc != 0:
                raise RuntimeError(f"llama_decode failed ({rc})")
            row = {s.index: j for j, s in enumerate(running)}
            yield deltas
    except Exception:
        lc.llama_memory_clear(memory, True)  # unknown state after a failed decode: forget it all
        llama.n_tokens = 0
        raise
    finally:
        for s in samples:
            lc.llama_memory_seq_rm(memory, s.index + 1, -1, -1)
            lc.llama_sampler_free(s.sampler)
        lc.llama_batch_free(batch)
        llama._requires_eval = True  # the logits are no longer the cached prompt's: decode before sampling


class BatchedCompletion(Response):
    """One n > 1 request: takes the model lock, renders, decodes, and streams SSE chunks or answers JSON."""

    def __init__(self, body: CreateChatCompletionRequest, include_usage: bool) -> None:
        super().__init__()
        self.request_body, self.include_usage = body, include_usage
        self.id, self.created = f"chatcmpl-{uuid.uuid4()}", int(time.time())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request, body, n = Request(scope, receive), self.request_body, self.request_body.n or 1
        texts, tokens, finish = [""] * n, [0] * n, [""] * n
        async with contextlib.asynccontextmanager(llama_app.get_llama_proxy)() as proxy:
            llama = proxy(body.model)
            try:
                plan = await anyio.to_thread.run_sync(prepare, llama, body)
            except Exception as exc:
                error = exc if isinstance(exc, BatchError) else BatchError(f"{type(exc).__name__}: {exc}")
                await error.response(400 if exc is error else 500)(scope, receive, send)
                return
            if body.stream:
                # Not self.raw_headers: Response.__init__ put a content-length for its empty body there.
                await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
                for i in range(n):
                    await self._event(send, {"index": i, "delta": {"role": "assistant", "content": ""}})
            steps = generate(llama, plan)
            try:
                while (deltas := await anyio.to_thread.run_sync(next, steps, None)) is not None:
                    for d in deltas:
                        texts[d.choice] += d.text
                        finish[d.choice], tokens[d.choice] = d.finish or "", d.tokens
                        if body.stream and d.text:
                            await self._event(send, {"index": d.choice, "delta": {"content": d.text}})
                        if body.stream and d.finish:
                            await self._event(send, {"index": d.choice, "delta": {}}, d.finish)
                    if await request.is_disconnected():
                        return  # the finally below frees the model for the next request at once
            except Exception as exc:
                print(f"batched completion failed: {exc!r}", file=sys.stderr, flush=True)
                if not body.stream:
                    await BatchError(f"{type(exc).__name__}: {exc}").response(500)(scope, receive, send)
                    return
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(steps.close)
        usage = {"prompt_tokens": len(plan.prompt), "completion_tokens": sum(tokens)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.stream:
            if self.include_usage and all(finish):  # after a failure: no usage, and no finish_reason either
                await self._send(send, self._chunk([], usage))
            await self._send(send, b"data: [DONE]\n\n")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        message = [{"role": "assistant", "content": text} for text in texts]
        choices = [{"index": i, "message": message[i], "finish_reason": finish[i]} for i in range(n)]
        reply = {"id": self.id, "object": "chat.completion", "created": self.created,
                 "model": body.model or "", "choices": choices, "usage": usage}  # fmt: skip
        await JSONResponse(reply)(scope, receive, send)

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        data: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                "model": self.request_body.model or "", "choices": choices}  # fmt: skip
        if self.include_usage:  # as OpenAI: null on every chunk but the last, which has no choices
            data["usage"] = usage
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    async def _event(self, send: Send, choice: dict[str, Any], finish: str | None = None) -> None:
        await self._send(send, self._chunk([{**choice, "finish_reason": finish}]))

    @staticmethod
    async def _send(send: Send, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})


def enable_sequences(llama: Llama, n_seq: int) -> None:
    """Rebuild *llama*'s context, same size, with room for *n_seq* sequences sharing one KV cache.

    Llama() always makes a one-sequence context. The weights stay loaded; only the KV cache and compute
    buffers are made anew. A unified cache lets samples share the prompt's cells and costs one sequence nothing.
    """
    params = llama.context_params
    params.n_seq_max, params.kv_unified = n_seq, True
    fresh = internals.LlamaContext(model=llama._model, params=params, verbose=llama.verbose)
    old, llama._ctx = llama._ctx, fresh
    cast(Any, old).close()  # Llama's exit stack closes it again at exit, which is a no-op
    llama.n_tokens = 0


def install(app: FastAPI, max_n: int = MAX_N) -> None:
    """Serve ``n`` on the app's chat route: n = 1 as before, 1 < n <= max_n batched, anything else a 400."""
    proxy = llama_app._llama_proxy  # create_app loaded the model into this module global
    assert proxy is not None, "create_app() must run first"
    enable_sequences(proxy(None), max_n + 1)

    async def chat(request: Request, body: CreateChatCompletionRequest) -> Any:
        problem = refusal(body, max_n)
        if problem is not None:
            return problem.response()
        if (body.n or 1) == 1:
            return await llama_app.create_chat_completion(request, body)
        raw = await request.json()  # stream_options is no field of llama-cpp-python's request model
        options = raw.get("stream_options") if isinstance(raw, dict) else None
        include_usage = bool(body.stream and isinstance(options, dict) and options.get("include_usage"))
        return BatchedCompletion(body, include_usage)

    app.router.add_api_route(
        CHAT_PATH,
        chat,
        methods=["POST"],
        dependencies=[Depends(llama_app.authenticate)],  # the API key check of every llama-cpp-python route
        route_class_override=RouteErrorHandler,  # its OpenAI-style errors, for the n = 1 path
        response_model=None,
    )
    # First in line: llama-cpp-python's own chat route stays behind it, never reached by a POST.
    app.router.routes.insert(0, app.router.routes.pop())
