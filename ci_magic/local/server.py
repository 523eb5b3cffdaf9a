"""Start, find, share and stop the local llama-cpp-python server.

One server per model, shared by every notebook of the user. Its registry file
(``<cache>/servers/<model>.json``) records pid, port, API key and the "leases": the pids of the
processes using it. The server runs :mod:`ci_magic.local.supervisor`, which exits when idle or when
every lease holder has died, so nothing outlives its users for long. All registry changes happen
under an ``flock`` so concurrent notebooks neither start two servers nor race a shutdown.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import ProviderConfigError, ProviderTimeout, ProviderUnreachable, UsageError
from ..core.settings import is_secret_name
from .assemble import file_lock
from .registry import (
    API_KEY_ENV,
    SUPERVISOR_MODULE,
    add_lease,
    health,
    is_supervisor,
    live_leases,
    lock_path,
    pid_alive,
    proc_start_time,
    read_registry,
    registry_path,
    servers_dir,
    write_registry,
)

IDLE_ENV = "CI_MAGIC_SERVER_IDLE"  # minutes
POLL_ENV = "CI_MAGIC_SERVER_POLL"  # seconds between the supervisor's lease/idle checks
START_TIMEOUT_ENV = "CI_MAGIC_SERVER_START_TIMEOUT"  # seconds
DEFAULT_N_CTX = 8192
RUNTIME_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)


@dataclass(frozen=True)
class ServerInfo:
    model: str
    pid: int
    port: int
    gguf: str
    api_key: str
    log: str
    leases: int = 0  # live lease holders
    healthy: bool = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise UsageError(f"{name} must be a number, got {raw!r}.") from None


def _healthy(data: dict[str, Any]) -> bool:
    reply = health(int(data["port"]))
    return bool(reply and reply.get("pid") == data["pid"] and reply.get("model") == data["model"])


def _info(data: dict[str, Any], *, healthy: bool = True) -> ServerInfo:
    return ServerInfo(
        model=data["model"],
        pid=data["pid"],
        port=data["port"],
        gguf=data["gguf"],
        api_key=data.get("api_key", ""),
        log=data.get("log", ""),
        leases=len(live_leases(data)),
        healthy=healthy,
    )


def _bind(port: int | None) -> socket.socket:
    """Bound, not listening: the port is ours at once, yet connections are refused until uvicorn serves."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port or 0))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot use port {port} on 127.0.0.1 for the local model server: {exc}.") from exc
    return sock


