"""``%ask_serve``: the running notebook's session served to other agents over MCP (streamable HTTP, loopback).

An agent then works on the user's live data: ``describe_data`` describes this notebook's DataFrames and folder,
``run_python`` runs the agent's code in this notebook's sandbox with those frames, ``ask`` is an ``%%ask`` by
the agent. Every call that ran code appears in the notebook as cells below the ``%ask_serve`` cell, in call
order, marked with who ran it (the agent's MCP client name, the tool, the call id) in the cell's header line and
its ``ci_magic`` metadata. Nothing the agent runs enters the notebook's own namespace (its cells do, when the
user runs them). Access ends with ``%ask_serve stop``, with ``%unload_ext ci_magic`` and with the kernel (the
server is a thread of the kernel process): closing the notebook and shutting its kernel down ends it.

The server runs uvicorn on a thread of the kernel; its calls take turns with the notebook's own cells on the
session's lock (one sandbox, one caller at a time).
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import nbformat

from ..core.errors import UsageError
from ..core.events import EventSink, ignore
from ..notebook.cells import METADATA_KEY, files_outputs
from ..notebook.options import AskRequest
from ..notebook.session import NotebookSession
from .session import Reply, ask_reply, run_reply, trace_run

__all__ = ["LiveNotebookAgent", "Serving", "serve_notebook", "stop_serving"]

#: The header of a cell an agent ran: re-run, it goes through the sandbox like any generated cell.
AGENT_HEADER = "%%sandbox  # run by the agent {agent} (MCP {tool}, call {call}): runs in ci_magic's sandbox"


def agent_label(name: str) -> str:
    """The agent's self-given name, safe on a code line: letters, digits and ``._ -`` only, 40 at most."""
    return re.sub(r"[^\w .-]", "", name)[:40].strip() or "unnamed"


class LiveNotebookAgent:
    """The :class:`~ci_magic.agents.session.AgentBackend` over a running notebook's session."""

    def __init__(self, session: NotebookSession, anchor_cell_id: str | None, folder: Path) -> None:
        self.session = session
        self.anchor = anchor_cell_id
        self.folder = folder.resolve()
        self.inserted = 0  # calls that reached the notebook as cells

    def describe(self) -> str:
        return self.session.describe()

    def ask(self, question: str, on_event: EventSink = ignore, *, agent: str = "") -> Reply:
        if not question.strip():
            raise UsageError("ask needs a question, and this call has none; nothing was asked.")
        insertion = self.session.ask(
            AskRequest(question=question, no_keep=True), on_event=on_event, anchor_cell_id=self.anchor
        )
        result = insertion.result
        cells = [insertion.code_cell, insertion.record_cell]
        for cell in cells:
            # Not anchored (a re-run %%ask replaces its own cells, never an agent's): appended to this anchor.
            cell.metadata[METADATA_KEY].update(
                agent=agent_label(agent),
                tool="ask",
                call_id=result.ask_id,
                anchor_cell_id=None,
                appended_to=self.anchor,
            )
        self._add(insertion.insertion_id, cells)
        return ask_reply(result)

    def run(self, code: str, *, agent: str = "") -> Reply:
        if not code.strip():
            raise UsageError("run_python needs code, and this call has none; nothing was run.")
        started, clock = time.time(), time.monotonic()
        run, _ = self.session.run_code(code, keep=False)
        call_id = uuid.uuid4().hex
        label = agent_label(agent)
        trace_run(call_id, code, run, started, clock, label)
        header = AGENT_HEADER.format(agent=label, tool="run_python", call=call_id[:12])
        outputs = [*run.execution.outputs, *files_outputs(run.files, self.session.files_dir())]
        cell = nbformat.v4.new_code_cell(source=f"{header}\n{code.rstrip()}", outputs=outputs)
        insertion_id = uuid.uuid4().hex
        cell.metadata[METADATA_KEY] = {
            "role": "agent",
            "insertion_id": insertion_id,
            "agent": label,
            "tool": "run_python",
            "call_id": call_id,
            "ok": run.execution.ok,
            "appended_to": self.anchor,
            "files": [{"path": f.path, "sha256": f.sha256, "saved_as": f.saved_as} for f in run.files],
        }
        self._add(insertion_id, [cell])
        return run_reply(call_id, code, run)

    def _add(self, insertion_id: str, cells: list[Any]) -> None:
        if self.anchor is not None and self.session.append_cells(insertion_id, self.anchor, cells):
            self.inserted += 1

    def reset(self) -> None:
        self.session.reset()

    def notebook(self) -> Any:
        return nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_markdown_cell(NOTEBOOK_IS_THE_RECORD)],
        )

    def export(self, name: str) -> Path:
        raise UsageError(NOTEBOOK_IS_THE_RECORD)


