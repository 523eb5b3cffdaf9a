"""The gateway sandbox's side inside the remote kernel: exec'd there as module ``_ci_gw`` (never imported by
the parent, which sends this file's source at every start, next to ``transfer.py``'s as ``_ci_child``).

It applies ci_magic's own limits (address space and file size, through ``resource``), makes a private working
folder, probes the network without sending anything, and serves one comm (target ``ci_magic``) through which
the parent moves bytes: Arrow IPC frames in, the user's files in, values and files out, always in chunks no
larger than :data:`CHUNK` (the gateway refuses large WebSocket messages, and the parent caps what it reads).
Nothing here is trusted by the parent: generated code runs in this same interpreter and may replace any of it.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import shutil
import socket
import stat
import sys
import tempfile
from typing import Any

TARGET = "ci_magic"
#: Below the 10 MiB that the gateway (tornado) accepts in one WebSocket message by default.
CHUNK = 8 * 1024 * 1024
MAX_FILES = 20_000
MAX_DEPTH = 8
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Documentation addresses (RFC 5737, RFC 3849): a UDP connect() to them only asks the kernel for a route.
_PROBES = ((socket.AF_INET, ("198.51.100.1", 9)), (socket.AF_INET6, ("2001:db8::1", 9, 0, 0)))

_frames: dict[str, bytearray] = {}  # Arrow IPC bytes per frame: a pristine reload needs no new transfer
_pending: dict[str, list[Any]] = {}  # [buffer, bytes so far] per transfer
_received: dict[str, tuple[int, int]] = {}  # files we wrote: (size, mtime_ns), so they are not "written"
_errors: dict[str, str] = {}
_workdir = ""


def _namespace() -> dict[str, Any]:
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("not running in an IPython kernel")
    namespace: dict[str, Any] = shell.user_ns
    return namespace


def setup(config_text: str) -> str:
    """Limits, working folder, network probe and the comm target; returns the report as JSON."""
    global _workdir
    config = json.loads(config_text)
    problems = []
    previous = str(config.get("previous") or "")
    if os.path.basename(previous).startswith("ci_magic-work-"):
        shutil.rmtree(previous, ignore_errors=True)  # the last start's folder, if that kernel died
    base = os.environ.get("KERNEL_WORKING_DIR") or tempfile.gettempdir()
    try:
        _workdir = tempfile.mkdtemp(prefix="ci_magic-work-", dir=base)
    except OSError:
        _workdir = tempfile.mkdtemp(prefix="ci_magic-work-")
    os.chdir(_workdir)
    atexit.register(shutil.rmtree, _workdir, True)
    for name, key in (("RLIMIT_AS", "memory_mb"), ("RLIMIT_FSIZE", "max_file_mb")):
        limit = int(config[key]) * 1024 * 1024
        try:
            resource.setrlimit(getattr(resource, name), (limit, limit))
        except (ValueError, OSError) as exc:
            problems.append(f"the {key.split('_')[0]} limit could not be set ({exc})")
    from IPython import get_ipython

    get_ipython().kernel.comm_manager.register_target(TARGET, _opened)
    return json.dumps(
        {
            "pid": os.getpid(),
            "uid": os.getuid(),
            "workdir": _workdir,
            "network": probe_network(),
            "problems": problems,
            "python": sys.version.split()[0],
        }
    )


def probe_network() -> dict[str, Any]:
    """Whether this kernel could reach the network, found without sending a packet or resolving a name."""
    default_route = False
    try:
        with open("/proc/net/route") as fh:  # Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            rows = [ln.split() for ln in fh.read(1_000_000).splitlines()[1:]]
        default_route = any(len(r) > 7 and r[1] == r[7] == "00000000" for r in rows)
    except OSError:
        pass
    try:
        with open("/proc/net/ipv6_route") as fh:  # dest plen src plen nexthop metric refcnt use flags iface
            rows = [ln.split() for ln in fh.read(1_000_000).splitlines()]
        default_route = default_route or any(
            len(r) > 9 and r[0] == "0" * 32 and r[1] == "00" and r[9] != "lo" for r in rows
        )
    except OSError:
        pass
    routable = []
    for family, address in _PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect(address)  # UDP: picks a route and a source address, sends nothing
                routable.append(family.name)
        except OSError:
            continue
    try:
        with open("/proc/net/dev") as fh:
            interfaces = [ln.split(":")[0].strip() for ln in fh.read(100_000).splitlines()[2:] if ":" in ln]
    except OSError:
        interfaces = []
    return {
        "default_route": default_route,
        "routable": routable,
        "interfaces": [i for i in interfaces if i != "lo"][:20],
    }


# ---- the comm -----------------------------------------------------------------------------------------------


def _opened(comm: Any, msg: dict[str, Any]) -> None:
    comm.on_msg(lambda m: _handle(comm, m))


def _handle(comm: Any, msg: dict[str, Any]) -> None:
    data = msg.get("content", {}).get("data") or {}
    op = data.get("op")
    try:
        if op == "put":
            _put(data, msg.get("buffers") or [])
        elif op == "commit":
            comm.send({"op": "committed", "errors": _commit(list(data.get("bind") or []))})
        elif op == "list":
            comm.send({"op": "listing", "json": sys.modules["_ci_child"].list_values(_namespace())})
        elif op == "export":
            _export(comm, list(data.get("names") or []), int(data.get("limit") or 0))
        elif op == "files":
            comm.send({"op": "files", "json": listing()})
        elif op == "read":
            _read(comm, str(data.get("path") or ""), int(data.get("limit") or 0))
    except Exception as exc:  # told to the parent, which decides
        comm.send({"op": "error", "message": f"{type(exc).__name__}: {exc}"[:1000]})


def _put(data: dict[str, Any], buffers: list[Any]) -> None:
    """One chunk: copied into place as it arrives (no second copy when the last one comes)."""
    kind, name = str(data.get("kind")), str(data.get("name"))
    key = f"{kind}:{name}"
    if key not in _pending:
        _pending[key] = [bytearray(max(0, int(data.get("size") or 0))), 0]
    blob, offset = _pending[key]
    for piece in buffers:
        size = memoryview(piece).nbytes
        blob[offset : offset + size] = piece
        offset += size
    _pending[key][1] = offset
    if not data.get("last"):
        return
    del _pending[key]
    del blob[offset:]
    if kind == "frame":
        _frames[name] = blob
        return
    try:
        _write_file(name, blob)
    except OSError as exc:
        _errors[name] = f"{type(exc).__name__}: {exc}"


def _write_file(relative: str, blob: bytearray) -> None:
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or relative.startswith("/"):
        raise OSError(f"refused the path {relative!r}")
    folder = os.path.join(_workdir, *parts[:-1])
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, parts[-1])
    tmp = f"{target}.ci_magic-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(blob)
    os.replace(tmp, target)  # replaces a link the code may have planted, never writes through it
    st = os.stat(target, follow_symlinks=False)
    _received["/".join(parts)] = (st.st_size, st.st_mtime_ns)


def _commit(names: list[str]) -> dict[str, str]:
    """Bind the named frames from their Arrow bytes; report those and earlier file errors."""
    import pyarrow as pa

    child = sys.modules["_ci_child"]
    namespace = _namespace()
    errors = dict(_errors)
    _errors.clear()
    for name in names:
        try:
            table = pa.ipc.open_file(pa.py_buffer(_frames[name])).read_all()
            namespace[name] = child.table_to_frame(table)
        except Exception as exc:  # reported to the parent
            errors[name] = f"{type(exc).__name__}: {exc}"[:500]
    return errors


def _send_file(comm: Any, fd: int, name: str, limit: int) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"{name!r} is not a regular file")
    if st.st_nlink > 1:
        raise OSError(f"{name!r} is a hard link to another file")
    if st.st_size > limit:
        raise OSError(f"{name!r} has {st.st_size:,} bytes, over the limit of {limit:,}")
    sent = 0
    while True:
        chunk = os.read(fd, CHUNK)
        sent += len(chunk)
        if sent > limit:
            raise OSError(f"{name!r} grew over the limit of {limit:,} bytes while being read")
        last = len(chunk) < CHUNK
        comm.send({"op": "chunk", "name": name, "last": last}, buffers=[chunk])
        if last:
            return


def _export(comm: Any, names: list[str], limit: int) -> None:
    outbox = tempfile.mkdtemp(prefix="ci_magic-out-")  # fresh each time: nothing planted survives
    try:
        docs = sys.modules["_ci_child"].export_values(names, _namespace(), outbox)
        for name in names:
            path = os.path.join(outbox, f"out-{name}.arrow")
            try:
                fd = os.open(path, _OPEN)
            except FileNotFoundError:
                continue  # a scalar, or an error the docs explain
            except OSError as exc:
                comm.send({"op": "chunk_error", "name": name, "message": str(exc)[:300]})
                continue
            try:
                _send_file(comm, fd, name, limit)
            except OSError as exc:
                comm.send({"op": "chunk_error", "name": name, "message": str(exc)[:300]})
            finally:
                os.close(fd)
        comm.send({"op": "exported", "docs": docs})
    finally:
        shutil.rmtree(outbox, ignore_errors=True)


def _open_beneath(relative: str) -> int:
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or relative.startswith("/"):
        raise OSError(f"refused the path {relative!r}: it must stay inside the working folder")
    fd = os.open(_workdir, _DIR)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], _OPEN, dir_fd=fd)
    finally:
        os.close(fd)


def _read(comm: Any, relative: str, limit: int) -> None:
    fd = _open_beneath(relative)
    try:
        _send_file(comm, fd, relative, limit)
    finally:
        os.close(fd)
    comm.send({"op": "read_done"})


def listing() -> str:
    """JSON {path: [size, mtime_ns]} of the regular files below the working folder that the code wrote (not
    those we sent, unless changed); hidden names skipped, bounded in count and depth."""
    found: dict[str, list[int]] = {}
    stack = [("", 0)]
    while stack and len(found) < MAX_FILES:
        prefix, depth = stack.pop()
        try:
            names = sorted(os.listdir(os.path.join(_workdir, prefix) if prefix else _workdir))[:MAX_FILES]
        except OSError:
            continue
        for name in names:
            if name.startswith(".") or ".ci_magic-" in name:
                continue
            rel = f"{prefix}{name}"
            try:
                st = os.stat(os.path.join(_workdir, rel), follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and _received.get(rel) != (st.st_size, st.st_mtime_ns):
                found[rel] = [st.st_size, st.st_mtime_ns]
            elif stat.S_ISDIR(st.st_mode) and depth < MAX_DEPTH:
                stack.append((f"{rel}/", depth + 1))
    return json.dumps(found)
