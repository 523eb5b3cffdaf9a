"""The child kernel: the only module that imports ``jupyter_client``.

A private kernel spec pins the child to this Python and routes it through ``launcher.py`` (limits, bubblewrap,
then ipykernel), with an allow-listed environment (no keys, no ``OPENAI_*``). The kernel's five ZeroMQ
sockets are bound *here*, in the parent's private folder, and handed to the kernel as listening descriptors, so
the sandbox needs no writable host path and never sees another kernel's sockets. The client's sockets cap the
size of every message and the iopub queue, so a hostile kernel cannot make the parent allocate without bound.
Executions are bounded in wall time: on timeout the kernel is interrupted, and restarted if it does not come
back. The launcher's report (bubblewrap's child pid) is read from the parent's private folder.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import channel_socket_types
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from ..core.errors import SandboxError
from ..core.results import ExecutionResult
from ..core.settings import Limits
from .outputs import OutputCollector, trim_traceback

KERNEL_NAME = "ci_magic_child"
HERE = Path(__file__).resolve().parent
#: No single message from the kernel may be larger (ZMQ drops the connection instead of allocating).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
#: Messages queued on the iopub socket before ZeroMQ drops newer ones (with MAX_MESSAGE_BYTES: a bound).
IOPUB_HWM = 128
#: Bytes of output one execution may stream at us before it counts as a flood and is interrupted.
FLOOD_FACTOR = 50
PORTS = (1, 2, 3, 4, 5)
#: After the execute reply, how long to wait for the idle status before calling the output lost.
LOST_OUTPUT_GRACE_S = 2.0  # shell, iopub, stdin, control, hb: names of the pre-bound sockets


class _BoundedSockets:
    """Client-side sockets with a message size cap (and a bounded iopub queue), set before they connect."""

    def _create_connected_socket(self, channel: str, identity: bytes | None = None) -> zmq.Socket[Any]:
        url = self._make_url(channel)  # type: ignore[attr-defined]
        sock: zmq.Socket[Any] = self.context.socket(channel_socket_types[channel])  # type: ignore[attr-defined]
        sock.linger = 1000
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        sock.setsockopt(
            zmq.RECONNECT_IVL, 20
        )  # after an oversized message ZeroMQ drops and re-makes the link
        if channel == "iopub":
            sock.setsockopt(zmq.RCVHWM, IOPUB_HWM)
        if identity:
            sock.identity = identity
        sock.connect(url)
        return sock


class BoundedClient(_BoundedSockets, BlockingKernelClient):
    pass


class SandboxKernelManager(_BoundedSockets, KernelManager):
    """Keeps the pre-bound socket files across restarts (the default removes them on every restart)."""

    def cleanup_ipc_files(self) -> None:
        return


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
        self._replies: dict[str, dict[str, Any]] = {}
        self.starts = 0
        self._sockets = self._bind_sockets()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for every (re)start of the launcher

    @property
    def socket_prefix(self) -> str:
        return str(self.control / "k")

    def _bind_sockets(self) -> dict[str, socket.socket]:
        found = {}
        for port in PORTS:
            path = f"{self.socket_prefix}-{port}"
            if len(path.encode()) > 100:
                raise SandboxError(
                    f"The sandbox's folder {self.control} has too long a path for its sockets."
                )
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            sock.listen(64)
            sock.set_inheritable(True)
            found[path] = sock
        return found

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

    def start(self, timeout: float = 60.0) -> None:
        ksm = KernelSpecManager(kernel_dirs=[str(self._write_launch())])
        km = SandboxKernelManager(
            kernel_name=KERNEL_NAME,
            kernel_spec_manager=ksm,
            transport="ipc",
            ip=self.socket_prefix,
            client_class="ci_magic.sandbox.kernel.BoundedClient",
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
        kc = self._km.client()
        kc.start_channels(hb=False)
        try:
            kc.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            kc.stop_channels()
            raise SandboxError(
                f"The sandbox kernel did not become ready within {timeout:.0f} s ({exc}).{self.log_tail()}"
            ) from exc
        self._kc = kc
        if self.startup_code:
            result = self.execute(self.startup_code, timeout=timeout, silent=True)
            if not result.ok:
                raise SandboxError(f"The sandbox kernel could not be prepared: {result.error_value}")

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

    def restart(self, timeout: float = 60.0) -> None:
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
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._log.close()

    def interrupt(self) -> None:
        if self._km is not None and self.alive:
            self._km.interrupt_kernel()

    # -- running code ---------------------------------------------------------------------------------------

    def execute(
        self,
        code: str,
        timeout: float | None = None,
        *,
        silent: bool = False,
        expressions: dict[str, str] | None = None,
    ) -> ExecutionResult:
        """Run ``code``; errors, timeouts and deaths come back as data. Restarts the kernel if needed.

        ``expressions`` (JSON-returning helper calls) are evaluated by the kernel right after a successful run and
        land decoded in :attr:`last_expressions`, in the same round trip as the code.
        """
        if self._kc is None or not self.alive:
            self.restart()
        timeout = self.limits.timeout_s if timeout is None else timeout
        started = time.monotonic()
        collector = OutputCollector(self.limits.max_output_bytes, self.limits.max_display_bytes)
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
            self.interrupt()
            recovered = self._drain(msg_id, collector, time.monotonic() + self.limits.interrupt_grace_s)
            if recovered in ("timeout", "flood"):
                self.restart()
                return self._result(outcome, collector, started, restarted=True, timeout=timeout)
            return self._result(outcome, collector, started, timeout=timeout)
        if outcome == "lost":
            if not self._resync():
                self.restart()
            return self._result("lost", collector, started)
        if outcome == "died":
            death = self._exit_description()
            self.restart()
            return self._result("died", collector, started, restarted=True, death=death)
        error = next((o for o in collector.outputs if o["output_type"] == "error"), None)
        return self._result("error" if error else "ok", collector, started)

    def _resync(self, attempts: int = 5) -> bool:
        """After ZeroMQ dropped an oversized message it reconnects the iopub socket, losing what is sent
        meanwhile: wait until a kernel_info round trip shows up on iopub again."""
        for _ in range(attempts):
            probe = self._kc.kernel_info()
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    msg = self._kc.get_iopub_msg(timeout=0.2)
                except queue.Empty:
                    continue
                if isinstance(msg, dict) and msg.get("parent_header", {}).get("msg_id") == probe:
                    return True
        return False

    def _expressions_reply(self, msg_id: str) -> dict[str, Any]:
        # ipykernel sends the execute_reply before the idle status, so it is already waiting here.
        try:
            reply = self._reply(msg_id, time.monotonic() + 5.0)
        except SandboxError:
            return {}
        found = {}
        for k, v in (reply.get("content", {}).get("user_expressions") or {}).items():
            if isinstance(v, dict) and v.get("status") == "ok":
                with contextlib.suppress(SandboxError):
                    found[k] = _decode(v)
        return found

    def _reply(self, msg_id: str, deadline: float) -> dict[str, Any]:
        while True:
            found = self._replies.pop(msg_id, None)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError("The sandbox kernel did not answer a bookkeeping request in time.")
            self._take_replies(min(remaining, 0.25))

    def _take_replies(self, timeout: float) -> None:
        """Move waiting shell replies into ``_replies`` (at most a few kept: only ours are ever asked for)."""
        try:
            reply = self._kc.get_shell_msg(timeout=timeout)
        except queue.Empty:
            return
        parent = reply.get("parent_header", {}).get("msg_id") if isinstance(reply, dict) else None
        if isinstance(parent, str):
            if len(self._replies) > 16:
                self._replies.clear()
            self._replies[parent] = reply

    def _drain(self, msg_id: str, collector: OutputCollector, deadline: float) -> str:
        """Collect iopub output for ``msg_id`` until idle ('done'), the deadline ('timeout'), an output flood
        ('flood') or death."""
        flood = FLOOD_FACTOR * (self.limits.max_output_bytes + self.limits.max_display_bytes)
        replied: float | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            try:
                msg = self._kc.get_iopub_msg(timeout=min(remaining, 0.25))
            except queue.Empty:
                if not self.alive:
                    return "died"
                # The reply came but the idle status never does: a message over MAX_MESSAGE_BYTES was dropped
                # by ZeroMQ (with the ones queued behind it). Do not wait for the time limit.
                if replied is None:
                    self._take_replies(0)
                    if msg_id in self._replies:
                        replied = time.monotonic()
                elif time.monotonic() - replied > LOST_OUTPUT_GRACE_S:
                    return "lost"
                continue
            if not isinstance(msg, dict) or msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            content = msg.get("content")
            if msg.get("msg_type") == "status" and isinstance(content, dict):
                if content.get("execution_state") == "idle":
                    return "done"
                continue
            collector.add(msg)
            if collector.received > flood:
                return "flood"

    def _exit_description(self) -> str:
        provisioner = getattr(self._km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        code = process.poll() if process is not None else None
        if code is None:
            return "the kernel process died"
        if code < 0:
            return f"the kernel process was killed by signal {-code}"
        return f"the kernel process exited with code {code}"

    def _result(
        self,
        outcome: str,
        collector: OutputCollector,
        started: float,
        *,
        restarted: bool = False,
        timeout: float = 0.0,
        death: str = "",
    ) -> ExecutionResult:
        outputs = collector.finish()
        seconds = time.monotonic() - started
        if outcome == "ok":
            return ExecutionResult("ok", outputs, seconds=seconds)
        if outcome == "error":
            err = next(o for o in outputs if o["output_type"] == "error")
            return ExecutionResult(
                "error",
                outputs,
                error_name=str(err.get("ename", "Error"))[:200],
                error_value=str(err.get("evalue", ""))[:5000],
                traceback=trim_traceback([str(line) for line in err.get("traceback", [])][:500]),
                seconds=seconds,
            )
        if outcome in ("timeout", "flood"):
            how = " and did not respond to an interrupt, so the sandbox was restarted" if restarted else ""
            message = (
                f"Execution exceeded the {timeout:g} s time limit{how}."
                if outcome == "timeout"
                else f"The code printed far more output than can be shown; it was stopped{how}."
            )
            name = "TimeoutError" if outcome == "timeout" else "OutputFlood"
            return ExecutionResult(
                "timeout", outputs, name, message, message, seconds=seconds, restarted=restarted
            )
        if outcome == "lost":
            message = (
                f"The code produced an output larger than {MAX_MESSAGE_BYTES // 2**20} MB at once, which was "
                "dropped. Show less (e.g. df.head(), a summary, or save it to a file)."
            )
            return ExecutionResult("error", outputs, "OutputTooLarge", message, message, seconds=seconds)
        message = f"The sandbox kernel died while running the code ({death}); it was restarted."
        return ExecutionResult(
            "died", outputs, "KernelDied", message, message, seconds=seconds, restarted=restarted
        )

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate a helper expression that returns a JSON string, and decode it (no pickling)."""
        if self._kc is None or not self.alive:
            self.restart()
        msg_id = self._kc.execute("", silent=True, user_expressions={"r": expression})
        reply = self._reply(msg_id, time.monotonic() + timeout)
        value = (reply.get("content", {}).get("user_expressions") or {}).get("r", {})
        if not isinstance(value, dict) or value.get("status") != "ok":
            ename = value.get("ename") if isinstance(value, dict) else None
            evalue = value.get("evalue") if isinstance(value, dict) else None
            raise SandboxError(f"Sandbox bookkeeping failed: {str(ename)[:100]}: {str(evalue)[:300]}")
        return _decode(value)


def _decode(value: dict[str, Any]) -> Any:
    """A user_expression result whose text/plain is the repr of a JSON string (no pickling anywhere)."""
    try:
        raw = value["data"]["text/plain"]
        if not isinstance(raw, str):
            raise ValueError("not text")
        text = ast.literal_eval(raw)
        if not isinstance(text, str):
            raise ValueError("not a string")
        return json.loads(text)
    except (KeyError, TypeError, ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise SandboxError(f"Sandbox bookkeeping returned malformed data ({type(exc).__name__}).") from None


__all__ = ["BoundedClient", "ChildKernel", "Launch"]
