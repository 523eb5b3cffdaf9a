"""The child kernel: the only module that imports ``jupyter_client``.

A private kernel spec pins the child to this Python and routes it through ``launcher.py`` (rlimits), with an
allow-listed environment (no keys, no ``OPENAI_*``) and its own working directory. Executions are bounded in
wall time: on timeout the kernel is interrupted, and restarted if it does not come back.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import queue
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from ..core.errors import SandboxError
from ..core.results import ExecutionResult
from ..core.settings import Limits, is_secret_name
from .outputs import OutputCollector, trim_traceback

KERNEL_NAME = "ci_magic_child"
#: Environment variables the child may see; everything else (keys above all) is dropped.
ENV_ALLOW = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "SYSTEMROOT")
ENV_ALLOW_PREFIXES = ("LC_",)
HERE = Path(__file__).resolve().parent


def child_environment(workdir: Path, parent: dict[str, str] | None = None) -> dict[str, str]:
    source = os.environ if parent is None else parent
    env = {
        k: v
        for k, v in source.items()
        if (k in ENV_ALLOW or k.startswith(ENV_ALLOW_PREFIXES)) and not is_secret_name(k)
    }
    env.update(
        HOME=str(workdir),  # so ~ points into the sandbox, not at the user's dotfiles
        TMPDIR=str(workdir / ".tmp"),
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        MPLCONFIGDIR=str(workdir / ".tmp" / "mpl"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
    )
    return env


class ChildKernel:
    """One IPython kernel process with limits; start, execute, interrupt, restart, shut down."""

    def __init__(
        self,
        session_dir: Path,
        workdir: Path,
        limits: Limits,
        startup_code: str = "",
        isolate: dict[str, Any] | None = None,
    ) -> None:
        self.session_dir = session_dir
        self.isolate = isolate
        self.report_path = session_dir / "isolation.json"
        self.workdir = workdir
        self.limits = limits
        self.startup_code = startup_code
        self._km: KernelManager | None = None
        self.last_expressions: dict[str, Any] = {}
        self._kc: Any = None
        (workdir / ".tmp").mkdir(parents=True, exist_ok=True)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def _write_spec(self) -> Path:
        spec_root = self.session_dir / "kernels"
        spec_dir = spec_root / KERNEL_NAME
        spec_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "argv": [
                sys.executable,
                str(HERE / "launcher.py"),
                json.dumps(
                    {"limits": asdict(self.limits), "isolate": self.isolate, "report": str(self.report_path)}
                ),
                "--",
                "-f",
                "{connection_file}",
            ],
            "display_name": "ci_magic sandbox",
            "language": "python",
            # Isolated kernels live in their own session behind unshare: ipykernel's control thread delivers
            # the SIGINT itself. Code stuck in C that ignores it is handled by the restart after the grace period.
            "interrupt_mode": "message" if self.isolate else "signal",
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        return spec_root

    def start(self, timeout: float = 60.0) -> None:
        spec_root = self._write_spec()
        ksm = KernelSpecManager(kernel_dirs=[str(spec_root)])
        km = KernelManager(
            kernel_name=KERNEL_NAME,
            kernel_spec_manager=ksm,
            transport="ipc",  # unix sockets in the session dir: no TCP port is opened
            ip=str(self.session_dir / "k"),
        )
        km.connection_file = str(self.session_dir / "connection.json")
        try:
            km.start_kernel(env=child_environment(self.workdir), cwd=str(self.workdir))
        except Exception as exc:
            raise SandboxError(
                f"The sandbox kernel could not be started: {type(exc).__name__}: {exc}"
            ) from exc
        self._km = km
        self._connect(timeout)

    def _connect(self, timeout: float) -> None:
        assert self._km is not None
        kc = self._km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            kc.stop_channels()
            raise SandboxError(
                f"The sandbox kernel started but did not become ready within {timeout:.0f} s ({exc})."
            ) from exc
        self._kc = kc
        if self.startup_code:
            result = self.execute(self.startup_code, timeout=timeout, silent=True)
            if not result.ok:
                raise SandboxError(f"The sandbox kernel could not be prepared: {result.error_value}")

    @property
    def alive(self) -> bool:
        return self._km is not None and bool(self._km.is_alive())

    @property
    def pid(self) -> int | None:
        provisioner = getattr(self._km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None)

    def restart(self, timeout: float = 60.0) -> None:
        if self._km is None:
            self.start(timeout)
            return
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None
        try:
            self._km.restart_kernel(now=True)
        except Exception as exc:
            raise SandboxError(
                f"The sandbox kernel could not be restarted: {type(exc).__name__}: {exc}"
            ) from exc
        self._connect(timeout)

    def shutdown(self) -> None:
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None
        if self._km is not None:
            with contextlib.suppress(Exception):  # already gone: nothing left to clean
                self._km.shutdown_kernel(now=True)
            self._km = None

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
        if self._kc is None:
            raise SandboxError("The sandbox kernel is not running.")
        timeout = self.limits.timeout_s if timeout is None else timeout
        started = time.monotonic()
        collector = OutputCollector(self.limits.max_output_bytes)
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
        if outcome == "timeout":
            self.interrupt()
            recovered = self._drain(msg_id, collector, time.monotonic() + self.limits.interrupt_grace_s)
            if recovered == "timeout":
                self.restart()
                return self._result("timeout", collector, started, restarted=True, timeout=timeout)
            return self._result("timeout", collector, started, timeout=timeout)
        if outcome == "died":
            code_ = self._exit_description()
            self.restart()
            return self._result("died", collector, started, restarted=True, death=code_)
        error = next((o for o in collector.outputs if o["output_type"] == "error"), None)
        return self._result("error" if error else "ok", collector, started)

    def _expressions_reply(self, msg_id: str) -> dict[str, Any]:
        # ipykernel sends the execute_reply before the idle status, so it is already waiting here.
        try:
            reply = self._reply(msg_id, time.monotonic() + 5.0)
        except SandboxError:
            return {}
        return {
            k: _decode(v)
            for k, v in reply["content"].get("user_expressions", {}).items()
            if v.get("status") == "ok"
        }

    def _reply(self, msg_id: str, deadline: float) -> dict[str, Any]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError("The sandbox kernel did not answer a bookkeeping request in time.")
            try:
                reply: dict[str, Any] = self._kc.get_shell_msg(timeout=remaining)
            except queue.Empty:
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return reply

    def _drain(self, msg_id: str, collector: OutputCollector, deadline: float) -> str:
        """Collect iopub output for ``msg_id`` until idle ('done'), the deadline ('timeout') or death."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            try:
                msg = self._kc.get_iopub_msg(timeout=min(remaining, 0.25))
            except queue.Empty:
                if not self.alive:
                    return "died"
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                return "done"
            collector.add(msg)

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
                error_name=str(err["ename"]),
                error_value=str(err["evalue"]),
                traceback=trim_traceback(list(err["traceback"])),
                seconds=seconds,
            )
        if outcome == "timeout":
            how = " and did not respond to an interrupt, so the sandbox was restarted" if restarted else ""
            message = f"Execution exceeded the {timeout:g} s time limit{how}."
            return ExecutionResult(
                "timeout", outputs, "TimeoutError", message, message, seconds=seconds, restarted=restarted
            )
        message = f"The sandbox kernel died while running the code ({death}); it was restarted."
        return ExecutionResult(
            "died", outputs, "KernelDied", message, message, seconds=seconds, restarted=restarted
        )

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate a helper expression that returns a JSON string, and decode it (no pickling)."""
        if self._kc is None:
            raise SandboxError("The sandbox kernel is not running.")
        msg_id = self._kc.execute("", silent=True, user_expressions={"r": expression})
        reply = self._reply(msg_id, time.monotonic() + timeout)
        value = reply["content"].get("user_expressions", {}).get("r", {})
        if value.get("status") != "ok":
            raise SandboxError(f"Sandbox bookkeeping failed: {value.get('ename')}: {value.get('evalue')}")
        return _decode(value)


def _decode(value: dict[str, Any]) -> Any:
    """A user_expression result whose text/plain is the repr of a JSON string (no pickling anywhere)."""
    text = ast.literal_eval(value["data"]["text/plain"])
    if not isinstance(text, str):
        raise SandboxError("Sandbox bookkeeping returned something other than JSON text.")
    return json.loads(text)
