"""The local sandbox's kernel: its lifecycle and its executions (with ``kernel_messages.py``, the only modules
of the local sandbox that import ``jupyter_client``).

A private kernel spec pins the child to this Python and routes it through ``launcher.py`` (limits, bubblewrap,
then ipykernel), with an allow-listed environment (no keys, no ``OPENAI_*``). The kernel's five ZeroMQ
sockets are bound *here*, in the parent's private folder, and handed to the kernel as listening descriptors, so
the sandbox needs no writable host path and never sees another kernel's sockets. What the kernel sends back is
read by ``kernel_messages.py`` (size-capped sockets, output collected until idle). Executions are bounded in
wall time: on timeout the kernel is interrupted, and restarted if it does not come back. The launcher's report
(bubblewrap's child pid) is read from the parent's private folder.

Every start binds sockets of its own. Processes of an ended kernel can outlive it for a moment (a fork bomb's
hundreds take seconds to die) and still hold its listening sockets: with shared sockets they accepted the next
kernel's connections, answered in the old kernel's name and left the new one deaf.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from ..core.errors import SandboxError
from ..core.results import ExecutionResult
from ..core.settings import Limits
from .kernel_messages import (
    SandboxKernelManager,
    decode,
    drain,
    expression_values,
    outcome_result,
    resync,
    wait_reply,
)
from .live import LiveOutputs, LiveSink
from .outputs import OutputCollector

KERNEL_NAME = "ci_magic_child"
HERE = Path(__file__).resolve().parent
#: Bytes of output one execution may stream at us before it counts as a flood and is interrupted.
FLOOD_FACTOR = 50
PORTS = (1, 2, 3, 4, 5)  # shell, iopub, stdin, control, hb: names of the pre-bound sockets
#: How long a (re)start may take to be ready and run its start-up code: the fixed part of a restart's cost.
START_TIMEOUT_S = 30.0


@dataclass
class Launch:
    """How to start the kernel: the launcher's config (rebuilt at every start) and its environment."""

    config: Callable[[], dict[str, Any]]  # called before every (re)start: fresh cgroups, same view
    env: dict[str, str]
    cwd: str


