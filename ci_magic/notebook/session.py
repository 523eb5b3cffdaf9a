"""The notebook session: one per kernel (IPython shell), the one core behind every notebook front end.

It owns the :class:`~ci_magic.engine.interpreter.Interpreter`'s lifecycle (prestart, reconfigure, close), reads
the record of this session's asks from its ledger (``%ask_history``, ``%ask_export``) and adds each ask's cells
to it, who hears the events (subscribers such as the
panel bridge, plus the requesting front end's own sink), how results reach the notebook (inserters tried in
order, then the plain-output fallback), the keep policy (values the code created come back into the user's
namespace; an existing variable is overwritten only when named with ``--keep``) and the preview (exactly the
messages the next ask would send). The front ends — the ``%%ask`` magic, the panel bridge, ``%ask_export`` —
hold the session and call it; none of them sets another's fields.
"""

from __future__ import annotations

import builtins
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..context.frames import Frame, collect_frames
from ..core.errors import CIMagicError
from ..core.events import Event, EventSink, ignore
from ..core.executor import Executor
from ..core.results import AskResult, CodeRun, estimate_prompt_tokens
from ..core.settings import Settings
from ..engine.interpreter import Interpreter
from ..engine.ledger import AskEntry
from ..providers import Message
from .cells import FallbackInserter, Inserter, Insertion, cells_for
from .config import Ask
from .options import AskRequest

#: Names a value brought back must not take unasked: they would hide Python's own (len, sorted, print…).
BUILTIN_NAMES = frozenset(dir(builtins))
#: What a preview shows where the question will go when there is none yet (the panel's preview).
PLACEHOLDER_QUESTION = "(your question)"


@dataclass(frozen=True)
class Preview:
    """Exactly the messages the next ask would send first (nothing was sent)."""

    messages: list[Message]
    frames: list[str]  # the frames described
    context_budget: int  # the token budget the data description was fitted to

    @property
    def tokens(self) -> int:
        return estimate_prompt_tokens(self.messages)

    def text(self) -> str:
        return "\n".join(f"--- {m['role']} ---\n{m['content']}\n" for m in self.messages)