def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's env without secrets: the server must never see the user's hosted-API keys."""
    env = {k: v for k, v in os.environ.items() if not is_secret_name(k)}
    env.update(extra or {})
    return env


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


def _spawn(
    model: str, gguf: Path, sock: socket.socket, api_key: str, log: Path, n_ctx: int, idle_min: float | None
) -> int:
    idle_s = (idle_min if idle_min is not None else _env_float(IDLE_ENV, 30.0)) * 60
    poll_s = _env_float(POLL_ENV, 5.0)
    threads = max(1, min(os.cpu_count() or 2, 8))
    argv = [
        sys.executable, "-m", SUPERVISOR_MODULE,
        "--gguf", str(gguf), "--alias", model, "--fd", str(sock.fileno()),
        "--registry", str(registry_path(model)), "--lock", str(lock_path(model)),
        "--log", str(log), "--idle", str(idle_s), "--poll", str(poll_s),
        "--n-ctx", str(n_ctx), "--threads", str(threads), "--daemon",
    ]  # fmt: skip
    # The launcher forks the real server and exits at once, printing its pid: we reap the launcher
    # here and the server is nobody's child in this process (no zombie, no ResourceWarning), and
    # start_new_session keeps a notebook interrupt (SIGINT to the kernel's group) away from it.
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=scrubbed_env({API_KEY_ENV: api_key}),
        pass_fds=(sock.fileno(),),
        start_new_session=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise ProviderUnreachable(
            f"could not launch the local model server ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return int(proc.stdout.strip())


def _wait_healthy(data: dict[str, Any], timeout: float) -> None:
    pid, log = data["pid"], Path(data["log"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, data["pid_start"]):
            raise ProviderUnreachable(
                f"the local model server for {data['model']!r} exited while starting. Log ({log}):\n"
                + _log_tail(log)
            )
        if _healthy(data):
            return
        time.sleep(0.2)
    _terminate(pid, data["pid_start"])
    raise ProviderTimeout(
        f"the local model server for {data['model']!r} was not ready after {timeout:.0f} s "
        f"(raise {START_TIMEOUT_ENV} on a slow machine). Log ({log}):\n" + _log_tail(log)
    )


def _terminate(pid: int, start: int | None, grace: float = 10.0) -> None:
    if not pid_alive(pid, start):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid, start):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pid_alive(pid, start):
        time.sleep(0.05)


def _check_runtime() -> None:
    """Fail here, with the fix, rather than as a traceback in the server log."""
    missing = [m for m in RUNTIME_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ProviderConfigError(
            f"The local model server needs llama-cpp-python[server] (missing: {', '.join(missing)}). "
            'Install it with\n\n    pip install "llama-cpp-python[server]>=0.3,<0.4"\n\n'
            "(it compiles llama.cpp; if the result crashes on your CPU, reinstall with "
            'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" and --no-cache-dir), '
            "or set OPENAI_BASE_URL / OPENAI_API_KEY to use a hosted model."
        )


def ensure_server(
    model: str,
    gguf: Path,
    *,
    port: int | None = None,
    lease: bool = True,
    n_ctx: int = DEFAULT_N_CTX,
    idle_minutes: float | None = None,
    start_timeout: float | None = None,
) -> ServerInfo:
    """A healthy server for *model*, reused if one runs, started otherwise.

    With ``lease`` the calling process registers as a user: the server stops once all users are gone.
    ``idle_minutes`` (default ``$CI_MAGIC_SERVER_IDLE`` or 30; 0 = never) applies only to a new server.
    """
    timeout = start_timeout if start_timeout is not None else _env_float(START_TIMEOUT_ENV, 180.0)
    me = os.getpid()
    waiting = f"Waiting for another process starting the local {model} server ..."
    with file_lock(lock_path(model), waiting_message=waiting):
        data = read_registry(model)
        if data and pid_alive(data["pid"], data.get("pid_start")):
            reusable = data.get("gguf") == str(gguf) and _healthy(data)
            if reusable and port and port != data["port"]:
                raise UsageError(
                    f"the local server for {model!r} already runs on port {data['port']}; "
                    "stop it first (ci-magic serve --stop) to use another port."
                )
            if reusable:
                if lease:
                    data = add_lease(data, me)
                    write_registry(model, data)
                return _info(data)
            if is_supervisor(data["pid"]):  # wedged, or serving another file under this name
                _terminate(data["pid"], data.get("pid_start"))
        registry_path(model).unlink(missing_ok=True)

        _check_runtime()  # only now: reusing a running server needs no llama_cpp in this environment
        log = servers_dir() / f"{model}.log"
        api_key = secrets.token_urlsafe(24)
        sock = _bind(port)
        try:
            pid = _spawn(model, gguf, sock, api_key, log, n_ctx, idle_minutes)
            bound_port = sock.getsockname()[1]
        finally:
            sock.close()  # the server holds its own copy of the socket
        start = proc_start_time(pid)
        data = {
            "model": model,
            "pid": pid,
            "pid_start": -1 if start is None else start,
            "port": bound_port,
            "gguf": str(gguf),
            "api_key": api_key,
            "log": str(log),
            "started_at": time.time(),
            "leases": [],
        }
        if lease:
            data = add_lease(data, me)
        write_registry(model, data)
        try:
            _wait_healthy(data, timeout)
        except BaseException:
            registry_path(model).unlink(missing_ok=True)
            _terminate(pid, data["pid_start"])
            raise
        return _info(data)


def _models_with_registry() -> list[str]:
    return sorted(p.stem for p in servers_dir().glob("*.json"))


def stop(model: str | None = None) -> list[str]:
    """Stop the server for *model* (every server if None); returns the models whose server was stopped."""
    stopped = []
    for name in [model] if model else _models_with_registry():
        with file_lock(lock_path(name)):
            data = read_registry(name)
            if data is None:
                continue
            registry_path(name).unlink(missing_ok=True)
            if pid_alive(data["pid"], data.get("pid_start")):
                _terminate(data["pid"], data.get("pid_start"))
                stopped.append(name)
    return stopped


def status() -> list[ServerInfo]:
    """Every registered server, with live lease count and health; dead entries are cleaned up."""
    found = []
    for name in _models_with_registry():
        data = read_registry(name)
        if data is None:
            continue
        if not pid_alive(data["pid"], data.get("pid_start")):
            with file_lock(lock_path(name)):
                again = read_registry(name)
                if again and again["pid"] == data["pid"]:
                    registry_path(name).unlink(missing_ok=True)
            continue
        found.append(_info(data, healthy=_healthy(data)))
    return found


def release(model: str, pid: int | None = None) -> None:
    """Drop a lease early (the supervisor also notices dead lease holders by itself)."""
    who = pid or os.getpid()
    with file_lock(lock_path(model)):
        data = read_registry(model)
        if data is not None:
            data["leases"] = [lease for lease in live_leases(data) if lease[0] != who]
            write_registry(model, data)