class ChildKernel:
    """One IPython kernel process behind the launcher; start, execute, interrupt, restart, shut down."""

    def __init__(self, control: Path, limits: Limits, launch: Launch, startup_code: str = "") -> None:
        self.control = control  # the parent's private folder (0700): spec, connection file, sockets, reports
        self.limits = limits
        self.launch = launch
        self.startup_code = startup_code
        self.report_path = control / "launcher.json"
        self.log_path = control / "launcher.log"
        self._km: SandboxKernelManager | None = None
        self._kc: Any = None
        self.last_expressions: dict[str, Any] = {}
        self._replies: dict[str, dict[str, Any]] = {}  # shell replies not yet asked for, by request id
        self.starts = 0
        self._sockets: dict[str, socket.socket] = {}
        self._generation = 0  # of the sockets: each start binds its own
        self._bind_sockets()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for every (re)start of the launcher

    @property
    def socket_prefix(self) -> str:
        return str(self.control / f"k{self._generation}")

    def _bind_sockets(self) -> None:
        """Listening sockets for the next start (the previous start's closed and removed first)."""
        self._close_sockets()
        self._generation += 1
        for port in PORTS:
            path = f"{self.socket_prefix}-{port}"
            if len(path.encode()) > 100:
                raise SandboxError(
                    f"The sandbox's folder {self.control} has too long a path for its sockets."
                )
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sockets[path] = sock
            sock.bind(path)
            sock.listen(64)
            sock.set_inheritable(True)

    def _close_sockets(self) -> None:
        for path, sock in self._sockets.items():
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._sockets = {}

    @property
    def socket_fds(self) -> dict[str, int]:
        return {path: sock.fileno() for path, sock in self._sockets.items()}

    # -- lifecycle ------------------------------------------------------------------------------------------

    def _write_launch(self) -> Path:
        spec_dir = self.control / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True, exist_ok=True)
        launch_file = self.control / "launch.json"
        config = self.launch.config()
        launch_file.write_text(json.dumps({**config, "report": str(self.report_path)}))
        spec = {
            "argv": [
                sys.executable,
                str(HERE / "launcher.py"),
                str(launch_file),
                "--",
                "-f",
                "{connection_file}",
            ],
            "display_name": "ci_magic sandbox",
            "language": "python",
            # The kernel lives in its own session behind the launcher: ipykernel's control thread delivers the
            # interrupt. Code stuck in C that ignores it is handled by the restart after the grace period.
            "interrupt_mode": "message",
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        return self.control / "kernels"

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        if self.starts:  # sockets of its own for every start (see the module's docstring)
            self._bind_sockets()
        ksm = KernelSpecManager(kernel_dirs=[str(self._write_launch())])
        km = SandboxKernelManager(
            kernel_name=KERNEL_NAME,
            kernel_spec_manager=ksm,
            transport="ipc",
            ip=self.socket_prefix,
            client_class="ci_magic.sandbox.kernel_messages.BoundedClient",
        )
        km.shell_port, km.iopub_port, km.stdin_port, km.control_port, km.hb_port = PORTS
        km.connection_file = str(self.control / "connection.json")
        self.report_path.unlink(missing_ok=True)
        try:
            km.start_kernel(
                env=self.launch.env,
                cwd=self.launch.cwd,
                pass_fds=tuple(self.socket_fds.values()),
                stdout=self._log,
                stderr=self._log,
            )
        except Exception as exc:
            raise SandboxError(
                f"The sandbox kernel could not be started: {type(exc).__name__}: {exc}"
            ) from exc
        # The kernel reads its connection file after dropping to the sandbox user (root mode).
        os.chmod(km.connection_file, 0o644)
        self._km = km
        self.starts += 1
        self._connect(timeout)

    def _connect(self, timeout: float) -> None:
        assert self._km is not None
        deadline = time.monotonic() + timeout
        kc = self._km.client()
        kc.start_channels(hb=False)
        try:
            kc.wait_for_ready(timeout=timeout)
        except Exception as exc:  # RuntimeError (not ready), or a message jupyter_client could not read
            kc.stop_channels()
            raise SandboxError(
                f"The sandbox kernel did not become ready within {timeout:.0f} s "
                f"({type(exc).__name__}: {str(exc)[:200]}).{self.log_tail()}"
            ) from exc
        self._kc = kc
        self.run_startup(max(1.0, deadline - time.monotonic()))

    def run_startup(self, timeout: float) -> None:
        """The start-up code, within what is left of the start's time; a start that cannot run it fails
        (SandboxError) instead of restarting again from inside the restart."""
        if not self.startup_code:
            return
        result = self.execute(self.startup_code, timeout=timeout, silent=True, recover=False)
        if not result.ok:
            self._kc.stop_channels()
            self._kc = None  # the next execution starts afresh
            raise SandboxError(
                f"The sandbox kernel could not be prepared: {result.error_name}: {result.error_value}"
            )

    def log_tail(self, chars: int = 800) -> str:
        """The end of the launcher's and the kernel's output (bubblewrap's complaints, a kernel's traceback)."""
        parts = []
        for path in (self.log_path, self.control / "kernel.log"):
            with contextlib.suppress(OSError):
                parts.append(path.read_bytes()[-chars:].decode(errors="replace").strip())
        text = "\n".join(p for p in parts if p)[-chars:]
        return f" The sandbox said: {text}" if text else ""

    def launcher_report(self, timeout: float = 5.0) -> dict[str, Any]:
        """What the launcher wrote into our private folder (bubblewrap's child pid)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                report: dict[str, Any] = json.loads(self.report_path.read_text())
                return report
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    return {}
                time.sleep(0.01)

    @property
    def alive(self) -> bool:
        return self._km is not None and bool(self._km.is_alive())

    def restart(self, timeout: float = START_TIMEOUT_S) -> None:
        if self._km is None:
            self.start(timeout)
            return
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None
        with contextlib.suppress(Exception):
            self._km.shutdown_kernel(now=True)
        self._km = None
        self.start(timeout)

    def kill(self) -> None:
        """End the kernel at once (from any thread); the next execution restarts it."""
        # Plain signals, no jupyter_client call: this runs on the CPU watchdog's thread, where jupyter_client
        # would make (and leak) an event loop.
        process = getattr(getattr(self._km, "provisioner", None), "process", None)
        if process is not None and process.poll() is None:  # not yet reaped: its pid is still ours
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)  # the launcher leads its own process group
            with contextlib.suppress(OSError):
                process.kill()

    def shutdown(self) -> None:
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None
        if self._km is not None:
            with contextlib.suppress(Exception):  # already gone: nothing left to clean
                self._km.shutdown_kernel(now=True)
            self._km = None
        self._close_sockets()
        self._log.close()

    def interrupt(self) -> None:
        if self._km is not None and self.alive:
            self._km.interrupt_kernel()

    # -- running code ---------------------------------------------------------------------------------------

    def forget(self, names: Sequence[str]) -> None:
        """Delete these globals, quietly; only identifiers are taken (anything else is skipped)."""
        kept = sorted(n for n in names if n.isidentifier())
        if kept:
            self.execute(f"for _n in {kept!r}:\n    globals().pop(_n, None)\ndel _n", silent=True)

    def execute(
        self,
        code: str,
        timeout: float | None = None,
        *,
        silent: bool = False,
        expressions: dict[str, str] | None = None,
        recover: bool = True,
        on_output: LiveSink | None = None,
    ) -> ExecutionResult:
        """Run ``code``; errors, timeouts and deaths come back as data. Restarts the kernel if needed.

        ``expressions`` (JSON-returning helper calls) are evaluated by the kernel right after a successful run and
        land decoded in :attr:`last_expressions`, in the same round trip as the code. Without ``recover`` (the
        start-up code, inside a start) a kernel that timed out or died is left to the caller, not restarted.
        """
        if self._kc is None or not self.alive:
            self.restart()
        timeout = self.limits.timeout_s if timeout is None else timeout
        started = time.monotonic()
        live = LiveOutputs(on_output) if on_output is not None else None
        collector = OutputCollector(self.limits.max_output_bytes, self.limits.max_display_bytes, live)
        self.last_expressions = {}
        msg_id = self._kc.execute(
            code,
            silent=silent,
            store_history=not silent,
            allow_stdin=False,
            user_expressions=expressions or {},
        )
        outcome = self._drain(msg_id, collector, started + timeout)
        if outcome == "done" and expressions:
            self.last_expressions = self._expressions_reply(msg_id)
        if outcome in ("timeout", "flood"):
            if not recover:
                return outcome_result(outcome, collector, started, timeout=timeout)
            self.interrupt()
            recovered = self._drain(msg_id, collector, time.monotonic() + self.limits.interrupt_grace_s)
            if recovered in ("timeout", "flood"):
                self.restart()
                return outcome_result(outcome, collector, started, restarted=True, timeout=timeout)
            return outcome_result(outcome, collector, started, timeout=timeout)
        if outcome == "lost":
            restarted = recover and not self._resync()
            if restarted:
                self.restart()
            return outcome_result("lost", collector, started, restarted=restarted)
        if outcome == "garbled":
            if recover:
                self.restart()
            return outcome_result("garbled", collector, started, restarted=recover)
        if outcome == "died":
            death = self._exit_description()
            if recover:
                self.restart()
            return outcome_result("died", collector, started, restarted=recover, death=death)
        error = next((o for o in collector.outputs if o["output_type"] == "error"), None)
        return outcome_result("error" if error else "ok", collector, started)

    # _drain and _resync are methods so that the gateway's RemoteKernel can add what its connection needs.

    def _drain(self, msg_id: str, collector: OutputCollector, deadline: float) -> str:
        """Collect iopub output for ``msg_id`` until idle ('done'), the deadline ('timeout'), an output flood
        ('flood') or death."""
        flood = FLOOD_FACTOR * (self.limits.max_output_bytes + self.limits.max_display_bytes)
        return drain(
            self._kc, self._replies, msg_id, collector, deadline, flood=flood, alive=lambda: self.alive
        )

    def _resync(self, attempts: int = 5) -> bool:
        """After ZeroMQ dropped an oversized message: wait until iopub works again (see kernel_messages)."""
        return resync(self._kc, attempts)

    def _expressions_reply(self, msg_id: str) -> dict[str, Any]:
        # ipykernel sends the execute_reply before the idle status, so it is already waiting here.
        try:
            reply = wait_reply(self._kc, self._replies, msg_id, time.monotonic() + 5.0)
        except SandboxError:
            return {}
        return expression_values(reply)

    def _exit_description(self) -> str:
        provisioner = getattr(self._km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        code = process.poll() if process is not None else None
        if code is None:
            return "the kernel process died"
        if code < 0:
            return f"the kernel process was killed by signal {-code}"
        return f"the kernel process exited with code {code}"

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate a helper expression that returns a JSON string, and decode it (no pickling)."""
        if self._kc is None or not self.alive:
            self.restart()
        msg_id = self._kc.execute("", silent=True, user_expressions={"r": expression})
        reply = wait_reply(self._kc, self._replies, msg_id, time.monotonic() + timeout)
        value = (reply.get("content", {}).get("user_expressions") or {}).get("r", {})
        if not isinstance(value, dict) or value.get("status") != "ok":
            ename = value.get("ename") if isinstance(value, dict) else None
            evalue = value.get("evalue") if isinstance(value, dict) else None
            raise SandboxError(f"Sandbox bookkeeping failed: {str(ename)[:100]}: {str(evalue)[:300]}")
        return decode(value)


__all__ = ["ChildKernel", "Launch"]
