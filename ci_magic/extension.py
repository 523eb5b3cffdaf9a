"""``%load_ext ci_magic``: one :class:`~ci_magic.notebook.session.NotebookSession` per shell, the ``%%ask`` magic
on top of it, and the comm bridge to the JupyterLab extension where there is a kernel to talk through.

The composition root of the notebook front end: it sits above ``notebook/`` and ``reproduce/`` and hands the
magic the export it offers (``%ask_export``), so that neither room imports the other upwards."""

from __future__ import annotations

import atexit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .agents.live import serve_notebook, stop_serving
from .core.executor import Executor
from .notebook.bridge import Bridge, install, uninstall
from .notebook.magic import AskMagics
from .notebook.session import NotebookSession
from .reproduce.export import export_session

#: Where the loaded extension keeps its state on the shell.
STATE_ATTRIBUTE = "_ci_magic"


@dataclass(frozen=True)
class Loaded:
    session: NotebookSession
    magics: AskMagics
    bridge: Bridge | None


def load(ipython: Any, executor_factory: Callable[[], Executor] | None = None) -> NotebookSession:
    """Load into ``ipython``; ``executor_factory`` makes what runs the code instead of a sandbox (tests use a
    :class:`~ci_magic.sandbox.fake.ScriptedExecutor`)."""
    unload(ipython)  # loading twice must not leave a second session (and sandbox) running
    session = NotebookSession(ipython, executor_factory)
    magics = AskMagics(ipython, session, export=export_session, serve=serve_notebook)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", session.cell_started)
    # The child kernel would exit with us anyway (it polls its parent); this also removes the session files.
    atexit.register(session.close)
    session.prestart()
    bridge = install(ipython, session)  # real cells and the Ask panel (JupyterLab / Notebook 7)
    setattr(ipython, STATE_ATTRIBUTE, Loaded(session, magics, bridge))
    return session


def unload(ipython: Any) -> None:
    state: Loaded | None = getattr(ipython, STATE_ATTRIBUTE, None)
    if state is None:
        return
    uninstall(ipython)
    # Unloaded means gone: a %%sandbox cell must then fail, not run with a session that was closed.
    for kind, names in state.magics.magics.items():
        for name in names:
            ipython.magics_manager.magics[kind].pop(name, None)
    ipython.events.unregister("pre_run_cell", state.session.cell_started)
    atexit.unregister(state.session.close)
    stop_serving(state.session)  # unloaded: an agent served by %ask_serve loses access too
    state.session.close()
    delattr(ipython, STATE_ATTRIBUTE)


def session_of(ipython: Any) -> NotebookSession | None:
    """The session of a shell where ci_magic is loaded (for tools and tests)."""
    state: Loaded | None = getattr(ipython, STATE_ATTRIBUTE, None)
    return state.session if state is not None else None
