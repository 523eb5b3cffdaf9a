"""The sandbox's isolation, built by bubblewrap (``bwrap``): what this machine allows, and the command line.

bubblewrap is the sandbox of Flatpak and of several coding agents: it builds the namespaces and the mount view
and drops every privilege before the sandboxed program starts, so the mounts it made cannot be undone from
inside. What we ask of it (see README "Security model"):

- new mount, pid, ipc, uts and cgroup namespaces, and a new network namespace unless the network is allowed;
- **as a normal user**: a new user namespace whose only id is 1000 (mapped to your own uid), no capabilities,
  nested user namespaces disabled (``--disable-userns``);
- **as root**: a user namespace would map the sandbox back to real root, so bubblewrap builds the namespaces
  with root's privileges and the kernel process then drops to uid/gid 65534 with an empty capability bounding
  set before anything else runs (``launcher.py``, inner stage); the seccomp filter forbids new namespaces;
- ``no_new_privs``, a seccomp filter (``seccomp.py``), a new session (no controlling terminal), and death with
  the launcher that started it;
- a minimal filesystem: system directories and the Python installation read-only, a few files of ``/etc``,
  a fresh ``/proc`` and ``/dev``, one size-capped tmpfs (``/sandbox``: working folder, home, the values going
  back), and size-capped ``/tmp`` and ``/dev/shm``. The user's files appear read-only inside the working
  folder; nothing else of the host is visible or writable, so the disk the code can fill is bounded.

Without bubblewrap, or where the kernel forbids the namespaces, :func:`probe` says why, and the sandbox runs
as a plain child process (the summary of every ask says so; ``require_isolation`` refuses).
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: The sandbox's own filesystem, one size-capped tmpfs.
SANDBOX_ROOT = "/sandbox"
WORKDIR = f"{SANDBOX_ROOT}/work"  # the code's working folder: the user's files (read-only) + what it writes
HOME = f"{SANDBOX_ROOT}/home"
OUTBOX = f"{SANDBOX_ROOT}/out"  # values for the parent (Arrow files), read from outside with O_NOFOLLOW
CONNECTION = f"{SANDBOX_ROOT}/connection.json"  # the kernel's connection file: a read-only bind of ours
EGRESS = f"{SANDBOX_ROOT}/egress.sock"  # the egress proxy's socket (sandbox/egress): a bind of ours
INBOX = f"{SANDBOX_ROOT}/in"  # frames from the parent: a read-only bind of the parent's transfer folder

MB = 1024 * 1024

#: The uid inside: 1000 mapped to the caller in a user namespace; as root, 65534 on the host.
USERNS_UID = 1000
ROOT_MODE_UID = 65534

#: Files of /etc that programs commonly read and that hold nothing secret.
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "host.conf",
    "hosts",
    "gai.conf",
    "protocols",
    "services",
    "mime.types",
    "fonts",
    "ssl/certs",
    "ca-certificates",
    "alternatives",
    "os-release",
    "matplotlibrc",
)
#: Host directories of the system (read-only); merged-/usr links are re-created as links.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
#: Directory names under the user's folder never shown to the sandbox (besides hidden ones).
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "site-packages"})
#: Bounded work when planning the view of the user's folder.
MAX_USER_ENTRIES = 500
MAX_COVER_SCAN = 5000
MAX_COVER_DEPTH = 4


@dataclass(frozen=True)
class Probe:
    """What this machine allows. ``problem`` is None when the sandbox can be isolated."""

    bwrap: str | None
    mode: str  # "userns" (normal user), "privileged" (root), or "none"
    problem: str | None


_probe_cache: dict[bool, Probe] = {}


def probe(network: bool = False) -> Probe:
    """Try bubblewrap once per process (about 50 ms) with the namespaces we will ask for."""
    if network in _probe_cache:
        return _probe_cache[network]
    result = _probe(network)
    _probe_cache[network] = result
    return result


def _probe(network: bool) -> Probe:
    if sys.platform != "linux":
        return Probe(None, "none", "namespaces and bubblewrap are Linux features")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Probe(
            None,
            "none",
            "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
            "bubblewrap)",
        )
    mode = "privileged" if os.geteuid() == 0 else "userns"
    args = [bwrap, *namespace_args(mode, network), "--ro-bind", "/", "/", "--proc", "/proc", "true"]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(bwrap, "none", f"bubblewrap could not run ({exc})")
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split())[:200] or f"exit status {proc.returncode}"
        hint = (
            " (unprivileged user namespaces may be disabled: sysctl kernel.unprivileged_userns_clone or "
            "user.max_user_namespaces)"
            if mode == "userns"
            else ""
        )
        return Probe(bwrap, "none", f"bubblewrap cannot create the sandbox here: {detail}{hint}")
    return Probe(bwrap, mode, None)


def namespace_args(mode: str, network: bool) -> list[str]:
    args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not network:
        args.append("--unshare-net")
    if mode == "userns":
        args += ["--unshare-user", "--disable-userns", "--uid", str(USERNS_UID), "--gid", str(USERNS_UID)]
    return args


# ---- the filesystem view ------------------------------------------------------------------------------------


@dataclass
class View:
    """Read-only binds (host path -> path inside) and what to cover inside them."""

    binds: list[tuple[str, str]] = field(default_factory=list)
    system: set[str] = field(default_factory=set)  # inside paths of system and /etc binds (mounted first)
    links: list[tuple[str, str]] = field(default_factory=list)  # (target, link path)
    covered_dirs: list[str] = field(default_factory=list)  # inside paths: an empty read-only tmpfs on top
    covered_files: list[str] = field(default_factory=list)  # inside paths: /dev/null on top
    user_entries: list[str] = field(default_factory=list)  # names of the user's files shown in the workdir
    omitted: int = 0  # user entries not shown (over MAX_USER_ENTRIES)
    unscanned: list[str] = field(
        default_factory=list
    )  # inside paths shown empty: too deep or too many to check


def _pth_paths(site_dir: str) -> set[str]:
    """Folders that ``.pth`` files in a site-packages folder add to the import path (editable installs)."""
    found: set[str] = set()
    try:
        names = [n for n in os.listdir(site_dir) if n.endswith(".pth")]
    except OSError:
        return found
    for name in names:
        try:
            lines = Path(site_dir, name).read_text(errors="replace").splitlines()[:50]
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if line and not line.startswith(("#", "import ", "import\t")) and os.path.isdir(line):
                found.add(line)
    return found


def python_dirs() -> list[str]:
    """The Python installation the kernel runs from: prefixes, the standard library, site-packages and the
    folders their ``.pth`` files add (editable installs). Not the rest of ``sys.path``: a script's folder or
    the notebook's own folder there is user data, shown (or not) by the working-folder rules."""
    home = os.path.realpath(os.path.expanduser("~"))
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    prefixes.add(str(Path(sys.executable).resolve().parent.parent))
    candidates = set(prefixes)
    editable: set[str] = set()
    for entry in sys.path:
        if entry and any(entry.startswith(p.rstrip("/") + "/") for p in prefixes):
            candidates.add(entry)
            if entry.rstrip("/").endswith(("site-packages", "dist-packages")):
                editable |= _pth_paths(entry)
    importable: set[str] = set()
    for root in editable:
        # A project folder installed in editable mode: only what can be imported from it (its packages and
        # modules), not its tests, data or other files.
        try:
            items = list(os.scandir(root))
        except OSError:
            continue
        for item in items:
            if item.name.startswith(".") or item.name in SKIPPED_DIRS:
                continue
            package = item.is_dir() and os.path.exists(os.path.join(item.path, "__init__.py"))
            if package or (item.is_file() and item.name.endswith(".py")):
                importable.add(os.path.realpath(item.path))
    found = set(importable)
    for path in candidates:
        real = os.path.realpath(path)
        # A bare home or / would expose everything: never bind those.
        if real in ("/", home) or home.startswith(real.rstrip("/") + "/") or not os.path.isdir(real):
            continue
        found.add(real)
    # Innermost paths are covered by outer ones: bind each tree once.
    return sorted(p for p in found if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in found))


