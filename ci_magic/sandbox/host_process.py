"""The sandbox's first process seen from the host: everything the parent acts on is read from outside.

The code in the sandbox can write any file it can reach and print anything, so no report, count or path that
the parent acts on comes from inside. Through ``/proc/<pid>`` of bubblewrap's child (pinned by a pidfd, so a
recycled pid is noticed) the parent reads its capabilities, ``no_new_privs``, seccomp mode, uid map and
namespaces — the isolation report; which host processes live in its pid namespace, and their CPU time —
leftover processes and code that keeps burning CPU after its execution ended (from the cgroups instead when
there are some, see ``cgroups.py``); and the root of its filesystem, for ``host_files.py`` to walk.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from pathlib import Path

from ..core.errors import TransferError
from .cgroups import Accounting
from .host_files import open_dir_beneath

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


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
        self._settled_tasks: int | None = None

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
        return len(self.processes(zombies=True))

    def may_have_strays(self) -> bool:
        """Whether a run may have left processes behind, to be looked for with :meth:`processes`.

        Asked after every run, so with cgroups it costs two small reads: more live processes than bubblewrap's
        child and the kernel (the launcher and bubblewrap outside joined the cgroup too), or a task count (threads
        and uncollected processes) different from the last :meth:`settle`. Without cgroups, the full count."""
        now = self.accounting.cgroup_footprint()
        if now is None:
            return self.process_count() > 2
        processes, tasks = now
        return processes > 4 or tasks != self._settled_tasks

    def settle(self) -> None:
        """Remember the task count once a look found nothing left (or after cleaning up): new threads of the
        kernel (a thread pool started by the code) are then paid for once, not after every run."""
        now = self.accounting.cgroup_footprint()
        self._settled_tasks = now[1] if now else None

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

    def end(self, timeout: float) -> bool:
        """Kill the sandbox's first process and wait (at most ``timeout``) until every process of the sandbox
        is gone; False when some were still there at the deadline.

        With its own pid namespace one SIGKILL is enough: when the first process dies the kernel kills all the
        others and it counts as ended only once they are all reaped, so its pidfd turning readable means an empty
        sandbox. Without one (isolation off), its tree is killed from the leaves up. A restart waits for this:
        a fork bomb's processes, still dying, would starve the next kernel's start."""
        deadline = time.monotonic() + timeout
        own_namespace = self._pid_ns is not None and self._pid_ns != _link("/proc/self/ns/pid")
        if not own_namespace:
            with contextlib.suppress(OSError):
                self.stop_strays(self.pid)
        self._signal(signal.SIGKILL)
        while True:
            left = deadline - time.monotonic()
            if self._exited(max(0.0, left)):
                return True
            if left <= 0:
                return False

    def _exited(self, wait: float) -> bool:
        """Whether the first process has ended (a zombie not yet collected counts: it holds nothing)."""
        if self._pidfd is not None:
            try:
                return bool(select.select([self._pidfd], [], [], wait)[0])
            except (OSError, ValueError):
                return True
        time.sleep(min(wait, 0.05))
        return _zombie(str(self.pid))

    def _signal(self, sig: int) -> None:
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except OSError:  # gone already
            pass

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
