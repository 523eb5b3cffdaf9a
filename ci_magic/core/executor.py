"""The executor seam: where generated code runs, as the loop and the vote see it.

Implementations: :class:`ci_magic.sandbox.Sandbox` (a bubblewrap sandbox kernel on this machine),
:class:`ci_magic.sandbox.gateway.GatewaySandbox` (a kernel started by Jupyter Enterprise Gateway) and
:class:`ci_magic.sandbox.fake.ScriptedExecutor` (scripted results, for tests of the loop and the vote without a
kernel — the executor's twin of :class:`ci_magic.providers.fake.FakeModelServer`).

Failures of the code are data (:class:`~ci_magic.core.results.ExecutionResult`), never exceptions; an executor
raises :class:`~ci_magic.core.errors.SandboxError` only when it cannot run anything at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .results import ExecutionResult
from .settings import Limits

#: A frame the executor receives under a name (pandas, polars or Arrow; see ci_magic.context.frames).
Frame = Any

#: Receives the outputs of a running execution as they arrive: a list of ops (see ci_magic.sandbox.live).
OutputSink = Callable[[list[dict[str, Any]]], None]


class Sink(Protocol):
    """Where a copied file's bytes go (a file opened for writing, or a hashing counter). ``data`` may be a view
    of a buffer that is reused for the next chunk: use it before returning, never keep it."""

    def write(self, data: bytes | memoryview, /) -> int: ...


@runtime_checkable
class Executor(Protocol):
    """Run code with frames, bring values back, and report honestly what isolation is in place."""

    #: Notes about transfers since the last look (columns sent as strings, values that could not come back).
    warnings: list[str]
    #: Whether the code is isolated as ci_magic promises (``require_isolation`` refuses to run otherwise).
    isolated: bool

    def run(
        self,
        code: str,
        frames: Mapping[str, Frame] | None = None,
        *,
        pristine: bool = False,
        on_output: OutputSink | None = None,
    ) -> ExecutionResult:
        """Send the frames the code mentions, then run it. ``pristine`` reloads them first even when
        unchanged (a failed attempt may have edited them in place); ``on_output`` hears the outputs while the
        code runs."""
        ...

    def values(self) -> dict[str, tuple[str, int]]:
        """{name: (kind, cells)} of the frames and scalars the code holds, which could be brought back."""
        ...

    def fetch(self, names: list[str]) -> dict[str, Any]:
        """Copy these values out (Arrow and JSON, never pickle); what cannot come back is a warning."""
        ...

    def written_files(self) -> list[str]:
        """Files the code created in its working folder, relative paths."""
        ...

    def forget(self, names: Sequence[str]) -> None:
        """Drop these variables from the sandbox (a failed attempt's leftovers: a retry that uses one without
        making it must fail as it would in a fresh kernel, not print the failed attempt's value)."""
        ...

    def copy_file(self, path: str, out: Sink, limit: int) -> int:
        """Copy one file the code wrote (relative path) into ``out``: a regular file only, never following a
        link, at most ``limit`` bytes (TransferError otherwise). Returns the bytes copied."""
        ...

    def isolation_warnings(self) -> list[str]:
        """One line per protection that is not in place (shown with every ask)."""
        ...

    def stale(self, ignore: set[str] | None = None) -> bool:
        """Whether the user's folder changed in a way the sandbox cannot see without a fresh start (files
        added since it started); ``ignore``: names ci_magic put there itself."""
        ...

    def set_limits(self, limits: Limits) -> None:
        """Limits for the next runs that need no new sandbox (time, output and transfer sizes)."""
        ...

    def interrupt(self) -> None: ...

    def restart(self) -> None:
        """A fresh kernel: the code's variables are gone, the frames are sent again."""
        ...

    def close(self) -> None: ...
