"""OS-level isolation of the child kernel: namespaces, a read-only view of the filesystem, a pids cgroup.

Imported by the parent (to probe what this machine allows and to plan the view) and run as a script-side helper
by ``launcher.py`` inside the new namespaces (standard library only). The plan:

- ``unshare --pid --fork --mount-proc``: the child gets its own /proc, so it cannot read the environment of its
  parent (which holds the API key) or of the model server, nor signal them.
- ``--net`` unless the network is allowed: only a loopback interface that is down.
- ``--user --map-root-user`` always: unprivileged users need it for the above, and for root it drops every
  real capability.
- In the new mount namespace: everything in the home directory, /tmp, /var/tmp and /dev/shm is covered (empty
  read-only tmpfs over directories, /dev/null over files) except the paths the child needs: Python and its
  packages and the user's working folder (read-only) and the session folder (read-write). Every other mount is
  remounted read-only. So the code can read the user's data, write only into its session folder, and cannot
  see ~/.ssh or other processes' temporary files.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
#: statvfs flag -> mount flag; a remount inside a user namespace must keep the "locked" flags.
ST_TO_MS = {
    1: MS_RDONLY,
    2: MS_NOSUID,
    4: MS_NODEV,
    8: MS_NOEXEC,
    1024: MS_NOATIME,
    2048: MS_NODIRATIME,
    4096: MS_RELATIME,
}
HIDDEN_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
#: Kernel filesystems that stay as they are (remounting them read-only is refused or breaks the child).
KEEP_MOUNTS = ("/proc", "/dev")


def unshare_command(network: bool) -> list[str]:
    cmd = ["unshare", "--fork", "--pid", "--mount-proc", "--kill-child"]
    if not network:
        cmd.append("--net")
    # Always a user namespace, even for root: "root" inside then holds no capability over the host, so it can
    # neither remount the read-only view writable nor leave its cgroup.
    cmd += ["--user", "--map-root-user"]
    return cmd


_probe_cache: dict[bool, str | None] = {}


def probe(network: bool) -> str | None:
    """None when namespaces work here, else why not (said to the user, never silently ignored)."""
    if network in _probe_cache:
        return _probe_cache[network]
    reason: str | None = None
    if sys.platform != "linux":
        reason = "namespaces are a Linux feature"
    elif shutil.which("unshare") is None:
        reason = "the `unshare` program (util-linux) is not installed"
    else:
        try:
            proc = subprocess.run(
                [*unshare_command(network), "true"], capture_output=True, text=True, timeout=10
            )
            if proc.returncode != 0:
                reason = f"unshare failed: {proc.stderr.strip()[:200]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"unshare failed: {exc}"
    _probe_cache[network] = reason
    return reason


def plan(user_dir: Path, session_dir: Path, xfer_dir: Path) -> dict[str, Any]:
    """The filesystem view, computed in the parent where sys.path is known."""
    readable = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        str(Path(sys.executable).resolve().parent.parent),
    }
    readable |= {p for p in sys.path if p and os.path.isdir(p)}
    readable.add(str(Path(__file__).resolve().parents[2]))  # the ci_magic package itself (editable installs)
    readable.add(str(user_dir))
    home = os.path.expanduser("~")
    hide = [d for d in (home, *HIDDEN_DIRS) if d not in ("/", "") and os.path.isdir(d)]
    return {
        "hide": hide,
        "read_only": sorted(os.path.realpath(p) for p in readable if os.path.isdir(p)),
        "read_write": [str(session_dir), str(xfer_dir)],
    }


# ---- inside the namespaces (called by launcher.py) ---------------------------------------------------------


def _libc() -> Any:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def _enc(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _mount(
    libc: Any, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    if libc.mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} -> {target}: {os.strerror(err)}")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            points.append(line.split()[4].replace("\\040", " "))
    return points


def _hide_except(libc: Any, root: str, keep: list[str], report: dict[str, Any]) -> None:
    """Cover everything under ``root`` except the paths in ``keep`` (and the directories leading to them)."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        path = entry.path
        if path in keep:
            continue
        if any(_under(k, path) for k in keep):
            if entry.is_dir(follow_symlinks=False):
                _hide_except(libc, path, keep, report)
            continue
        if entry.is_symlink():
            continue  # a link resolves into a place that is itself hidden or read-only
        try:
            if entry.is_dir(follow_symlinks=False):
                _mount(libc, "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "mode=000,size=4k")
            else:
                _mount(libc, "/dev/null", path, None, MS_BIND)
            report["hidden"] += 1
        except OSError as exc:
            report["problems"].append(str(exc))


def apply(view: dict[str, Any]) -> dict[str, Any]:
    """Build the filesystem view in this (new) mount namespace. Returns a report of what was done."""
    libc = _libc()
    report: dict[str, Any] = {"hidden": 0, "read_only": True, "problems": []}
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)  # nothing we do here propagates back to the host
    keep = [p for p in view["read_only"] + view["read_write"] if os.path.isdir(p)]
    for hidden in view["hide"]:
        if not any(_under(hidden, k) for k in keep):  # e.g. the user works in their home folder itself
            _hide_except(libc, hidden, keep, report)
    # Writable places become mount points of their own, so the read-only pass below skips them.
    writable = [p for p in view["read_write"] if os.path.isdir(p)]
    for path in writable:
        _mount(libc, path, path, None, MS_BIND | MS_REC)
    # Everything else read-only, keeping each mount's locked flags (required inside a user namespace).
    for point in _mount_points():
        if any(_under(point, k) for k in KEEP_MOUNTS) or any(_under(point, w) for w in writable):
            continue
        try:
            flags = os.statvfs(point).f_flag
        except OSError:
            continue
        if flags & 1:
            continue  # already read-only (including what we hid)
        kept = sum(ms for st, ms in ST_TO_MS.items() if flags & st)
        try:
            _mount(libc, None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)
        except OSError as exc:
            report["problems"].append(str(exc))
            report["read_only"] = False
    return report


def write_report(path: str, report: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(report, fh)
    os.replace(tmp, path)
