"""The kernel side of the JupyterLab extension: protocol v1 over a comm.

Most tests drive :class:`ci_magic.notebook.bridge.Bridge` in a real IPython shell with a recording comm (every message
goes through JSON, as on the wire). The last ones start a real ipykernel and speak to it as JupyterLab does.
"""

from __future__ import annotations

import os
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RecordingComm, connect, fenced
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from ci_magic.extension import session_of
from ci_magic.notebook.bridge import (
    FRONTEND_MESSAGES,
    KERNEL_MESSAGES,
    PROTOCOL_VERSION,
    Bridge,
    install,
)
from ci_magic.notebook.session import NotebookSession
from ci_magic.providers.fake import FakeModelServer
from ci_magic.sandbox.fake import ScriptedExecutor, Step, error, ok

PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\nprint('plotted')"
#: The image output a kernel sends for PLOT (a 1×1 PNG), for the scripted executor.
PNG = {
    "output_type": "display_data",
    "data": {
        "image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
        "text/plain": "<Figure size 640x480 with 1 Axes>",
    },
    "metadata": {},
}


def session(shell: InteractiveShell) -> NotebookSession:
    found = session_of(shell)
    assert found is not None
    return found


@pytest.fixture
def bridge(scripted_shell: InteractiveShell) -> Iterator[Bridge]:
    b = Bridge(scripted_shell, session(scripted_shell))
    b.attach()
    yield b
    b.close()


def test_terminal_ipython_gets_no_bridge(scripted_shell: InteractiveShell) -> None:
    assert install(scripted_shell, session(scripted_shell)) is None


def test_hello_makes_ask_cells_go_to_the_frontend(
    scripted_shell: InteractiveShell, bridge: Bridge, fake: FakeModelServer, scripted: ScriptedExecutor
) -> None:
    shell = scripted_shell
    scripted.add(Step(ok("plotted\n", outputs=[PNG])))  # what PLOT shows, from the sandbox-side fake
    comm = connect(bridge)
    assert comm.sent[0]["type"] == "ready" and comm.sent[0]["v"] == PROTOCOL_VERSION
    fake.add(fenced(PLOT))
    with capture_output() as cap:
        assert shell.run_cell("%%ask\nPlot it", cell_id="anchor-1").success
    [insert] = comm.of_type("insert")
    assert insert["anchor_cell_id"] == "anchor-1"
    code, record = insert["cells"]
    assert code["cell_type"] == "code" and "plt.plot" in code["source"] and code["execution_count"] is None
    assert any("image/png" in o.get("data", {}) for o in code["outputs"])
    assert record["cell_type"] == "markdown" and "<details>" in record["source"]
    for cell in (code, record):
        meta = cell["metadata"]["ci_magic"]
        assert meta["insertion_id"] == insert["insertion_id"] and meta["anchor_cell_id"] == "anchor-1"
    # Delivered as cells, so the magic itself shows no outputs and offers no next input.
    assert "plotted" not in cap.stdout and shell.rl_next_input is None


def test_events_of_a_cell_ask_are_forwarded_in_order(
    scripted_shell: InteractiveShell, bridge: Bridge, fake: FakeModelServer, scripted: ScriptedExecutor
) -> None:
    shell = scripted_shell
    scripted.add(error("ZeroDivisionError", "division by zero"), "fixed\n", "2\n")
    comm = connect(bridge)
    fake.add(fenced("x = 1/0"), fenced("print('fixed')"))
    with capture_output():
        shell.run_cell("%%ask --attempts 2\nDivide", cell_id="a")
    events = comm.of_type("event")
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "context" and kinds[-1] == "done"
    assert {"model_start", "token", "model_done", "code", "exec_done", "retry"} <= set(kinds)
    assert {e["ask_id"] for e in events} == {events[0]["ask_id"]} and events[0]["origin"] == "cell"
    streamed = "".join(e["data"]["text"] for e in events if e["kind"] == "token" and e["attempt"] == 2)
    assert "print('fixed')" in streamed
    # A second ask gets a new id.
    fake.add(fenced("print(2)"))
    with capture_output():
        shell.run_cell("%%ask\nAgain", cell_id="b")
    assert comm.of_type("event")[-1]["ask_id"] != events[0]["ask_id"]


