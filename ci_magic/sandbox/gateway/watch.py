"""Deletes a gateway sandbox's kernels when the process that created them dies (a script; stdlib only, since it
runs without site-packages).

Started by :class:`~ci_magic.sandbox.gateway.GatewaySandbox` as ``python -I -S watch.py`` in its own
session. Its stdin carries JSON lines from the owner: first ``{"pid", "url", "token", "scratch"}``, then ``{"add": id}``,
``{"remove": id}`` and finally ``{"bye": true}`` when the owner closed the sandbox itself. It waits on a pidfd of
the owner and on that pipe; when the owner dies (even by SIGKILL: the kernel closes the pipe and the pidfd
becomes readable) it deletes every kernel it was told about through the gateway's REST API, and the owner's
scratch folder, then exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

DELETE_TRIES = 5
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as the owner's REST calls go


class Watcher:
    """The owner's side: starts the watcher and tells it which kernels to delete should we die."""

    def __init__(self, url: str, token: str | None, scratch: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the user's terminal does not reach it
        )
        # The token travels on the pipe, never on a command line that other users can read.
        self._tell({"pid": os.getpid(), "url": url, "token": token, "scratch": scratch})

    def _tell(self, line: dict[str, Any]) -> None:
        stdin = self._process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError, ValueError):  # it is gone: nothing to tell
                stdin.write(json.dumps(line).encode() + b"\n")
                stdin.flush()

    def changed(self, old: str | None, new: str | None) -> None:
        """The owner's kernel on the gateway changed from ``old`` to ``new`` (either may be None)."""
        if old:
            self._tell({"remove": old})
        if new:
            self._tell({"add": new})

    def close(self) -> None:
        """The owner deleted its kernels itself: the watcher leaves without doing anything."""
        self._tell({"bye": True})
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def delete(url: str, token: str | None, kernel_id: str) -> None:
    headers = {"Authorization": f"token {token}"} if token else {}
    for attempt in range(DELETE_TRIES):
        request = urllib.request.Request(f"{url}/api/kernels/{kernel_id}", method="DELETE", headers=headers)
        try:
            with _DIRECT.open(request, timeout=30):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return  # already gone
        except OSError:
            pass
        time.sleep(0.5 * (attempt + 1))


def apply(line: bytes, kernels: set[str]) -> bool:
    """One instruction from the owner; True when the owner said goodbye."""
    try:
        doc: Any = json.loads(line)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    if isinstance(doc.get("add"), str):
        kernels.add(doc["add"])
    if isinstance(doc.get("remove"), str):
        kernels.discard(doc["remove"])
    return doc.get("bye") is True


def main() -> int:
    stdin = sys.stdin.buffer.fileno()
    pending = b""
    while b"\n" not in pending:  # read the fd itself: a buffered readline could swallow later lines
        chunk = os.read(stdin, 65536)
        if not chunk:
            return 1
        pending += chunk
    first, pending = pending.split(b"\n", 1)
    config = json.loads(first)
    owner, url, token = int(config["pid"]), str(config["url"]), config.get("token")
    kernels: set[str] = set()
    try:
        pidfd: int | None = os.pidfd_open(owner)
    except ProcessLookupError:
        pidfd = None  # already gone: read what it managed to tell us, then clean up
    except (AttributeError, OSError):
        pidfd = -1  # no pidfds here: the pipe's end of file alone tells us
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    if pidfd is not None and pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    *lines, pending = pending.split(b"\n")
    if any(apply(line, kernels) for line in lines):
        return 0
    owner_alive = pidfd is not None
    while owner_alive:
        for fd, _ in poller.poll():
            if fd == pidfd:
                owner_alive = False  # the owner exited: its last lines, if any, are already in the pipe
                continue
            chunk = os.read(stdin, 65536)
            if not chunk:
                owner_alive = False
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if any(apply(line, kernels) for line in lines):
                return 0
    os.set_blocking(stdin, False)
    try:
        while chunk := os.read(stdin, 65536):
            pending += chunk
    except OSError:
        pass
    for line in pending.split(b"\n"):
        if apply(line, kernels):
            return 0
    for kernel_id in sorted(kernels):
        delete(url, token, kernel_id)
    scratch = config.get("scratch")
    if isinstance(scratch, str) and os.path.basename(scratch).startswith("ci_magic-gw-"):
        shutil.rmtree(scratch, ignore_errors=True)  # the owner's private folder (frames on their way)
    return 0


if __name__ == "__main__":
    sys.exit(main())
