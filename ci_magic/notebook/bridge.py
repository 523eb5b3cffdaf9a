"""Kernel side of the JupyterLab/Notebook 7 extension (``labextension/``): one Comm target, ``ci_magic``.

Protocol v1 is declared here once and mirrored by ``labextension/src/protocol.ts``; every message carries
``"v": 1``. The frontend opens a comm with ``hello`` (on kernel connect, and whenever the kernel ``announce``-s
itself after ``%load_ext``). From then on this kernel

* inserts ``%%ask`` results as real cells below the ``%%ask`` cell (``insert``), instead of the fallback output;
* forwards every progress :class:`~ci_magic.core.events.Event` (``event``), so the panel shows live attempts;
* answers the panel: ``list_frames`` → ``frames``, ``context`` → ``context``, ``ask`` → ``event``… → ``result``
  or ``error``.

The bridge holds the :class:`~ci_magic.notebook.session.NotebookSession`: it subscribes to its events, adds its
inserter, asks and previews through it, and reads the panel's ask fields with the ``%%ask`` option declaration
(:mod:`.options`). Every event carries its ask's id (given by the interpreter, or by the panel for its own asks),
so the bridge never guesses where an ask starts.

Frontend→kernel messages are only handled when the kernel is idle, so the kernel never waits for a reply.
A panel ask runs inside the comm handler (the kernel is busy meanwhile, like a running cell); the frontend
cancels it with a kernel interrupt, which the loop turns into :class:`~ci_magic.core.errors.Cancelled`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from .._version import __version__
from ..core.errors import CIMagicError
from ..core.events import Event, Token
from . import options
from .cells import Insertion
from .session import NotebookSession

PROTOCOL_VERSION = 1
#: A frontend that says hello gets the events of this many last asks (each at most REPLAY_MESSAGES of them).
REPLAY_ASKS = 3
REPLAY_MESSAGES = 5000
TARGET_NAME = "ci_magic"

# Every message type, by sender. The TypeScript side declares the same names with their fields.
FRONTEND_MESSAGES = {
    "hello": "open the comm; the kernel answers `ready`",
    "list_frames": "which DataFrames/Series exist; answered by `frames`",
    "context": "{frames: [names]}: exactly what would be sent; answered by `context`",
    # The option fields besides ask_id and prompt are those %%ask options.py marks panel=True; null: as configured.
    "ask": "{" + ", ".join(options.panel_fields()) + "}: answered by events, then result/error",
}
KERNEL_MESSAGES = {
    "announce": "kernel-opened, immediately closed comm: ci_magic was loaded, send `hello`",
    "ready": "{version}: hello accepted; the `event`s of the last asks follow, replayed from their start",
    "event": "{ask_id, origin, kind, attempt, data}: one progress event (see ci_magic/core/events.py)",
    "insert": "{insertion_id, anchor_cell_id, cells, append?}: put these cells below the anchor cell, replacing "
    "what an earlier run of it generated; with append (an agent's calls), after the cells already added below it, "
    "replacing nothing",
    "frames": "{frames: [{name, kind, shape}]}",
    "context": "{text, tokens, frames}: the messages the next ask would send (earlier asks included)",
    "result": "{ask_id, ok, cells, usage, attempts, notes, files}: notes include the ask's warnings; files (new "
    "in v1, optional for the frontend): [{path, bytes, sha256, saved_as, note}] the working code wrote, saved_as "
    "relative to the notebook's folder (null: not copied, note says why)",
    "error": "{ask_id, message}: an ask or request failed (ask_id is null for requests)",
}

# Streamed model text arrives a few characters at a time; batching it keeps the iopub channel (and the
# browser, which re-renders per message) from being flooded, while still looking live.
TOKEN_FLUSH_S = 0.1

log = logging.getLogger(__name__)


class Comm(Protocol):
    """The part of ``comm.base_comm.BaseComm`` the bridge uses (a test can supply its own)."""

    comm_id: str

    def send(self, data: dict[str, Any]) -> None: ...

    def on_msg(self, callback: Callable[[dict[str, Any]], None]) -> None: ...

    def on_close(self, callback: Callable[[dict[str, Any]], None]) -> None: ...

    def close(self) -> None: ...


def message(msg_type: str, /, **fields: Any) -> dict[str, Any]:
    assert msg_type in KERNEL_MESSAGES, msg_type  # a typo here would silently desynchronise the two sides
    return {"v": PROTOCOL_VERSION, "type": msg_type, **fields}


def cell_dicts(insertion: Insertion) -> list[dict[str, Any]]:
    return [dict(insertion.code_cell), dict(insertion.record_cell)]


class CommInserter:
    """An :class:`~ci_magic.notebook.cells.Inserter` that sends ``insert`` to every connected frontend.

    Every frontend gets it because the kernel cannot know which one shows the anchor cell; frontends skip an
    ``insertion_id`` they already hold, so two views of one notebook do not duplicate the cells.
    """

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def insert(self, insertion: Insertion) -> bool:
        if insertion.anchor_cell_id is None or not self.bridge.comms:
            return False  # e.g. a console, or no frontend said hello: the magic falls back to its output
        self.bridge.broadcast(
            message(
                "insert",
                insertion_id=insertion.insertion_id,
                anchor_cell_id=insertion.anchor_cell_id,
                cells=cell_dicts(insertion),
            )
        )
        return True

    def append(self, insertion_id: str, anchor_cell_id: str, cells: list[Any]) -> bool:
        if not self.bridge.comms:
            return False
        self.bridge.broadcast(
            message(
                "insert",
                insertion_id=insertion_id,
                anchor_cell_id=anchor_cell_id,
                cells=[dict(c) for c in cells],
                append=True,
            )
        )
        return True


class Bridge:
    """The comms of the frontends that said hello, and the handlers for their requests."""

    def __init__(self, shell: Any, session: NotebookSession) -> None:
        self.shell = shell
        self.session = session
        self.inserter = CommInserter(self)
        self.comms: dict[str, Comm] = {}
        self._panel_ask: str | None = None  # ask_id of the panel ask running now, if any
        self._tokens: dict[tuple[str, int], list[str]] = {}  # (ask_id, attempt) -> streamed text not yet sent
        self._flushed = 0.0
        # The event messages of the last asks, replayed to a frontend that says hello later (a page reloaded
        # while an ask ran follows it from iopub meanwhile, then gets it whole from here).
        self._sent: dict[str, list[dict[str, Any]]] = {}

    # -- connection ------------------------------------------------------------------------------------------

    def on_open(self, comm: Comm, msg: dict[str, Any]) -> None:
        """Comm target callback: a frontend opened a comm (its first message is in the open)."""
        comm.on_msg(lambda m: self._dispatch(comm, m["content"]["data"]))
        comm.on_close(lambda _m: self._forget(comm))
        self._dispatch(comm, msg["content"]["data"])

    def _forget(self, comm: Comm) -> None:
        self.comms.pop(comm.comm_id, None)

    def broadcast(self, data: dict[str, Any]) -> None:
        for comm_id, comm in list(self.comms.items()):
            try:
                comm.send(data)
            except Exception:  # a closed socket must not break the ask for the other frontends
                log.warning("ci_magic: dropping frontend comm %s", comm_id, exc_info=True)
                self.comms.pop(comm_id, None)

    def attach(self) -> None:
        """Hear every ask of the session and offer it the frontends as a place for cells."""
        self.session.subscribe(self.forward_event)
        self.session.add_inserter(self.inserter)

    def close(self) -> None:
        self.session.unsubscribe(self.forward_event)
        self.session.remove_inserter(self.inserter)
        for comm in list(self.comms.values()):
            comm.close()
        self.comms.clear()

    # -- events ----------------------------------------------------------------------------------------------

    def forward_event(self, event: Event) -> None:
        """A subscriber of the session: mirrors every event of every ask to the frontends."""
        if not self.comms:
            return
        if isinstance(event.data, Token):
            # Buffered per attempt: samples drawn in one batch stream interleaved, and each keeps its batch.
            self._tokens.setdefault((event.ask_id, event.attempt), []).append(event.data.text)
            if time.monotonic() - self._flushed >= TOKEN_FLUSH_S:
                self._flush_tokens()
            return
        self._flush_tokens()
        self._send_event(event.ask_id, event.kind, event.attempt, event.wire())

    def _flush_tokens(self) -> None:
        self._flushed = time.monotonic()
        pending, self._tokens = self._tokens, {}
        for (ask_id, attempt), pieces in pending.items():
            self._send_event(ask_id, "token", attempt, {"text": "".join(pieces)})

    def _send_event(self, ask_id: str, kind: str, attempt: int, data: dict[str, Any]) -> None:
        origin = "panel" if ask_id == self._panel_ask else "cell"
        sent = message("event", ask_id=ask_id, origin=origin, kind=kind, attempt=attempt, data=data)
        log = self._sent.setdefault(ask_id, [])
        if len(log) < REPLAY_MESSAGES:
            log.append(sent)
        while len(self._sent) > REPLAY_ASKS:
            self._sent.pop(next(iter(self._sent)))
        self.broadcast(sent)

    # -- requests --------------------------------------------------------------------------------------------

    def _dispatch(self, comm: Comm, data: Any) -> None:
        if not isinstance(data, dict) or data.get("v") != PROTOCOL_VERSION:
            version = data.get("v") if isinstance(data, dict) else None
            comm.send(
                message(
                    "error",
                    ask_id=None,
                    message=f"ci_magic in this kernel speaks protocol v{PROTOCOL_VERSION}, the extension "
                    f"v{version}: install matching versions (pip install -U ci-magic) and reload the page.",
                )
            )
            return
        kind = data.get("type")
        if kind == "hello":
            self.comms[comm.comm_id] = comm  # from now on the inserter delivers cells to this frontend too
            comm.send(message("ready", version=__version__))
            for sent in [m for log in self._sent.values() for m in log]:
                comm.send(sent)  # the last asks from their start, as if this frontend had been there
        elif comm.comm_id not in self.comms:
            comm.send(message("error", ask_id=None, message="say hello first"))
        elif kind == "list_frames":
            comm.send(message("frames", frames=self.frames()))
        elif kind == "context":
            self._context(comm, data)
        elif kind == "ask":
            self._ask(comm, data)
        else:
            comm.send(message("error", ask_id=None, message=f"unknown message type {kind!r}"))

    def frames(self) -> list[dict[str, Any]]:
        found = self.session.frames()
        # A lazy frame has no shape until it is collected: the panel shows none then.
        return [
            {"name": name, "kind": type(obj).__name__, "shape": list(getattr(obj, "shape", None) or ())}
            for name, obj in sorted(found.items())
        ]

    def _context(self, comm: Comm, data: dict[str, Any]) -> None:
        try:
            request = options.from_panel({"frames": data.get("frames")})
            # Exactly what the next ask would send: privacy level, earlier asks and all.
            preview = self.session.preview("", request.frames)
        except CIMagicError as exc:
            comm.send(message("error", ask_id=None, message=str(exc)))
            return
        comm.send(message("context", text=preview.text(), tokens=preview.tokens, frames=preview.frames))

    def _ask(self, comm: Comm, data: dict[str, Any]) -> None:
        ask_id = str(data.get("ask_id") or uuid.uuid4().hex)
        self._panel_ask = ask_id
        try:
            request = options.from_panel(data)
            # The panel's own id goes into the ask: its events, its trace and this reply share it.
            insertion = self.session.ask(
                request, ask_id=ask_id, anchor_cell_id=None
            )  # Insert picks the place
        except CIMagicError as exc:  # includes Cancelled, raised by the loop on a kernel interrupt
            comm.send(message("error", ask_id=ask_id, message=str(exc)))
            return
        except KeyboardInterrupt:  # an interrupt that landed outside the loop (e.g. starting the sandbox)
            comm.send(message("error", ask_id=ask_id, message="The ask was cancelled."))
            return
        except Exception as exc:  # a bug: the panel must leave its loading state, the log gets the traceback
            log.exception("ci_magic: panel ask failed")
            comm.send(message("error", ask_id=ask_id, message=f"Internal error: {type(exc).__name__}: {exc}"))
            return
        finally:
            self._flush_tokens()
            self._panel_ask = None
        result = insertion.result
        usage = result.usage
        comm.send(
            message(
                "result",
                ask_id=ask_id,
                ok=result.ok,
                cells=cell_dicts(insertion),
                usage={
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens,
                    "estimated": usage.estimated,
                },
                attempts=len(result.attempts),
                notes=insertion.notes + result.warnings,
                files=[
                    {
                        "path": f.path,
                        "bytes": f.bytes,
                        "sha256": f.sha256,
                        "saved_as": f.saved_as,
                        "note": f.note,
                    }
                    for f in result.files
                ],
            )
        )


def install(shell: Any, session: NotebookSession) -> Bridge | None:
    """Register the comm target in an ipykernel kernel; a terminal IPython has no frontend to talk to."""
    manager = getattr(getattr(shell, "kernel", None), "comm_manager", None)
    if manager is None:
        return None
    uninstall(shell)  # %reload_ext: the old bridge's comms belong to the old session
    bridge = Bridge(shell, session)
    manager.register_target(TARGET_NAME, bridge.on_open)
    bridge.attach()
    shell._ci_magic_bridge = bridge
    _announce()
    return bridge


def uninstall(shell: Any) -> None:
    bridge: Bridge | None = getattr(shell, "_ci_magic_bridge", None)
    if bridge is None:
        return
    manager = shell.kernel.comm_manager
    if manager.targets.get(TARGET_NAME) == bridge.on_open:
        manager.unregister_target(TARGET_NAME, bridge.on_open)
    bridge.close()
    del shell._ci_magic_bridge


def _announce() -> None:
    # Frontends that connected before %load_ext had their hello refused; this tells them to try again.
    from comm import create_comm

    create_comm(target_name=TARGET_NAME, data=message("announce")).close()
