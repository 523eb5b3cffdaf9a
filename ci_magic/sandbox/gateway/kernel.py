"""A kernel on Jupyter Enterprise Gateway, run by the local kernel's own execution logic.

:class:`RemoteKernel` is a :class:`~.kernel.ChildKernel` whose client is the gateway's WebSocket
(:class:`~.client.KernelChannels`) and whose lifecycle is the gateway's REST API. ``execute``,
``evaluate`` and the way outputs, errors, timeouts, floods, lost outputs and deaths become an
:class:`~ci_magic.core.results.ExecutionResult` are inherited unchanged, so both sandboxes answer alike.

What differs is seen from afar: a death is known when the gateway's restarter says "restarting" on iopub (it
polls the process every few seconds), an interrupt is ``POST .../interrupt``, a restart ``POST .../restart`` (or a
new kernel when the gateway lost this one), and the connection is reopened after each, because the gateway's
channels do not reliably follow a kernel to its new ports. Bytes move through one comm (see
``child.py``): :meth:`request` sends a message and collects the replies until the kernel is idle.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import queue
import re
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ...core.errors import SandboxError, TransferError
from ...core.settings import Limits, is_secret_name
from .. import losses, transfer
from ..kernel import ChildKernel
from ..kernel_messages import MAX_MESSAGE_BYTES
from ..outputs import OutputCollector
from ..startup import CHILD_MODULE, PRELOADS
from . import child
from .client import KernelChannels, OutputLost
from .rest import GatewayHTTPError, GatewayREST

GW_MODULE = "_ci_gw"
_KERNEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: Connection setup plus kernel_info round trips before a (re)started kernel counts as not coming up.
READY_ATTEMPTS = 3


def kernel_environment(limits: Limits, parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """What we ask the gateway to put into the kernel's environment: KERNEL_* only, nothing secret."""
    source = os.environ if parent is None else parent
    env = {
        k: v
        for k, v in source.items()
        if k.startswith("KERNEL_") and not k.startswith("KERNEL_CI_MAGIC_") and not is_secret_name(k)
    }
    if "KERNEL_USERNAME" not in env:
        with contextlib.suppress(KeyError, OSError):  # no name for our uid: the gateway's default applies
            env["KERNEL_USERNAME"] = source.get("JUPYTERHUB_USER") or getpass.getuser()
    env.update(
        KERNEL_CI_MAGIC_MEMORY_MB=str(limits.memory_mb),
        KERNEL_CI_MAGIC_TIMEOUT_S=f"{limits.timeout_s:g}",
        KERNEL_CI_MAGIC_MAX_OUTPUT_BYTES=str(limits.max_output_bytes),
    )
    if limits.allow_hosts:
        # The administrator's egress proxy (docs/deploy.md) reads the list the user asked for from here; the
        # kernel reaches it through the HTTPS_PROXY its kernelspec sets, and a NetworkPolicy blocks the rest.
        env["KERNEL_CI_MAGIC_ALLOW_HOSTS"] = ",".join(limits.allow_hosts)
    return env


def startup_code() -> str:
    """Code run at every start: ``transfer.py`` as ``_ci_child`` and ``child.py`` as ``_ci_gw``, from
    their source (the remote kernel has no ci_magic installed), the usual imports, and ``losses.py``'s watch
    on pd.to_numeric."""
    sources = {
        CHILD_MODULE: Path(transfer.__file__).read_text(),
        GW_MODULE: Path(child.__file__).read_text(),
    }
    return (
        "import sys as _s, types as _t\n"
        f"for _n, _src in {sources!r}.items():\n"
        "    _m = _t.ModuleType(_n); _m.__file__ = f'<ci_magic {_n}>'\n"
        "    _s.modules[_n] = _m\n"
        "    exec(compile(_src, _m.__file__, 'exec'), _m.__dict__)\n"
        "del _s, _t, _m, _n, _src\n"
        f"import {CHILD_MODULE}, {GW_MODULE}\n" + PRELOADS + "_l = {'__name__': '_ci_losses'}\n"
        f"exec(compile({Path(losses.__file__).read_text()!r}, '<ci_magic losses>', 'exec'), _l)\n"
        "_l['_install'](); del _l\n"
    )


