"""The isolated place where generated code runs: one sandbox kernel per session, its files, and data transfer.

:class:`Sandbox` ties the pieces together: the isolation bubblewrap builds (``isolation.py``, ``seccomp.py``,
``launcher.py``), the kernel (``kernel.py``), what the parent sees from outside (``hostview.py``), frames in
and values out (``transfer.py``, ``receive.py``), and outputs (``outputs.py``, ``sanitize.py``).

Frames go in as Arrow IPC files in the parent's private folder, which the sandbox sees read-only, and are
re-sent only when they changed. Values come back through the sandbox's outbox, read from outside without
following links and checked before they are built; nothing is unpickled. The user's files are visible
read-only in the working folder; everything the code writes stays in the sandbox's size-capped tmpfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.errors import SandboxError, TransferError
from ..core.executor import Sink
from ..core.results import ExecutionResult
from ..core.settings import Limits, is_secret_name
from . import hostview, isolation, receive, seccomp, transfer
from .kernel import ChildKernel, Launch
from .scan import assigned_names, code_names

__all__ = ["Sandbox", "assigned_names", "child_environment", "code_names"]

CHILD_MODULE = "_ci_child"
MAX_LEFTOVER_PROCESSES = 32
LEFTOVER_MESSAGE = (
    "The code left many processes running (for example by forking in a loop); the sandbox was restarted and "
    "its variables are gone. Do not start processes."
)
STRAYS_MESSAGE = (
    "The code started many processes (for example by forking in a loop); they were stopped. Do not start "
    "processes."
)
#: Environment variables the child may see; everything else (keys above all) is dropped.
ENV_ALLOW = ("LANG", "LANGUAGE", "TZ", "TERM", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ENV_ALLOW_PREFIXES = ("LC_",)
#: A background thread that keeps this share of a core busy while no code runs counts as runaway.
BUSY_SHARE = 0.25
MAX_CELLS_BACK = 200_000_000

#: pandas >= 3 always copies on write: an in-place edit of a frame whose buffers we also reference gives the
#: frame new arrays. So "same arrays as when sent" means "same content", checked in microseconds.
COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3


@dataclass
class _Sent:
    snapshot: Any  # shallow copy: keeps the arrays (and their ids) alive, triggers CoW
    version: tuple[Any, ...]


def version(obj: Any) -> tuple[Any, ...]:
    """Content version of a frame: changes whenever a value, label, dtype or the index changes."""
    if not isinstance(obj, pd.DataFrame | pd.Series):
        # Arrow tables are immutable, polars frames nearly so: identity and shape (a lazy frame, a plan, has
        # no shape, and asking for its schema may run part of it: identity alone).
        return (type(obj).__name__, id(obj), str(getattr(obj, "shape", "")))
    labels = tuple(map(repr, obj.columns)) if isinstance(obj, pd.DataFrame) else (repr(obj.name),)
    dtypes = tuple(map(str, obj.dtypes)) if isinstance(obj, pd.DataFrame) else (str(obj.dtype),)
    if COPY_ON_WRITE:
        content: Any = tuple(id(a) for a in obj._mgr.arrays)
    else:  # without copy-on-write only a full hash notices in-place edits
        try:
            content = hash(pd.util.hash_pandas_object(obj, index=True).to_numpy().tobytes())
        except TypeError:  # unhashable cells (lists, dicts): always resend
            content = object()
    return (type(obj).__name__, obj.shape, labels, dtypes, id(obj.index), content)


def child_environment(home: str, tmp: str, parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: an allow-list of the parent's (never a key or token), plus its own places."""
    source = os.environ if parent is None else parent
    env = {
        k: v
        for k, v in source.items()
        if (k in ENV_ALLOW or k.startswith(ENV_ALLOW_PREFIXES)) and not is_secret_name(k)
    }
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        HOME=home,
        TMPDIR=tmp,
        MPLCONFIGDIR=f"{home}/.config/matplotlib",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        IPYTHONDIR=f"{home}/.ipython",
        JUPYTER_CONFIG_DIR=f"{home}/.jupyter",
        JUPYTER_DATA_DIR=f"{home}/.local/share/jupyter",
        JUPYTER_RUNTIME_DIR=f"{home}/.local/share/jupyter/runtime",
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS=source.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
    )
    return env


