"""``ci-magic acp``: ci_magic as an Agent Client Protocol agent (PyPI ``agent-client-protocol``) over stdio, so an
ACP client (Zed, JetBrains, marimo…) can host it.

A prompt is an ask: its text is the question about the data in the session's folder. While it runs the client
sees it work, as session updates: a thought when the model starts an attempt, then each attempt as a tool call
of kind ``execute`` (its code, the output as it is printed, completed or failed with the error), and at the end
the answer as an agent message (the answer in words, the output, charts as images, the files written). ``cancel``
stops the ask at once: the code running in the sandbox is interrupted and the model's stream is cut.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import uuid
from pathlib import Path
from typing import Any, Literal

from acp import (
    PROTOCOL_VERSION,
    InitializeResponse,
    NewSessionResponse,
    PromptResponse,
    image_block,
    run_agent,
    start_tool_call,
    text_block,
    tool_content,
    update_agent_message,
    update_agent_thought_text,
    update_tool_call,
)
from acp.schema import Implementation

from .._version import __version__
from ..core.errors import Cancelled, CIMagicError
from ..core.events import Code, Event, ExecDone, ModelStart, Output
from ..core.settings import Settings
from .session import AgentSession, on_worker

__all__ = ["CIMagicAgent", "serve"]


class CIMagicAgent:
    """The ACP agent (see the module docstring): one :class:`AgentSession` per ACP session."""

    def __init__(self, settings: Settings, frames: dict[str, Any], tables: dict[str, Path]) -> None:
        self._settings, self._frames, self._tables = settings, frames, tables
        self._sessions: dict[str, AgentSession] = {}
        self._cancelled: dict[str, threading.Event] = {}
        self._conn: Any = None

    def on_connect(self, conn: Any) -> None:
        self._conn = conn

    async def initialize(self, protocol_version: int, **_: Any) -> InitializeResponse:
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION, agent_info=Implementation(name="ci_magic", version=__version__)
        )

    async def new_session(self, cwd: str, **_: Any) -> NewSessionResponse:
        folder = Path(cwd)
        if not folder.is_dir():
            raise ValueError(f"no such folder: {cwd!r}")
        session_id = uuid.uuid4().hex
        self._sessions[session_id] = AgentSession(self._settings, folder, self._frames, self._tables)
        return NewSessionResponse(session_id=session_id)

    async def prompt(self, session_id: str, prompt: list[Any], **_: Any) -> PromptResponse:
        session = self._sessions.get(session_id)
        if session is None:
            raise ValueError(f"unknown session {session_id!r}")
        question = "\n".join(getattr(block, "text", "") for block in prompt).strip()
        loop = asyncio.get_running_loop()
        stop = self._cancelled[session_id] = threading.Event()
        updates = _Updates(self._conn, session_id, loop, stop)
        try:
            reply = await asyncio.to_thread(on_worker, session.ask, question, updates)
        except Cancelled:
            return PromptResponse(stop_reason="cancelled")
        except CIMagicError as exc:
            await self._say(session_id, [text_block(str(exc))])
            return PromptResponse(stop_reason="end_turn")
        finally:
            await updates.drain()
        blocks: list[Any] = [text_block(reply.answer)] if reply.answer else []
        output = "".join(t if t.endswith("\n") else t + "\n" for t in reply.text).strip()
        blocks += [text_block(f"Output:\n{output}")] if output else []
        blocks += [image_block(base64.b64encode(data).decode(), mime) for mime, data in reply.images]
        blocks += [text_block(f"File {f.saved_as or f.path} ({f.bytes:,} bytes)") for f in reply.files]
        await self._say(session_id, blocks or [text_block("The ask produced no output.")])
        return PromptResponse(stop_reason="cancelled" if stop.is_set() else "end_turn")

    async def cancel(self, session_id: str, **_: Any) -> None:
        if session_id in self._cancelled:
            self._cancelled[session_id].set()
        session = self._sessions.get(session_id)
        if session is not None:
            session.interpreter.interrupt()

    async def _say(self, session_id: str, blocks: list[Any]) -> None:
        for block in blocks:
            await self._conn.session_update(session_id=session_id, update=update_agent_message(block))

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()


class _Updates:
    """The ask's events (in its worker thread) as ACP session updates (on the connection's loop)."""

    def __init__(
        self, conn: Any, session_id: str, loop: asyncio.AbstractEventLoop, stop: threading.Event
    ) -> None:
        self._conn, self._id, self._loop, self._stop = conn, session_id, loop, stop
        self._pending: list[Any] = []
        self._outputs: dict[int, list[str]] = {}

    def __call__(self, event: Event) -> None:
        if self._stop.is_set():
            raise Cancelled("The ask was cancelled by the client.")
        data, call = event.data, f"{event.ask_id}-{event.attempt}"
        if isinstance(data, ModelStart):
            self._send(update_agent_thought_text(f"Writing attempt {event.attempt}…"))
        elif isinstance(data, Code):
            body = tool_content(text_block(f"```python\n{data.code.rstrip()}\n```"))
            self._send(
                start_tool_call(
                    call,
                    f"Attempt {event.attempt}: run in the sandbox",
                    kind="execute",
                    status="in_progress",
                    content=[body],
                    raw_input={"code": data.code},
                )
            )
        elif isinstance(data, Output):
            shown = self._outputs.setdefault(event.attempt, [])
            shown += [op.get("text", "") for op in data.ops if op.get("op") == "stream"]
            text = "".join(shown)[-4000:]
            self._send(update_tool_call(call, content=[tool_content(text_block(text))]))
        elif isinstance(data, ExecDone):
            status: Literal["completed", "failed"] = "completed" if data.error is None else "failed"
            note = data.error or f"done in {data.seconds:.1f} s"
            text = ("".join(self._outputs.get(event.attempt, []))[-4000:] + f"\n{note}").strip()
            self._send(update_tool_call(call, status=status, content=[tool_content(text_block(text))]))

    def _send(self, update: Any) -> None:
        future = asyncio.run_coroutine_threadsafe(
            self._conn.session_update(session_id=self._id, update=update), self._loop
        )
        self._pending.append(future)

    async def drain(self) -> None:
        """Every update is sent before the prompt's response (the client sees them in order); a client gone
        away does not stop the response."""
        await asyncio.gather(*(asyncio.wrap_future(f) for f in self._pending), return_exceptions=True)


def serve(settings: Settings, frames: dict[str, Any], tables: dict[str, Path]) -> None:
    """Run the agent on stdin/stdout until the client closes them."""
    agent = CIMagicAgent(settings, frames, tables)
    try:
        asyncio.run(run_agent(agent))  # type: ignore[arg-type]  # a structural Agent: the methods it answers
    finally:
        agent.close()
