"""``ci-magic mcp``: ci_magic's sandbox and loop as a Model Context Protocol server, on the official SDK (PyPI
``mcp``), over stdio or streamable HTTP.

Tools (named and described for agents): ``describe_data``, ``ask``, ``run_python``, ``reset``,
``export_notebook``; resources: the list of the working folder's files (``ci-magic://files``) and the session's
notebook (``ci-magic://session.ipynb``). What the agent's code can reach is what an ask's code can reach (the sandbox's rules: no secrets, no
network unless allowed, no file outside its folder); outputs leave as text and images only, never as markup.

Over HTTP the server listens on loopback by default and every request must carry ``Authorization: Bearer
<token>`` (the token is printed once at start, or read from ``CI_MAGIC_MCP_TOKEN``); the SDK's DNS-rebinding
protection admits only the loopback host names. Calls run one at a time in a worker thread: the sandbox session
is one kernel, as a notebook's is.
"""

from __future__ import annotations

import base64
import functools
import hmac
import os
import secrets
import sys
from typing import Any

import anyio
import nbformat
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ContentBlock, ImageContent, TextContent

from ..core.errors import CIMagicError
from .session import AgentBackend, AgentSession, Reply, on_worker

__all__ = ["TOKEN_ENV", "bearer_only", "build_server", "contents", "http_app", "serve", "token"]

TOKEN_ENV = "CI_MAGIC_MCP_TOKEN"

INSTRUCTIONS = """\
ci_magic runs Python on the user's data in an isolated sandbox (no network, no access to the user's secrets or \
files outside its working folder). Start with describe_data to see the DataFrames and files. Use ask to have \
ci_magic's own model write, run and repair the code for a question, or run_python to run code you wrote; both \
share one sandbox session, so variables persist between calls. Files the code writes into its working folder \
are copied back to the user's folder (never overwriting a file). export_notebook saves everything that ran as a \
notebook the user can verify."""


def contents(reply: Reply) -> list[ContentBlock]:
    """One call's result in MCP content: the answer, the code, the printed output, images, files, the id."""
    blocks: list[ContentBlock] = []
    if reply.answer:
        blocks.append(TextContent(text=f"Answer: {reply.answer}"))
    if reply.code is not None:
        blocks.append(TextContent(text=f"Code that ran:\n```python\n{reply.code.rstrip()}\n```"))
    text = "".join(t if t.endswith("\n") else t + "\n" for t in reply.text).strip()
    if text:
        blocks.append(TextContent(text=f"Output:\n{text}"))
    for mime, data in reply.images:
        blocks.append(ImageContent(data=base64.b64encode(data).decode(), mime_type=mime))
    for f in reply.files:
        where = f"saved as {f.saved_as}" if f.saved_as else "not saved"
        blocks.append(
            TextContent(text=f"File {f.path}: {f.bytes:,} bytes, {where}{f'; {f.note}' if f.note else ''}")
        )
    status = "succeeded" if reply.ok else "failed"
    blocks.append(
        TextContent(
            text=f"{status} · call {reply.call_id}" + (f" · {reply.tokens:,} tokens" if reply.tokens else "")
        )
    )
    return blocks


def caller(ctx: Context[Any, Any] | None) -> str:
    """The calling agent's name as its MCP client gave it (for provenance: data, never trusted as more)."""
    params = getattr(getattr(ctx, "session", None), "client_params", None) if ctx is not None else None
    info = getattr(params, "client_info", None)
    return str(getattr(info, "name", "") or "")[:100]


