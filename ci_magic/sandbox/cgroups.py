"""The sandbox's cgroups: the process and memory limits the launcher joins, and what they count.

The parent creates them only where it may write (root on cgroup v1 or v2, or a delegated cgroup): one set per
start, below its own cgroups. Without them the process limit is the per-user RLIMIT_NPROC and processes and
CPU are counted by scanning /proc (``host_process.py``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Accounting:
    """The sandbox's processes and CPU, from cgroups when we have them, else from a scan of /proc."""

    pids_cgroup: Path | None = None
    cpu_cgroup: Path | None = None  # cpuacct.usage (v1) or cpu.stat (v2)
    memory_cgroup: bool = False  # whether a memory limit counts everything (tmpfs and memfd pages included)
    owned: list[Path] = field(default_factory=list)  # cgroup folders to remove when done

    def cgroup_footprint(self) -> tuple[int, int] | None:
        """(processes, tasks) in the pids cgroup. Tasks count threads and ended processes nobody collected yet
        (both hold a slot of the limit); processes count only live ones."""
        if self.pids_cgroup is None:
            return None
        folder = str(self.pids_cgroup)  # read after every run: plain opens, no pathlib
        try:
            with open(folder + "/cgroup.procs", "rb") as fh:
                processes = fh.read().count(b"\n")  # one pid per line
            with open(folder + "/pids.current", "rb") as fh:
                return processes, int(fh.read())
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
                acc.memory_cgroup = acc.memory_cgroup or controller == "memory"
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
            acc.memory_cgroup = True
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
