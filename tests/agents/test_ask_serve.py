"""``%ask_serve``: an MCP client (the SDK's own, over streamable HTTP) works on a live notebook's session — its
frames, its sandbox (a real kernel) — and what it runs arrives in the notebook as cells marked with the agent."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import RecordingComm, connect, fenced
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from ci_magic.extension import session_of
from ci_magic.notebook.bridge import Bridge
from ci_magic.providers.fake import FakeModelServer

pytest.importorskip("mcp")
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation

SERVE_CELL = "serve-cell-id"


def texts(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


@pytest.fixture
def served(shell: InteractiveShell) -> Iterator[tuple[str, str, RecordingComm]]:
    """The notebook's session served by ``%ask_serve`` from a cell, with one page connected."""
    session = session_of(shell)
    assert session is not None
    bridge = Bridge(shell, session)
    bridge.attach()
    comm = connect(bridge)
    with capture_output() as cap:
        shell.run_cell("%ask_serve", cell_id=SERVE_CELL)
    found = re.search(r"at (http://127\.0\.0\.1:\d+/mcp)", cap.stdout)
    token = re.search(r"token: (\S+)", cap.stdout)
    assert found and token, cap.stdout + cap.stderr
    try:
        yield found.group(1), token.group(1), comm
    finally:
        shell.run_cell("%ask_serve stop")
        bridge.close()


def call(url: str, token: str, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
    async def session() -> list[Any]:
        async with (
            httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=120) as http,
            Client(
                streamable_http_client(url, http_client=http),
                client_info=Implementation(name="Test Agent <script>", version="1"),
            ) as client,
        ):
            return [await client.call_tool(name, args) for name, args in calls]

    return anyio.run(session)


def test_an_agent_works_on_the_live_notebook_and_its_calls_become_cells(
    shell: InteractiveShell, served: tuple[str, str, RecordingComm], fake: FakeModelServer
) -> None:
    url, token, comm = served
    shell.run_cell("sales.loc[0, 'revenue'] = 1234.5")  # only this notebook's frame has this value now
    fake.add(fenced("print('ask total', int(sales.revenue.sum()))"))
    described, ran, hostile, asked = call(
        url,
        token,
        ("describe_data", {}),
        ("run_python", {"code": "print('total', sales.revenue.sum())\nagent_var = 1"}),
        (
            "run_python",
            {
                "code": "import os\nprint('key:', os.environ.get('OPENAI_API_KEY'))\n"
                "try:\n    open('/tmp/ci-magic-live-escape', 'w'); print('outside: written')\n"
                "except OSError:\n    print('outside: refused')"
            },
        ),
        ("ask", {"question": "What is the total revenue?"}),
    )
    assert "sales: pandas DataFrame" in texts(described)
    assert "total 1284.5" in texts(ran)  # 1234.5 + 20 + 30: the notebook's live frame
    assert "key: None" in texts(hostile) and "outside: refused" in texts(hostile)
    assert not Path("/tmp/ci-magic-live-escape").exists()
    assert "ask total 1284" in texts(asked)
    assert "agent_var" not in shell.user_ns  # the agent's code never writes into the user's namespace

    inserts = comm.of_type("insert")
    assert [len(m["cells"]) for m in inserts] == [1, 1, 2]  # two runs, then an ask's code and record
    assert all(m["append"] is True and m["anchor_cell_id"] == SERVE_CELL for m in inserts)
    first = inserts[0]["cells"][0]
    meta = first["metadata"]["ci_magic"]
    assert meta["agent"] == "Test Agent script" and meta["tool"] == "run_python"  # no markup in the name
    assert meta["appended_to"] == SERVE_CELL and meta["call_id"]
    assert first["source"].startswith("%%sandbox  # run by the agent Test Agent script (MCP run_python")
    assert "total 1284.5" in "".join(o.get("text", "") for o in first["outputs"])
    ask_meta = inserts[2]["cells"][0]["metadata"]["ci_magic"]
    assert ask_meta["tool"] == "ask" and ask_meta["anchor_cell_id"] is None


def test_stopping_ends_access_and_the_token_is_required(
    shell: InteractiveShell, served: tuple[str, str, RecordingComm]
) -> None:
    url, _, _ = served
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 in its own error types
        call(url, "wrong-token", ("describe_data", {}))
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with capture_output() as cap:
        shell.run_cell("%ask_serve status")
    assert url in cap.stdout
    with capture_output() as cap:
        shell.run_cell("%ask_serve stop")
    assert "stopped" in cap.stdout
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_bad_arguments_get_one_clear_paragraph(shell: InteractiveShell) -> None:
    with capture_output() as cap:
        result = shell.run_cell("%ask_serve --host 0.0.0.0")
    assert result.error_in_exec is not None
    assert "loopback only" in cap.stdout + cap.stderr
    with capture_output() as cap:
        shell.run_cell("%ask_serve --port nope")
    assert "%ask_serve" in cap.stdout + cap.stderr and "Traceback" not in cap.stdout + cap.stderr
