"""A proxy request's head, from a connection the sandbox opened: read within a size bound, parsed by h11 (strict
HTTP/1.1, never by hand), and rewritten for the upstream host — origin form, the URL's own Host, no proxy or
hop-by-hop headers, no credentials."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import h11

#: The largest request head the proxy reads (a longer one is answered 431).
MAX_HEAD = 16 * 1024


async def read_head(
    loop: asyncio.AbstractEventLoop, conn: socket.socket, start: bytes = b""
) -> tuple[bytes | None, bytes]:
    """(the request head, what came after it — ``start``: the bytes already read); (None, b"") when the client
    went away first, (None, the bytes) when no head ended within MAX_HEAD bytes."""
    buffer = bytearray(start)
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            return bytes(buffer[: end + 4]), bytes(buffer[end + 4 :])
        if len(buffer) > MAX_HEAD:
            return None, bytes(buffer[:1])
        chunk = await loop.sock_recv(conn, MAX_HEAD)
        if not chunk:
            return None, b""
        buffer += chunk


def parse_head(raw: bytes) -> tuple[str, str, int, bytes] | None:
    """(method, host, port, the head to send upstream) of a proxy request, or None when it is not one: CONNECT
    host:port, or an absolute http:// URL (sent on in origin form, one request per connection)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    conn.receive_data(raw)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    method, target = event.method.decode("ascii"), event.target.decode("ascii", "replace")
    if method == "CONNECT":
        host, _, port_text = target.rpartition(":")
        if not host or not port_text.isdigit():
            return None
        return method, host.strip("[]"), int(port_text), b""
    url = urlsplit(target)
    if url.scheme != "http" or not url.hostname:
        return None
    try:
        port = url.port or 80
    except ValueError:
        return None
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    # The Host header is the URL's: a different one would let a shared front (a CDN) route to a host the list
    # does not name.
    dropped = (b"connection", b"keep-alive", b"host")
    kept = [
        (name, value)
        for name, value in event.headers
        if not name.lower().startswith(b"proxy-") and name.lower() not in dropped
    ]
    authority = url.netloc.rpartition("@")[2]  # never credentials in the Host header
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + authority.encode("ascii", "replace")]
    lines += [name + b": " + value for name, value in kept]
    lines.append(b"Connection: close")
    return method, url.hostname, port, b"\r\n".join(lines) + b"\r\n\r\n"
