"""ci_magic: a self-hosted Code Interpreter inside Jupyter.

Public API (pinned by ``tests/test_public_api.py``)::

    %load_ext ci_magic            # then %%ask cells
    Interpreter(...).ask(question, frames={...}) -> AskResult
    FakeModelServer               # scripted OpenAI-compatible server for tests
"""

from __future__ import annotations

from typing import Any

from .core.errors import CIMagicError
from .core.results import AskResult, Attempt, ExecutionResult, Usage
from .core.settings import Limits, Settings

__version__ = "0.1.0"

__all__ = [
    "AskResult",
    "Attempt",
    "CIMagicError",
    "ExecutionResult",
    "FakeModelServer",
    "Interpreter",
    "Limits",
    "Settings",
    "Usage",
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> Any:
    # Heavy modules (openai, jupyter_client) load on first use, so `import ci_magic` stays cheap.
    if name == "Interpreter":
        from .core.interpreter import Interpreter

        return Interpreter
    if name == "FakeModelServer":
        from .providers.fake import FakeModelServer

        return FakeModelServer
    raise AttributeError(f"module 'ci_magic' has no attribute {name!r}")


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # Jupyter's hook for `jupyter-builder develop .` (editable installs); wheels ship it as shared data.
    return [{"src": "labextension", "dest": "ci-magic-labextension"}]


def load_ipython_extension(ipython: Any) -> None:
    from .notebook.magic import AskMagics

    magics = AskMagics(ipython)
    ipython.register_magics(magics)

    def remember_cell(info: Any) -> None:
        # The cell running %%ask is where generated cells are anchored.
        magics.current_cell_id = getattr(info, "cell_id", None)

    ipython.events.register("pre_run_cell", remember_cell)
    ipython._ci_magic = (magics, remember_cell)
    magics.warm_up()
    import atexit

    # The child kernel would exit with us anyway (it polls its parent); this also removes the session files.
    atexit.register(lambda: magics.interpreter.close() if magics.interpreter is not None else None)
    # -- JupyterLab/Notebook 7 extension bridge (ci_magic/bridge.py): real cells and the Ask panel --
    from .notebook.bridge import install

    install(ipython, magics)


def unload_ipython_extension(ipython: Any) -> None:
    state = getattr(ipython, "_ci_magic", None)
    if state is None:
        return
    magics, hook = state
    from .notebook.bridge import uninstall

    uninstall(ipython)
    ipython.events.unregister("pre_run_cell", hook)
    if magics.config_obj in ipython.configurables:
        ipython.configurables.remove(magics.config_obj)
    if magics.interpreter is not None:
        magics.interpreter.close()
    del ipython._ci_magic