def _special(mode: int) -> bool:
    return stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def _cover_inside(host_dir: str, inside: str, view: View, keep: frozenset[str] = frozenset()) -> None:
    """Hide hidden entries, sockets, FIFOs and devices below a bound folder.

    A socket on a read-only mount still accepts connect(), and a hidden file (.env, .git) is not data the
    model should reach: both are covered inside the sandbox, never changed on the host. ``keep`` holds paths
    that must stay visible (a virtual environment inside a project folder). The walk is bounded (entries,
    depth) and fails closed: a folder it did not look into — below MAX_COVER_DEPTH, or once MAX_COVER_SCAN
    entries were seen — is covered whole (shown empty) and named in ``view.unscanned``."""
    budget = MAX_COVER_SCAN
    stack = [(host_dir, inside, 0)]
    while stack:
        host, dest, depth = stack.pop()
        if depth > MAX_COVER_DEPTH or budget <= 0:
            view.covered_dirs.append(dest)
            view.unscanned.append(dest)
            continue
        try:
            with os.scandir(host) as found:
                entries = list(itertools.islice(found, budget + 1))
        except OSError:
            continue
        if len(entries) > budget:  # too many to look at: none of it is shown
            view.covered_dirs.append(dest)
            view.unscanned.append(dest)
            budget = 0
            continue
        budget -= len(entries)
        for entry in entries:
            target = f"{dest}/{entry.name}"
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if any(k == entry.path or k.startswith(entry.path + "/") for k in keep):
                if stat.S_ISDIR(st.st_mode) and entry.path not in keep:
                    stack.append((entry.path, target, depth + 1))
                continue
            if entry.name.startswith(".") or entry.name in SKIPPED_DIRS:
                (view.covered_dirs if stat.S_ISDIR(st.st_mode) else view.covered_files).append(target)
            elif _special(st.st_mode):
                view.covered_files.append(target)
            elif stat.S_ISDIR(st.st_mode):
                stack.append((entry.path, target, depth + 1))