NOTEBOOK_IS_THE_RECORD = (
    "This session is a live notebook's: what the agent ran is in the notebook itself, as cells marked with the "
    "agent's name below the %ask_serve cell. The user saves or exports that notebook (%ask_export); nothing "
    "was written."
)


class Serving:
    """One MCP server on a thread of this kernel (see the module docstring)."""

    def __init__(self, agent: LiveNotebookAgent, host: str, port: int, secret: str) -> None:
        import uvicorn

        from .mcp_server import build_server, http_app

        self.agent, self.host, self.token = agent, host, secret
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise UsageError(
                f"%ask_serve cannot listen on {host}:{port} ({exc.strerror}); choose another --port."
            ) from None
        self.port = int(self._socket.getsockname()[1])
        app = http_app(build_server(agent), host, self.port, secret)
        # log_config=None: the user's kernel keeps its own logging configuration.
        config = uvicorn.Config(
            app, log_config=None, log_level="warning", timeout_graceful_shutdown=2, lifespan="on"
        )
        self._server = uvicorn.Server(config)
        # The SDK says "session manager started" at INFO; in a notebook that lands in the cell as stderr.
        logging.getLogger("mcp.server.streamable_http_manager").setLevel(logging.WARNING)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="ci-magic-mcp", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            self.stop()
            raise UsageError("%ask_serve could not start its MCP server; nothing is being served.")

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


#: The server of each notebook session (one at most).
_SERVING: dict[int, Serving] = {}


def stop_serving(session: NotebookSession) -> bool:
    """End access for ``session``'s agent, if one is served; True when one was."""
    serving = _SERVING.pop(id(session), None)
    if serving is None:
        return False
    serving.stop()
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="%ask_serve", add_help=False, exit_on_error=False)
    parser.add_argument("action", nargs="?", choices=["start", "stop", "status"], default="start")
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument("--host", default="127.0.0.1")
    return parser


def serve_notebook(session: NotebookSession, line: str) -> str:
    """``%ask_serve [start|stop|status] [--port N] [--host H]``; returns what the magic prints."""
    try:
        args = _parser().parse_args(shlex.split(line))
    except (argparse.ArgumentError, ValueError) as exc:
        raise UsageError(f"%ask_serve: {exc}. Usage: %ask_serve [start|stop|status] [--port N]") from None
    current = _SERVING.get(id(session))
    if current is not None and not current.running:
        _SERVING.pop(id(session), None)
        current = None
    if args.action == "stop":
        if stop_serving(session):
            return "ci_magic: the MCP server was stopped; agents no longer reach this notebook."
        return "ci_magic: nothing was being served."
    if args.action == "status" or current is not None:
        if current is None:
            return "ci_magic: nothing is being served; %ask_serve starts an MCP server for this notebook."
        return (
            f"ci_magic: serving this notebook at {current.url} ({current.agent.inserted} call(s) added as cells); "
            "%ask_serve stop ends it."
        )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError(
            "%ask_serve listens on loopback only (an agent on this machine): the notebook's data must not be "
            f"reachable from the network, so --host {args.host!r} is refused."
        )
    try:
        from .mcp_server import token
    except ImportError:
        raise UsageError(
            "%ask_serve needs the MCP SDK: pip install 'ci-magic[mcp]' (then run %ask_serve again)."
        ) from None
    folder = session.files_dir() or Path.cwd()
    agent = LiveNotebookAgent(session, session.current_cell_id, folder)
    serving = Serving(agent, args.host, args.port, token())
    serving.start()
    _SERVING[id(session)] = serving
    where = (
        "below this cell"
        if agent.anchor is not None
        else "nowhere (no cell id: run it in JupyterLab or Notebook 7)"
    )
    return "\n".join(
        [
            f"ci_magic: serving this notebook's session to MCP agents at {serving.url}",
            f"  token: {serving.token}   (header 'Authorization: Bearer <token>'; valid until %ask_serve stop "
            "or the kernel stops)",
            "  agents reach: describe_data, ask, run_python, reset — this notebook's DataFrames, in its sandbox "
            "(no network, no secrets, only this folder); nothing they run enters your namespace.",
            f"  what they run appears {where}, marked with the agent's name.",
            f"  Claude Code: claude mcp add --transport http ci-magic-notebook {serving.url} --header "
            f'"Authorization: Bearer {serving.token}"',
        ]
    )
