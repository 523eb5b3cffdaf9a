"""Run inside the sandbox (exec'd by the kernel's first code: standard library only): the local end of the egress
proxy; its zero-copy :func:`pump` also carries the parent proxy's bytes. The sandbox's network namespace has only
its loopback, and HTTP clients (urllib, requests, pip) speak to a proxy over TCP, so a listener on the sandbox's
own 127.0.0.1 is where they go. That listener is handed to the parent's proxy (a descriptor sent over the proxy's
socket bound into the sandbox), which accepts its connections itself: no relay hop inside the sandbox. Where the
parent does not take it, a thread here carries each connection to the proxy's socket instead. Either way this
enforces nothing: the parent's proxy decides every connection, so code that stops, replaces or bypasses this
end only loses its own way out."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import threading
import time
from collections.abc import Callable

#: Bytes moved per splice: pipe-sized chunks, moved by the kernel without a copy through Python.
CHUNK = 1 << 20


def pump(
    src: socket.socket,
    dst: socket.socket,
    idle_s: float = 300.0,
    account: Callable[[int], bool] | None = None,
    seen: list[float] | None = None,
) -> None:
    """Carry ``src``'s bytes to ``dst`` with ``splice`` (zero-copy, through a pipe) until ``src`` ends — then
    ``dst``'s sending side is shut, as the peer did —, ``idle_s`` pass without a byte either way, or
    ``account(n)`` refuses ``n`` more bytes (then both connections are shut). ``seen``: the time of the
    connection's last byte, shared by its two pumps (a download's quiet sending side must not end it). Both
    sockets must be non-blocking."""
    seen = seen if seen is not None else [time.monotonic()]
    r, w = os.pipe()
    done = False
    try:
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, CHUNK)
        readable, writable = select.poll(), select.poll()
        readable.register(src, select.POLLIN)
        writable.register(dst, select.POLLOUT)
        wait = int(idle_s * 1000)
        flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
        while True:
            if not readable.poll(wait):
                quiet = time.monotonic() - seen[0]
                if quiet < idle_s:  # the other direction moved meanwhile: wait out the rest
                    wait = max(1, int((idle_s - quiet) * 1000))
                    continue
                break
            wait = int(idle_s * 1000)
            try:
                n = os.splice(src.fileno(), w, CHUNK, flags=flags)
            except BlockingIOError:
                continue
            if n == 0:
                done = True
                break
            if account is not None and not account(n):
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                return
            while n:
                if not writable.poll(wait):
                    return
                try:
                    n -= os.splice(r, dst.fileno(), n, flags=flags)
                except BlockingIOError:
                    continue
            seen[0] = time.monotonic()
    except OSError:
        pass
    finally:
        os.close(r)
        os.close(w)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR if done else socket.SHUT_RDWR)


def _carry(client: socket.socket, path: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        upstream.close()
        return
    client.setblocking(False)
    upstream.setblocking(False)
    seen = [time.monotonic()]
    back = threading.Thread(target=pump, args=(upstream, client, 300.0, None, seen), daemon=True)
    back.start()
    pump(client, upstream, 300.0, None, seen)
    back.join()
    client.close()
    upstream.close()


def _serve(listener: socket.socket, path: str) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_carry, args=(client, path), daemon=True).start()


#: What the descriptor of the listener travels with; it ends like a request head, so the proxy reads it whole.
HANDOVER = b"CI-MAGIC-LISTENER\r\n\r\n"
#: The proxy's answer once it accepts on the listener itself.
TAKEN = b"TAKEN\n"


def hand_over(listener: socket.socket, path: str, timeout_s: float = 5.0) -> bool:
    """Send ``listener`` to the proxy at ``path``; True when the proxy now accepts its connections (each relay
    hop costs about a fifth of a loopback download's time on two cores)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(path)
            socket.send_fds(s, [HANDOVER], [listener.fileno()])
            answer = b""
            while len(answer) < len(TAKEN) and (chunk := s.recv(len(TAKEN) - len(answer))):
                answer += chunk
            return answer == TAKEN
    except OSError:
        return False


def start(path: str) -> int:
    """Listen on a free port of the sandbox's loopback, for the parent's proxy (or, where it does not take the
    listener, a relay thread here); point the proxy variables at it (this process and the processes it starts,
    pip included). Returns the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = int(listener.getsockname()[1])
    if hand_over(listener, path):
        listener.close()  # the proxy's copy keeps it listening
    else:
        threading.Thread(target=_serve, args=(listener, path), name="ci-magic-egress", daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ[name] = url
    os.environ.pop("NO_PROXY", None)
    os.environ.pop("no_proxy", None)
    return port
