"""The sandbox seen from the parent: everything the parent needs to know is read from the outside.

The code in the sandbox can write any file it can reach and print anything, so no report, count or path that
the parent acts on comes from inside. From the host the parent reads:

- the sandbox's init process through ``/proc/<pid>`` (pinned by a pidfd, so a recycled pid is noticed): its
  capabilities, ``no_new_privs``, seccomp mode, uid map and namespaces — the isolation report;
- which host processes live in the sandbox's pid namespace, and their CPU time — leftover processes and code
  that keeps burning CPU after its execution ended;
- files inside the sandbox's tmpfs through ``/proc/<pid>/root``, walking one component at a time with
  ``O_NOFOLLOW`` (a planted symlink, FIFO or device is never followed or opened), size-capped.
- the cgroups (pids, memory, CPU accounting) when the parent may create them (root on cgroup v1 or v2).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import TransferError
from ..core.executor import Sink

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(relative: str) -> list[str]:
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or not parts:
        raise TransferError(f"refused the path {relative[:200]!r}: it must stay inside the sandbox's folder.")
    return parts


def open_dir_beneath(base_fd: int, relative: str) -> int:
    """A directory below ``base_fd``, reached without following any symlink."""
    fd = os.dup(base_fd)
    try:
        for part in _parts(relative):
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except OSError:
        os.close(fd)
        raise
    return fd


def copy_beneath(base_fd: int, relative: str, out: Sink, limit: int) -> int:
    """Copy a regular file below ``base_fd`` into ``out``: no symlink followed, no FIFO or device opened, a
    hard link to something else refused, at most ``limit`` bytes (TransferError otherwise). Returns its size."""
    parts = _parts(relative)
    folder = open_dir_beneath(base_fd, "/".join(parts[:-1])) if len(parts) > 1 else os.dup(base_fd)
    try:
        try:
            st = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        except OSError as exc:
            raise TransferError(f"{relative!r} could not be read from the sandbox ({exc.strerror}).") from None
        if not stat.S_ISREG(st.st_mode):
            raise TransferError(f"refused {relative!r}: it is not a regular file.")
        if st.st_size > limit:
            raise TransferError(
                f"refused {relative!r}: {st.st_size:,} bytes is over the transfer limit of {limit:,} bytes."
            )
        fd = os.open(parts[-1], _OPEN_FLAGS, dir_fd=folder)
    finally:
        os.close(folder)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the stat and the open
            raise TransferError(f"refused {relative!r}: it is not a regular file.")
        if st.st_nlink > 1:  # a second name for a file: without isolation it could be one of the user's
            raise TransferError(f"refused {relative!r}: it is a hard link to another file.")
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 22, limit + 1 - size))
            if not chunk:
                return size
            size += len(chunk)
            if size > limit:
                raise TransferError(f"refused {relative!r}: it grew over the transfer limit while being read.")
            out.write(chunk)
    finally:
        os.close(fd)


def read_beneath(base_fd: int, relative: str, limit: int) -> bytes:
    """The bytes of a regular file below ``base_fd`` (see :func:`copy_beneath`)."""
    buffer = io.BytesIO()
    copy_beneath(base_fd, relative, buffer, limit)
    return buffer.getvalue()


@dataclass(frozen=True)
class FileInfo:
    path: str  # relative, '/'-separated
    size: int
    mtime_ns: int
    inode: tuple[int, int]  # (device, inode): a file replaced by another is a change


def list_files(
    base_fd: int, *, max_files: int = 20_000, max_depth: int = 8, skip: frozenset[str] = frozenset()
) -> dict[str, FileInfo]:
    """Regular files below ``base_fd`` (hidden names and mount points of the user's files skipped; symlinks,
    FIFOs, sockets and devices never listed), bounded in count and depth. ``skip``: top-level names not even
    looked at (the user's own entries, known to be read-only binds)."""
    found: dict[str, FileInfo] = {}
    base_dev = os.fstat(base_fd).st_dev
    stack: list[tuple[int, str, int]] = [(os.dup(base_fd), "", 0)]
    try:
        while stack:
            fd, prefix, depth = stack.pop()
            names = []
            with contextlib.suppress(OSError), os.scandir(fd) as entries:
                for entry in entries:  # a folder of a million entries is read only as far as the cap
                    names.append(entry.name)
                    if len(names) > max_files:
                        break
            for name in sorted(names):
                if name.startswith(".") or len(found) >= max_files or (not prefix and name in skip):
                    continue
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue
                if st.st_dev != base_dev:
                    continue  # a read-only bind of the user's own file or folder: not something the code wrote
                rel = f"{prefix}{name}"
                if stat.S_ISREG(st.st_mode):
                    found[rel] = FileInfo(rel, st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino))
                elif stat.S_ISDIR(st.st_mode) and depth < max_depth:
                    with contextlib.suppress(OSError):
                        stack.append((os.open(name, _DIR_FLAGS, dir_fd=fd), f"{rel}/", depth + 1))
            os.close(fd)
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return found


