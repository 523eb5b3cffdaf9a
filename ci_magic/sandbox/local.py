"""The local sandbox: one bubblewrap-isolated kernel per session on this machine, the executor seam's first
implementation.

:class:`Sandbox` owns the session — its private folder, its kernel, its lock, its restarts — and hands each
piece of work to the module that owns it: how a start is made (``startup.py``), what the isolation really is
(``isolation_report.py``), frames in (``frames_in.py``), values out (``values_out.py``), files read from
outside (``host_files.py``, ``host_process.py``), and processes or CPU the code leaves behind (``runaway.py``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core.errors import SandboxError, TransferError
from ..core.executor import OutputSink, Sink
from ..core.results import ExecutionResult
from ..core.settings import Limits
from . import host_files, isolation, isolation_report, runaway, startup, transfer, values_out
from .cgroups import Accounting, plan_cgroups
from .egress import packages
from .egress.proxy import Egress, Resolver
from .frames_in import Inbox, session_base
from .host_process import SandboxProcess
from .kernel import ChildKernel, Launch
from .scan import code_names

#: How long a restart waits for the previous sandbox's processes to be gone (part of a restart's fixed cost).
END_TIMEOUT_S = 10.0


class Sandbox:
    """A session: one sandbox kernel that outlives single asks, so follow-up questions see earlier variables."""

    def __init__(
        self,
        limits: Limits | None = None,
        user_dir: str | Path | None = None,
        *,
        resolver: Resolver | None = None,
    ) -> None:
        """``resolver``: how the egress proxy resolves allowed names (default: the host's resolver; tests map
        names to loopback servers with :class:`~ci_magic.sandbox.egress.proxy.MappedResolver`)."""
        self.limits = limits or Limits()
        self.user_dir = Path(user_dir or os.getcwd()).resolve()
        self.probe = (
            isolation.probe(self.limits.network)
            if self.limits.isolation
            else isolation.Probe(None, "none", "isolation is turned off")
        )
        self.isolated = self.probe.problem is None
        self.session_dir = Path(tempfile.mkdtemp(prefix="ci_magic-", dir=session_base()))
        self.control = self.session_dir / "control"  # ours only: the sandbox never sees it
        self.control.mkdir(mode=0o700)
        self.inbox = self.session_dir / "in"  # frames for the sandbox: read-only inside
        self.inbox.mkdir(mode=0o755)
        self.warnings: list[str] = []
        self._problems: list[str] = []
        self._frames = Inbox(self.inbox, self.isolated)
        self._starts_seen = 0
        self._process: SandboxProcess | None = None
        self._accounting = Accounting()
        self._report: dict[str, Any] = {"isolated": False, "reason": self.probe.problem}
        self._lock = threading.Lock()
        # The working folder after the last run: what the next run changed is the difference.
        self._last_files: dict[str, host_files.FileInfo] | None = None
        self._user_entries: frozenset[str] = frozenset()
        self._bwrap: startup.BwrapPlan | None = None
        module = str(Path(transfer.__file__).resolve())
        # With the network off, the egress proxy is the only way out (to the hosts each run allows, none by
        # default): bound in at every start, so allowing a host later needs no new sandbox.
        self._egress: Egress | None = None
        self._installs = packages.Installs()
        if self.isolated and not self.limits.network:
            self._egress = Egress(self.control / "egress.sock", resolver)
        if self.isolated:
            self._bwrap = startup.plan_bwrap(
                self.control, self.probe, self.user_dir, self.limits.network, self._problems, self.warnings
            )
            self._user_entries = frozenset(self._bwrap.view.user_entries)
            env, cwd = startup.child_environment(isolation.HOME, "/tmp"), "/"
            if self._egress is not None:  # pip installs into the sandbox's own layer, through the proxy
                env.update(packages.environment(self.limits.package_index))
        else:
            self.host_work = self.session_dir / "work"
            for name in ("work", "home", "tmp", "out"):
                (self.session_dir / name).mkdir(mode=0o700)
            startup.link_user_files(self.user_dir, self.host_work)
            home, tmp = str(self.session_dir / "home"), str(self.session_dir / "tmp")
            env, cwd = startup.child_environment(home, tmp), str(self.host_work)
        self._kernel = ChildKernel(
            self.control,
            self.limits,
            Launch(self._launch_config, env, cwd),
            startup.startup_code(module, isolation.EGRESS if self._egress is not None else None),
        )
        self._watchdog = runaway.CpuWatchdog(
            self._kernel, lambda: self._process, lambda: self.limits.idle_cpu_s
        )
        try:
            self._kernel.start()
            self._after_start()
        except BaseException:
            self.close()
            raise
        self._watchdog.start()

    # -- starting -----------------------------------------------------------------------------------------------

    def _launch_config(self) -> dict[str, Any]:
        """The launcher's instructions for the next (re)start: a fresh set of cgroups, the same view.

        The previous sandbox is gone first: its processes (a fork bomb's hundreds) would otherwise take the
        CPU, memory and process slots the new kernel needs to start."""
        if self._process is not None and not self._process.end(END_TIMEOUT_S):
            self.warnings.append(
                f"processes of the previous sandbox were still ending after {END_TIMEOUT_S:g} s; the new one "
                "was started beside them."
            )
        name = f"{self.session_dir.name}-{self._kernel.starts + 1}"
        self._accounting.remove()  # the previous start's cgroups: empty once its processes are gone
        memory = startup.memory_bytes(self.limits)
        cgroups, self._accounting = plan_cgroups(name, self.limits.max_processes, memory)
        return startup.launcher_config(
            self.limits,
            cgroups=cgroups,
            sockets=self._kernel.socket_fds,
            control=self.control,
            inbox=self.inbox,
            bwrap=self._bwrap,
            workdir=None if self.isolated else self.host_work,
            egress=self._egress.path if self._egress is not None else None,
        )

    def _after_start(self) -> None:
        """After every (re)start: find the sandbox from outside and check what it really is."""
        if self._process is not None:
            self._process.close()
            self._process = None
        report = self._kernel.launcher_report()
        pid = report.get("child_pid")
        if isinstance(pid, int) and pid > 0:
            self._process = SandboxProcess(pid, self._accounting)
        self._starts_seen = self._kernel.starts
        self._last_files = None  # a fresh sandbox has a fresh working folder
        self._report = isolation_report.verify(
            report,
            problems=self._problems,
            probe=self.probe,
            limits=self.limits,
            process=self._process,
            accounting=self._accounting,
            kernel=self._kernel,
        )

    # -- the report ---------------------------------------------------------------------------------------------

    @property
    def isolation_report(self) -> dict[str, Any]:
        return dict(self._report)

    def isolation_warnings(self) -> list[str]:
        """Honest one-liners about protections that are not in place on this machine."""
        return isolation_report.warnings(self._report, self.limits.network)

    @property
    def kernel(self) -> ChildKernel:
        return self._kernel

    @property
    def workdir(self) -> str:
        """The code's working folder, as the code sees it."""
        return isolation.WORKDIR if self.isolated else str(self.host_work)

    @property
    def pids(self) -> dict[str, int | None]:
        """Host pids: the launcher (our child) and the sandbox's first process (for tests and diagnostics)."""
        report = self._kernel.launcher_report(timeout=0)
        return {
            "launcher": report.get("launcher_pid"),
            "sandbox": self._process.pid if self._process else None,
        }

    # -- frames in ----------------------------------------------------------------------------------------------

    def send_frames(self, frames: Mapping[str, Any], force: bool = False) -> list[str]:
        """Make the child hold these frames under these names; returns the names actually (re)sent."""
        return self._frames.send(self._kernel, frames, self.warnings, force)

    # -- running ------------------------------------------------------------------------------------------------

    def run(
        self,
        code: str,
        frames: Mapping[str, Any] | None = None,
        *,
        pristine: bool = False,
        on_output: OutputSink | None = None,
    ) -> ExecutionResult:
        """Send the frames the code mentions, then run it. Errors from the code come back as data.

        ``pristine`` first reloads the frames the code mentions even when the parent's copy is unchanged: an
        earlier attempt may have edited the child's copy in place (``dropna(inplace=True)``), and a retry must
        start from the user's data, not from the failed attempt's leftovers."""
        with self._lock, self._watchdog.running():
            return self._run(code, frames, pristine, on_output)

    def _run(
        self, code: str, frames: Mapping[str, Any] | None, pristine: bool, on_output: OutputSink | None
    ) -> ExecutionResult:
        self._check_restarted()
        if frames:
            wanted = code_names(code)
            sent = self.send_frames({k: v for k, v in frames.items() if k in wanted})
            if pristine:
                failed = self._frames.restore(self._kernel, {k for k in frames if k in wanted} - set(sent))
                self.send_frames({k: frames[k] for k in failed})  # written and sent afresh, or TransferError
        before = self._last_files if self._last_files is not None else self._files()
        if self._egress is not None:
            self._egress.begin(self.limits.allow_hosts, self.limits.network_budget_mb * 1024 * 1024)
        result = self._kernel.execute(code, on_output=on_output)
        if self._egress is not None:
            installed = self._installs.collect(self._read_home)
            result = replace(result, network=self._egress.take(), installed=installed)
        if not result.restarted and self._process is not None and self._process.may_have_strays():
            result = runaway.stop_strays(result, self._process, self._kernel)
        self._check_restarted()
        after = self._files()
        self._last_files = after
        changed = sorted(p for p, info in after.items() if before.get(p) != info)
        return replace(result, files=changed) if changed else result

    def _check_restarted(self) -> None:
        """After the kernel was restarted (by a run, or killed by the CPU watchdog): look again, reload frames."""
        if not self._kernel.alive:
            self._kernel.restart()
        if self._kernel.starts != self._starts_seen:
            self._after_start()
            failed = self._frames.restore(self._kernel)
            if failed:
                self.warnings.append(
                    "After the restart, the sandbox could not reload "
                    + "; ".join(f"{k} ({v[:200]})" for k, v in failed.items())
                    + ": each is sent again when code names it."
                )
            reason = self._watchdog.take_reason()
            if reason:
                self.warnings.append(reason)

    # -- values and files out -----------------------------------------------------------------------------------

    def values(self) -> dict[str, tuple[str, int]]:
        """{name: (kind, cells)} of the frames and scalars now defined in the child."""
        return values_out.values(self._kernel)

    def fetch(self, names: list[str]) -> dict[str, Any]:
        """Copy values out of the child: frames through Arrow files, scalars through JSON. Never pickle."""
        return values_out.fetch(
            self._kernel,
            names,
            outbox=isolation.OUTBOX if self.isolated else str(self.session_dir / "out"),
            open_outbox=self._outbox_fd,
            limit=self.limits.max_transfer_mb * 1024 * 1024,
            warnings=self.warnings,
        )

    def _outbox_fd(self) -> int:
        if not self.isolated:
            return os.open(self.session_dir / "out", os.O_RDONLY | os.O_DIRECTORY)
        if self._process is None:
            raise TransferError("The sandbox process is not running.")
        return self._process.open_root(isolation.OUTBOX)

    def _workdir_fd(self) -> int:
        """The code's working folder, opened from outside (TransferError when the sandbox is gone)."""
        if self.isolated:
            if self._process is None:
                raise TransferError("The sandbox process is not running.")
            return self._process.open_root(isolation.WORKDIR)
        try:
            return os.open(self.session_dir / "work", os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise TransferError(f"The sandbox's folder cannot be opened ({exc.strerror}).") from None

    def _read_home(self, relative: str, limit: int) -> bytes:
        """A file below the sandbox's home (pip's report), read from outside without following links."""
        if self._process is None:
            raise TransferError("The sandbox process is not running.")
        fd = self._process.open_root(isolation.HOME)
        try:
            return host_files.read_beneath(fd, relative, limit)
        finally:
            os.close(fd)

    def _files(self) -> dict[str, host_files.FileInfo]:
        try:
            fd = self._workdir_fd()
        except TransferError:
            return {}
        try:
            return host_files.list_files(fd, skip=self._user_entries)
        finally:
            os.close(fd)

    def forget(self, names: Sequence[str]) -> None:
        """Drop these variables from the kernel (see Executor.forget; ChildKernel.forget checks the names)."""
        with self._lock:
            self._check_restarted()
            self._kernel.forget(names)

    def written_files(self) -> list[str]:
        """Files the code created in its working folder (not the user's own files, which are read-only)."""
        return sorted(self._files())

    def stale(self, ignore: set[str] | None = None) -> bool:
        """Whether the user's folder has new entries the sandbox cannot see (its view was made at start);
        ``ignore``: names ci_magic itself put there (files the code wrote, copied back)."""
        if not self.isolated:
            return False  # links are made for the entries present at start too, but reading by path works
        try:
            now = {e.name for e in os.scandir(self.user_dir) if not e.name.startswith(".")}
        except OSError:
            return False
        new = now - self._user_entries - (ignore or set()) - isolation.SKIPPED_DIRS
        return bool(new) and len(self._user_entries) < isolation.MAX_USER_ENTRIES

    def copy_file(self, path: str, out: Sink, limit: int) -> int:
        """One file the code wrote, copied from outside: a regular file only, no link followed, at most
        ``limit`` bytes (TransferError otherwise)."""
        fd = self._workdir_fd()
        try:
            return host_files.copy_beneath(fd, path, out, limit)
        finally:
            os.close(fd)

    def read_file(self, path: str, limit: int) -> bytes:
        fd = self._workdir_fd()
        try:
            return host_files.read_beneath(fd, path, limit)
        finally:
            os.close(fd)

    # -- control ------------------------------------------------------------------------------------------------

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
        if hasattr(self, "_watchdog"):
            self._watchdog.close()
        if hasattr(self, "_kernel"):
            self._kernel.shutdown()
        if self._process is not None:
            self._process.end(END_TIMEOUT_S)  # closed means gone: nothing of it still runs or holds a slot
            self._process.close()
            self._process = None
        self._accounting.remove()
        if getattr(self, "_egress", None) is not None:
            self._egress.close()  # type: ignore[union-attr]
        shutil.rmtree(self.session_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
