"""What the code leaves running in the local sandbox: stray processes after a run, CPU burnt while idle.

Both are seen and stopped from outside (``host_process.py``), so nothing in the sandbox can hide or refuse.
After every run the processes the code left (a forgotten server's) are killed, so the next run starts with the
kernel alone; the sandbox is restarted when they cannot be, and after a fork bomb (copies of the kernel had its
sockets). A watchdog thread restarts a sandbox that keeps a core busy while no code runs (a background thread
left behind).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

from ..core.results import ExecutionResult
from .host_process import SandboxProcess
from .kernel import ChildKernel

MAX_LEFTOVER_PROCESSES = 32
LEFTOVER_MESSAGE = (
    "The code left many processes running (for example by forking in a loop); the sandbox was restarted and "
    "its variables are gone. Do not start processes."
)
#: CPU a sandbox may use while no code runs without it counting (ipykernel's own housekeeping is far below):
#: the CPU used beyond it accumulates, so bursts with rests in between add up as surely as a steady burn.
IDLE_ALLOWANCE = 0.05  # of a core


def stop_strays(result: ExecutionResult, process: SandboxProcess, kernel: ChildKernel) -> ExecutionResult:
    """Processes the code left running are stopped from outside (a fork bomb's, a forgotten server's): the
    next execution starts with the kernel alone. If they cannot be stopped, the sandbox is restarted."""
    kernels = process.children()
    try:
        stopped = process.stop_strays(kernels[0] if kernels else -1)
    except OSError:
        return _restarted_for_leftovers(kernel, result)
    if process.process_count() > MAX_LEFTOVER_PROCESSES or stopped > MAX_LEFTOVER_PROCESSES:
        # Stopped, but not collected by the kernel: they would hold the process limit forever. Or a fork bomb:
        # its copies of the kernel had the kernel's sockets, and what they read or wrote there can garble the
        # next run's messages (seen once in CI: the run after an interrupted bomb printed nothing) — a kernel
        # that forked copies of itself is not trusted again.
        return _restarted_for_leftovers(kernel, result)
    process.settle()  # the kernel alone again: the next runs need not look unless this changes
    note = f"[ci_magic stopped {stopped} process(es) the code left running]\n"
    outputs = (
        [*result.outputs, {"output_type": "stream", "name": "stderr", "text": note}]
        if stopped
        else result.outputs
    )
    return replace(result, outputs=outputs)


class CpuWatchdog:
    """Restarts a sandbox that keeps a core busy while no code runs (a background thread left behind).

    ``process`` and ``idle_cpu_s`` are asked anew every second: the process changes with every restart, the
    limit with ``set_limits``."""

    def __init__(
        self,
        kernel: ChildKernel,
        process: Callable[[], SandboxProcess | None],
        idle_cpu_s: Callable[[], float],
    ) -> None:
        self._kernel = kernel
        self._process = process
        self._idle_cpu_s = idle_cpu_s
        self._running = threading.Event()
        self._closed = threading.Event()
        self._runs = 0  # finished runs: idle use is measured from the latest
        self.killed_reason: str | None = None  # why it restarted the sandbox, until taken

    def start(self) -> None:
        threading.Thread(target=self._watch, name="ci_magic-sandbox-cpu", daemon=True).start()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around a run: the CPU the code uses while it runs is its own."""
        self._running.set()
        try:
            yield
        finally:
            self._runs += 1
            self._running.clear()

    def take_reason(self) -> str | None:
        """Why the watchdog restarted the sandbox since the last call, if it did."""
        reason, self.killed_reason = self.killed_reason, None
        return reason

    def close(self) -> None:
        self._closed.set()

    def _watch(self) -> None:
        busy, runs, last = 0.0, -1, 0.0
        while not self._closed.wait(1.0):
            process = self._process()
            if self._running.is_set() or process is None:
                busy, runs = 0.0, -1
                continue
            try:
                now = process.cpu_seconds()
            except OSError:
                continue
            if runs != self._runs:  # a run ended since we last looked: measure from here
                busy, runs, last = 0.0, self._runs, now
                continue
            used, last = now - last, now
            busy = max(0.0, busy + used - IDLE_ALLOWANCE)  # a leaky bucket: resting does not reset it
            if busy > self._idle_cpu_s() and not self._running.is_set():
                self.killed_reason = (
                    f"the sandbox was restarted because code kept using the CPU after its execution ended "
                    f"({busy:.0f} s of CPU); its variables are gone, the DataFrames were reloaded."
                )
                self._kernel.kill()
                busy = 0.0


def _restarted_for_leftovers(kernel: ChildKernel, result: ExecutionResult) -> ExecutionResult:
    """Leftover processes that could not be stopped for good: a fresh kernel, and the run reported as failed."""
    kernel.restart()
    return replace(
        result,
        outcome="error",
        error_name="LeftoverProcesses",
        error_value=LEFTOVER_MESSAGE,
        traceback=LEFTOVER_MESSAGE,
        restarted=True,
    )
