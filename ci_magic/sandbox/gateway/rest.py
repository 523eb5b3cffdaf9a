"""The gateway's REST API (``/api/kernels``, ``/api/kernelspecs``), through the standard library: the few calls
we make are small JSON documents, and the watcher process (``watch.py``) makes the same calls without
importing anything else. The token goes in a header, never in a URL; answers are size-capped; every failure is a
:class:`~ci_magic.core.errors.SandboxError` with a one-paragraph message.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ...core.errors import SandboxError

#: A REST answer larger than this is refused (kernel models and lists are a few hundred bytes each).
MAX_REST_BYTES = 4 * 1024 * 1024
#: No HTTP proxy from the environment: the WebSocket (tornado) connects directly, so REST must go the same way.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class GatewayREST:
    """The gateway's REST API: ``/api/kernels`` and friends, with the token in a header, never in the URL."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise SandboxError(f"The gateway URL {url!r} is not an http(s) URL such as http://host:8888.")
        self.url = url.rstrip("/")
        self.host = parsed.netloc.rpartition("@")[2]
        self.headers = {"Authorization": f"token {token}"} if token else {}
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, *, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={**self.headers, "Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with _DIRECT.open(request, timeout=timeout or self.timeout) as response:
                raw = response.read(MAX_REST_BYTES + 1)
        except urllib.error.HTTPError as exc:
            try:
                detail = _reason(exc)
            finally:
                exc.close()  # it holds the response's socket
            hint = {
                401: " The gateway refused the token (set CI_MAGIC_GATEWAY_TOKEN to the one it was started with).",
                403: " The gateway refused this user (its unauthorized_users / authorized_users settings).",
                404: " The gateway does not know it (the kernel may have been culled or deleted).",
            }.get(exc.code, "")
            raise GatewayHTTPError(
                exc.code,
                f"The gateway at {self.host} answered {method} {path} with HTTP {exc.code}{detail}.{hint}",
            ) from None
        except (OSError, ValueError) as exc:  # refused, DNS, TLS, timeouts: all URLError/OSError
            raise SandboxError(
                f"The gateway at {self.host} could not be reached for {method} {path} ({describe(exc)}). "
                "Check the gateway URL and that Enterprise Gateway is running."
            ) from None
        if len(raw) > MAX_REST_BYTES:
            raise SandboxError(
                f"The gateway at {self.host} answered {method} {path} with an oversized reply."
            )
        if not raw:
            return None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise SandboxError(
                f"The gateway at {self.host} answered {method} {path} with malformed JSON."
            ) from None

    def ws_url(self, path: str) -> str:
        return ("wss" if self.url.startswith("https") else "ws") + self.url[self.url.index(":") :] + path


class GatewayHTTPError(SandboxError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _reason(exc: urllib.error.HTTPError) -> str:
    with contextlib.suppress(Exception):
        doc = json.loads(exc.read(65536))
        message = doc.get("message") or doc.get("reason") if isinstance(doc, dict) else None
        if message:
            return f" ({' '.join(str(message).split())[:300]})"
    return ""


def network_declaration(model: Any) -> str | None:
    """The admin's statement in a kernelspec (``metadata.ci_magic.network``, e.g. "egress denied by the
    NetworkPolicy ci-magic-sandbox"), from ``GET /api/kernelspecs/NAME``; None when absent or malformed."""
    spec = model.get("spec") if isinstance(model, dict) else None
    metadata = spec.get("metadata") if isinstance(spec, dict) else None
    ours = metadata.get("ci_magic") if isinstance(metadata, dict) else None
    text = ours.get("network") if isinstance(ours, dict) else None
    if not isinstance(text, str):
        return None
    return " ".join(text.split())[:300] or None


__all__ = ["GatewayHTTPError", "GatewayREST", "describe", "network_declaration"]
