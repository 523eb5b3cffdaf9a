"""One kernel's WebSocket on Jupyter Enterprise Gateway, distrusted (the REST API is in ``rest.py``).

It is tornado's client (the library the gateway itself is built on) on a private event loop thread, because it
caps every message *before* reading it (``max_message_size``): the remote kernel is as hostile as the local
one, and neither it nor the gateway may make us allocate without bound. Messages are built by
``jupyter_client``'s ``Session`` and framed in the gateway's own binary format by ``jupyter_server``'s codec,
after a strict check of the header (that codec trusts its input).

:class:`KernelChannels` looks like ``jupyter_client``'s blocking client where :class:`~.kernel.ChildKernel`
uses one (``execute``, ``kernel_info``, ``get_iopub_msg``, ``get_shell_msg``), so the local kernel's execution
logic runs unchanged over it. Every library error becomes a :class:`~ci_magic.core.errors.SandboxError`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import queue
import socket
import struct
import threading
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection import base as _codec
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from ...core import untrusted_json
from ...core.errors import SandboxError
from .rest import GatewayREST, describe

T = TypeVar("T")
# jupyter_server's codec for the gateway's binary frames (4-byte count, offsets, JSON, buffers) is unannotated.
serialize_binary_message: Callable[[dict[str, Any]], bytes] = _codec.serialize_binary_message
deserialize_binary_message: Callable[[bytes], dict[str, Any]] = _codec.deserialize_binary_message
#: Buffers one binary message may carry (ours carry one).
MAX_BUFFERS = 64
#: Messages waiting on iopub before newer ones are dropped (as ZeroMQ's high-water mark does locally).
IOPUB_HWM = 128
#: Bytes of replies to our own requests that may wait before newer ones are dropped.
PRIVATE_QUEUE_BYTES = 256 * 1024 * 1024
QUICKACK = getattr(socket, "TCP_QUICKACK", 12)  # Linux only; elsewhere setting it fails harmlessly


class OutputLost(SandboxError):
    """The connection dropped while the kernel lived on: a message over the size cap (or a network blip)."""


def _socket_of(ws: WebSocketClientConnection) -> socket.socket | None:
    stream = getattr(getattr(ws, "protocol", None), "stream", None)
    sock = getattr(stream, "socket", None)
    return (
        sock if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6) else None
    )


def decode(raw: str | bytes) -> dict[str, Any]:
    """One message off the WebSocket: JSON text, or the gateway's binary framing with buffers. ValueError on
    anything malformed (the header is checked before jupyter_server's codec sees it: it trusts its input)."""
    if isinstance(raw, bytes):
        if len(raw) < 8:
            raise ValueError("short binary message")
        (count,) = struct.unpack_from("!I", raw, 0)
        if not 1 <= count <= MAX_BUFFERS or len(raw) < 4 * (count + 1):
            raise ValueError("bad buffer count")
        offsets = struct.unpack_from(f"!{count}I", raw, 4)
        if offsets[0] != 4 * (count + 1) or list(offsets) != sorted(offsets) or offsets[-1] > len(raw):
            raise ValueError("bad buffer offsets")
        if not untrusted_json.nesting_within(raw[offsets[0] : offsets[1] if count > 1 else len(raw)]):
            raise ValueError("message nested too deep")
        msg = deserialize_binary_message(raw)
    else:
        msg = untrusted_json.loads(raw)
    if not (
        isinstance(msg, dict)
        and isinstance(msg.get("header"), dict)
        and isinstance(msg.get("parent_header"), dict)
        and isinstance(msg.get("content"), dict)
        and isinstance(msg.get("channel"), str)
    ):
        raise ValueError("not a kernel message")
    msg["msg_type"] = msg["header"].get("msg_type")
    return msg


class KernelChannels:
    """One kernel's WebSocket on the gateway, read on a private event loop; a blocking client's face."""

    def __init__(self, rest: GatewayREST, kernel_id: str, *, max_message_bytes: int, timeout: float) -> None:
        self.rest = rest
        self.kernel_id = kernel_id
        self.max_message_bytes = max_message_bytes
        self.session = Session(username="ci_magic")
        self.iopub: queue.Queue[dict[str, Any]] = queue.Queue(IOPUB_HWM)
        self.shell: queue.Queue[dict[str, Any]] = queue.Queue(IOPUB_HWM)
        #: Replies to our own requests (frames, values, files), by the request's msg_id: kept off iopub.
        self._private: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._private_bytes = 0
        self._lock = threading.Lock()
        self.gateway_status: str | None = None  # "restarting" / "dead": what the gateway said of the kernel
        self.dropped = threading.Event()  # the WebSocket closed without us closing it
        self._closing = False
        self._queued: list[concurrent.futures.Future[None]] = []
        self._ws: WebSocketClientConnection | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ci_magic-gateway-ws", daemon=True
        )
        self._thread.start()
        try:
            self.connect(timeout)
        except BaseException:
            self.stop_channels()
            raise

    # -- the connection -------------------------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise SandboxError(
                f"The gateway at {self.rest.host} did not answer within {timeout:.0f} s."
            ) from None

    def connect(self, timeout: float) -> None:
        """(Re)open the WebSocket with a fresh session id: the gateway then drops what it buffered for an old
        one (which may hold the very message that was too large)."""
        self.dropped.clear()
        self.gateway_status = None
        url = self.rest.ws_url(f"/api/kernels/{self.kernel_id}/channels?session_id={uuid.uuid4().hex}")
        request = HTTPRequest(
            url, headers=self.rest.headers, connect_timeout=timeout, request_timeout=timeout
        )
        self._call(self._open(request), timeout + 5)

    async def _open(self, request: HTTPRequest) -> None:
        old, self._ws = self._ws, None
        if old is not None:
            old.close()
        try:
            ws = await websocket_connect(request, max_message_size=self.max_message_bytes)
        except HTTPClientError as exc:
            raise SandboxError(
                f"The gateway at {self.rest.host} refused the kernel's channels (HTTP {exc.code}); the kernel may "
                "have been deleted, or the token is wrong."
            ) from None
        except (OSError, ValueError) as exc:
            raise SandboxError(
                f"The kernel's channels on the gateway at {self.rest.host} could not be opened ({describe(exc)})."
            ) from None
        self._ws = ws
        self._loop.create_task(self._read(ws))

    async def _read(self, ws: WebSocketClientConnection) -> None:
        sock = _socket_of(ws)
        while True:
            raw = await ws.read_message()
            if raw is None:
                break
            if sock is not None:
                # The gateway writes small messages without TCP_NODELAY: with our delayed ACK (40 ms on Linux)
                # Nagle would hold each next message back. Acknowledge at once instead (cleared by the kernel
                # after use, so set again after every message).
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            try:
                msg = decode(raw)
            except (ValueError, UnicodeDecodeError, RecursionError, MemoryError, struct.error):
                continue  # malformed: as if never sent
            self._route(msg, len(raw))
        if ws is self._ws and not self._closing:
            self.dropped.set()

    def _route(self, msg: dict[str, Any], size: int) -> None:
        channel, parent = msg["channel"], msg["parent_header"].get("msg_id")
        if channel == "iopub" and not parent and msg["msg_type"] == "status":
            # Written by the gateway itself: its restarter found the kernel dead ("restarting"), or gave up.
            state = msg["content"].get("execution_state")
            if state in ("restarting", "dead"):
                self.gateway_status = str(state)
        with self._lock:
            private = self._private.get(parent) if isinstance(parent, str) else None
            if private is not None:
                if self._private_bytes + size > PRIVATE_QUEUE_BYTES:
                    return  # more than any request of ours asked for: dropped, the request will notice
                self._private_bytes += size
                msg["_size"] = size
                private.put(msg)
                return
        target = {"iopub": self.iopub, "shell": self.shell}.get(channel)
        if target is not None:
            with contextlib.suppress(queue.Full):  # dropped like ZeroMQ drops past its high-water mark
                target.put_nowait(msg)

    # -- sending --------------------------------------------------------------------------------------------------

    def send(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        buffers: list[Any] | None = None,
        private: bool = False,
        wait: bool = True,
    ) -> str:
        """Send one shell message; with ``wait`` False it is only queued on the connection (the next waiting
        send or :meth:`flush` reports a failure), so serialising the next chunk overlaps sending this one."""
        msg = self.session.msg(msg_type, content)
        msg_id = str(msg["header"]["msg_id"])
        if private:
            with self._lock:
                self._private[msg_id] = queue.Queue()
        wire: dict[str, Any] = json.loads(json.dumps({**msg, "channel": "shell"}, default=json_default))
        payload: str | bytes = (
            serialize_binary_message({**wire, "buffers": buffers}) if buffers else json.dumps(wire)
        )
        if wait:
            self.flush()
            self._call(self._write(payload), 60.0)
        else:
            self._queued.append(asyncio.run_coroutine_threadsafe(self._write(payload), self._loop))
        return msg_id

    def flush(self, timeout: float = 120.0) -> None:
        """Wait until every queued message is on the wire (OutputLost when the connection dropped)."""
        queued, self._queued = self._queued, []
        for future in queued:
            try:
                future.result(timeout)
            except TimeoutError:
                raise SandboxError(
                    f"The gateway at {self.rest.host} did not take our data in time."
                ) from None

    async def _write(self, payload: str | bytes) -> None:
        ws = self._ws
        if ws is None:
            raise OutputLost("The connection to the gateway is closed.")
        try:
            await ws.write_message(payload, binary=isinstance(payload, bytes))
        except WebSocketClosedError:
            raise OutputLost("The connection to the gateway closed while sending.") from None

    def execute(
        self,
        code: str,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: dict[str, str] | None = None,
        allow_stdin: bool = False,
        stop_on_error: bool = True,
    ) -> str:
        content = {
            "code": code,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": user_expressions or {},
            "allow_stdin": allow_stdin,
            "stop_on_error": stop_on_error,
        }
        return self.send("execute_request", content)

    def kernel_info(self) -> str:
        return self.send("kernel_info_request", {})

    # -- receiving ------------------------------------------------------------------------------------------------

    def _get(self, source: queue.Queue[dict[str, Any]], timeout: float | None) -> dict[str, Any]:
        if self.dropped.is_set():
            raise OutputLost("The connection to the gateway dropped.")
        return source.get(timeout=timeout)

    def get_iopub_msg(self, timeout: float | None = None) -> dict[str, Any]:
        return self._get(self.iopub, timeout)

    def get_shell_msg(self, timeout: float | None = None) -> dict[str, Any]:
        return self._get(self.shell, timeout)

    def get_private(self, msg_id: str, timeout: float) -> dict[str, Any]:
        """The next reply to one of our own requests (queue.Empty when none came in time)."""
        with self._lock:
            source = self._private.get(msg_id)
        if source is None:
            raise queue.Empty
        msg = self._get(source, timeout)
        with self._lock:
            self._private_bytes -= int(msg.pop("_size", 0))
        return msg

    def forget(self, msg_id: str) -> None:
        with self._lock:
            source = self._private.pop(msg_id, None)
            while source is not None and not source.empty():
                self._private_bytes -= int(source.get_nowait().pop("_size", 0))

    def drain(self) -> None:
        """Forget what is waiting (after a reconnect or restart: it belongs to the old connection)."""
        for source in (self.iopub, self.shell):
            with contextlib.suppress(queue.Empty):
                while True:
                    source.get_nowait()

    def stop_channels(self) -> None:
        self._closing = True
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            with contextlib.suppress(Exception):  # already closed or the loop is stuck: closing anyway
                self._call(self._close(), 5.0)
            with contextlib.suppress(Exception):
                self._call(self._loop.shutdown_default_executor(), 5.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()

    async def _close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()
        # Let the reader see the close and the stream finish, so nothing is left pending on the loop.
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 1.0)


__all__ = ["KernelChannels", "OutputLost", "decode"]