def test_without_anchor_or_frontend_the_magic_falls_back(
    scripted_shell: InteractiveShell, bridge: Bridge, fake: FakeModelServer, scripted: ScriptedExecutor
) -> None:
    shell = scripted_shell
    scripted.add("no anchor\n", "no frontend\n")
    comm = connect(bridge)
    fake.add(fenced("print('no anchor')"), fenced("print('no frontend')"))
    with capture_output() as cap:
        shell.run_cell("%%ask\nq")  # no cell id: e.g. a console
    assert "no anchor" in cap.stdout and comm.of_type("insert") == []
    comm.frontend_closes()
    assert not bridge.comms
    with capture_output() as cap:
        shell.run_cell("%%ask\nq", cell_id="c")
    assert "no frontend" in cap.stdout and comm.of_type("insert") == []


def test_list_frames_and_exact_context(scripted_shell: InteractiveShell, bridge: Bridge) -> None:
    shell = scripted_shell
    shell.run_cell("s = sales.revenue\nnot_a_frame = 3")
    comm = connect(bridge)
    comm.deliver({"v": 1, "type": "list_frames"})
    assert comm.sent[-1] == {
        "v": 1,
        "type": "frames",
        "frames": [
            {"name": "s", "kind": "Series", "shape": [3]},
            {"name": "sales", "kind": "DataFrame", "shape": [3, 2]},
        ],
    }
    comm.deliver({"v": 1, "type": "context", "frames": ["sales"]})
    reply = comm.sent[-1]
    with capture_output() as cap:
        assert shell.run_cell("%ask --frames sales --context-only").success
    assert reply["type"] == "context" and reply["frames"] == ["sales"] and reply["tokens"] > 0
    assert reply["text"] in cap.stdout  # the preview is exactly what %%ask --context-only shows
    assert "sales: pandas DataFrame" in reply["text"] and "--- system ---" in reply["text"]
    comm.deliver({"v": 1, "type": "context", "frames": ["nosuch"]})
    assert comm.sent[-1]["type"] == "error" and "no variable of that name" in comm.sent[-1]["message"]


def test_panel_ask_streams_events_then_result(
    bridge: Bridge, fake: FakeModelServer, scripted: ScriptedExecutor
) -> None:
    scripted.add(Step(ok("plotted\n", outputs=[PNG])))  # what PLOT shows, from the sandbox-side fake
    comm = connect(bridge)
    fake.add(fenced(PLOT))
    comm.deliver(
        {"v": 1, "type": "ask", "ask_id": "p1", "prompt": "Plot", "frames": ["sales"], "attempts": 1}
    )
    events = comm.of_type("event")
    assert events and {(e["ask_id"], e["origin"]) for e in events} == {("p1", "panel")}
    [result] = comm.of_type("result")
    assert result["ask_id"] == "p1" and result["ok"] is True and result["attempts"] == 1
    assert (
        result["usage"]["total_tokens"]
        == result["usage"]["prompt_tokens"] + result["usage"]["completion_tokens"]
    )
    code, _record = result["cells"]
    assert code["metadata"]["ci_magic"]["anchor_cell_id"] is None
    assert any("image/png" in o.get("data", {}) for o in code["outputs"])
    assert comm.of_type("insert") == []  # the panel's Insert button decides where
    assert "sales: pandas DataFrame" in fake.requests[0]["messages"][-1]["content"]


