"""The server registry: where a model's server is, who uses it, and whether a pid is still that process.

Shared by the clients (:mod:`ci_magic.local.server`) and the server itself (:mod:`.supervisor`).
Writers hold the model's ``flock`` (:func:`lock_path`); readers may read at any time because every
write is an atomic replace.
"""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from typing import Any

from .assemble import cache_root

API_KEY_ENV = "CI_MAGIC_SERVER_API_KEY"  # hands the key to the supervisor without showing it in `ps`
HEALTH_PATH = "/ci_magic/health"  # answered by the supervisor without taking llama's request lock
SUPERVISOR_MODULE = "ci_magic.local.supervisor"


def servers_dir() -> Path:
    path = cache_root() / "servers"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def registry_path(model: str) -> Path:
    return servers_dir() / f"{model}.json"


def lock_path(model: str) -> Path:
    return servers_dir() / f"{model}.lock"


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of *pid* (clock ticks since boot), or None if gone, a zombie, or no /proc."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return -1 if _kill0(pid) else None
    fields = data[data.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie nobody reaped yet still answers kill(0); it is dead to us
        return None
    return int(fields[19])


def _kill0(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_alive(pid: int, start: int | None = None) -> bool:
    """Alive and, when *start* is known, the same process (pids get reused)."""
    if not Path("/proc").is_dir():
        return _kill0(pid)
    now = proc_start_time(pid)
    if now is None:
        return False
    return start is None or start == -1 or now == -1 or now == start


def is_supervisor(pid: int) -> bool:
    try:
        return SUPERVISOR_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def read_registry(model: str) -> dict[str, Any] | None:
    try:
        data = json.loads(registry_path(model).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def write_registry(model: str, data: dict[str, Any]) -> None:
    """Atomic replace, so the supervisor (reading without the lock) never sees half a file."""
    path = registry_path(model)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the API key
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def live_leases(data: dict[str, Any]) -> list[list[int]]:
    leases = data.get("leases") or []
    return [[int(p), int(s)] for p, s in leases if pid_alive(int(p), int(s))]


def add_lease(data: dict[str, Any], pid: int) -> dict[str, Any]:
    start = proc_start_time(pid)
    leases = [lease for lease in live_leases(data) if lease[0] != pid]
    leases.append([pid, -1 if start is None else start])
    return {**data, "leases": leases}


def health(port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """The supervisor's health reply, or None. Plain http.client: proxies in the env must not apply."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", HEALTH_PATH)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        data = json.loads(body)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()
