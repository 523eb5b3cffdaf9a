"""The isolated place where generated code runs: a child kernel, its working directory, and data transfer.

Frames go in as Arrow IPC files (on tmpfs when there is one) and are re-sent only when they changed. Values come
back as Arrow or tagged JSON, never pickle. The user's own files are visible read-only-by-convention as links in
the working directory; everything the code writes stays in the working directory.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.errors import SandboxError, TransferError
from ..core.results import ExecutionResult
from ..core.settings import Limits
from . import childside, isolation
from .kernel import ChildKernel

CHILD_MODULE = "_ci_child"
MAX_LEFTOVER_PROCESSES = 32
LEFTOVER_MESSAGE = (
    "The code left many processes running (for example by forking in a loop); the sandbox was restarted and "
    "its variables are gone. Do not start processes."
)
MAX_LINKED_FILES = 500


def _startup_code() -> str:
    path = Path(childside.__file__).resolve()
    return (
        "import sys as _s, types as _t\n"
        f"_m = _t.ModuleType({CHILD_MODULE!r}); _m.__file__ = {str(path)!r}\n"
        f"exec(compile(open({str(path)!r}).read(), {str(path)!r}, 'exec'), _m.__dict__)\n"
        f"_s.modules[{CHILD_MODULE!r}] = _m\n"
        "del _s, _t, _m\n"
        f"import {CHILD_MODULE}\n"
        "import pandas as pd, numpy as np\n"
        "import matplotlib.pyplot as plt\n"
    )


def _cgroup_dir(name: str) -> Path | None:
    """A pids cgroup (v1) we may create, for the process limit root is otherwise exempt from."""
    root = Path("/sys/fs/cgroup/pids")
    if root.is_dir() and os.access(root, os.W_OK):
        return root / name
    return None


#: pandas >= 3 always copies on write: an in-place edit of a frame whose buffers we also reference gives the
#: frame new arrays. So "same arrays as when sent" means "same content", checked in microseconds.
COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3


@dataclass
class _Sent:
    snapshot: pd.DataFrame | pd.Series  # shallow copy: keeps the arrays (and their ids) alive, triggers CoW
    version: tuple[Any, ...]


def version(obj: pd.DataFrame | pd.Series) -> tuple[Any, ...]:
    """Content version of a frame: changes whenever a value, label, dtype or the index changes."""
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


def code_names(code: str) -> set[str]:
    """Every identifier the code mentions; used to send only the frames the code can touch."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()  # the kernel will report the syntax error; nothing needs sending
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    # Frames may also be reached by name in strings, e.g. globals()["sales"].
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return names


#: Names through which Python code can start processes, or reach anything by name (and so hide it).
SPAWNERS = frozenset(
    {
        "fork",
        "forkpty",
        "system",
        "popen",
        "Popen",
        "spawn",
        "spawnv",
        "spawnl",
        "posix_spawn",
        "execv",
        "execve",
        "execl",
        "execvp",
        "subprocess",
        "multiprocessing",
        "Process",
        "Pool",
        "ProcessPoolExecutor",
        "joblib",
        "pty",
        "ctypes",
        "cffi",
        "exec",
        "eval",
        "compile",
        "__import__",
        "import_module",
        "importlib",
        "getattr",
        "os",
        "run",
        "call",
        "check_call",
        "check_output",
        "n_jobs",
        "Parallel",
        "signal",
    }
)


def may_spawn(code: str) -> bool:
    """Whether the code mentions anything that can create a process (unparseable code counts as yes)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return True
    for node in ast.walk(tree):
        name = (
            node.id
            if isinstance(node, ast.Name)
            else node.attr
            if isinstance(node, ast.Attribute)
            else node.arg
            if isinstance(node, ast.keyword) and node.arg
            else None
        )
        if name in SPAWNERS:
            return True
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] + (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            )
            if any(m.split(".")[0] in SPAWNERS for m in modules):
                return True
    return False


def assigned_names(code: str) -> set[str]:
    """Names the code binds (assignments, for-targets, with-as, imports excluded): what it "created"."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