def _startup_code(module_file: str) -> str:
    return (
        "import sys as _s, types as _t\n"
        f"_m = _t.ModuleType({CHILD_MODULE!r}); _m.__file__ = {module_file!r}\n"
        f"exec(compile(open({module_file!r}).read(), {module_file!r}, 'exec'), _m.__dict__)\n"
        f"_s.modules[{CHILD_MODULE!r}] = _m\n"
        "del _s, _t, _m\n"
        f"import {CHILD_MODULE}\n"
        "import pandas as pd, numpy as np\n"
        "import matplotlib.pyplot as plt\n"
    )


def _session_base() -> str:
    """/dev/shm when we may write there (frames are written and read at memory speed), else the temp dir."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else tempfile.gettempdir()


class Sandbox:
    """A session: one sandbox kernel that outlives single asks, so follow-up questions see earlier variables."""

    def __init__(self, limits: Limits | None = None, user_dir: str | Path | None = None) -> None:
        self.limits = limits or Limits()
        self.user_dir = Path(user_dir or os.getcwd()).resolve()
        self.probe = (
            isolation.probe(self.limits.network)
            if self.limits.isolation
            else isolation.Probe(None, "none", "isolation is turned off")
        )
        self.isolated = self.probe.problem is None
        self.session_dir = Path(tempfile.mkdtemp(prefix="ci_magic-", dir=_session_base()))
        self.control = self.session_dir / "control"  # ours only: the sandbox never sees it
        self.control.mkdir(mode=0o700)
        self.inbox = self.session_dir / "in"  # frames for the sandbox: read-only inside
        self.inbox.mkdir(mode=0o755)
        self.warnings: list[str] = []
        self._problems: list[str] = []
        self._sent: dict[str, _Sent] = {}
        self._starts_seen = 0
        self._process: hostview.SandboxProcess | None = None
        self._accounting = hostview.Accounting()
        self._report: dict[str, Any] = {"isolated": False, "reason": self.probe.problem}
        self._running = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._killed_reason: str | None = None
        self._runs = 0  # finished runs: the CPU watchdog measures idle use from the latest
        self._last_files: dict[str, hostview.FileInfo] | None = None  # the working folder after the last run
        self._user_entries: frozenset[str] = frozenset()
        if self.isolated:
            self._prepare_isolation()
            env, cwd, module = self._isolated_env(), "/", str(Path(transfer.__file__).resolve())
        else:
            self.host_work = self.session_dir / "work"
            for name in ("work", "home", "tmp", "out"):
                (self.session_dir / name).mkdir(mode=0o700)
            self._link_user_files()
            env, cwd, module = self._plain_env(), str(self.host_work), str(Path(transfer.__file__).resolve())
        self._kernel = ChildKernel(
            self.control, self.limits, Launch(self._launch_config, env, cwd), _startup_code(module)
        )
        try:
            self._kernel.start()
            self._after_start()
        except BaseException:
            self.close()
            raise
        threading.Thread(target=self._watch_cpu, name="ci_magic-sandbox-cpu", daemon=True).start()

    # -- starting -----------------------------------------------------------------------------------------------

    def _prepare_isolation(self) -> None:
        try:
            (self.control / "seccomp.bpf").write_bytes(seccomp.program())
            self._seccomp = True
        except seccomp.SeccompUnavailable as exc:
            self._seccomp = False
            self._problems.append(f"no seccomp filter ({exc})")
        uid = isolation.ROOT_MODE_UID if self.probe.mode == "privileged" else isolation.USERNS_UID
        for name, text in isolation.passwd_files(uid).items():
            path = self.control / name
            path.write_text(text)
            path.chmod(0o644)
        self.view = isolation.plan(
            self.user_dir, extra_ro=[str(Path(__file__).resolve().parent)], network=self.limits.network
        )
        self._user_entries = frozenset(self.view.user_entries)
        if self.view.omitted:
            self.warnings.append(
                f"{self.view.omitted} entries of {self.user_dir} are not visible in the sandbox (it shows the "
                f"first {isolation.MAX_USER_ENTRIES})."
            )

    def _launch_config(self) -> dict[str, Any]:
        """The launcher's instructions for the next (re)start: a fresh set of cgroups, the same view."""
        tmp_mb = max(16, self.limits.disk_mb // 4)  # /tmp and /dev/shm each
        name = f"{self.session_dir.name}-{self._kernel.starts + 1}"
        memory = (self.limits.memory_mb + self.limits.disk_mb + 2 * tmp_mb) * 1024 * 1024
        self._accounting.remove()  # the previous start's cgroups: empty once its processes are gone
        cgroups, self._accounting = hostview.plan_cgroups(name, self.limits.max_processes, memory)
        sockets = self._kernel.socket_fds
        config: dict[str, Any] = {
            "limits": asdict(self.limits),
            "cgroups": cgroups,
            "sockets": sockets,
            "log": str(self.control / "kernel.log"),
        }
        inner: dict[str, Any] = {"sockets": sockets, "isolated": self.isolated}
        if not self.isolated:
            return {**config, "workdir": str(self.host_work), "bwrap": None, "inner": inner}
        args = isolation.bwrap_args(
            self.view,
            mode=self.probe.mode,
            network=self.limits.network,
            disk_mb=self.limits.disk_mb,
            tmp_mb=tmp_mb,
            control={
                isolation.CONNECTION: str(self.control / "connection.json"),
                "/etc/passwd": str(self.control / "passwd"),
                "/etc/group": str(self.control / "group"),
            },
            inbox=str(self.inbox),
            seccomp=self._seccomp,
        )
        inner["drop_to"] = isolation.ROOT_MODE_UID if self.probe.mode == "privileged" else None
        inner["connection_file"] = isolation.CONNECTION
        return {
            **config,
            "bwrap": self.probe.bwrap,
            "bwrap_args": args,
            "seccomp": str(self.control / "seccomp.bpf"),
            "inner": inner,
        }

    def _isolated_env(self) -> dict[str, str]:
        return child_environment(isolation.HOME, "/tmp")

    def _plain_env(self) -> dict[str, str]:
        return child_environment(str(self.session_dir / "home"), str(self.session_dir / "tmp"))

    def _link_user_files(self) -> None:
        """Without isolation the working folder holds links to the user's files (nothing protects them)."""
        try:
            entries = sorted(p for p in self.user_dir.iterdir() if not p.name.startswith("."))
        except OSError:
            return
        for entry in entries[: isolation.MAX_USER_ENTRIES]:
            target = self.host_work / entry.name
            if not target.exists():
                target.symlink_to(entry)

    def _after_start(self) -> None:
        """After every (re)start: find the sandbox from outside and check what it really is."""
        if self._process is not None:
            self._process.close()
            self._process = None
        report = self._kernel.launcher_report()
        pid = report.get("child_pid")
        if isinstance(pid, int) and pid > 0:
            self._process = hostview.SandboxProcess(pid, self._accounting)
        self._starts_seen = self._kernel.starts
        self._last_files = None  # a fresh sandbox has a fresh working folder
        self._report = self._verify(report)

    def _verify(self, launcher: dict[str, Any]) -> dict[str, Any]:
        """The isolation report, from /proc as seen from the host (nothing the sandbox can write)."""
        problems = list(self._problems) + [str(p) for p in launcher.get("cgroup_problems") or []]
        if not self.isolated:
            return {"isolated": False, "reason": self.probe.problem, "problems": problems}
        process = self._process
        if process is None:
            raise SandboxError(
                f"The sandbox started but its process could not be found.{self._kernel.log_tail()}"
            )
        kernels = process.children()
        status = process.status(kernels[0]) if kernels else {}
        caps = {k: status.get(k, "?") for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")}
        unsafe = [k for k, v in caps.items() if v != "0000000000000000"]
        if unsafe or status.get("NoNewPrivs") != "1":
            self._kernel.kill()
            raise SandboxError(
                "The sandbox kernel started with privileges it must not have "
                f"({', '.join(unsafe) or 'no_new_privs unset'}); it was stopped. Please report this."
            )
        namespaces = process.namespaces()
        expected = ["mnt", "pid", "ipc", "uts"] + ([] if self.limits.network else ["net"])
        expected += ["user"] if self.probe.mode == "userns" else []
        missing = [ns for ns in expected if not namespaces.get(ns)]
        if missing:
            problems.append(f"the sandbox shares these namespaces with your kernel: {', '.join(missing)}")
        uids = status.get("Uid", "").split()
        limit = "pids cgroup" if self._accounting.pids_cgroup is not None else "per-user RLIMIT_NPROC"
        if self._accounting.pids_cgroup is None:
            problems.append(
                f"the process limit ({self.limits.max_processes}) is best effort: a per-user limit, not a "
                "cgroup"
            )
        return {
            "isolated": True,
            "tool": "bubblewrap",
            "mode": self.probe.mode,
            "host_uid": int(uids[0]) if uids else None,
            "namespaces": sorted(ns for ns, own in namespaces.items() if own),
            "capabilities": "none",
            "no_new_privs": True,
            "seccomp": status.get("Seccomp") == "2",
            "network": self.limits.network,
            "disk_mb": self.limits.disk_mb,
            "process_limit": limit,
            "problems": problems,
        }

    # -- the report ---------------------------------------------------------------------------------------------

    @property
    def isolation_report(self) -> dict[str, Any]:
        return dict(self._report)

    def isolation_warnings(self) -> list[str]:
        """Honest one-liners about protections that are not in place on this machine."""
        report = self._report
        if not report.get("isolated"):
            why = report.get("reason") or "unknown reason"
            net = "" if self.limits.network else " The network is NOT blocked."
            return [
                f"the sandbox runs without OS isolation ({why}): the code can read your files and other "
                f"processes' environment.{net}"
            ]
        return [str(p) for p in report.get("problems") or []]

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
        spec: dict[str, str] = {}
        sent: dict[str, _Sent] = {}
        for name, obj in frames.items():
            if not name.isidentifier():
                raise TransferError(
                    f"{name!r} is not a valid Python name, so it cannot be a variable in the sandbox."
                )
            held = self._sent.get(name)
            if not force and held is not None and version(obj) == held.version:
                continue
            path = self.inbox / f"{name}.arrow"
            try:
                stringified = transfer.frame_to_arrow(obj, str(path))
            except Exception as exc:
                raise TransferError(
                    f"The frame {name!r} could not be copied into the sandbox ({type(exc).__name__}: {exc}). "
                    "Convert unusual column types (e.g. with .astype(str)) and try again."
                ) from exc
            if stringified:
                self.warnings.append(
                    f"{name}: columns {', '.join(map(repr, stringified))} hold mixed types and were sent to "
                    "the sandbox as strings."
                )
            spec[name] = self._inbox_path(name)
            snapshot = obj.copy(deep=False) if isinstance(obj, pd.DataFrame | pd.Series) else obj
            sent[name] = _Sent(snapshot, version(obj))
        if not spec:
            return []
        errors = self._kernel.evaluate(f"{CHILD_MODULE}.load_frames({json.dumps(spec)}, globals())")
        if errors:
            detail = "; ".join(f"{k}: {v}" for k, v in dict(errors).items())[:1000]
            raise TransferError(f"The sandbox could not load the frames it was sent ({detail}).")
        self._sent.update(sent)
        return list(spec)

    def _inbox_path(self, name: str) -> str:
        return f"{isolation.INBOX}/{name}.arrow" if self.isolated else str(self.inbox / f"{name}.arrow")

    def _restore(self, names: set[str] | None = None) -> None:
        """Reload frames the child holds from their Arrow files (all of them after a restart)."""
        spec = {name: self._inbox_path(name) for name in self._sent if names is None or name in names}
        if spec:
            self._kernel.evaluate(f"{CHILD_MODULE}.load_frames({json.dumps(spec)}, globals())")

    # -- running ------------------------------------------------------------------------------------------------

    def run(
        self, code: str, frames: Mapping[str, Any] | None = None, *, pristine: bool = False
    ) -> ExecutionResult:
        """Send the frames the code mentions, then run it. Errors from the code come back as data.

        ``pristine`` first reloads the frames the code mentions even when the parent's copy is unchanged: an
        earlier attempt may have edited the child's copy in place (``dropna(inplace=True)``), and a retry must
        start from the user's data, not from the failed attempt's leftovers."""
        with self._lock:
            self._running.set()
            try:
                return self._run(code, frames, pristine)
            finally:
                self._runs += 1
                self._running.clear()

    def _run(self, code: str, frames: Mapping[str, Any] | None, pristine: bool) -> ExecutionResult:
        self._check_restarted()
        if frames:
            wanted = code_names(code)
            sent = self.send_frames({k: v for k, v in frames.items() if k in wanted})
            if pristine:
                self._restore({k for k in frames if k in wanted} - set(sent))
        before = self._last_files if self._last_files is not None else self._files()
        result = self._kernel.execute(code)
        if not result.restarted and self._process is not None and self._process.process_count() > 2:
            result = self._stop_strays(result)
        self._check_restarted()
        after = self._files()
        self._last_files = after
        changed = sorted(p for p, info in after.items() if before.get(p) != info)
        return replace(result, files=changed) if changed else result

    def _stop_strays(self, result: ExecutionResult) -> ExecutionResult:
        """Processes the code left running are stopped from outside (a fork bomb's, a forgotten server's): the
        next execution starts with the kernel alone. If they cannot be stopped, the sandbox is restarted."""
        assert self._process is not None
        kernels = self._process.children()
        try:
            stopped = self._process.stop_strays(kernels[0] if kernels else -1)
        except OSError:
            self._kernel.restart()
            return replace(
                result,
                outcome="error",
                error_name="LeftoverProcesses",
                error_value=LEFTOVER_MESSAGE,
                traceback=LEFTOVER_MESSAGE,
                restarted=True,
            )
        if self._process.process_count() > MAX_LEFTOVER_PROCESSES:
            # Stopped, but not collected by the kernel: they would hold the process limit forever.
            self._kernel.restart()
            return replace(
                result,
                outcome="error",
                error_name="LeftoverProcesses",
                error_value=LEFTOVER_MESSAGE,
                traceback=LEFTOVER_MESSAGE,
                restarted=True,
            )
        note = f"[ci_magic stopped {stopped} process(es) the code left running]\n"
        if stopped > MAX_LEFTOVER_PROCESSES and result.ok:
            # A fork bomb that happened to finish: the model must learn not to do it again.
            return replace(
                result,
                outcome="error",
                error_name="LeftoverProcesses",
                error_value=STRAYS_MESSAGE,
                traceback=STRAYS_MESSAGE,
            )
        outputs = (
            [*result.outputs, {"output_type": "stream", "name": "stderr", "text": note}]
            if stopped
            else result.outputs
        )
        return replace(result, outputs=outputs)

    def _check_restarted(self) -> None:
        """After the kernel was restarted (by a run, or killed by the CPU watchdog): look again, reload frames."""
        if not self._kernel.alive:
            self._kernel.restart()
        if self._kernel.starts != self._starts_seen:
            self._after_start()
            self._restore()
            if self._killed_reason:
                self.warnings.append(self._killed_reason)
                self._killed_reason = None

    def _watch_cpu(self) -> None:
        """Restart a sandbox that keeps a core busy while no code runs (a background thread left behind)."""
        busy, runs, last = 0.0, -1, 0.0
        while not self._closed.wait(1.0):
            process = self._process
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
            busy = busy + used if used > BUSY_SHARE else 0.0
            if busy > self.limits.idle_cpu_s and not self._running.is_set():
                self._killed_reason = (
                    f"the sandbox was restarted because code kept using the CPU after its execution ended "
                    f"({busy:.0f} s of CPU); its variables are gone, the DataFrames were reloaded."
                )
                self._kernel.kill()
                busy = 0.0

    # -- values and files out -----------------------------------------------------------------------------------

    def values(self) -> dict[str, tuple[str, int]]:
        """{name: (kind, cells)} of the frames and scalars now defined in the child."""
        return receive.read_listing(self._kernel.evaluate(f"{CHILD_MODULE}.list_values(globals())"))

    def _outbox_fd(self) -> int:
        if not self.isolated:
            return os.open(self.session_dir / "out", os.O_RDONLY | os.O_DIRECTORY)
        if self._process is None:
            raise TransferError("The sandbox process is not running.")
        return self._process.open_root(isolation.OUTBOX)

    def fetch(self, names: list[str]) -> dict[str, Any]:
        """Copy values out of the child: frames through Arrow files, scalars through JSON. Never pickle."""
        names = [n for n in names if receive.valid_name(n)]
        if not names:
            return {}
        outbox = isolation.OUTBOX if self.isolated else str(self.session_dir / "out")
        try:
            docs = self._kernel.evaluate(
                f"{CHILD_MODULE}.export_values({json.dumps(names)}, globals(), {outbox!r})"
            )
        except (
            SandboxError
        ) as exc:  # the sandbox's own exporter failed or answered garbage: nothing comes back
            self.warnings.append(f"No values could be brought back: {exc}")
            return {}
        if not isinstance(docs, dict):
            self.warnings.append("No values could be brought back: the sandbox answered with something else.")
            return {}
        fetched: dict[str, Any] = {}
        limit = self.limits.max_transfer_mb * 1024 * 1024
        try:
            fd = self._outbox_fd()
        except (TransferError, OSError) as exc:
            self.warnings.append(f"No values could be brought back: {exc}")
            return {}
        try:
            for name in names:
                doc = docs.get(name)
                try:
                    if not isinstance(doc, dict) or "error" in doc:
                        error = doc.get("error") if isinstance(doc, dict) else None
                        raise TransferError(str(error or f"{name!r} came back malformed")[:300])
                    if doc.get("kind") == "scalar":
                        fetched[name] = receive.read_scalar(doc.get("json"), name=name)
                        continue
                    filename = f"out-{name}.arrow"
                    data = hostview.read_beneath(fd, filename, limit)
                    with contextlib.suppress(OSError):
                        os.unlink(filename, dir_fd=fd)
                    fetched[name] = receive.read_frame(
                        data, name=name, max_bytes=limit, max_cells=MAX_CELLS_BACK
                    )
                except TransferError as exc:
                    self.warnings.append(str(exc))
        finally:
            os.close(fd)
        return fetched

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

    def _files(self) -> dict[str, hostview.FileInfo]:
        try:
            fd = self._workdir_fd()
        except TransferError:
            return {}
        try:
            return hostview.list_files(fd, skip=self._user_entries)
        finally:
            os.close(fd)

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
            return hostview.copy_beneath(fd, path, out, limit)
        finally:
            os.close(fd)

    def read_file(self, path: str, limit: int) -> bytes:
        fd = self._workdir_fd()
        try:
            return hostview.read_beneath(fd, path, limit)
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
        self._closed.set()
        if hasattr(self, "_kernel"):
            self._kernel.shutdown()
        if self._process is not None:
            self._process.close()
            self._process = None
        self._accounting.remove()
        shutil.rmtree(self.session_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
