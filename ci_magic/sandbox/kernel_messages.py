"""The child kernel's messages, read by a parent that trusts none of them.

The client's ZeroMQ sockets cap the size of every message and the iopub queue, so a hostile kernel cannot make
the parent allocate without bound. An execution's output is collected from iopub until the kernel is idle, the
deadline passes, the output floods, or the kernel dies; a message over the cap is dropped by ZeroMQ (with the
ones queued behind it), which is noticed when the reply comes but the idle status never does. Shell replies
are matched to our requests by id; helper results come back as the repr of a JSON string and are decoded
without unpickling anything. How an execution ended becomes an :class:`ExecutionResult` here.
"""

from __future__ import annotations

import ast
import contextlib
import queue
import subprocess
import time
from collections.abc import Callable
from typing import Any

import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import channel_socket_types
from jupyter_client.manager import KernelManager

from ..core import untrusted_json
from ..core.errors import SandboxError
from ..core.results import ExecutionResult
from .outputs import OutputCollector, trim_traceback

#: No single message from the kernel may be larger (ZMQ drops the connection instead of allocating).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
#: Messages queued on the iopub socket before ZeroMQ drops newer ones (with MAX_MESSAGE_BYTES: a bound).
IOPUB_HWM = 128
#: After the execute reply, how long to wait for the idle status before calling the output lost.
LOST_OUTPUT_GRACE_S = 2.0
#: Shell replies kept unasked for at most (only ours are ever asked for).
MAX_WAITING_REPLIES = 16


class _BoundedSockets:
    """Client-side sockets with a message size cap (and a bounded iopub queue), set before they connect."""

    def _create_connected_socket(self, channel: str, identity: bytes | None = None) -> zmq.Socket[Any]:
        url = self._make_url(channel)  # type: ignore[attr-defined]
        sock: zmq.Socket[Any] = self.context.socket(channel_socket_types[channel])  # type: ignore[attr-defined]
        sock.linger = 1000
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        sock.setsockopt(
            zmq.RECONNECT_IVL, 20
        )  # after an oversized message ZeroMQ drops and re-makes the link
        if channel == "iopub":
            sock.setsockopt(zmq.RCVHWM, IOPUB_HWM)
        if identity:
            sock.identity = identity
        sock.connect(url)
        return sock


#: What jupyter_client raises for a message it cannot read (bad JSON, too deep, a wrong signature, missing parts).
_UNREADABLE = (ValueError, TypeError, KeyError, IndexError)


