"""The sandbox's only way out when hosts are allowed: an HTTP proxy in the parent, on a Unix socket bound into
the sandbox (which keeps its own network namespace with no route out). The sandbox hands it the listener on its
own loopback that HTTP clients there are pointed at (``forward.hand_over``, ``handover.py``), and the proxy
accepts on that listener itself: one hop between the sandbox's code and the host.

It admits plain HTTP by the request's absolute URL and HTTPS by ``CONNECT host:port``, checked against the
run's :class:`~ci_magic.core.hosts.Policy` (names only; resolved addresses public or named by a rule), then
tunnels the bytes. Everything is bounded: the request head (16 KB, 10 s), connections at once, idle time, each
connection's life, and the bytes of each run (the budget). Every connection is accounted for — allowed and
refused hosts with their bytes — and :meth:`Egress.take` hands the record of a run to the sandbox. Request
heads are read and parsed in ``head.py`` (h11: strict HTTP/1.1, never by hand).

One asyncio loop on one daemon thread serves the egress sockets of every sandbox of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ...core.hosts import IPAddress, Policy
from ...core.results import NetUse
from .forward import pump
from .handover import receive
from .head import MAX_HEAD, parse_head, read_head

__all__ = ["Egress", "EgressLimits", "MappedResolver", "Resolver", "SystemResolver"]


class Resolver(Protocol):
    """Host name → addresses (the seam to DNS; :class:`MappedResolver` is its fake)."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]: ...


class SystemResolver:
    """The host's resolver (``getaddrinfo``), bounded in time."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=self.timeout_s
        )
        return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


class MappedResolver:
    """A fixed table of names and their addresses (tests; a name not in it does not resolve)."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = {name.lower(): [ipaddress.ip_address(a) for a in addrs] for name, addrs in table.items()}

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        if host.lower() not in self.table:
            raise OSError(f"{host} does not resolve")
        return list(self.table[host.lower()])


@dataclass(frozen=True)
class EgressLimits:
    connections: int = 32  # open at once, per sandbox
    head_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    idle_s: float = 60.0  # no byte either way for this long: the connection is closed (forward.pump)
    lifetime_s: float = 900.0


