"""Run inside the sandbox (exec'd by the kernel's first code, never imported from ci_magic): the local end of
the egress proxy. The sandbox's network namespace has only its loopback, and HTTP clients (urllib, requests,
pip) speak to a proxy over TCP, so a thread listens on the sandbox's own 127.0.0.1 and carries each connection
to the parent's proxy socket bound into the sandbox. It enforces nothing: the parent's proxy decides every
connection, so code that stops or bypasses this thread only loses its own way out."""

from __future__ import annotations

import contextlib
import os
import socket
import threading


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(1 << 20)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _carry(client: socket.socket, path: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        upstream.close()
        return
    threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
    _pipe(client, upstream)
    client.close()
    upstream.close()


def _serve(listener: socket.socket, path: str) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_carry, args=(client, path), daemon=True).start()


def start(path: str) -> int:
    """Listen on a free port of the sandbox's loopback; point the proxy variables at it (this process and the
    processes it starts, pip included). Returns the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = int(listener.getsockname()[1])
    threading.Thread(target=_serve, args=(listener, path), name="ci-magic-egress", daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ[name] = url
    os.environ.pop("NO_PROXY", None)
    os.environ.pop("no_proxy", None)
    return port
