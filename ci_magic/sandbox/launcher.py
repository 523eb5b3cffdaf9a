"""Run as a script (never imported by ci_magic): the sandbox kernel's process, in two stages. Standard library
only until the kernel starts, so a start costs no imports of ours.

``python launcher.py <launch.json> -- -f <connection file>`` (the **outer stage**, on the host) applies the
resource limits, joins the sandbox's cgroups when it may, starts bubblewrap with the view the parent planned
(or, without isolation, the inner stage directly), tells the parent bubblewrap's child pid through a file in
the parent's private folder, and then stays as the guardian: it ends the sandbox when the parent process dies
(bubblewrap's ``--die-with-parent`` follows the thread that started it, and a notebook may start sandboxes
from short-lived threads) and exits with it.

``python launcher.py --inside '<config json>' -- -f <connection file>`` (the **inner stage**, the first thing
that runs inside) drops to the sandbox user when bubblewrap ran as root, closes every inherited descriptor
except stdio and the kernel's listening sockets, checks that no privilege is left, and becomes the IPython
kernel. Its stdout/stderr are a pipe to the outer stage, which keeps only their last 64 KB in the parent's
private folder (``kernel.log``): the kernel's own messages, bounded on the host. The kernel's sockets were bound by the parent in its
private folder; ZeroMQ adopts them (``ZMQ_USE_FD``), so the kernel needs no writable host path at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

MB = 1024 * 1024
CAP_LAST = 63
PR_CAPBSET_DROP = 24
EXIT_UNSAFE = 70  # the inner stage found privileges it should not have: never start the kernel


def _limit(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    # Never raise above the hard limit we were given; lowering is always allowed.
    new = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (new, new))


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _join_cgroups(cgroups: dict[str, dict[str, str]]) -> list[str]:
    """Create and join each cgroup ({dir: {file: value}}); returns the problems (the parent reports them)."""
    problems = []
    for directory, settings in cgroups.items():
        try:
            os.makedirs(directory, exist_ok=True)
            for name, value in settings.items():
                _write(os.path.join(directory, name), value)
            _write(os.path.join(directory, "cgroup.procs"), str(os.getpid()))
        except OSError as exc:
            problems.append(f"{directory}: {exc.strerror}")
    return problems


def _read_info(fd: int, limit: int = 65536) -> dict[str, object]:
    """bubblewrap's --info-fd JSON (ends when bubblewrap closes its end)."""
    data = b""
    while len(data) < limit:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        try:
            info: dict[str, object] = json.loads(data)
            return info
        except ValueError:
            continue
    return {}


def _keep_tail(pipe: IO[bytes], path: str, limit: int = 65536) -> None:
    """Read the kernel's stdout/stderr and keep only its last ``limit`` bytes in ``path`` (our private folder):
    the host never stores more than that, however much the code prints to its raw descriptors."""
    tail = bytearray()
    last = 0.0
    while True:
        chunk = os.read(pipe.fileno(), 65536)
        if chunk:
            tail += chunk
            del tail[:-limit]
        now = time.monotonic()
        if not chunk or now - last > 1.0:
            last = now
            tmp = f"{path}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(tail)
            os.replace(tmp, path)
        if not chunk:
            return


def _guard(child: subprocess.Popen[bytes]) -> int:
    """Wait for the sandbox; end it if the parent process dies first."""
    # SIGTERM (shutdown) ends the sandbox with us; SIGINT is not ours to act on (a handler, not SIG_IGN: an
    # ignored SIGINT would be inherited by the kernel and break its interrupts).
    signal.signal(signal.SIGTERM, lambda *_: child.kill())
    signal.signal(signal.SIGINT, lambda *_: None)
    parent = os.getppid()
    try:
        watched = [os.pidfd_open(parent), os.pidfd_open(child.pid)]
    except (AttributeError, OSError):  # Linux < 5.3: poll instead
        watched = []
    while True:
        if watched:
            with contextlib.suppress(InterruptedError):
                select.select(watched, [], [])
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.5)
        code = child.poll()
        if code is not None:
            return code
        if os.getppid() != parent:
            child.kill()
            return child.wait()


def outer(config: dict[str, Any], rest: list[str]) -> int:
    limits = config["limits"]
    # Inherited by bubblewrap and everything below it.
    _limit(resource.RLIMIT_AS, int(limits["memory_mb"]) * MB)
    _limit(resource.RLIMIT_FSIZE, int(limits["max_file_mb"]) * MB)
    _limit(resource.RLIMIT_CORE, 0)  # a segfaulting child must not litter anything with cores
    if os.geteuid() != 0:
        # Per-user count (what the user already runs plus our budget); root uses the pids cgroup instead.
        _limit(resource.RLIMIT_NPROC, len(os.listdir("/proc")) + int(limits["max_processes"]))
    report: dict[str, object] = {"launcher_pid": os.getpid()}
    report["cgroup_problems"] = _join_cgroups(config.get("cgroups") or {})
    inner = [sys.executable, os.path.abspath(__file__), "--inside", json.dumps(config["inner"]), "--", *rest]
    keep = [int(fd) for fd in config["sockets"].values()]
    bwrap = config.get("bwrap")
    if not bwrap:
        child = subprocess.Popen(
            inner,
            pass_fds=keep,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=str(config["workdir"]),
            env=os.environ,
        )
        report["child_pid"] = child.pid
        _report(str(config["report"]), report)
        return _watch(child, str(config["log"]))
    args = [str(a) for a in config["bwrap_args"]]
    passed = list(keep)
    seccomp_fd = -1
    if "@seccomp" in args:
        seccomp_fd = os.open(str(config["seccomp"]), os.O_RDONLY)
        passed.append(seccomp_fd)
    info_r, info_w = os.pipe()
    passed.append(info_w)
    args = [str(seccomp_fd) if a == "@seccomp" else str(info_w) if a == "@info" else a for a in args]
    child = subprocess.Popen(
        [str(bwrap), *args, "--", *inner],
        pass_fds=passed,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ,
    )
    os.close(info_w)
    if seccomp_fd >= 0:
        os.close(seccomp_fd)
    info = _read_info(info_r)
    os.close(info_r)
    report["child_pid"] = info.get("child-pid")
    report["bwrap_pid"] = child.pid
    _report(str(config["report"]), report)
    return _watch(child, str(config["log"]))