def test_panel_ask_lists_the_files_the_code_wrote(
    bridge: Bridge, fake: FakeModelServer, scripted: ScriptedExecutor
) -> None:
    scripted.add(Step("", writes={"summary.csv": b"month,revenue\n1,10.0\n"}))
    comm = connect(bridge)
    fake.add(fenced("sales.to_csv('summary.csv', index=False)"))
    comm.deliver(
        {"v": 1, "type": "ask", "ask_id": "p3", "prompt": "Save", "frames": ["sales"], "attempts": 1}
    )
    [result] = comm.of_type("result")
    [file] = result["files"]
    assert file["path"] == "summary.csv" and file["saved_as"] == "summary.csv" and len(file["sha256"]) == 64
    done = [e for e in comm.of_type("event") if e["kind"] == "done"][-1]
    assert done["data"]["files"] == result["files"]


def test_interleaved_tokens_of_samples_are_batched_per_attempt(bridge: Bridge) -> None:
    from ci_magic.core.events import Event, ModelDone, Token

    comm = connect(bridge)
    bridge._flushed = 1e18  # nothing is flushed by time during this test
    for i in range(20):
        bridge.forward_event(Event(Token(f"{i} "), 2 + i % 2, ask_id="a"))
    bridge.forward_event(Event(ModelDone(0, 0, 0.0), 2, ask_id="a"))
    tokens = [e for e in comm.of_type("event") if e["kind"] == "token"]
    assert [(t["attempt"], t["data"]["text"].split()[:2]) for t in tokens] == [
        (2, ["0", "2"]),
        (3, ["1", "3"]),
    ]


def test_panel_ask_errors_are_reported(bridge: Bridge, fake: FakeModelServer) -> None:
    comm = connect(bridge)
    comm.deliver(
        {"v": 1, "type": "ask", "ask_id": "p2", "prompt": "q", "frames": ["nosuch"], "attempts": None}
    )
    assert comm.sent[-1]["type"] == "error" and comm.sent[-1]["ask_id"] == "p2"
    comm.deliver({"v": 1, "type": "ask", "ask_id": "p3", "prompt": "  ", "frames": None, "attempts": None})
    assert comm.sent[-1] == {"v": 1, "type": "error", "ask_id": "p3", "message": comm.sent[-1]["message"]}
    assert "needs a question" in comm.sent[-1]["message"] and fake.requests == []


def test_protocol_mismatch_and_unknown_messages(bridge: Bridge) -> None:
    comm = RecordingComm()
    bridge.on_open(comm, {"content": {"data": {"v": 2, "type": "hello"}}})
    assert comm.sent[-1]["type"] == "error" and "v1" in comm.sent[-1]["message"] and not bridge.comms
    comm.deliver({"v": 1, "type": "list_frames"})
    assert comm.sent[-1]["message"] == "say hello first"
    comm.deliver({"v": 1, "type": "hello"})
    comm.deliver({"v": 1, "type": "frobnicate"})
    assert "unknown message type" in comm.sent[-1]["message"]


def test_protocol_is_declared_once_and_mirrored_by_the_extension() -> None:
    ts = (Path(__file__).resolve().parents[2] / "labextension" / "src" / "protocol.ts").read_text()
    assert f"PROTOCOL_VERSION = {PROTOCOL_VERSION}" in ts
    for kind in {*FRONTEND_MESSAGES, *KERNEL_MESSAGES}:
        assert f"'{kind}'" in ts, kind
    # Every kind of event (one data class each, core/events.py) is one the extension knows.
    from typing import get_args

    from ci_magic.core.events import EventData, EventKind

    assert {c.kind for c in get_args(EventData)} == set(get_args(EventKind))
    for kind in get_args(EventKind):
        assert f"'{kind}'" in ts, kind


# -- a real kernel, spoken to as JupyterLab does ---------------------------------------------------------------


class Frontend:
    def __init__(self, kc: BlockingKernelClient) -> None:
        self.kc = kc
        self.comm_id = uuid.uuid4().hex

    def comm_open(self, data: dict[str, Any]) -> None:
        content = {"comm_id": self.comm_id, "target_name": "ci_magic", "data": data}
        self.kc.shell_channel.send(self.kc.session.msg("comm_open", content))

    def comm_msg(self, data: dict[str, Any]) -> None:
        self.kc.shell_channel.send(self.kc.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data}))

    def execute(self, code: str, cell_id: str) -> None:
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}  # fmt: skip
        self.kc.shell_channel.send(
            self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
        )

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            if predicate(msg):
                return msg
        raise AssertionError("no such iopub message in time")


