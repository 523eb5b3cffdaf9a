"""A Jupyter Enterprise Gateway on loopback with local kernels: for tests, benchmarks and trying the gateway
sandbox on one machine (teams run it on Kubernetes, see docs/deploy.md).

Enterprise Gateway 3.3 pins ``jupyter_client<7`` and ``jupyter_server<2``, which the notebook side of ci_magic
cannot live with, so it runs from its own environment. :func:`find_gateway` looks for its
``jupyter-enterprisegateway`` in ``CI_MAGIC_GATEWAY_BIN``, beside this Python, in ``<this prefix>/gateway/bin``
(where ``./dev`` installs it) and on ``PATH``. Kernels run *this* Python (``ipykernel`` with pandas and
pyarrow) through a kernelspec written into the gateway's private folder. The gateway gets a clean environment:
nothing of ours (no keys) reaches it or its kernels.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ...core.errors import SandboxError

KERNEL_NAME = "ci_magic_python"
GATEWAY_VERSION = "3.3.0"
LOCAL_PROXY = "enterprise_gateway.services.processproxies.processproxy.LocalProcessProxy"
EXECUTABLE = "jupyter-enterprisegateway"


def gateway_venv() -> Path:
    """Where ``ci-magic gateway install`` (and ``./dev``) put Enterprise Gateway: beside this environment."""
    return Path(sys.prefix) / "gateway"


def find_gateway() -> str | None:
    """The ``jupyter-enterprisegateway`` executable, or None."""
    configured = os.environ.get("CI_MAGIC_GATEWAY_BIN")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    here = Path(sys.executable).parent
    for candidate in (here / EXECUTABLE, gateway_venv() / "bin" / EXECUTABLE):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(EXECUTABLE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalGateway:
    """A running gateway: its URL and token, its process (for memory figures), and how to stop it."""

    url: str
    token: str
    process: subprocess.Popen[bytes]
    folder: Path
    kernel_name: str = KERNEL_NAME
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "gateway.log").read_bytes()[-chars:].decode(errors="replace")
        return ""

    def stop(self) -> None:
        """Stop the gateway (it shuts its kernels down first), then remove its folder."""
        if self.process.poll() is None:
            # Its own clean shutdown, kernels first. SIGTERM, not SIGINT: a gateway started from a background job
            # inherits SIGINT ignored.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LocalGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_local_gateway(
    port: int | None = None, token: str | None = None, *, executable: str | None = None, timeout: float = 60.0
) -> LocalGateway:
    """Start Enterprise Gateway on 127.0.0.1 with a local-process kernelspec running this Python.

    The command (as the tests and benchmarks run it)::

        jupyter-enterprisegateway --ip=127.0.0.1 --port=PORT --EnterpriseGatewayApp.auth_token=TOKEN
            --EnterpriseGatewayApp.unauthorized_users=nobody --EnterpriseGatewayApp.list_kernels=True
            --EnterpriseGatewayApp.default_kernel_name=ci_magic_python

    ``unauthorized_users`` defaults to ``{'root'}``; replacing it lets root (as here) start kernels.
    """
    binary = executable or find_gateway()
    if binary is None:
        raise SandboxError(
            "Jupyter Enterprise Gateway is not installed. Install it into its own environment (it pins older "
            "Jupyter libraries): ci-magic gateway install, or set CI_MAGIC_GATEWAY_BIN to its "
            "jupyter-enterprisegateway."
        )
    port = port or free_port()
    token = token or secrets.token_hex(16)
    folder = Path(tempfile.mkdtemp(prefix="ci_magic-gateway-"))
    spec_dir = folder / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (folder / "home").mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ci_magic sandbox (local process)",
        "language": "python",
        "env": {
            "HOME": str(folder / "home"),
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        },
        "metadata": {"process_proxy": {"class_name": LOCAL_PROXY}},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    env = {
        "PATH": f"{Path(binary).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(folder / "home"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "JUPYTER_PATH": str(folder),
        "JUPYTER_DATA_DIR": str(folder / "data"),
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
        "JUPYTER_CONFIG_DIR": str(folder / "config"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    args = [
        binary,
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port_retries=0",
        f"--EnterpriseGatewayApp.auth_token={token}",
        "--EnterpriseGatewayApp.unauthorized_users=nobody",
        "--EnterpriseGatewayApp.list_kernels=True",
        f"--EnterpriseGatewayApp.default_kernel_name={KERNEL_NAME}",
    ]
    log = open(folder / "gateway.log", "ab")  # noqa: SIM115 - closed by LocalGateway.stop
    process = subprocess.Popen(
        args, env=env, cwd=folder, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )
    gateway = LocalGateway(f"http://127.0.0.1:{port}", token, process, folder, _log=log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe = urllib.request.Request(f"{gateway.url}/api", headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(probe, timeout=2):
                return gateway
        except (OSError, urllib.error.URLError):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = gateway.log_tail(1500)
                gateway.stop()
                raise SandboxError(
                    f"Enterprise Gateway did not start on port {port}. It said: {tail}"
                ) from None
            time.sleep(0.2)


__all__ = [
    "GATEWAY_VERSION",
    "KERNEL_NAME",
    "LocalGateway",
    "find_gateway",
    "free_port",
    "gateway_venv",
    "start_local_gateway",
]
