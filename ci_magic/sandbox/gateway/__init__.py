"""The sandbox on Jupyter Enterprise Gateway: the executor seam's second implementation.

:class:`GatewaySandbox` behaves like the local :class:`~ci_magic.sandbox.Sandbox` (same outputs, errors as
data, time limits, restarts with frames restored), but its kernel runs wherever the gateway's kernelspec puts it
(a Kubernetes pod, a YARN container, a Docker container). So nothing is shared with it but messages:

- **frames** go in as Arrow IPC bytes in the buffers of comm messages, in chunks; the kernel binds them and keeps
  the bytes, so a ``pristine`` retry re-binds without a new transfer; unchanged frames are not sent again;
- **values** come back the same way and are read by the same distrustful readers (``receive.py``), capped
  (both in ``transfer.py``);
- **the user's files** that the code names (string literals naming regular files of ``user_dir``, reached
  without following any link, hidden ones never) are copied into the kernel's private working folder when new
  or changed, at most 200 MB per run (``files.py``); :meth:`written_files`, :meth:`copy_file` and
  :meth:`read_file` see what the code wrote there;
- **secrets**: the kernel's environment is the gateway's business; we send only ``KERNEL_*`` variables
  (``KERNEL_USERNAME``, the admin's ``KERNEL_WORKING_DIR`` …, none whose name looks secret) and our limits;
- **isolation** is reported honestly: ci_magic applies memory, time and output limits; network and files are
  isolated only as far as the kernelspec does, and the kernel says at start whether it has a route out;
- the kernel is deleted on :meth:`close`, and by a watcher process when the process that created it dies.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from ...core.errors import SandboxError
from ...core.executor import OutputSink, Sink
from ...core.results import ExecutionResult
from ...core.settings import Limits
from ..frames_in import Sent as _Sent
from ..frames_in import session_base as _session_base
from ..frames_in import version as frame_version
from ..scan import code_names
from . import files, transfer
from .kernel import GW_MODULE, RemoteKernel, kernel_environment, startup_code
from .rest import GatewayREST, network_declaration
from .watch import Watcher


class GatewaySandbox:
    """A session's sandbox kernel on Enterprise Gateway (see the module's docstring)."""

    def __init__(
        self,
        limits: Limits | None,
        user_dir: Path | str | None,
        *,
        url: str,
        token: str | None = None,
        kernel_name: str | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.user_dir = Path(user_dir or os.getcwd()).resolve()
        self.rest = GatewayREST(url, token)
        self.warnings: list[str] = []
        self._sent: dict[str, _Sent] = {}
        self._files = files.UserFiles(self.user_dir)
        self._last_files: files.Listing | None = None  # the working folder after the last run
        self.isolated = False  # known once the kernel has reported (see isolation_report)
        self._declared: str | None = None  # the kernelspec's word on its network isolation
        self._declared_for: str | None = None
        self._starts_seen = 0
        self._lock = threading.Lock()
        self._scratch = Path(tempfile.mkdtemp(prefix="ci_magic-gw-", dir=_session_base()))
        self._watcher: Watcher | None = None
        self._kernel = RemoteKernel(
            self.rest,
            self.limits,
            kernel_name=kernel_name,
            env=kernel_environment(self.limits),
            startup_code=startup_code(),
            setup=self._setup_call,
            on_kernel=self._kernel_changed,
        )
        try:
            # A tiny detached process that deletes our kernels when this process dies, even by SIGKILL.
            self._watcher = Watcher(self.rest.url, token, str(self._scratch))
            self._kernel.start()
            self._after_start()
        except BaseException:
            self.close()
            raise

    def _setup_call(self, previous: str | None) -> str:
        config = {
            "memory_mb": self.limits.memory_mb,
            "max_file_mb": self.limits.max_file_mb,
            "previous": previous,
        }
        return f"{GW_MODULE}.setup({json.dumps(config)!r})"

    def _kernel_changed(self, old: str | None, new: str | None) -> None:
        if self._watcher is not None:
            self._watcher.changed(old, new)

    # -- the report -----------------------------------------------------------------------------------------------

    @property
    def isolation_report(self) -> dict[str, Any]:
        report = self._kernel.report
        network = report.get("network") if isinstance(report.get("network"), dict) else {}
        assert isinstance(network, dict)
        route = bool(network.get("default_route") or network.get("routable"))
        return {
            # What we can see from inside (no route out), or what the admin's kernelspec declares (a pod always
            # has a route; its NetworkPolicy is invisible from inside). Users choose among kernelspecs, they
            # cannot write one.
            "isolated": not route or self._declared is not None or self.limits.network,
            "tool": "enterprise-gateway",
            "gateway": self.rest.host,
            "kernelspec": self._kernel.spec_name,
            "network": route,
            "declared": self._declared,
            "uid": report.get("uid"),
            "limits": {"memory_mb": self.limits.memory_mb, "timeout_s": self.limits.timeout_s},
            "problems": [str(p)[:300] for p in report.get("problems") or []][:10],
        }

    def isolation_warnings(self) -> list[str]:
        report = self.isolation_report
        if not report["network"]:
            reach = "it found no route to the network"
        elif report["declared"]:
            reach = f"it has a route out, and the kernelspec declares: {report['declared']}"
        else:
            reach = "it can reach the network (a route out exists; a NetworkPolicy may still block it)"
        root = "; it runs as root there, so code could lift the memory limit" if report["uid"] == 0 else ""
        line = (
            f"the sandbox runs on the gateway at {report['gateway']} (kernelspec {report['kernelspec']}); "
            "ci_magic limits its memory, time and output; its network and files are isolated only as far as "
            f"that kernelspec does — {reach}{root}."
        )
        return [line, *report["problems"]]

    @property
    def kernel(self) -> RemoteKernel:
        return self._kernel

    @property
    def workdir(self) -> str:
        """The code's working folder, as the remote kernel sees it."""
        return str(self._kernel.report.get("workdir") or "")

    @property
    def pids(self) -> dict[str, int | None]:
        """The kernel's pid as the kernel itself reported it at start (meaningful for local kernels only)."""
        pid = self._kernel.report.get("pid")
        return {"kernel": pid if isinstance(pid, int) else None}

    # -- frames and files in --------------------------------------------------------------------------------------

    def send_frames(self, frames: Mapping[str, Any], force: bool = False) -> list[str]:
        """Make the kernel hold these frames under these names; returns the names actually (re)sent."""
        staged: dict[str, _Sent] = {}
        puts: list[str] = []
        for name, obj in frames.items():
            held = self._sent.get(name)
            if not force and held is not None and frame_version(obj) == held.version:
                continue
            puts += transfer.put_frame(self._kernel, name, obj, self._scratch, self.warnings)
            snapshot = obj.copy(deep=False) if isinstance(obj, pd.DataFrame | pd.Series) else obj
            staged[name] = _Sent(snapshot, frame_version(obj))
        if not staged:
            return []
        transfer.commit(self._kernel, list(staged), puts, self.warnings)
        self._sent.update(staged)
        return list(staged)

    # -- running ------------------------------------------------------------------------------------------------

    def run(
        self,
        code: str,
        frames: Mapping[str, Any] | None = None,
        *,
        pristine: bool = False,
        on_output: OutputSink | None = None,
    ) -> ExecutionResult:
        """Send the frames and files the code mentions, then run it. Errors from the code come back as data;
        ``pristine`` re-binds the frames it mentions from the bytes the kernel holds (see Sandbox.run)."""
        with self._lock:
            self._check_restarted()
            puts: list[str] = []
            if frames:
                wanted = code_names(code)
                sent = self.send_frames({k: v for k, v in frames.items() if k in wanted})
                reload = sorted({k for k in frames if k in wanted and k in self._sent} - set(sent))
                puts = self._files.send(self._kernel, code, self.warnings)
                if (pristine and reload) or puts:
                    transfer.commit(self._kernel, reload if pristine else [], puts, self.warnings)
            elif puts := self._files.send(self._kernel, code, self.warnings):
                transfer.commit(self._kernel, [], puts, self.warnings)
            before = self._last_files if self._last_files is not None else files.listing(self._kernel)
            # The listing rides on the execute reply (user_expressions): no extra round trip when all went well.
            result = self._kernel.execute(
                code, expressions={"files": f"{GW_MODULE}.listing()"}, on_output=on_output
            )
            restarted = self._check_restarted()
            expressed = self._kernel.last_expressions.get("files")
            after = (
                files.parse_listing(json.dumps(expressed))
                if result.ok and not restarted and isinstance(expressed, dict)
                else files.listing(self._kernel)
            )
            self._last_files = after
            changed = sorted(p for p, info in after.items() if before.get(p) != info)
            return replace(result, files=changed) if changed else result

    def _check_restarted(self) -> bool:
        """After a restart the kernel holds nothing: send every frame again, and files on their next mention."""
        if not self._kernel.alive:
            self._kernel.restart()
        if self._kernel.starts == self._starts_seen:
            return False
        self._after_start()
        self._files.reset()
        self._last_files = None
        held = {name: sent.snapshot for name, sent in self._sent.items()}
        self._sent.clear()
        if held:
            self.send_frames(held, force=True)
        return True

    def _after_start(self) -> None:
        self._starts_seen = self._kernel.starts
        if self._declared_for != self._kernel.spec_name:
            self._declared_for = self._kernel.spec_name
            try:
                spec = self.rest.call("GET", f"/api/kernelspecs/{urllib.parse.quote(self._declared_for)}")
            except SandboxError:
                spec = None
            self._declared = network_declaration(spec)
        self.isolated = bool(self.isolation_report["isolated"])

    # -- values and files out -------------------------------------------------------------------------------------

    def values(self) -> dict[str, tuple[str, int]]:
        """{name: (kind, cells)} of the frames and scalars now defined in the kernel."""
        return transfer.values(self._kernel)

    def fetch(self, names: list[str]) -> dict[str, Any]:
        """Copy values out of the kernel: frames as Arrow bytes, scalars as JSON, both checked. Never pickle."""
        return transfer.fetch(self._kernel, names, self.limits.max_transfer_mb * 1024 * 1024, self.warnings)

    def forget(self, names: Sequence[str]) -> None:
        """Drop these variables from the kernel (see Executor.forget; ChildKernel.forget checks the names)."""
        with self._lock:
            self._check_restarted()
            self._kernel.forget(names)

    def written_files(self) -> list[str]:
        """Files the code created (or changed) in its working folder on the kernel, relative paths."""
        return sorted(files.listing(self._kernel))

    def copy_file(self, path: str, out: Sink, limit: int) -> int:
        """One file the code wrote, streamed into ``out``: a regular file only, no link followed, at most
        ``limit`` bytes (TransferError otherwise)."""
        return files.copy_file(self._kernel, path, out, limit)

    def read_file(self, path: str, limit: int) -> bytes:
        buffer = io.BytesIO()
        self.copy_file(path, buffer, limit)
        return buffer.getvalue()

    # -- control ------------------------------------------------------------------------------------------------

    def stale(self, ignore: set[str] | None = None) -> bool:
        """Never: the user's files are sent when the code names them, so new ones need no fresh start."""
        return False

    def set_limits(self, limits: Limits) -> None:
        if self.limits.needs_restart(limits):
            raise SandboxError("These limits need a new sandbox; close this one and start another.")
        self.limits = self._kernel.limits = limits

    def interrupt(self) -> None:
        self._kernel.interrupt()

    def restart(self) -> None:
        with self._lock:
            self._kernel.restart()
            self._check_restarted()

    def close(self) -> None:
        if hasattr(self, "_kernel"):
            self._kernel.shutdown()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> GatewaySandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["GatewaySandbox"]