class NotebookSession:
    """See the module docstring. Created by ``%load_ext ci_magic`` (:mod:`ci_magic.extension`)."""

    def __init__(self, shell: Any, executor_factory: Callable[[], Executor] | None = None) -> None:
        self.shell = shell
        # What runs the code: a sandbox made from the settings, or (tests, embedders) what this factory makes.
        self._executor_factory = executor_factory
        self.config = Ask(parent=shell)
        shell.configurables.append(self.config)  # makes `%config Ask.model = ...` reach it
        self._interpreter: Interpreter | None = None
        self._listeners: list[EventSink] = []
        self._inserters: list[Inserter] = []
        self._cell_id: str | None = None
        # One sandbox, one caller at a time: the notebook's own cells and an agent served by %ask_serve (its
        # calls come on another thread) take turns.
        self.turn = threading.RLock()

    # -- configuration and lifecycle -------------------------------------------------------------------------

    def settings(self, overrides: Mapping[str, Any] | None = None) -> Settings:
        """``%config Ask.…`` and the environment, with one ask's options on top (``AskRequest.overrides()``)."""
        return self.config.settings(overrides)

    @property
    def interpreter(self) -> Interpreter | None:
        """The interpreter of this session, once there is one (read-only: the session replaces it)."""
        return self._interpreter

    def prestart(self) -> None:
        """Start this notebook's sandbox in the background (``Ask.prestart``); never shared with another."""
        if not self.config.prestart or self._interpreter is not None:
            return
        try:
            self._interpreter = self._new_interpreter(self.settings())
        except CIMagicError:
            return  # bad settings are reported by the first ask, with its own message
        self._interpreter.prestart()

    def _new_interpreter(self, settings: Settings) -> Interpreter:
        # The notebook's folder: its files are what the model sees, and where files the code writes arrive.
        folder = os.getcwd()
        made = self._executor_factory() if self._executor_factory is not None else None
        return Interpreter(settings, user_dir=folder, files_dir=folder, executor=made)

    def reset(self) -> None:
        """``%ask_reset``: a fresh sandbox at the next ask, and follow-ups forget the earlier asks."""
        if self._interpreter is not None:
            self._interpreter.reset()

    def _interpreter_for(self, settings: Settings) -> Interpreter:
        if self._interpreter is None:
            self._interpreter = self._new_interpreter(settings)
        elif self._interpreter.settings != settings:
            self._interpreter.reconfigure(settings)
        return self._interpreter

    def close(self) -> None:
        """Stop the sandbox and release the model connection; forget subscribers and the configuration."""
        if self._interpreter is not None:
            self._interpreter.close()
            self._interpreter = None
        self._listeners.clear()
        self._inserters.clear()
        if self.config in self.shell.configurables:
            self.shell.configurables.remove(self.config)

    # -- the cell being run -------------------------------------------------------------------------------------

    def cell_started(self, info: Any = None) -> None:
        """IPython's ``pre_run_cell`` hook: the cell running ``%%ask`` is where generated cells are anchored."""
        self._cell_id = getattr(info, "cell_id", None)

    @property
    def current_cell_id(self) -> str | None:
        return self._cell_id

    # -- who hears and who inserts -----------------------------------------------------------------------------

    def subscribe(self, listener: EventSink) -> None:
        """``listener`` hears every event of every ask of this session (each carries its ``ask_id``)."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def unsubscribe(self, listener: EventSink) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def add_inserter(self, inserter: Inserter) -> None:
        """Tried, in the order added, before the fallback; an inserter that cannot take the cells says False."""
        if inserter not in self._inserters:
            self._inserters.append(inserter)

    def remove_inserter(self, inserter: Inserter) -> None:
        if inserter in self._inserters:
            self._inserters.remove(inserter)

    # -- asks ---------------------------------------------------------------------------------------------------

    def frames(self, names: Sequence[str] | None = None) -> dict[str, Frame]:
        """The user's DataFrames/Series: all of them, or exactly ``names`` (ContextError when one is missing)."""
        return collect_frames(self.shell.user_ns, names)

    def preview(self, question: str = "", frames: Sequence[str] | None = None) -> Preview:
        """Exactly what the next ask with ``question`` about ``frames`` would send first, earlier asks included;
        sends nothing and starts nothing."""
        found = self.frames(frames)
        settings = self.settings()
        with self.turn:
            if self._interpreter is None:  # cheap: the sandbox and the model start on the first ask
                self._interpreter = self._new_interpreter(settings)
            messages = self._interpreter.preview(
                question.strip() or PLACEHOLDER_QUESTION, found, settings=settings
            )
        return Preview(messages, list(found), settings.context_tokens)

    def ask(
        self,
        request: AskRequest,
        *,
        on_event: EventSink = ignore,
        ask_id: str | None = None,
        anchor_cell_id: str | None = None,
    ) -> Insertion:
        """One ask from any front end: returns the cells to insert (see :meth:`deliver`).

        ``on_event`` (the requesting front end) and every subscriber hear its events. Values the code created
        come back into the user's namespace under the keep policy; the insertion's notes say what came back and
        what was not overwritten. The ask is recorded whether it finishes or raises."""
        with self.turn:
            return self._ask(request, on_event, ask_id, anchor_cell_id)

    def _ask(
        self, request: AskRequest, on_event: EventSink, ask_id: str | None, anchor_cell_id: str | None
    ) -> Insertion:
        frames = self.frames(request.frames)
        interpreter = self._interpreter_for(self.settings(request.overrides()))
        ask_id = ask_id or uuid.uuid4().hex

        def emit(event: Event) -> None:
            on_event(event)
            for listener in list(self._listeners):
                listener(event)

        # The interpreter's ledger records the ask, whether it finishes or raises (over budget, cancelled…).
        result = interpreter.ask(
            request.question,
            frames,
            keep=request.keep_policy,
            on_event=emit,
            budget=request.budget,
            fresh=request.fresh,
            ask_id=ask_id,
        )
        insertion = cells_for(result, anchor_cell_id, interpreter.files_dir)
        explicit = set(request.keep or ()) if not request.no_keep else set()
        insertion.notes.extend(self._keep(result.values, explicit))
        entry = interpreter.ledger.get(ask_id)
        if entry is not None:
            entry.cells = insertion
        return insertion

    def files_dir(self) -> Path | None:
        """Where files the code writes arrive (the notebook's folder), once there is an interpreter."""
        return self._interpreter.files_dir if self._interpreter is not None else None

    def run_code(self, code: str, *, keep: bool = True) -> tuple[CodeRun, list[str]]:
        """``%%sandbox``: a generated cell run again, in this notebook's sandbox with the frames it names. What
        its code assigns (in plain sight in the cell) comes back, as running any cell would set it — unless
        ``keep`` is False (an agent's code: nothing of it enters the user's namespace). Returns the run and the
        notes (what came back)."""
        with self.turn:
            interpreter = self._interpreter_for(self.settings())
            run = interpreter.run_code(code, self.frames())
            return run, self._keep(run.values, set(run.values) - BUILTIN_NAMES) if keep else []

    def describe(self) -> str:
        """The data description the model would see: this notebook's DataFrames and its folder's files."""
        with self.turn:
            return self._interpreter_for(self.settings()).context(self.frames())

    def _keep(self, values: dict[str, Any], explicit: set[str]) -> list[str]:
        """Write values back into the user's namespace, never overwriting a variable not named in ``explicit``."""
        user_ns = self.shell.user_ns
        notes, brought = [], []
        for name, value in values.items():
            if name in BUILTIN_NAMES and name not in explicit:
                notes.append(
                    f"{name!r} was not brought back because it would hide Python's built-in {name!r}; use "
                    f"--keep {name} if you really want it."
                )
                continue
            if name in user_ns and name not in explicit:
                notes.append(
                    f"{name!r} was not brought back because the notebook already has a variable of that name; "
                    f"use --keep {name} to overwrite it."
                )
                continue
            user_ns[name] = value
            brought.append(name)
        if brought:
            notes.append("brought back into the notebook: " + ", ".join(brought))
        return notes

    def deliver(self, insertion: Insertion) -> str:
        """Put the cells into the notebook: the first inserter that takes them, else the plain-output fallback.
        Returns the name of the front end that did, also recorded in the ask's trace."""
        frontend = ""
        for inserter in list(self._inserters):
            if inserter.insert(insertion):
                frontend = type(inserter).__name__
                break
        if not frontend:
            FallbackInserter(self.shell).insert(insertion)
            frontend = FallbackInserter.__name__
        entry = (
            self._interpreter.ledger.get(insertion.result.ask_id) if self._interpreter is not None else None
        )
        if entry is not None:
            entry.trace.insertion(insertion.insertion_id, insertion.anchor_cell_id, frontend)
        return frontend

    def append_cells(self, insertion_id: str, anchor_cell_id: str, cells: list[Any]) -> bool:
        """Add cells after ``anchor_cell_id`` and those already added there (an agent's calls, in order); False
        when no front end can (no JupyterLab/Notebook 7 page connected)."""
        return any(i.append(insertion_id, anchor_cell_id, cells) for i in list(self._inserters))

    # -- the record -------------------------------------------------------------------------------------------

    @property
    def history(self) -> tuple[AskEntry, ...]:
        """Every ended ask of this session, in order (the interpreter's ledger): finished ones with their result
        and cells, failed ones with what they spent."""
        ledger = self._interpreter.ledger if self._interpreter is not None else ()
        return tuple(e for e in ledger if e.ended)

    def finished(self) -> list[tuple[str, AskResult, Insertion]]:
        """(question, result, cells) of every ask that produced cells: what ``%ask_export`` exports."""
        return [
            (e.question, e.result, e.cells)
            for e in self.history
            if e.result and isinstance(e.cells, Insertion)
        ]

    def history_table(self) -> str:
        """The text of ``%ask_history``: tokens, cost, attempts and time per ask, failed ones included."""
        from ..observe.cost import history_table

        summaries = [e.summary for e in self.history if e.summary is not None]
        return history_table(summaries, self.settings().prices, "%config Ask.prices")