class BoundedClient(_BoundedSockets, BlockingKernelClient):
    """A message the client cannot read comes back as ``{"unreadable": True}`` (a key no real message has at
    its top) rather than as an exception out of the parent's read loop: it answers no request, and an
    execution that meets one on iopub ends as 'garbled'."""

    def get_iopub_msg(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return super().get_iopub_msg(*args, **kwargs)
        except _UNREADABLE:
            return {"unreadable": True}

    def get_shell_msg(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return super().get_shell_msg(*args, **kwargs)
        except _UNREADABLE:
            return {"unreadable": True}


class SandboxKernelManager(_BoundedSockets, KernelManager):
    """Keeps the pre-bound socket files across restarts (the default removes them on every restart), and reads
    the kernel's messages with :mod:`.untrusted_json` (its session is the clients' too)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session.unpack = untrusted_json.loads

    def cleanup_ipc_files(self) -> None:
        return

    def is_alive(self) -> bool:
        # Asked several times per execution: the launcher's Popen answers directly, where the default goes
        # through an asyncio round trip (about 0.05 ms each, a few per cent of a short cell).
        process = getattr(self.provisioner, "process", None)
        if isinstance(process, subprocess.Popen):
            return process.poll() is None
        return bool(super().is_alive())


def take_reply(kc: Any, replies: dict[str, dict[str, Any]], timeout: float) -> None:
    """Move a waiting shell reply into ``replies``, by the id of the request it answers (at most a few kept:
    only ours are ever asked for)."""
    try:
        reply = kc.get_shell_msg(timeout=timeout)
    except queue.Empty:
        return
    parent = reply.get("parent_header", {}).get("msg_id") if isinstance(reply, dict) else None
    if isinstance(parent, str):
        if len(replies) > MAX_WAITING_REPLIES:
            replies.clear()
        replies[parent] = reply


def wait_reply(kc: Any, replies: dict[str, dict[str, Any]], msg_id: str, deadline: float) -> dict[str, Any]:
    """The shell reply to ``msg_id`` (SandboxError when it has not come by ``deadline``)."""
    while True:
        found = replies.pop(msg_id, None)
        if found is not None:
            return found
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxError("The sandbox kernel did not answer a bookkeeping request in time.")
        take_reply(kc, replies, min(remaining, 0.25))


def drain(
    kc: Any,
    replies: dict[str, dict[str, Any]],
    msg_id: str,
    collector: OutputCollector,
    deadline: float,
    *,
    flood: int,
    alive: Callable[[], bool],
) -> str:
    """Collect iopub output for ``msg_id`` until idle ('done'), the deadline ('timeout'), an output flood
    (over ``flood`` bytes: 'flood'), death ('died'), a dropped oversized message ('lost') or a message that
    cannot be read ('garbled'). Shell replies
    that come meanwhile go to ``replies``."""
    replied: float | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        try:
            msg = kc.get_iopub_msg(timeout=min(remaining, 0.1 if collector.live is not None else 0.25))
        except queue.Empty:
            collector.tick()  # what arrived just before the quiet goes out now, not with the next message
            if not alive():
                return "died"
            # The reply came but the idle status never does: a message over MAX_MESSAGE_BYTES was dropped
            # by ZeroMQ (with the ones queued behind it). Do not wait for the time limit.
            if replied is None:
                take_reply(kc, replies, 0)
                if msg_id in replies:
                    replied = time.monotonic()
            elif time.monotonic() - replied > LOST_OUTPUT_GRACE_S:
                return "lost"
            continue
        if not isinstance(msg, dict):
            continue
        if msg.get("unreadable") is True:
            return "garbled"  # forged or mangled by the code (or by copies of the kernel): not trusted again
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        content = msg.get("content")
        if msg.get("msg_type") == "status" and isinstance(content, dict):
            if content.get("execution_state") == "idle":
                return "done"
            continue
        collector.add(msg)
        collector.tick()
        if collector.received > flood:
            return "flood"


def resync(kc: Any, attempts: int = 5) -> bool:
    """After ZeroMQ dropped an oversized message it reconnects the iopub socket, losing what is sent
    meanwhile: wait until a kernel_info round trip shows up on iopub again."""
    for _ in range(attempts):
        probe = kc.kernel_info()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(msg, dict) and msg.get("parent_header", {}).get("msg_id") == probe:
                return True
    return False


def expression_values(reply: dict[str, Any]) -> dict[str, Any]:
    """The user expressions of an execute reply that succeeded, decoded; the others left out."""
    found = {}
    for k, v in (reply.get("content", {}).get("user_expressions") or {}).items():
        if isinstance(v, dict) and v.get("status") == "ok":
            with contextlib.suppress(SandboxError):
                found[k] = decode(v)
    return found


def decode(value: dict[str, Any]) -> Any:
    """A user_expression result whose text/plain is the repr of a JSON string (no pickling anywhere)."""
    try:
        raw = value["data"]["text/plain"]
        if not isinstance(raw, str):
            raise ValueError("not text")
        text = ast.literal_eval(raw)
        if not isinstance(text, str):
            raise ValueError("not a string")
        return untrusted_json.loads(text)
    except (KeyError, TypeError, ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise SandboxError(f"Sandbox bookkeeping returned malformed data ({type(exc).__name__}).") from None


def outcome_result(
    outcome: str,
    collector: OutputCollector,
    started: float,
    *,
    restarted: bool = False,
    timeout: float = 0.0,
    death: str = "",
) -> ExecutionResult:
    """How an execution ended ('ok', 'error', 'timeout', 'flood', 'lost', 'garbled' or 'died'), as the caller
    sees it."""
    outputs = collector.finish()
    seconds = time.monotonic() - started
    if outcome == "ok":
        return ExecutionResult("ok", outputs, seconds=seconds)
    if outcome == "error":
        err = next(o for o in outputs if o["output_type"] == "error")
        return ExecutionResult(
            "error",
            outputs,
            error_name=str(err.get("ename", "Error"))[:200],
            error_value=str(err.get("evalue", ""))[:5000],
            traceback=trim_traceback([str(line) for line in err.get("traceback", [])][:500]),
            seconds=seconds,
        )
    if outcome in ("timeout", "flood"):
        how = " and did not respond to an interrupt, so the sandbox was restarted" if restarted else ""
        message = (
            f"Execution exceeded the {timeout:g} s time limit{how}."
            if outcome == "timeout"
            else f"The code printed far more output than can be shown; it was stopped{how}."
        )
        name = "TimeoutError" if outcome == "timeout" else "OutputFlood"
        return ExecutionResult(
            "timeout", outputs, name, message, message, seconds=seconds, restarted=restarted
        )
    if outcome == "lost":
        message = (
            f"The code produced an output larger than {MAX_MESSAGE_BYTES // 2**20} MB at once, which was "
            "dropped. Show less (e.g. df.head(), a summary, or save it to a file)."
        )
        return ExecutionResult(
            "error", outputs, "OutputTooLarge", message, message, seconds=seconds, restarted=restarted
        )
    if outcome == "garbled":
        how = "it was restarted and its variables are gone" if restarted else "it is no longer trusted"
        message = (
            "The sandbox kernel sent messages that could not be read (forged or mangled, for example by "
            f"replacing the kernel's own machinery or by forked copies of it); {how}."
        )
        return ExecutionResult(
            "died", outputs, "KernelGarbled", message, message, seconds=seconds, restarted=restarted
        )
    message = f"The sandbox kernel died while running the code ({death}); it was restarted."
    return ExecutionResult(
        "died", outputs, "KernelDied", message, message, seconds=seconds, restarted=restarted
    )
