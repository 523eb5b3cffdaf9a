"""ci_magic: a self-hosted Code Interpreter inside Jupyter.

Public API (pinned by ``tests/test_public_api.py``)::

    %load_ext ci_magic            # then %%ask cells
    Interpreter(...).ask(question, frames={...}) -> AskResult
    FakeModelServer               # scripted OpenAI-compatible server for tests
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .core.errors import CIMagicError
from .core.results import AskResult, Attempt, ExecutionResult, Usage
from .core.settings import Limits, Settings

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
        from .engine.interpreter import Interpreter

        return Interpreter
    if name == "FakeModelServer":
        from .providers.fake import FakeModelServer

        return FakeModelServer
    raise AttributeError(f"module 'ci_magic' has no attribute {name!r}")


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # Jupyter's hook for `jupyter-builder develop .` (editable installs); wheels ship it as shared data.
    return [{"src": "labextension", "dest": "ci-magic-labextension"}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ci_magic``: a notebook session for this shell, the ``%%ask`` magic, the panel bridge."""
    from .extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .extension import unload

    unload(ipython)