class RemoteKernel(ChildKernel):
    """One kernel on the gateway: start, execute (inherited), interrupt, restart, delete."""

    def __init__(
        self,
        rest: GatewayREST,
        limits: Limits,
        *,
        kernel_name: str | None,
        env: dict[str, str],
        startup_code: str,
        setup: Callable[[str | None], str],
        on_kernel: Callable[[str | None, str | None], None],
    ) -> None:
        # Not ChildKernel.__init__: that binds local sockets. Only the state its execution logic reads is set.
        self.limits = limits
        self.startup_code = startup_code
        self.last_expressions: dict[str, Any] = {}
        self._replies: dict[str, dict[str, Any]] = {}
        self.starts = 0
        self._km = None
        self._kc: KernelChannels | None = None
        self.rest = rest
        self.kernel_name = kernel_name
        self.env = env
        self.setup = setup  # the setup call for the kernel, given the previous start's working folder
        self.on_kernel = on_kernel  # told (old id, new id) whenever the kernel on the gateway changes
        self.kernel_id: str | None = None
        self.spec_name = kernel_name or "the gateway's default"
        self.report: dict[str, Any] = {}
        self.comm_id = ""
        self._gone = False

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> None:
        if self.kernel_id is None:
            body: dict[str, Any] = {"env": self.env}
            if self.kernel_name:
                body["name"] = self.kernel_name
            model = self.rest.call("POST", "/api/kernels", body, timeout=timeout)
            kernel_id = model.get("id") if isinstance(model, dict) else None
            if not isinstance(kernel_id, str) or not _KERNEL_ID.match(kernel_id):
                raise SandboxError(
                    f"The gateway at {self.rest.host} started a kernel but did not say its id."
                )
            self.kernel_id, self._gone = kernel_id, False
            self.spec_name = str(model.get("name") or self.spec_name)[:200]
            self.on_kernel(None, kernel_id)
        self._connect(timeout)

    def _connect(self, timeout: float) -> None:
        assert self.kernel_id is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._kc is None:
                    self._kc = KernelChannels(
                        self.rest, self.kernel_id, max_message_bytes=MAX_MESSAGE_BYTES, timeout=timeout
                    )
                else:
                    self._kc.connect(max(5.0, deadline - time.monotonic()))
                self._kc.drain()
                self._replies.clear()
                # A fresh connection may miss iopub at first: a kernel_info round trip seen there proves it.
                if self._resync(attempts=READY_ATTEMPTS):
                    break
                problem = "it did not answer"
            except SandboxError as exc:  # e.g. the gateway still bringing the kernel up after a restart
                if isinstance(exc, GatewayHTTPError) or "HTTP 404" in str(exc):
                    raise
                problem = str(exc)
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"The kernel on the gateway at {self.rest.host} (kernelspec {self.spec_name}) did not become "
                    f"ready within {timeout:.0f} s ({problem[:300]})."
                )
            time.sleep(0.2)
        self.starts += 1
        self._prepare(timeout)

    def _prepare(self, timeout: float) -> None:
        assert self._kc is not None
        self.run_startup(timeout)
        previous = self.report.get("workdir")
        report = self.evaluate(self.setup(previous if isinstance(previous, str) else None), timeout=timeout)
        self.report = report if isinstance(report, dict) else {}
        self.comm_id = uuid.uuid4().hex
        opened = self._kc.send(
            "comm_open", {"comm_id": self.comm_id, "target_name": "ci_magic", "data": {}}, private=True
        )
        self._kc.forget(opened)

    @property
    def alive(self) -> bool:
        kc = self._kc
        return kc is not None and self.kernel_id is not None and not self._gone and kc.gateway_status is None

    def restart(self, timeout: float = 120.0) -> None:
        status = self._kc.gateway_status if self._kc is not None else None
        if self.kernel_id is not None and not self._gone and status != "restarting":
            # "restarting": the gateway's restarter is already bringing it back; reconnecting is enough.
            try:
                if status == "dead":
                    raise GatewayHTTPError(404, "the gateway gave up restarting the kernel")
                self.rest.call("POST", f"/api/kernels/{self.kernel_id}/restart", {}, timeout=timeout)
            except GatewayHTTPError as exc:
                if exc.status != 404:
                    raise
                self._gone = True
        if self._gone or self.kernel_id is None:
            old, self.kernel_id = self.kernel_id, None
            self.on_kernel(old, None)
        self.start(timeout)

    def interrupt(self) -> None:
        if self.kernel_id is not None:
            with contextlib.suppress(
                SandboxError
            ):  # not interruptible: the restart after the grace period is
                self.rest.call("POST", f"/api/kernels/{self.kernel_id}/interrupt", {}, timeout=10.0)

    def shutdown(self) -> None:
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None
        if self.kernel_id is not None:
            old, self.kernel_id = self.kernel_id, None
            with contextlib.suppress(SandboxError):  # already gone: nothing left to delete
                self.rest.call("DELETE", f"/api/kernels/{old}", timeout=30.0)
            self.on_kernel(old, None)

    def kill(self) -> None:
        """Nothing to signal from here: the gateway owns the process (restart() is the remedy)."""

    def log_tail(self, chars: int = 800) -> str:
        return ""

    def launcher_report(self, timeout: float = 5.0) -> dict[str, Any]:
        return {}

    def _exit_description(self) -> str:
        if self._gone:
            return "the gateway no longer knows the kernel"
        return "the kernel process died; the gateway restarted it"

    def _drain(self, msg_id: str, collector: OutputCollector, deadline: float) -> str:
        try:
            return super()._drain(msg_id, collector, deadline)
        except OutputLost:
            return self._dropped()

    def _dropped(self) -> str:
        """The WebSocket dropped: "died" when the kernel is gone from the gateway, else reconnect for "lost"."""
        try:
            self.rest.call("GET", f"/api/kernels/{self.kernel_id}", timeout=10.0)
        except GatewayHTTPError as exc:
            if exc.status == 404:
                self._gone = True
                return "died"
        assert self._kc is not None
        self._kc.connect(30.0)
        return "lost"

    # -- requests over the comm -----------------------------------------------------------------------------

    def put(self, kind: str, name: str, data: memoryview, chunk: int) -> list[str]:
        """Send bytes in chunks without waiting; returns the message ids (forgotten after the next request)."""
        if self._kc is None or not self.alive:
            self.restart()
        assert self._kc is not None
        ids = []
        for start in range(0, max(1, len(data)), chunk):
            piece = data[start : start + chunk]
            last = start + chunk >= len(data)
            payload = {"op": "put", "kind": kind, "name": name, "size": len(data), "last": last}
            ids.append(self._send_comm(payload, [piece], wait=False))
        return ids

    def _send_comm(self, data: dict[str, Any], buffers: list[Any] | None = None, wait: bool = True) -> str:
        assert self._kc is not None
        try:
            return self._kc.send(
                "comm_msg", {"comm_id": self.comm_id, "data": data}, buffers=buffers, private=True, wait=wait
            )
        except OutputLost:
            self._dropped()
            raise TransferError(
                "The connection to the gateway dropped while sending; please try again."
            ) from None

    def request(
        self,
        data: dict[str, Any],
        *,
        timeout: float,
        max_bytes: int,
        forget: list[str] | None = None,
        each: Callable[[dict[str, Any], list[bytes]], None] | None = None,
    ) -> list[tuple[dict[str, Any], list[bytes]]]:
        """One comm message; the comm's replies (data, buffers) until the kernel is idle again, at most
        ``max_bytes`` of them (handed to ``each`` as they come instead, when given: nothing piles up).
        TransferError when the kernel does not answer in time or sends too much."""
        if self._kc is None or not self.alive:
            self.restart()
        assert self._kc is not None
        kc = self._kc
        msg_id = self._send_comm(data)
        replies: list[tuple[dict[str, Any], list[bytes]]] = []
        total, deadline = 0, time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransferError(
                        f"The sandbox did not finish '{data.get('op')}' within {timeout:.0f} s."
                    )
                try:
                    msg = kc.get_private(msg_id, min(remaining, 0.25))
                except queue.Empty:
                    if not self.alive:
                        raise TransferError("The sandbox kernel died while answering.") from None
                    continue
                content = msg["content"]
                if msg["msg_type"] == "status" and content.get("execution_state") == "idle":
                    return replies
                if msg["msg_type"] != "comm_msg" or not isinstance(content.get("data"), dict):
                    continue
                buffers = [b for b in msg.get("buffers") or [] if isinstance(b, bytes)]
                total += sum(map(len, buffers)) + len(json.dumps(content["data"], default=str))
                if total > max_bytes:
                    raise TransferError(
                        f"The sandbox sent more than the {max_bytes // 2**20:,} MB that '{data.get('op')}' may "
                        "bring back."
                    )
                if each is not None:
                    each(content["data"], buffers)
                else:
                    replies.append((content["data"], buffers))
        except OutputLost:
            self._dropped()
            raise TransferError("The connection to the gateway dropped during a transfer.") from None
        finally:
            for sent in [msg_id, *(forget or [])]:
                kc.forget(sent)


__all__ = ["GW_MODULE", "RemoteKernel", "kernel_environment", "startup_code"]
