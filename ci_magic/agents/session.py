"""One session of another agent with ci_magic: its sandbox, its frames, and the record of what it ran.

Protocol-free (the MCP server, ``mcp_server.py``, translates to and from it), so each operation is what a user of
ci_magic gets elsewhere: ``describe`` is ``--context-only``'s description, ``ask`` is ci_magic's own loop (model,
sandbox, repair, vote) and ``run`` is the agent's own code in the same sandbox session — variables persist
between calls, frames are loaded, the limits, the sanitising and the rules for files that come back are the
sandbox's. ``export`` writes the session as a notebook that ``ci-magic verify`` re-runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import nbformat

from ..core.errors import UsageError
from ..core.events import EventSink, ignore
from ..core.results import AskResult, CodeRun, DeliveredFile, ExecutionResult
from ..core.settings import Settings
from ..engine.interpreter import Interpreter
from ..observe.trace import SESSION_ID, trace_dir, write_span
from ..reproduce.export import code_cell, export_notebook

T = TypeVar("T")

__all__ = ["AgentBackend", "AgentSession", "Reply", "ask_reply", "on_worker", "run_reply", "trace_run"]

#: How each kind of table file is read, as the exported notebook's first cell reads it.
READERS = {
    ".csv": "pd.read_csv({path!r})",
    ".tsv": "pd.read_csv({path!r}, sep='\\t')",
    ".parquet": "pd.read_parquet({path!r})",
    ".json": "pd.read_json({path!r})",
    ".jsonl": "pd.read_json({path!r}, lines=True)",
    ".xlsx": "pd.read_excel({path!r})",
    ".xls": "pd.read_excel({path!r})",
}


@dataclass
class Reply:
    """What one call produced, before it is put in a protocol's words."""

    call_id: str
    ok: bool
    text: list[str] = field(default_factory=list)  # printed output, tables as text, errors, notes
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (MIME type, bytes)
    files: list[DeliveredFile] = field(default_factory=list)
    code: str | None = None
    answer: str | None = None
    tokens: int = 0


class AgentBackend(Protocol):
    """What the MCP server serves: a folder-bound :class:`AgentSession`, or a live notebook's session
    (:mod:`.live`). ``agent`` names the calling agent (its MCP client's name), for provenance."""

    folder: Path

    def describe(self) -> str: ...

    def ask(self, question: str, on_event: EventSink = ignore, *, agent: str = "") -> Reply: ...

    def run(self, code: str, *, agent: str = "") -> Reply: ...

    def reset(self) -> None: ...

    def notebook(self) -> Any: ...

    def export(self, name: str) -> Path: ...