class _Loop:
    """The process's one proxy loop thread, started on first use."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="ci-magic-egress", daemon=True).start()
                cls._loop = loop
            return cls._loop


class Egress:
    """One sandbox's way out (see the module docstring): listening at ``path`` until :meth:`close`."""

    def __init__(
        self, path: Path, resolver: Resolver | None = None, limits: EgressLimits | None = None
    ) -> None:
        self.path = path
        self.resolver = resolver or SystemResolver()
        self.limits = limits or EgressLimits()
        self._policy = Policy()
        self._budget = 0
        self._spent = 0
        self._uses: dict[tuple[str, int, bool, str], NetUse] = {}
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self._loop = _Loop.get()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(64)
        self._listener.setblocking(False)
        # The sandbox user (another uid) connects; nobody else can reach the parent's private folder.
        os.chmod(path, 0o666)
        # The listener on the sandbox's own loopback, once handed over (forward.hand_over), and its accepting.
        self._inside: tuple[socket.socket, asyncio.Task[None]] | None = None
        self._accepting = asyncio.run_coroutine_threadsafe(self._accept(self._listener, True), self._loop)

    def begin(self, rules: Sequence[str], budget_bytes: int) -> None:
        """The allow-list and byte budget of the next run; its record starts empty."""
        policy = Policy.parse(rules)
        with self._lock:
            self._policy, self._budget, self._spent, self._uses = policy, budget_bytes, 0, {}

    def take(self) -> list[NetUse]:
        """What the run did on the network since :meth:`begin` (connections still open keep counting)."""
        with self._lock:
            return list(self._uses.values())

    def close(self) -> None:
        self._accepting.cancel()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._adopt(None), self._loop).result(timeout=5)
        self._listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    # -- accounting -------------------------------------------------------------------------------------------

    def _use(self, host: str, port: int, reason: str = "") -> NetUse:
        key = (host, port, not reason, reason)
        with self._lock:
            use = self._uses.get(key)
            if use is None:
                use = self._uses[key] = NetUse(host, port, not reason, reason)
            use.connections += 1
            return use

    def _spend(self, use: NetUse, n: int, *, sent: bool) -> bool:
        with self._lock:
            if self._spent + n > self._budget:
                use.reason = (
                    use.reason or f"stopped: the run's network budget ({self._budget:,} bytes) ran out"
                )
                return False
            self._spent += n
            if sent:
                use.sent += n
            else:
                use.received += n
            return True

    # -- one connection ---------------------------------------------------------------------------------------
    # Raw sockets, not streams: the bytes read with the head are exactly known, and once a connection is
    # admitted two threads move its bytes with splice (forward.pump), never copied through Python.

    async def _accept(self, listener: socket.socket, unix: bool) -> None:
        """Serve ``listener``'s connections: the proxy's socket in the parent's folder (``unix``: a listener can
        be handed over on it), or the handed-over listener on the sandbox's loopback."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError:
                await asyncio.sleep(0.05)  # out of descriptors: the connection waits in the backlog
                continue
            conn.setblocking(False)
            task = loop.create_task(self._serve(conn, unix))
            self._tasks.add(task)  # held until done: the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)

    async def _adopt(self, listener: socket.socket | None) -> None:
        """Accept on ``listener`` from now on, in place of the one handed over before (None: stop)."""
        if self._inside is not None:
            old, task = self._inside
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            old.close()
        self._inside = None
        if listener is not None:
            task = asyncio.get_running_loop().create_task(self._accept(listener, False))
            self._inside = listener, task

    async def _serve(self, conn: socket.socket, unix: bool) -> None:
        if self._open >= self.limits.connections:
            await _answer(conn, 503, f"too many connections at once ({self.limits.connections})")
            conn.close()
            return
        self._open += 1
        upstream: socket.socket | None = None
        try:
            upstream = await self._handle(conn, unix)
        except Exception:  # whatever the sandbox sends, the connection ends and the loop goes on
            pass
        finally:
            self._open -= 1
            conn.close()
            if upstream is not None:
                upstream.close()

    async def _handle(self, conn: socket.socket, unix: bool) -> socket.socket | None:
        """Decide, connect and carry one connection; returns the upstream socket (for the caller to close)."""
        loop = asyncio.get_running_loop()
        try:
            got = await asyncio.wait_for(self._head(loop, conn, unix), self.limits.head_timeout_s)
        except TimeoutError:
            return None
        if got is None:  # a listener was handed over: nothing more comes on this connection
            return None
        raw, rest = got
        if raw is None:
            if rest:  # no end of head within MAX_HEAD bytes
                await _answer(conn, 431, "request head too large")
            return None
        parsed = parse_head(raw)
        if parsed is None:
            await _answer(conn, 400, "not an HTTP/1.1 proxy request")
            return None
        method, host, port, head = parsed
        with self._lock:
            policy = self._policy
        refusal = policy.refuse_name(host, port)
        addresses: list[IPAddress] = []
        if refusal is None:
            try:
                found = await self.resolver.resolve(host, port)
            except (OSError, TimeoutError):
                refusal = "the name does not resolve"
            else:
                addresses = [a for a in found if policy.admits_address(a, port)]
                if not addresses:
                    shown = ", ".join(sorted({str(a) for a in found})[:3])
                    refusal = f"it resolves to {shown}: not a public address, and no rule names it"
        if refusal is not None:
            self._use(host, port, f"refused: {refusal}")
            await _answer(conn, 403, f"{host}:{port} is refused: {refusal}. {policy.allows_text()}")
            return None
        upstream = await self._connect(addresses, port)
        if upstream is None:
            self._use(host, port, "failed: the host did not accept a connection")
            await _answer(conn, 502, f"{host}:{port} did not accept a connection")
            return None
        use = self._use(host, port)
        if method == "CONNECT":
            await loop.sock_sendall(conn, b"HTTP/1.1 200 Connection established\r\n\r\n")
            first = rest
        else:
            first = head + rest
        if first:
            if not self._spend(use, len(first), sent=True):
                return upstream
            await loop.sock_sendall(upstream, first)
        idle, seen = self.limits.idle_s, [time.monotonic()]  # the connection's last byte, either way
        done = [_thread(pump, conn, upstream, idle, lambda n: self._spend(use, n, sent=True), seen)]
        done.append(_thread(pump, upstream, conn, idle, lambda n: self._spend(use, n, sent=False), seen))
        # A connection's life is bounded too: past it, both sides are shut and the pumps end.
        timer = loop.call_later(self.limits.lifetime_s, _shut, conn, upstream)
        try:
            await asyncio.gather(*done)
        finally:
            timer.cancel()
        return upstream

    async def _head(
        self, loop: asyncio.AbstractEventLoop, conn: socket.socket, unix: bool
    ) -> tuple[bytes | None, bytes] | None:
        """:func:`~.head.read_head`, under one deadline with the first bytes of a Unix connection, which may hand a
        listener over instead (then None)."""
        start = b""
        if unix:
            start, handed = await receive(loop, conn, self._adopt, MAX_HEAD)
            if handed:
                return None
        return await read_head(loop, conn, start)

    async def _connect(self, addresses: list[IPAddress], port: int) -> socket.socket | None:
        loop = asyncio.get_running_loop()
        for address in addresses:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(
                    loop.sock_connect(sock, (str(address), port)), self.limits.connect_timeout_s
                )
                return sock
            except (OSError, TimeoutError):
                sock.close()
        return None


def _thread(fn: Callable[..., None], *args: Any) -> asyncio.Future[None]:
    """``fn(*args)`` on a thread of its own; the future is done when it returns."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def run() -> None:
        try:
            fn(*args)
        finally:
            loop.call_soon_threadsafe(finish)

    def finish() -> None:
        if not future.done():
            future.set_result(None)

    threading.Thread(target=run, name="ci-magic-egress-pump", daemon=True).start()
    return future


def _shut(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


async def _answer(conn: socket.socket, status: int, text: str) -> None:
    """A short plain-text answer from the proxy itself (the caller closes the connection)."""
    reasons = {
        400: "Bad Request",
        403: "Forbidden",
        431: "Request Header Fields Too Large",
        502: "Bad Gateway",
    }
    body = f"ci_magic network: {text}\n".encode()
    head = (
        f"HTTP/1.1 {status} {reasons.get(status, 'Service Unavailable')}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.get_running_loop().sock_sendall(conn, head.encode() + body), 10)