# ---- the process ---------------------------------------------------------------------------------------------


@dataclass
class Accounting:
    """The sandbox's processes and CPU, from cgroups when we have them, else from a scan of /proc."""

    pids_cgroup: Path | None = None
    cpu_cgroup: Path | None = None  # cpuacct.usage (v1) or cpu.stat (v2)
    owned: list[Path] = field(default_factory=list)  # cgroup folders to remove when done

    def cgroup_processes(self) -> int | None:
        if self.pids_cgroup is None:
            return None
        try:
            return int((self.pids_cgroup / "pids.current").read_text())
        except (OSError, ValueError):
            return None

    def cgroup_cpu_seconds(self) -> float | None:
        if self.cpu_cgroup is None:
            return None
        try:
            usage = self.cpu_cgroup / "cpuacct.usage"
            if usage.exists():
                return int(usage.read_text()) / 1e9
            for line in (self.cpu_cgroup / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        except (OSError, ValueError):
            return None
        return None

    def remove(self) -> None:
        for folder in self.owned:
            with contextlib.suppress(OSError):  # busy only while killed processes are being reaped
                folder.rmdir()


class SandboxProcess:
    """The sandbox's first process (bubblewrap's child, pid 1 in its namespace), pinned by a pidfd."""

    def __init__(self, pid: int, accounting: Accounting | None = None) -> None:
        self.pid = pid
        self.accounting = accounting or Accounting()
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None
        self._pid_ns = self._read_link("ns/pid")

    def _alive(self) -> bool:
        if self._pidfd is None:
            return Path(f"/proc/{self.pid}").exists()
        try:
            signal.pidfd_send_signal(self._pidfd, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True  # EPERM: alive, not ours to signal (root mode)
        return True

    def _read_link(self, name: str) -> str | None:
        try:
            return os.readlink(f"/proc/{self.pid}/{name}")
        except OSError:
            return None

    def open_root(self, inside: str) -> int:
        """A directory inside the sandbox's filesystem, e.g. ``/sandbox/out`` (TransferError when gone)."""
        try:
            root = os.open(f"/proc/{self.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise TransferError(f"The sandbox's files cannot be reached ({exc.strerror}).") from None
        try:
            if not self._alive():  # the pid may have been recycled between our pidfd and the open
                raise TransferError("The sandbox process has ended; its files are gone.")
            return open_dir_beneath(root, inside.strip("/"))
        except OSError as exc:
            raise TransferError(f"{inside} in the sandbox cannot be opened ({exc.strerror}).") from None
        finally:
            os.close(root)

    def status(self, pid: int | None = None) -> dict[str, str]:
        fields: dict[str, str] = {}
        try:
            with open(f"/proc/{pid or self.pid}/status") as fh:
                for line in fh:
                    key, _, value = line.partition(":")
                    fields[key] = value.strip()
        except OSError:
            pass
        return fields

    def children(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def namespaces(self) -> dict[str, bool]:
        """Which namespaces differ from the parent's (True: the sandbox has its own)."""
        kinds = ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup")
        out = {}
        for kind in kinds:
            mine = _link(f"/proc/self/ns/{kind}")
            theirs = self._read_link(f"ns/{kind}")
            out[kind] = theirs is not None and mine is not None and mine != theirs
        return out

    def processes(self, zombies: bool = False) -> list[int]:
        """Host pids of the processes in the sandbox's pid namespace, seen from outside; ended processes no
        parent has collected yet only with ``zombies``.

        Every process of the namespace descends from its first one (orphans are re-parented to it), so walking
        the ``children`` lists of every thread from there finds them all in a few reads; without those lists
        (an old kernel) the whole of /proc is scanned for the namespace."""
        if self._pid_ns is None:
            return []
        found = self._tree()
        if found is None:
            found = [
                int(name)
                for name in os.listdir("/proc")
                if name.isdigit() and _link(f"/proc/{name}/ns/pid") == self._pid_ns
            ]
        return [pid for pid in found if zombies or not _zombie(str(pid))]

    def _tree(self, limit: int = 100_000) -> list[int] | None:
        seen: list[int] = []
        stack = [self.pid]
        while stack and len(seen) < limit:
            pid = stack.pop()
            seen.append(pid)
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    stack.extend(int(p) for p in Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
                except FileNotFoundError:
                    if pid == self.pid:
                        return None  # no children lists on this kernel
                except (OSError, ValueError):
                    continue
        return seen if _link(f"/proc/{self.pid}/ns/pid") == self._pid_ns else []

    def process_count(self) -> int:
        """Processes in the sandbox, ended-but-uncollected ones included (they hold a slot of the limit)."""
        counted = self.accounting.cgroup_processes()
        if counted is not None:
            return max(0, counted - 2)  # the launcher and bubblewrap joined the cgroup too
        return len(self.processes(zombies=True))

    def stop_strays(self, keep: int, rounds: int = 50) -> int:
        """SIGKILL every process of the sandbox but its first one and ``keep`` (the kernel), from outside.

        Returns how many were stopped; a fork bomb is caught by repeating until none is left."""
        stopped = 0
        for _ in range(rounds):
            strays = [p for p in self.processes() if p not in (self.pid, keep)]
            if not strays:
                return stopped
            for pid in strays:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    stopped += 1
            time.sleep(0.02)
        raise OSError("processes keep appearing")

    def cpu_seconds(self) -> float:
        """CPU time used by the sandbox so far (its live processes, with what their reaped children used)."""
        counted = self.accounting.cgroup_cpu_seconds()
        if counted is not None:
            return counted
        total = 0
        for pid in self.processes():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
            except (OSError, ValueError, IndexError):
                continue
        return total / CLK_TCK

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def _zombie(pid: str) -> bool:
    """A process that has ended and waits for its parent to collect it (it cannot be killed, and uses nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


# ---- cgroups -------------------------------------------------------------------------------------------------


def plan_cgroups(
    name: str, max_processes: int, memory_bytes: int
) -> tuple[dict[str, dict[str, str]], Accounting]:
    """cgroup folders the launcher creates and joins ({folder: {file: value}}), below our own cgroups.

    Only where we may write (root, or a delegated cgroup); otherwise empty, and the process limit is the
    per-user RLIMIT_NPROC (best effort: the summary says so)."""
    own = _own_cgroups()
    plan: dict[str, dict[str, str]] = {}
    acc = Accounting()
    v1 = Path("/sys/fs/cgroup/pids")
    if v1.is_dir():
        for controller, settings in (
            ("pids", {"pids.max": str(max_processes)}),
            ("memory", {"memory.limit_in_bytes": str(memory_bytes)}),
            ("cpuacct", {}),
        ):
            parent = Path("/sys/fs/cgroup", controller) / own.get(controller, "/").lstrip("/")
            if parent.is_dir() and os.access(parent, os.W_OK):
                folder = parent / name
                plan[str(folder)] = settings
                acc.owned.append(folder)
                if controller == "pids":
                    acc.pids_cgroup = folder
                if controller == "cpuacct":
                    acc.cpu_cgroup = folder
        return plan, acc
    unified = Path("/sys/fs/cgroup") / own.get("", "/").lstrip("/")
    controllers = (
        (unified / "cgroup.subtree_control").read_text()
        if (unified / "cgroup.subtree_control").exists()
        else ""
    )
    if os.access(unified, os.W_OK) and "pids" in controllers:
        folder = unified / name
        settings = {"pids.max": str(max_processes)}
        if "memory" in controllers:
            settings["memory.max"] = str(memory_bytes)
        plan[str(folder)] = settings
        acc.owned.append(folder)
        acc.pids_cgroup = folder
        acc.cpu_cgroup = folder
    return plan, acc


def _own_cgroups() -> dict[str, str]:
    """controller -> our cgroup path ("" for the v2 hierarchy), from /proc/self/cgroup."""
    found: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                found[controller] = path
    except (OSError, ValueError):
        pass
    return found