def on_worker(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a protocol server's worker thread. jupyter_client runs its coroutines on an event loop it
    makes for the thread (a new one per call, in the worker's copied context): close it after the call instead
    of leaking its sockets."""
    try:
        return fn(*args)
    finally:
        with contextlib.suppress(RuntimeError):
            asyncio.get_event_loop_policy().get_event_loop().close()


def ask_reply(result: AskResult) -> Reply:
    """An ask's result as a reply: the answer, the working code with its output, files, warnings."""
    final = result.final
    reply = Reply(result.ask_id, result.ok, code=result.code, tokens=result.usage.total_tokens)
    if final is not None and final.execution is not None:
        _outputs(final.execution, reply)
    reply.answer = result.words.text if result.words is not None else None
    if not result.ok:
        last = next((a for a in reversed(result.attempts) if a.failure), None)
        reply.text.append(f"The ask did not succeed: {last.failure if last else 'no attempt ran'}")
    reply.files = result.files
    reply.text += [f"warning: {w}" for w in result.warnings]
    return reply


def run_reply(call_id: str, code: str, run: CodeRun) -> Reply:
    """The agent's own code, run: its output, files and warnings."""
    reply = Reply(call_id, run.execution.ok, code=code)
    _outputs(run.execution, reply)
    reply.files = run.files
    reply.text += [f"warning: {w}" for w in run.warnings]
    return reply


def trace_run(call_id: str, code: str, run: CodeRun, started: float, clock: float, agent: str = "") -> None:
    """One ``agent_run`` span, as an ask's execution is traced: which call, by whom, how it ended, what it
    wrote (``started``: wall-clock start; ``clock``: monotonic start)."""
    span = {
        "session": SESSION_ID,
        "ask_id": call_id,
        "name": "agent_run",
        "start": datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds"),
        "duration_s": round(time.monotonic() - clock, 4),
        "attributes": {
            "agent": agent,
            "outcome": run.execution.outcome,
            "error": run.execution.error_name,
            "code_chars": len(code),
            "files": [f.path for f in run.files],
        },
    }
    write_span(span, trace_dir())


class AgentSession:
    """See the module docstring. ``frames``: the DataFrames loaded for the agent; ``tables``: the file each was
    read from (the exported notebook reads them again)."""

    def __init__(
        self,
        settings: Settings,
        folder: Path,
        frames: dict[str, Any] | None = None,
        tables: dict[str, Path] | None = None,
    ) -> None:
        self.folder = folder.resolve()
        self.frames = dict(frames or {})
        self.tables = {name: Path(path).resolve() for name, path in (tables or {}).items()}
        self.interpreter = Interpreter(settings, user_dir=self.folder, files_dir=self.folder)
        self._cells: list[Any] = []  # what ran, as notebook cells with their outputs (for export)

    def describe(self) -> str:
        return self.interpreter.context(self.frames)

    def ask(self, question: str, on_event: EventSink = ignore, *, agent: str = "") -> Reply:
        result = self.interpreter.ask(question, self.frames, keep=None, on_event=on_event)
        final = result.final
        if result.ok and final is not None and final.execution is not None and final.code:
            self._cells.append(code_cell(final.code, final.execution.outputs, kind="generated"))
        return ask_reply(result)

    def run(self, code: str, *, agent: str = "") -> Reply:
        if not code.strip():
            raise UsageError("run_python needs code, and this call has none; nothing was run.")
        started, clock = time.time(), time.monotonic()
        run = self.interpreter.run_code(code, self.frames)
        call_id = uuid.uuid4().hex
        trace_run(call_id, code, run, started, clock, agent)
        self._cells.append(code_cell(code, run.execution.outputs))
        return run_reply(call_id, code, run)

    def reset(self) -> None:
        self.interpreter.reset()
        self._cells.clear()

    def export(self, name: str) -> Path:
        """The session as a notebook in the working folder: a cell that loads the tables, then every successful
        ask's code and every ``run`` with its outputs; ``ci-magic verify`` re-runs and compares it."""
        target = (self.folder / name).resolve()
        if target.parent != self.folder or target.suffix != ".ipynb":
            raise UsageError(f"the export is a .ipynb file name in the working folder, got {name!r}.")
        nbformat.write(self.notebook(), target)
        return target

    def notebook(self) -> Any:
        """The session as an exported notebook (see :meth:`export`), not written anywhere."""
        loads = ["import pandas as pd"] + [
            f"{frame} = "
            + READERS.get(path.suffix.lower(), READERS[".csv"]).format(
                path=os.path.relpath(path, self.folder)
            )
            for frame, path in self.tables.items()
        ]
        nb = nbformat.v4.new_notebook(cells=[code_cell("\n".join(loads), []), *self._cells])
        return export_notebook(nb, self.folder, None, "agent session")

    def close(self) -> None:
        self.interpreter.close()


def _outputs(execution: ExecutionResult, reply: Reply) -> None:
    """The outputs of a run as text and images (HTML, scripts and the like never leave as markup)."""
    for out in execution.outputs:
        kind = out.get("output_type")
        if kind == "stream":
            reply.text.append(str(out.get("text", "")))
        elif kind == "error":
            reply.text.append(f"{out.get('ename', 'Error')}: {out.get('evalue', '')}")
        else:
            data = out.get("data") or {}
            png = data.get("image/png") or data.get("image/jpeg")
            if isinstance(png, str):
                mime = "image/png" if "image/png" in data else "image/jpeg"
                reply.images.append((mime, base64.b64decode(png)))
            elif isinstance(data.get("text/plain"), str):
                reply.text.append(data["text/plain"])
