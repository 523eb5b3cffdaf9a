"""The parent's side of a listener handed over by the sandbox (``forward.hand_over``): the first bytes of a
connection to the proxy's Unix socket read together with the descriptors sent along, and the one descriptor
accepted only as what it claims to be — a listening TCP socket on the sandbox's loopback. The sandbox is
hostile: whatever else it sends (a pipe, a file, a connected or Unix socket, several descriptors) is closed."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

from .forward import HANDOVER, TAKEN


async def receive(
    loop: asyncio.AbstractEventLoop,
    conn: socket.socket,
    adopt: Callable[[socket.socket], Awaitable[None]],
    size: int,
) -> tuple[bytes, bool]:
    """(the first bytes of ``conn``, at most ``size``; whether they handed a listener over — given to ``adopt``,
    answered, and the connection done with); any descriptor sent along otherwise is closed."""
    start, fds = await first_bytes(loop, conn, size)
    if start == HANDOVER and len(fds) == 1 and (listener := listening_tcp(fds.pop())) is not None:
        await adopt(listener)
        await loop.sock_sendall(conn, TAKEN)
        return start, True
    for fd in fds:
        os.close(fd)
    return start, start == HANDOVER


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def first_bytes(
    loop: asyncio.AbstractEventLoop, conn: socket.socket, size: int
) -> tuple[bytes, list[int]]:
    """The first bytes a Unix connection sends, with the descriptor sent along (none when several were: the
    kernel closes those beyond the first, and the first is closed here)."""
    while True:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(conn.fileno(), _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())
        try:
            data, fds, flags, _ = socket.recv_fds(conn, size, 1)
        except BlockingIOError:
            continue
        if flags & socket.MSG_CTRUNC:  # more than one descriptor was sent: none is taken
            for fd in fds:
                os.close(fd)
            return data, []
        return data, list(fds)


def listening_tcp(fd: int) -> socket.socket | None:
    """The descriptor as a listening TCP socket (the sandbox's loopback listener), or None — closed — when it is
    anything else: a pipe, a file, a connected socket, a Unix socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        if sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM and listening:
            sock.setblocking(False)
            return sock
    except OSError:
        pass
    sock.close()
    return None