def build_server(session: AgentBackend) -> MCPServer[Any]:
    """The MCP server over one :class:`AgentSession`, or a live notebook's session (:mod:`.live`)."""
    server: MCPServer[Any] = MCPServer("ci_magic", instructions=INSTRUCTIONS)
    lock = anyio.Lock()  # one sandbox session: one call at a time

    async def call(fn: Any, *args: Any) -> Any:
        async with lock:
            try:
                return await anyio.to_thread.run_sync(on_worker, fn, *args)
            except CIMagicError as exc:  # bad input, over budget, no model: a clear error, the session stays
                raise ToolError(str(exc)) from None

    @server.tool(
        description="Describe the data ci_magic's model would see: the DataFrames loaded in the sandbox (names, "
        "columns, types, statistics) and the files in the working folder."
    )
    async def describe_data() -> str:
        return str(await call(session.describe))

    @server.tool(
        description="Answer a question about the data with ci_magic's own loop: its model writes Python, the "
        "sandbox runs it, errors are repaired. Returns the answer, the code, its output, charts as images and "
        "the files it wrote."
    )
    async def ask(question: str, ctx: Context[Any, Any]) -> list[ContentBlock]:
        who = caller(ctx)
        return contents(await call(functools.partial(session.ask, question, agent=who)))

    @server.tool(
        description="Run Python code you wrote in the same sandbox session (pandas as pd, numpy as np, "
        "matplotlib; the DataFrames described by describe_data are loaded; variables persist between calls). "
        "No network; only the working folder is writable. Returns printed output, charts as images and files."
    )
    async def run_python(code: str, ctx: Context[Any, Any]) -> list[ContentBlock]:
        who = caller(ctx)
        return contents(await call(functools.partial(session.run, code, agent=who)))

    @server.tool(
        description="Start over: a fresh sandbox (variables gone, DataFrames reloaded), an empty record."
    )
    async def reset() -> str:
        await call(session.reset)
        return "The sandbox was reset."

    @server.tool(
        description="Save what ran in this session (tables loaded, then each successful ask and run_python with "
        "its outputs) as a notebook in the working folder; `ci-magic verify NAME` re-runs and compares it."
    )
    async def export_notebook(name: str = "mcp-session.ipynb") -> str:
        path = await call(session.export, name)
        return f"Saved {path.name} in the working folder; check it with: ci-magic verify {path.name}"

    @server.resource(
        "ci-magic://files",
        name="files",
        description="The files in the working folder",
        mime_type="text/plain",
    )
    def files() -> str:
        names = sorted(
            str(p.relative_to(session.folder))
            for p in session.folder.rglob("*")
            if p.is_file() and not p.is_symlink()
        )
        return "\n".join(names[:1000])

    @server.resource(
        "ci-magic://session.ipynb",
        name="session notebook",
        description="What ran in this session so far, as the notebook export_notebook would save",
        mime_type="application/x-ipynb+json",
    )
    async def notebook() -> str:
        return str(nbformat.writes(await call(session.notebook)))

    return server


def bearer_only(app: Any, token: str) -> Any:
    """An ASGI app that answers 401 to any HTTP request without ``Authorization: Bearer <token>``."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"text/plain")],
                    }
                )
                await send(
                    {"type": "http.response.body", "body": b"ci_magic MCP: a bearer token is required\n"}
                )
                return
        await app(scope, receive, send)

    return guarded


LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def token() -> str:
    """The bearer token: ``CI_MAGIC_MCP_TOKEN`` when set, else a fresh random one."""
    return os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)


def http_app(server: MCPServer[Any], host: str, port: int, secret: str) -> Any:
    """The streamable-HTTP ASGI app: the bearer token required, only loopback host names admitted (the SDK's
    DNS-rebinding protection)."""
    security = TransportSecuritySettings(
        allowed_hosts=[f"{h}:{port}" for h in LOOPBACK] + list(LOOPBACK),
        allowed_origins=[f"http://{h}:{port}" for h in LOOPBACK],
    )
    return bearer_only(server.streamable_http_app(transport_security=security, host=host), secret)


def serve(session: AgentSession, *, http: bool = False, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until the client goes away (stdio) or the process is stopped (HTTP)."""
    server = build_server(session)
    if not http:
        server.run("stdio")
        return
    import uvicorn

    secret = token()
    if TOKEN_ENV not in os.environ:
        print(
            f"ci_magic MCP token (send it as 'Authorization: Bearer …'): {secret}",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"ci_magic MCP server on http://{host}:{port}/mcp (working folder {session.folder})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(http_app(server, host, port, secret), host=host, port=port, log_level="warning")