def plan(user_dir: Path, extra_ro: list[str] | None = None, network: bool = False) -> View:
    """The view: system, /etc files, Python, and the user's folder's entries inside the working folder."""
    view = View()
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            view.links.append((os.readlink(path), path))
        elif os.path.isdir(path):
            view.binds.append((path, path))
    for name in (*ETC_FILES, "resolv.conf") if network else ETC_FILES:
        path = f"/etc/{name}"
        if os.path.exists(path):
            view.binds.append((os.path.realpath(path), path))
    view.system = {p for _, p in view.binds}
    system = list(view.system)
    needed = frozenset(
        os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, *(extra_ro or [])}
    )
    for path in [*python_dirs(), *(extra_ro or [])]:
        if not any(path == s or path.startswith(s.rstrip("/") + "/") for s in system):
            view.binds.append((path, path))
            if path not in needed:
                _cover_inside(
                    path, path, view, needed
                )  # e.g. an editable install's source tree with its .git
    try:
        entries = sorted(os.scandir(user_dir), key=lambda e: e.name)
    except OSError:
        entries = []
    shown = 0
    for entry in entries:
        if entry.name.startswith(".") or entry.name in SKIPPED_DIRS:
            continue
        try:
            st = entry.stat(follow_symlinks=True)  # a link in the user's own folder is the user's choice
        except OSError:
            continue
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            continue
        if shown >= MAX_USER_ENTRIES:
            view.omitted += 1
            continue
        shown += 1
        inside = f"{WORKDIR}/{entry.name}"
        view.binds.append((os.path.realpath(entry.path), inside))
        view.user_entries.append(entry.name)
        if stat.S_ISDIR(st.st_mode):
            _cover_inside(os.path.realpath(entry.path), inside, view)
    return view