class Sandbox:
    """A session: one child kernel that outlives single asks, so follow-up questions see earlier variables."""

    def __init__(self, limits: Limits | None = None, user_dir: str | Path | None = None) -> None:
        self.limits = limits or Limits()
        self.user_dir = Path(user_dir or os.getcwd()).resolve()
        self.session_dir = Path(tempfile.mkdtemp(prefix="ci_magic-"))
        shm = Path("/dev/shm")
        xfer_root = shm if shm.is_dir() and os.access(shm, os.W_OK) else self.session_dir
        self.xfer_dir = Path(tempfile.mkdtemp(prefix="ci_magic-xfer-", dir=xfer_root))
        self.workdir = self.session_dir / "work"
        self.workdir.mkdir()
        self._link_user_files()
        self._sent: dict[str, _Sent] = {}  # name -> what the child holds
        self.warnings: list[str] = []
        self.isolation_problem = (
            isolation.probe(self.limits.network) if self.limits.isolation else "isolation is turned off"
        )
        self._cgroup = _cgroup_dir(self.session_dir.name)
        isolate = None
        if self.isolation_problem is None:
            view = isolation.plan(self.user_dir, self.session_dir, self.xfer_dir)
            isolate = {"view": view, "cgroup": str(self._cgroup) if self._cgroup else None}
        self._report: tuple[int | None, dict[str, Any]] | None = None
        self._kernel = ChildKernel(self.session_dir, self.workdir, self.limits, _startup_code(), isolate)
        self._kernel.start()

    @property
    def isolation_report(self) -> dict[str, Any]:
        """What the launcher achieved (written by it at every kernel start; re-read only when rewritten)."""
        try:
            stamp = self._kernel.report_path.stat().st_mtime_ns
        except OSError:
            stamp = None
        if self._report is None or stamp != self._report[0]:
            try:
                report: dict[str, Any] = json.loads(self._kernel.report_path.read_text())
            except (OSError, ValueError):
                report = {"isolated": False}
            if self.isolation_problem:
                report["reason"] = self.isolation_problem
            self._report = (stamp, report)
        return dict(self._report[1])

    def isolation_warnings(self) -> list[str]:
        """Honest one-liners about protections that are not in place on this machine."""
        report = self.isolation_report
        if not report.get("isolated"):
            why = report.get("reason", "unknown reason")
            net = "" if self.limits.network else " The network is NOT blocked."
            return [
                f"the sandbox runs without OS isolation ({why}): it can read your files and other processes' "
                f"environment through /proc.{net}"
            ]
        notes = []
        if report.get("problems"):
            notes.append(
                "the sandbox's read-only filesystem view is incomplete: "
                + "; ".join(report["problems"])[:300]
            )
        if report.get("cgroup_problem") and os.geteuid() == 0:
            notes.append(f"no process-count limit for the sandbox ({report['cgroup_problem']})")
        return notes

    def _link_user_files(self) -> None:
        try:
            entries = sorted(p for p in self.user_dir.iterdir() if not p.name.startswith("."))
        except OSError:
            return
        for entry in entries[:MAX_LINKED_FILES]:
            target = self.workdir / entry.name
            if not target.exists():
                target.symlink_to(entry)

    @property
    def kernel(self) -> ChildKernel:
        return self._kernel

    # -- frames in ------------------------------------------------------------------------------------------

    def send_frames(self, frames: Mapping[str, pd.DataFrame | pd.Series], force: bool = False) -> list[str]:
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
            path = self.xfer_dir / f"in-{name}.arrow"
            try:
                stringified = childside.frame_to_arrow(obj, str(path))
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
            spec[name] = str(path)
            snapshot = obj.copy(deep=False)
            sent[name] = _Sent(snapshot, version(obj))
        if not spec:
            return []
        errors = self._kernel.evaluate(f"{CHILD_MODULE}.load_frames({json.dumps(spec)}, globals())")
        if errors:
            detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
            raise TransferError(f"The sandbox could not load the frames it was sent ({detail}).")
        self._sent.update(sent)
        return list(spec)

    def _restore(self, names: set[str] | None = None) -> None:
        """Reload frames the child holds from their Arrow files (all of them after a restart)."""
        spec = {
            name: str(self.xfer_dir / f"in-{name}.arrow")
            for name in self._sent
            if names is None or name in names
        }
        if spec:
            self._kernel.evaluate(f"{CHILD_MODULE}.load_frames({json.dumps(spec)}, globals())")

    # -- running --------------------------------------------------------------------------------------------

    def run(
        self,
        code: str,
        frames: Mapping[str, pd.DataFrame | pd.Series] | None = None,
        *,
        pristine: bool = False,
    ) -> ExecutionResult:
        """Send the frames the code mentions, then run it. Errors from the code come back as data.

        ``pristine`` first reloads the frames the code mentions even when the parent's copy is unchanged: an
        earlier attempt may have edited the child's copy in place (``dropna(inplace=True)``), and a retry must
        start from the user's data, not from the failed attempt's leftovers."""
        if frames:
            wanted = code_names(code)
            sent = self.send_frames({k: v for k, v in frames.items() if k in wanted})
            if pristine:
                self._restore({k for k in frames if k in wanted} - set(sent))
        # Counting leftover processes costs a little per run: only when the code can start processes at all.
        watch = bool(self.isolation_report.get("isolated")) and may_spawn(code)
        probe = {"procs": f"{CHILD_MODULE}.process_count()"} if watch else None
        result = self._kernel.execute(code, expressions=probe)
        if watch and not result.restarted and self._leftover_processes():
            self._kernel.restart()
            result = replace(
                result,
                outcome="error",
                error_name="LeftoverProcesses",
                error_value=LEFTOVER_MESSAGE,
                traceback=LEFTOVER_MESSAGE,
                restarted=True,
            )
        if result.restarted:
            self._restore()
        return result

    def _leftover_processes(self) -> bool:
        """True when the code left many processes behind (a fork bomb): only the restart clears them."""
        # Without a PID namespace /proc shows the whole machine, so callers only ask when isolated.
        count = self._kernel.last_expressions.get("procs")
        if count is not None:
            return int(count) > MAX_LEFTOVER_PROCESSES
        try:  # the code failed, so the count did not come with the reply: ask separately
            count = int(self._kernel.evaluate(f"{CHILD_MODULE}.process_count()", timeout=10))
        except SandboxError:
            return True  # too wedged to answer: treat like leftovers
        return count > MAX_LEFTOVER_PROCESSES

    def values(self) -> dict[str, tuple[str, int]]:
        """{name: (kind, cells)} of the DataFrames, Series and scalars now defined in the child."""
        found = self._kernel.evaluate(f"{CHILD_MODULE}.list_values(globals())")
        return {name: (kind, int(cells)) for name, (kind, cells) in found.items()}

    def fetch(self, names: list[str]) -> dict[str, Any]:
        """Copy values out of the child: frames through Arrow files, scalars through JSON. Never pickle."""
        out_dir = self.xfer_dir
        docs = self._kernel.evaluate(
            f"{CHILD_MODULE}.export_values({json.dumps(names)}, globals(), {str(out_dir)!r})"
        )
        fetched: dict[str, Any] = {}
        problems: list[str] = []
        for name, doc in docs.items():
            if "error" in doc:
                problems.append(doc["error"])
            elif doc["kind"] in ("frame", "series"):
                path = Path(doc["path"])
                if path.parent.resolve() != out_dir.resolve():
                    problems.append(f"refused {name!r}: the sandbox named a file outside the transfer folder")
                    continue
                fetched[name] = childside.frame_from_arrow(str(path))
                path.unlink(missing_ok=True)
            else:
                fetched[name] = childside.scalar_from_json(doc["json"])
        if problems:
            self.warnings.extend(problems)
        return fetched

    def written_files(self) -> list[str]:
        """Files the code created in the working directory (not the links to the user's files)."""
        found = []
        for root, dirs, files in os.walk(self.workdir):
            dirs[:] = [d for d in dirs if not d.startswith(".") and not Path(root, d).is_symlink()]
            for f in files:
                p = Path(root, f)
                if not p.is_symlink() and not f.startswith("."):
                    found.append(str(p.relative_to(self.workdir)))
        return sorted(found)

    def interrupt(self) -> None:
        self._kernel.interrupt()

    def close(self) -> None:
        self._kernel.shutdown()
        if self._cgroup is not None:
            for group in self._cgroup.parent.glob(f"{self._cgroup.name}-*"):
                with contextlib.suppress(OSError):  # busy only while killed processes are being reaped
                    group.rmdir()
        shutil.rmtree(self.xfer_dir, ignore_errors=True)
        shutil.rmtree(self.session_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
