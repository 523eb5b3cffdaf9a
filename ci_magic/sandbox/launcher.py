"""Run as a script (never imported) in the child process: isolate, apply limits, then become the IPython kernel.

Rlimits and namespaces are set up here, in the process that then execs ``ipykernel_launcher``, because
``preexec_fn`` is unsafe in the threaded parent. Standard library only, so the child starts fast.

    python launcher.py '<config json>' -- -f {connection_file}

Outside the namespaces it joins a pids cgroup when one is writable, then re-executes itself through
``unshare`` (see isolation.py); inside, it builds the filesystem view and writes a report for the parent.
"""

from __future__ import annotations

import json
import os
import resource
import sys

import isolation  # the sibling file: this runs as a script, not a package

MB = 1024 * 1024


def _limit(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    # Never raise above the hard limit we were given; lowering is always allowed.
    new = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (new, new))


def _join_cgroup(path: str, max_pids: int) -> str | None:
    try:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "pids.max"), "w") as fh:
            fh.write(str(max_pids))
        with open(os.path.join(path, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    except OSError as exc:
        return f"pids cgroup unavailable ({exc.strerror})"
    return None


def _ppid_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _watch_parent() -> None:
    """Fork a small watcher that kills the sandbox when the kernel that started it dies.

    Inside its PID namespace the sandbox cannot notice its parent's death (ipykernel's orphan check looks for
    ppid 1, and there the kernel *is* 1), and unshare outlives its parent. The watcher checks once a second
    whether this process (soon unshare) still has its original parent; it dies with us via PDEATHSIG.
    """
    sandbox, parent = os.getpid(), os.getppid()
    if os.fork() != 0:
        return
    try:
        import ctypes
        import signal
        import time

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: never outlive the sandbox
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # do not hold the kernel's output pipes open
            os.dup2(devnull, fd)
        while True:
            time.sleep(1.0)
            current = _ppid_of(sandbox)
            if current is None:
                break
            if current != parent:
                os.kill(sandbox, signal.SIGKILL)
                break
    finally:
        os._exit(0)


def main(argv: list[str]) -> None:
    inside = argv[1] == "--inside"
    config = json.loads(argv[2] if inside else argv[1])
    rest = argv[argv.index("--") + 1 :]
    limits, iso = config["limits"], config.get("isolate")
    report: dict[str, object] = {"isolated": False}
    if not inside:
        # Inherited by everything below, across unshare's exec and fork.
        _limit(resource.RLIMIT_AS, int(limits["memory_mb"]) * MB)
        _limit(resource.RLIMIT_FSIZE, int(limits["max_file_mb"]) * MB)
        _limit(resource.RLIMIT_CORE, 0)  # a segfaulting child must not litter the workdir with cores
        if os.geteuid() != 0:
            # Per-user count: what the user already runs plus our budget. (Root is exempt: the cgroup is for it.)
            _limit(resource.RLIMIT_NPROC, len(os.listdir("/proc")) + int(limits["max_processes"]))
    if iso and not inside:
        # A fresh cgroup per kernel start: after a fork bomb the previous one may still hold dying processes.
        cgroup = f"{iso['cgroup']}-{os.getpid()}" if iso.get("cgroup") else None
        problem = _join_cgroup(cgroup, int(limits["max_processes"])) if cgroup else None
        if problem:
            iso["cgroup_problem"] = problem
        _watch_parent()
        os.execvp(
            "unshare",
            [
                *isolation.unshare_command(limits["network"]),
                sys.executable,
                __file__,
                "--inside",
                json.dumps(config),
                "--",
                *rest,
            ],
        )
    if inside:
        try:
            report = {"isolated": True, "network": bool(limits["network"]), **isolation.apply(iso["view"])}
        except OSError as exc:  # namespaces exist but the view failed: say so, keep going
            report = {
                "isolated": True,
                "network": bool(limits["network"]),
                "problems": [str(exc)],
                "read_only": False,
                "hidden": 0,
            }
        report["cgroup_problem"] = iso.get("cgroup_problem")
        # A process group of our own: kill(0, ...) from the code must not reach unshare, which would take the
        # whole sandbox down. Interrupts therefore arrive as messages (interrupt_mode "message").
        os.setsid()
        # Our cwd still points into the mount it had before the view was built (now read-only): re-enter it
        # by path, which resolves through the new writable bind mount.
        os.chdir(os.getcwd())
    if config.get("report"):
        isolation.write_report(config["report"], report)
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *rest])


if __name__ == "__main__":
    main(sys.argv)