def bwrap_args(
    view: View,
    *,
    mode: str,
    network: bool,
    disk_mb: int,
    tmp_mb: int,
    control: dict[str, str],
    inbox: str,
    seccomp: bool,
) -> list[str]:
    """bwrap's options for this view (everything before the command). ``control`` maps inside paths to the
    parent's read-only files (connection file, passwd). The launcher replaces ``@seccomp`` and ``@info`` with
    the descriptors it opens."""
    args = [*namespace_args(mode, network), "--cap-drop", "ALL"]
    if mode == "privileged":
        # Only to drop to uid 65534 and empty the bounding set in the inner stage; lost at the setuid.
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    args += ["--new-session", "--die-with-parent", "--hostname", "sandbox"]
    args += ["--seccomp", "@seccomp"] if seccomp else []
    args += ["--info-fd", "@info"]
    system = [(h, i) for h, i in view.binds if not i.startswith(WORKDIR + "/") and i in view.system]
    for target, link in view.links:
        args += ["--symlink", target, link]
    for host, inside in system:
        args += ["--ro-bind", host, inside]
    # Before the Python binds: an editable install may live below /tmp.
    args += ["--size", str(tmp_mb * MB), "--perms", "1777", "--tmpfs", "/tmp"]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(tmp_mb * MB), "--perms", "1777", "--tmpfs", "/dev/shm"]
    args += ["--remount-ro", "/dev"]  # bwrap's /dev is a tmpfs without a size cap; its devices are binds
    for host, inside in view.binds:
        if not inside.startswith(WORKDIR + "/") and inside not in view.system:
            args += ["--ro-bind", host, inside]
    writable = "1777" if mode == "privileged" else "0700"
    args += ["--size", str(disk_mb * MB), "--perms", writable, "--tmpfs", SANDBOX_ROOT]
    for path in (WORKDIR, HOME, OUTBOX):
        args += ["--perms", writable, "--dir", path]
    args += ["--ro-bind", inbox, INBOX]
    for host, inside in view.binds:
        if inside.startswith(WORKDIR + "/"):
            args += ["--ro-bind", host, inside]
    for inside, host in control.items():
        args += ["--ro-bind", host, inside]
    for path in view.covered_dirs:
        args += ["--perms", "0000", "--size", "4096", "--tmpfs", path, "--remount-ro", path]
    for path in view.covered_files:
        args += ["--ro-bind", "/dev/null", path]
    # Folders bubblewrap made on its own root to hold the binds copy the host's modes (/root is 0700): open
    # them for the sandbox user. The root itself is then made read-only, so nothing can be created beside the
    # mounts.
    for folder in _intermediate_dirs([inside for _, inside in view.binds]):
        args += ["--chmod", "0755", folder]
    args += ["--remount-ro", "/", "--chdir", WORKDIR]
    return args


def _intermediate_dirs(mounts: list[str]) -> list[str]:
    """Ancestors of the mount points that are not themselves inside a mount (bwrap created them)."""
    points = set(mounts) | {SANDBOX_ROOT, "/proc", "/dev"}
    found = set()
    for mount in mounts:
        parts = mount.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/" + "/".join(parts[:i])
            # /tmp keeps its 1777, but folders bwrap made in it (a venv under /tmp/project) need the same
            # 0755 as any other: made under the launcher's umask, the sandbox user could not enter them.
            if folder != "/tmp" and not any(
                folder == p or folder.startswith(p.rstrip("/") + "/") for p in points
            ):
                found.add(folder)
    return sorted(found)


def passwd_files(uid: int) -> dict[str, str]:
    """Minimal /etc/passwd and /etc/group for the sandbox user (getpass, pwd lookups)."""
    return {
        "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{uid}:{uid}:ci_magic sandbox:{HOME}:/bin/sh\n",
        "group": f"root:x:0:\nsandbox:x:{uid}:\n",
    }