def _watch(child: subprocess.Popen[bytes], log: str) -> int:
    assert child.stdout is not None
    reader = threading.Thread(target=_keep_tail, args=(child.stdout, log), daemon=True)
    reader.start()
    code = _guard(child)
    reader.join(timeout=2.0)
    return code


def _report(path: str, report: dict[str, object]) -> None:
    # The parent's private folder: the sandbox cannot see or write it.
    tmp = f"{path}.tmp"
    _write(tmp, json.dumps(report))
    os.replace(tmp, path)


# ---- inside the sandbox ----------------------------------------------------------------------------------------


def _drop_to(uid: int) -> None:
    """Root mode: empty the capability bounding set, then become ``uid`` (which clears every capability)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(CAP_LAST + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # capabilities this kernel does not know fail: fine
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # clears the permitted and effective sets; the inheritable one stays
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable × 2 words: all empty
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _unsafe(expected_uid: int | None) -> str | None:
    """Why this process must not run the kernel, from its own /proc status (fail closed)."""
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(fields.get(key, "1"), 16) != 0:
            return f"{key} is {fields.get(key)}"
    if fields.get("NoNewPrivs") != "1":
        return "no_new_privs is not set"
    if expected_uid is not None and (os.getuid() != expected_uid or os.geteuid() != expected_uid):
        return f"uid is {os.getuid()}, expected {expected_uid}"
    return None


def _close_inherited(keep: set[int]) -> None:
    """Every descriptor but stdio and the kernel's sockets: nothing of the parent's may leak in."""
    try:
        fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _adopt_sockets(sockets: dict[str, int]) -> None:
    """Make ZeroMQ use the parent's pre-bound listening sockets for the kernel's ipc endpoints."""
    import zmq

    by_address = {f"ipc://{address}": fd for address, fd in sockets.items()}
    original = zmq.Socket.bind

    def bind(self: zmq.Socket, addr: str) -> object:  # type: ignore[type-arg]
        fd = by_address.get(addr)
        if fd is not None:
            self.setsockopt(zmq.USE_FD, fd)
        return original(self, addr)

    zmq.Socket.bind = bind  # type: ignore[assignment]


def inner(config: dict[str, Any], rest: list[str]) -> None:
    # The user's kernel pid means nothing in here, and ipykernel would read "parent is pid 1" as orphaned.
    os.environ.pop("JPY_PARENT_PID", None)
    drop = config.get("drop_to")
    if drop is not None:
        _drop_to(int(drop))
    sockets = {str(k): int(v) for k, v in config["sockets"].items()}
    _close_inherited(set(sockets.values()))
    if config.get("isolated"):
        problem = _unsafe(int(drop) if drop is not None else None)
        if problem:
            print(f"ci_magic sandbox: refusing to start the kernel: {problem}", flush=True)
            os._exit(EXIT_UNSAFE)
    _adopt_sockets(sockets)
    # Our folder was sys.path[0] (this script's); the kernel must not import our modules by accident.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    from ipykernel import kernelapp

    if config.get("connection_file"):  # the parent's file, bound read-only at a path of the sandbox's own
        rest = ["-f", str(config["connection_file"])]
    # The working folder holds the user's files and whatever earlier code wrote: a pandas.py there must not
    # replace pandas for the kernel or its start-up code. IPython's own switch keeps it off sys.path here; the
    # start-up code appends it last, so the code can still import the user's own modules.
    sys.argv = ["ipykernel_launcher", "--IPKernelApp.ignore_cwd=True", *rest]
    kernelapp.launch_new_instance()


def main(argv: list[str]) -> None:
    inside = argv[1] == "--inside"
    if inside:
        config = json.loads(argv[2])
    else:  # the parent's launch file, in its private folder
        with open(argv[1]) as fh:
            config = json.load(fh)
    rest = argv[argv.index("--") + 1 :]
    if inside:
        inner(config, rest)
        return
    code = outer(config, rest)
    if code < 0 or 128 < code <= 128 + 64:
        # The kernel was killed by a signal (bubblewrap reports it as 128 + signal): die the same way, so the
        # parent can say "killed by signal 11" rather than a bare exit code.
        sig = -code if code < 0 else code - 128
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    sys.exit(code)


if __name__ == "__main__":
    main(sys.argv)
