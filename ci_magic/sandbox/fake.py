"""A scripted executor for tests: the loop and the vote without a kernel.

The executor-side twin of :class:`ci_magic.providers.fake.FakeModelServer`, as httpx ships ``MockTransport``
beside its transports. Each :meth:`~ScriptedExecutor.run` takes the next scripted step, or the first rule whose
regex matches the code; a step is an :class:`~ci_magic.core.results.ExecutionResult`, a string (printed
output of a successful run) or a :class:`Step` that also creates variables the test can then ``fetch``.
Every run is recorded (code, frames received, ``pristine``), so tests can assert what the loop did::

    executor = ScriptedExecutor([error("KeyError", "'revnue'"), Step("40.0\\n", creates={"total": 40.0})])
    ... run the loop with it ...
    assert executor.runs[1].pristine and executor.fetch(["total"]) == {"total": 40.0}
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import SandboxError, TransferError
from ..core.executor import OutputSink, Sink
from ..core.results import ExecutionResult
from ..core.settings import Limits
from .live import live_op


@dataclass
class Step:
    """One scripted run: its result (or printed text), and the variables it leaves in the sandbox."""

    result: ExecutionResult | str
    creates: dict[str, Any] = field(default_factory=dict)
    writes: dict[str, bytes] = field(default_factory=dict)  # files the run writes in its folder

    def execution(self) -> ExecutionResult:
        if isinstance(self.result, ExecutionResult):
            return self.result
        return ok(self.result)


@dataclass(frozen=True)
class Run:
    code: str
    frames: tuple[str, ...]
    pristine: bool


def ok(stdout: str = "", *, outputs: list[dict[str, Any]] | None = None) -> ExecutionResult:
    """A successful run that printed ``stdout`` (plus any other nbformat outputs)."""
    found = [{"output_type": "stream", "name": "stdout", "text": stdout}] if stdout else []
    return ExecutionResult("ok", found + list(outputs or []), seconds=0.01)


def error(name: str, value: str, *, stdout: str = "", traceback: str | None = None) -> ExecutionResult:
    """A run that raised ``name: value`` (``traceback``: its text, when a test needs the failing line in it)."""
    outputs: list[dict[str, Any]] = (
        [{"output_type": "stream", "name": "stdout", "text": stdout}] if stdout else []
    )
    outputs.append(
        {"output_type": "error", "ename": name, "evalue": value, "traceback": [f"{name}: {value}"]}
    )
    return ExecutionResult("error", outputs, name, value, traceback or f"{name}: {value}", seconds=0.01)


def timeout(seconds: float = 60.0) -> ExecutionResult:
    message = f"Execution exceeded the {seconds:g} s time limit."
    return ExecutionResult("timeout", [], "TimeoutError", message, message, seconds=seconds)


def died() -> ExecutionResult:
    message = "The sandbox kernel died while running the code (the kernel process was killed by signal 9)."
    return ExecutionResult("died", [], "KernelDied", message, message, seconds=0.01, restarted=True)


class ScriptedExecutor:
    """An :class:`~ci_magic.core.executor.Executor` whose runs are scripted (see the module docstring)."""

    def __init__(
        self,
        script: list[Step | ExecutionResult | str] | None = None,
        *,
        rules: list[tuple[str, Step | ExecutionResult | str]] | None = None,
        isolation_warnings: list[str] | None = None,
    ) -> None:
        self._script = [s if isinstance(s, Step) else Step(s) for s in (script or [])]
        self._rules = [(re.compile(p, re.S), s if isinstance(s, Step) else Step(s)) for p, s in (rules or [])]
        self._warnings_of_isolation = list(isolation_warnings or [])
        self.isolated = not self._warnings_of_isolation
        self.runs: list[Run] = []
        self.held: dict[str, Any] = {}  # the frames and variables "in the sandbox"
        self.forgotten: list[str] = []  # names the engine had dropped (forget)
        self.warnings: list[str] = []
        self.files: dict[str, bytes] = {}  # what the code "wrote": a Step's ``writes``
        self.limits: Limits | None = None
        self.interrupts = 0
        self.restarts = 0
        self.closed = False

    def add(self, *steps: Step | ExecutionResult | str) -> None:
        self._script.extend(s if isinstance(s, Step) else Step(s) for s in steps)

    def run(
        self,
        code: str,
        frames: Mapping[str, Any] | None = None,
        *,
        pristine: bool = False,
        on_output: OutputSink | None = None,
    ) -> ExecutionResult:
        if self.closed:
            raise SandboxError("The scripted executor is closed.")
        mentioned = tuple(sorted(n for n in (frames or {}) if re.search(rf"\b{re.escape(n)}\b", code)))
        self.runs.append(Run(code, mentioned, pristine))
        for name in mentioned:
            self.held[name] = (frames or {})[name]
        step = next((s for pattern, s in self._rules if pattern.search(code)), None)
        if step is None:
            if not self._script:
                raise AssertionError(
                    f"ScriptedExecutor: no scripted step left for run {len(self.runs)}:\n{code}"
                )
            step = self._script.pop(0)
        execution = step.execution()
        if on_output is not None:  # as a kernel passes them on while the code runs: one output at a time
            for output in execution.outputs:
                on_output([live_op(output)])
        if execution.ok:
            self.held.update(step.creates)
        self.files.update(step.writes)
        if step.writes:
            execution = dataclasses.replace(execution, files=sorted(step.writes))
        if execution.restarted:
            self.held = {k: v for k, v in self.held.items() if k in (frames or {})}
        return execution

    def values(self) -> dict[str, tuple[str, int]]:
        found = {}
        for name, value in self.held.items():
            shape = getattr(value, "shape", None)
            kind = (
                "frame"
                if shape is not None and len(shape) == 2
                else "series"
                if shape is not None
                else "scalar"
            )
            found[name] = (kind, int(getattr(value, "size", 1)))
        return found

    def fetch(self, names: list[str]) -> dict[str, Any]:
        got = {}
        for name in names:
            if name in self.held:
                got[name] = self.held[name]
            else:
                self.warnings.append(f"the code did not create a variable named {name!r}")
        return got

    def forget(self, names: Sequence[str]) -> None:
        self.forgotten += list(names)
        for name in names:
            self.held.pop(name, None)

    def written_files(self) -> list[str]:
        return sorted(self.files)

    def stale(self, ignore: set[str] | None = None) -> bool:
        return False

    def isolation_warnings(self) -> list[str]:
        return list(self._warnings_of_isolation)

    def copy_file(self, path: str, out: Sink, limit: int) -> int:
        data = self.files.get(path)
        if data is None or len(data) > limit:
            raise TransferError(f"refused {path!r}: no such file, or over the limit")
        out.write(data)
        return len(data)

    def set_limits(self, limits: Limits) -> None:
        self.limits = limits

    def interrupt(self) -> None:
        self.interrupts += 1

    def restart(self) -> None:
        self.restarts += 1
        self.held.clear()

    def close(self) -> None:
        self.closed = True