def comm_data(kind: str) -> Callable[[dict[str, Any]], bool]:
    def match(msg: dict[str, Any]) -> bool:
        data = msg["content"].get("data") or {}
        return msg["msg_type"] in ("comm_msg", "comm_open") and data.get("type") == kind

    return match


@pytest.fixture
def kernel(fake: FakeModelServer, tmp_path: Path) -> Iterator[tuple[KernelManager, Frontend]]:
    env = {
        **os.environ,
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "x",
        "CI_MAGIC_MODEL": "fake-model",
        "CI_MAGIC_ANSWER_IN_WORDS": "0",  # scripts hold the code replies only
    }
    # ipc (ipykernel warns about plain TCP); an absolute path, since the kernel runs in another directory.
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel-ipc"))
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield km, Frontend(kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_real_kernel_announces_then_inserts_below_the_ask_cell(
    kernel: tuple[KernelManager, Frontend], fake: FakeModelServer
) -> None:
    _km, fe = kernel
    fe.execute("%load_ext ci_magic\nimport pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})", "setup")
    announce = fe.wait_for(comm_data("announce"))
    assert announce["content"]["target_name"] == "ci_magic"
    fe.comm_open({"v": 1, "type": "hello"})
    assert fe.wait_for(comm_data("ready"))["content"]["comm_id"] == fe.comm_id
    fake.add(fenced(PLOT))
    fe.execute("%%ask\nPlot a", "the-ask-cell")
    insert = fe.wait_for(comm_data("insert"))["content"]["data"]
    assert insert["anchor_cell_id"] == "the-ask-cell"
    assert any("image/png" in o.get("data", {}) for o in insert["cells"][0]["outputs"])


@pytest.mark.slow
def test_real_kernel_interrupt_cancels_a_panel_ask(
    kernel: tuple[KernelManager, Frontend], fake: FakeModelServer
) -> None:
    km, fe = kernel
    fe.execute("%load_ext ci_magic", "setup")
    fe.wait_for(comm_data("announce"))
    fe.comm_open({"v": 1, "type": "hello"})
    fe.wait_for(comm_data("ready"))
    fake.add({"reply": fenced("print(1)") + " and more words" * 40, "chunk_delay_s": 0.2})
    fe.comm_msg({"v": 1, "type": "ask", "ask_id": "slow", "prompt": "Take your time", "frames": None,
                 "attempts": 1})  # fmt: skip
    fe.wait_for(lambda m: comm_data("event")(m) and m["content"]["data"]["kind"] == "token")
    started = time.monotonic()
    km.interrupt_kernel()
    error = fe.wait_for(comm_data("error"), timeout=20)["content"]["data"]
    assert error["ask_id"] == "slow" and "cancelled" in error["message"]
    assert time.monotonic() - started < 10
    # The kernel is still usable and still bridged.
    fe.comm_msg({"v": 1, "type": "list_frames"})
    assert fe.wait_for(comm_data("frames"))["content"]["data"]["frames"] == []


def test_a_frontend_that_says_hello_later_gets_the_last_asks_from_their_start(
    scripted_shell: InteractiveShell, bridge: Bridge, fake: FakeModelServer, scripted: ScriptedExecutor
) -> None:
    """A page reloaded while an ask ran: its new comm gets the ask's events whole after `ready`."""
    scripted.add(Step("1\n2\n"))
    first = connect(bridge)
    fake.add(fenced("print(1)\nprint(2)"))
    with capture_output():
        scripted_shell.run_cell("%%ask\nCount", cell_id="a")
    later = connect(bridge, "comm-2")
    assert later.sent[0]["type"] == "ready"
    assert later.of_type("event") == first.of_type("event")  # the same messages, in the same order
    kinds = [e["kind"] for e in later.of_type("event")]
    assert kinds[0] == "context" and "output" in kinds and kinds[-1] == "done"
