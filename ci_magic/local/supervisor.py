"""The local model server process: llama-cpp-python's OpenAI app under uvicorn, plus a watchdog.

Started by :func:`ci_magic.local.server.ensure_server` as ``python -m ci_magic.local.supervisor``; not
meant to be run by hand. The watchdog ends the server when no request came for ``--idle`` seconds, or
once the processes holding leases in the registry have all exited, or when the registry no longer
names this process (someone replaced or stopped it).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # llama_cpp is the optional [local] extra: imported where the server starts
    from llama_cpp.server.settings import ModelSettings

from .registry import API_KEY_ENV, HEALTH_PATH, live_leases, read_registry, registry_path

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Activity:
    """ASGI wrapper: answers the health probe itself and tracks when the model was last used.

    The probe bypasses llama-cpp-python's routes because those take its global request lock:
    a probe would wait behind a long generation (and, with interrupt_requests, cut it short).
    """

    def __init__(self, app: ASGIApp, model: str) -> None:
        self.app, self.model = app, model
        self.in_flight = 0
        self.last_used = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") == HEALTH_PATH:
            body = json.dumps({"model": self.model, "pid": os.getpid()}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        self.in_flight += 1
        self.last_used = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.last_used = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.in_flight else time.monotonic() - self.last_used


class Watchdog(threading.Thread):
    def __init__(self, args: argparse.Namespace, activity: Activity, on_stop: Callable[[str], None]) -> None:
        super().__init__(name="ci-magic-watchdog", daemon=True)
        self.args, self.activity, self.on_stop = args, activity, on_stop
        self.model: str = args.alias
        self.had_lease = False
        self.strays = 0
        self.halt = threading.Event()

    def reason_to_stop(self) -> str | None:
        data = read_registry(self.model)
        if data is None or data.get("pid") != os.getpid():
            # Two looks in a row, so a registry being rewritten at this instant does not kill us.
            self.strays += 1
            return "no longer registered" if self.strays >= 2 else None
        self.strays = 0
        leases = live_leases(data)
        self.had_lease = self.had_lease or bool(data.get("leases"))
        if self.had_lease and not leases:
            return "every process that used it has exited"
        if self.args.idle > 0 and self.activity.idle_for() >= self.args.idle:
            return f"idle for {self.args.idle / 60:g} min"
        return None

    def run(self) -> None:
        while not self.halt.wait(self.args.poll):
            reason = self.reason_to_stop()
            if reason is None:
                continue
            # Decide and unregister under the registry lock: a client in ensure_server either
            # added its lease before we looked (we stay), or finds no registry and starts anew.
            fd = os.open(self.args.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a client is busy with the registry; look again next round
                reason = self.reason_to_stop()
                if reason is None:
                    continue
                data = read_registry(self.model)
                if data is not None and data.get("pid") == os.getpid():
                    registry_path(self.model).unlink(missing_ok=True)
            finally:
                os.close(fd)
            self.on_stop(reason)
            return


def _daemonize(log: str) -> None:
    """Fork; the parent prints the child's pid and exits so the launcher can reap it at once."""
    pid = os.fork()
    if pid:
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        os._exit(0)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)


def model_settings(gguf: str, alias: str, n_ctx: int, threads: int) -> ModelSettings:
    """How the embedded server loads its model (benchmarks load it the same way)."""
    from llama_cpp.server.settings import ModelSettings

    return ModelSettings(
        model=gguf,
        model_alias=alias,
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        # The server's defaults differ from Llama's: logits_all copies a 150k-float row per token
        # (~0.6x speed on the 0.5B model; only needed for logprobs) and mlock pins the whole file.
        logits_all=False,
        use_mlock=False,
        # Off: on 2 CPU cores flash attention read the dev set's first prompts 1.08x faster but decoded 0.95x
        # as fast (benchmarks/flash_attention.py), and an ask's time is mostly decoding.
        flash_attn=False,
        verbose=False,
    )


def _log(message: str) -> None:
    print(f"[ci-magic supervisor {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci_magic.local.supervisor")
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--fd", type=int, required=True, help="bound, not listening, TCP socket")
    parser.add_argument("--registry", required=True)
    parser.add_argument("--lock", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--idle", type=float, default=1800.0, help="seconds; 0 disables")
    parser.add_argument("--poll", type=float, default=5.0)
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--daemon", action="store_true")
    args = parser.parse_args(argv)
    if Path(args.registry) != registry_path(args.alias):
        parser.error("--registry does not match the cache dir of this environment")
    if args.daemon:
        _daemonize(args.log)
    sock = socket.socket(fileno=args.fd)
    api_key = os.environ.pop(API_KEY_ENV, None) or None

    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ServerSettings

    _log(f"loading {args.gguf} as {args.alias!r} (n_ctx={args.n_ctx}, threads={args.threads})")
    started = time.monotonic()
    fastapi_app = create_app(
        # interrupt_requests would let any request (a second notebook) cut a running generation short.
        server_settings=ServerSettings(
            host="127.0.0.1", port=sock.getsockname()[1], api_key=api_key, interrupt_requests=False
        ),
        model_settings=[model_settings(args.gguf, args.alias, args.n_ctx, args.threads)],
    )
    from .batch import install as install_batched_samples

    install_batched_samples(fastapi_app)  # the OpenAI `n` parameter, which llama-cpp-python ignores
    activity = Activity(fastapi_app, args.alias)
    config = uvicorn.Config(
        activity, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)

    def stop(reason: str) -> None:
        _log(f"stopping: {reason}")
        server.should_exit = True

    watchdog = Watchdog(args, activity, stop)
    watchdog.start()
    _log(f"serving on 127.0.0.1:{sock.getsockname()[1]} after {time.monotonic() - started:.1f} s")
    try:
        server.run(sockets=[sock])
    finally:
        watchdog.halt.set()
        sock.close()
        with contextlib.suppress(OSError):
            data = read_registry(args.alias)
            if data is not None and data.get("pid") == os.getpid():
                registry_path(args.alias).unlink(missing_ok=True)
        _log("exited")
    return 0


if __name__ == "__main__":
    sys.exit(main())
