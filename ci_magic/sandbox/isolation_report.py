"""The local sandbox's isolation report, checked after every start from outside, and what it tells the user.

Nothing the sandbox can write goes into it: the kernel's capabilities, ``no_new_privs``, seccomp mode, uid and
namespaces are read from ``/proc`` on the host (``host_process.py``). A kernel with privileges it must not have
is stopped at once; protections that are missing on this machine are listed, and said with every ask.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import SandboxError
from ..core.settings import Limits
from .cgroups import Accounting
from .host_process import SandboxProcess
from .isolation import Probe
from .kernel import ChildKernel


def verify(
    launcher: dict[str, Any],
    *,
    problems: list[str],
    probe: Probe,
    limits: Limits,
    process: SandboxProcess | None,
    accounting: Accounting,
    kernel: ChildKernel,
) -> dict[str, Any]:
    """The isolation report, from /proc as seen from the host (nothing the sandbox can write).

    ``launcher``: what the launcher reported (problems creating cgroups); ``problems``: what the parent already
    knows is missing (a seccomp filter)."""
    problems = list(problems) + [str(p) for p in launcher.get("cgroup_problems") or []]
    if probe.problem is not None:  # the sandbox is isolated exactly when the probe found no problem
        return {"isolated": False, "reason": probe.problem, "problems": problems}
    if process is None:
        raise SandboxError(f"The sandbox started but its process could not be found.{kernel.log_tail()}")
    kernels = process.children()
    status = process.status(kernels[0]) if kernels else {}
    caps = {k: status.get(k, "?") for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")}
    unsafe = [k for k, v in caps.items() if v != "0000000000000000"]
    if unsafe or status.get("NoNewPrivs") != "1":
        kernel.kill()
        raise SandboxError(
            "The sandbox kernel started with privileges it must not have "
            f"({', '.join(unsafe) or 'no_new_privs unset'}); it was stopped. Please report this."
        )
    namespaces = process.namespaces()
    expected = ["mnt", "pid", "ipc", "uts"] + ([] if limits.network else ["net"])
    expected += ["user"] if probe.mode == "userns" else []
    missing = [ns for ns in expected if not namespaces.get(ns)]
    if missing:
        problems.append(f"the sandbox shares these namespaces with your kernel: {', '.join(missing)}")
    uids = status.get("Uid", "").split()
    limit = "pids cgroup" if accounting.pids_cgroup is not None else "per-user RLIMIT_NPROC"
    if accounting.pids_cgroup is None:
        problems.append(
            f"the process limit ({limits.max_processes}) is best effort: a per-user limit, not a cgroup"
        )
    if not accounting.memory_cgroup:
        problems.append(
            f"no memory cgroup: memory is limited per process ({limits.memory_mb} MB of address space), and "
            "what the code keeps in its in-memory folders or memfd files is not counted against it"
        )
    return {
        "isolated": True,
        "tool": "bubblewrap",
        "mode": probe.mode,
        "host_uid": int(uids[0]) if uids else None,
        "namespaces": sorted(ns for ns, own in namespaces.items() if own),
        "capabilities": "none",
        "no_new_privs": True,
        "seccomp": status.get("Seccomp") == "2",
        "network": limits.network,
        "disk_mb": limits.disk_mb,
        "process_limit": limit,
        "problems": problems,
    }


def warnings(report: dict[str, Any], network: bool) -> list[str]:
    """Honest one-liners about protections that are not in place on this machine."""
    if not report.get("isolated"):
        why = report.get("reason") or "unknown reason"
        net = "" if network else " The network is NOT blocked."
        return [
            f"the sandbox runs without OS isolation ({why}): the code can read your files and other "
            f"processes' environment.{net}"
        ]
    return [str(p) for p in report.get("problems") or []]
