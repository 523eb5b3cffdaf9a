"""A scripted OpenAI-compatible chat server on loopback, for tests and demos (ours and users').

Usage::

    with FakeModelServer(["```python\\nprint(1)\\n```"]) as server:
        interp = Interpreter(base_url=server.base_url, api_key="x", model="fake")
        ...
        assert len(server.requests) == 1

A script is a list of turns, consumed one per request. A turn is a reply string or a :class:`Turn` (status code,
delays, truncation, headers). ``rules`` answer by regex on the last user message instead, for notebooks that
ask the same questions in any order. Both can be loaded from JSON (``ci-magic fake-server``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Turn:
    reply: str = ""
    status: int = 200
    delay_s: float = 0.0  # before the first byte
    chunk_delay_s: float = 0.0  # between streamed chunks
    truncate: bool = False  # close the stream mid-reply without finish_reason or [DONE]
    headers: dict[str, str] = field(default_factory=dict)
    usage: tuple[int, int] | None = None  # (prompt, completion); None = count words

    @classmethod
    def coerce(cls, value: str | dict[str, Any] | Turn) -> Turn:
        if isinstance(value, Turn):
            return value
        if isinstance(value, str):
            return cls(reply=value)
        return cls(**value)


class FakeModelServer:
    """Serve ``/v1/chat/completions`` and ``/v1/models`` from a script, recording every request body."""

    def __init__(
        self,
        script: list[str | dict[str, Any] | Turn] | None = None,
        *,
        rules: list[tuple[str, str | dict[str, Any] | Turn]] | None = None,
        model: str = "fake-model",
        port: int = 0,
        api_key: str | None = None,
        n_choices: bool = False,
    ) -> None:
        self.model = model
        # Honour the OpenAI ``n`` parameter (one request answered with several script turns as choices), like
        # our embedded server and most remote ones; off, it answers one choice like llama.cpp's own server.
        self.n_choices = n_choices
        self.requests: list[dict[str, Any]] = []
        self._script = [Turn.coerce(t) for t in (script or [])]
        self._rules = [(re.compile(p, re.I | re.S), Turn.coerce(t)) for p, t in (rules or [])]
        self._api_key = api_key
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @classmethod
    def from_json(cls, path: str | Path, **kwargs: Any) -> FakeModelServer:
        spec = json.loads(Path(path).read_text())
        return cls(spec.get("script"), rules=[tuple(r) for r in spec.get("rules", [])], **kwargs)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def add(self, *turns: str | dict[str, Any] | Turn) -> None:
        with self._lock:
            self._script.extend(Turn.coerce(t) for t in turns)

    def start(self) -> FakeModelServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-model", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def next_turns(self, body: dict[str, Any]) -> list[Turn]:
        """The turns answering one request: one, or with ``n_choices`` and a request for ``n``, that many
        (fewer when the script runs out), like a server that decodes ``n`` samples at once."""
        n = int(body.get("n") or 1) if self.n_choices else 1
        first = self.next_turn(body)
        if first.status != 200 or n == 1:
            return [first]
        with self._lock:
            taken = [self._script.pop(0) for _ in range(min(n - 1, len(self._script)))]
        return [first, *taken]

    def next_turn(self, body: dict[str, Any]) -> Turn:
        with self._lock:
            self.requests.append(body)
            if self._script:
                return self._script.pop(0)
        last_user = next(
            (
                str(m.get("content", ""))
                for m in reversed(body.get("messages", []))
                if m.get("role") == "user"
            ),
            "",
        )
        for pattern, turn in self._rules:
            if pattern.search(last_user):
                return turn
        return Turn(status=500, reply="fake model: script exhausted and no rule matched the request")

    def authorised(self, header: str | None) -> bool:
        return self._api_key is None or header == f"Bearer {self._api_key}"


def _usage(body: dict[str, Any], turn: Turn) -> dict[str, int]:
    if turn.usage is not None:
        prompt, completion = turn.usage
    else:
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        completion = len(turn.reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _handler_for(server: FakeModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read server.requests instead
            pass

        def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not server.authorised(self.headers.get("Authorization")):
                self._json(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._json(404, {"error": {"message": "not found"}})
                return
            turns = server.next_turns(body)
            turn = turns[0]
            if turn.delay_s:
                time.sleep(turn.delay_s)
            if turn.status != 200:
                self._json(turn.status, {"error": {"message": turn.reply or "error"}}, turn.headers)
                return
            if body.get("stream"):
                self._stream(body, turns)
            else:
                self._json(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": server.model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": turn.reply},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": _usage(body, turn),
                    },
                )

        def _stream(self, body: dict[str, Any], turns: list[Turn]) -> None:
            turn = turns[0]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

            def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> None:
                chunk: dict[str, Any] = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": server.model,
                    "choices": choices,
                }
                if usage is not None:
                    chunk["usage"] = usage
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()

            # Several choices stream interleaved, a piece of each in turn, as batched servers send them.
            streams = [re.findall(r"\S*\s*", t.reply) or [""] for t in turns]
            if turn.truncate:
                streams[0] = streams[0][: max(1, len(streams[0]) // 2)]
            try:
                for step in range(max(len(s) for s in streams)):
                    for index, pieces in enumerate(streams):
                        if step < len(pieces) and pieces[step]:
                            event(
                                [{"index": index, "delta": {"content": pieces[step]}, "finish_reason": None}]
                            )
                    if turn.chunk_delay_s:
                        time.sleep(turn.chunk_delay_s)
                if turn.truncate:
                    return
                for index in range(len(turns)):
                    event([{"index": index, "delta": {}, "finish_reason": "stop"}])
                if (body.get("stream_options") or {}).get("include_usage"):
                    usages = [_usage(body, t) for t in turns]
                    prompt = usages[0]["prompt_tokens"]  # the prompt is read once for all choices
                    completion = sum(u["completion_tokens"] for u in usages)
                    event(
                        [],
                        {
                            "prompt_tokens": prompt,
                            "completion_tokens": completion,
                            "total_tokens": prompt + completion,
                        },
                    )
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a cancelled ask); nothing to report

    return Handler
