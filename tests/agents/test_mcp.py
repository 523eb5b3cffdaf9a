"""``ci-magic mcp`` driven by the MCP SDK's own clients (stdio and streamable HTTP) against the fake model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import ROOT, fenced

from ci_magic.providers.fake import FakeModelServer

mcp = pytest.importorskip("mcp")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

SECRET = "sk-test-secret-never-in-the-sandbox"
CHART = "import matplotlib.pyplot as plt\nsales.revenue.plot()\nplt.show()\nprint('charted')"


def environment(fake: FakeModelServer, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    env.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY=SECRET, CI_MAGIC_ANSWER_IN_WORDS="0", **more)
    return env


def texts(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "sales.csv").write_bytes((ROOT / "notebooks" / "sales.csv").read_bytes())
    return tmp_path


def test_every_tool_round_trips_over_stdio_and_the_code_is_contained(
    fake: FakeModelServer, folder: Path
) -> None:
    fake.add(fenced(CHART))
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ci_magic.cli", "mcp", "--data", "sales=sales.csv"],
        env=environment(fake),
        cwd=str(folder),
    )

    async def session() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with Client(params, read_timeout_seconds=120) as client:
            seen["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
            seen["describe"] = texts(await client.call_tool("describe_data", {}))
            seen["ask"] = await client.call_tool("ask", {"question": "Chart the revenue"})
            await client.call_tool("run_python", {"code": "x = 41"})
            seen["persist"] = texts(await client.call_tool("run_python", {"code": "print(x + 1)"}))
            write = "sales.head(2).to_csv('out.csv', index=False)\nprint('written')"
            seen["file1"] = texts(await client.call_tool("run_python", {"code": write}))
            seen["file2"] = texts(await client.call_tool("run_python", {"code": write}))
            hostile = (
                "import os, socket\n"
                "print('key:', os.environ.get('OPENAI_API_KEY'))\n"
                "try:\n    open('/tmp/ci-magic-mcp-escape', 'w').write('x'); print('outside: written')\n"
                "except OSError as e:\n    print('outside: refused')\n"
                f"s = socket.socket()\ns.settimeout(2)\n"
                f"try:\n    s.connect(('127.0.0.1', {fake.port})); print('network: reached')\n"
                "except OSError:\n    print('network: refused')"
            )
            seen["hostile"] = texts(await client.call_tool("run_python", {"code": hostile}))
            seen["export"] = texts(await client.call_tool("export_notebook", {"name": "agent.ipynb"}))
            resources = await client.read_resource("ci-magic://session.ipynb")
            seen["notebook"] = json.loads(resources.contents[0].text)
            seen["files"] = (await client.read_resource("ci-magic://files")).contents[0].text
            seen["bad"] = await client.call_tool("run_python", {"code": "   "})
            seen["reset"] = texts(await client.call_tool("reset", {}))
            seen["after"] = texts(await client.call_tool("run_python", {"code": "print('x' in dir())"}))
        return seen

    seen = anyio.run(session)
    assert seen["tools"] == ["ask", "describe_data", "export_notebook", "reset", "run_python"]
    assert "sales: pandas DataFrame" in seen["describe"] and "'revenue'" in seen["describe"]
    ask = seen["ask"]
    assert not ask.is_error and "charted" in texts(ask) and "sales.revenue.plot()" in texts(ask)
    assert any(
        c.type == "image" and c.mime_type == "image/png" for c in ask.content
    )  # the chart, as an image
    assert "42" in seen["persist"]
    assert (
        "saved as out.csv" in seen["file1"] and "saved as out (2).csv" in seen["file2"]
    )  # never overwritten
    assert (folder / "out.csv").is_file() and (folder / "out (2).csv").is_file()
    hostile = seen["hostile"]
    assert "key: None" in hostile and "outside: refused" in hostile and "network: refused" in hostile
    assert SECRET not in hostile and not Path("/tmp/ci-magic-mcp-escape").exists()
    assert "agent.ipynb" in seen["export"] and (folder / "agent.ipynb").is_file()
    sources = ["".join(c["source"]) for c in seen["notebook"]["cells"]]  # nbformat writes lists of lines
    assert any("sales.revenue.plot()" in src for src in sources) and any("x = 41" in src for src in sources)
    assert "out (2).csv" in seen["files"].splitlines()
    assert seen["bad"].is_error and "needs code" in texts(seen["bad"])  # a clear error; the session goes on
    assert "reset" in seen["reset"] and "False" in seen["after"]
    # Every call is traced with its id: the ask as an ask, each run_python as an agent_run span.
    traced = [
        json.loads(line)
        for file in Path(os.environ["CI_MAGIC_TRACE_DIR"]).glob("*.jsonl")
        for line in file.read_text().splitlines()
    ]
    call_id = seen["persist"].rsplit("call ", 1)[1].split()[0]
    assert any(s["name"] == "agent_run" and s["ask_id"] == call_id for s in traced)
    assert any(s["name"] == "ask" and s["attributes"].get("question") == "Chart the revenue" for s in traced)


def test_the_export_is_a_notebook_verify_accepts(fake: FakeModelServer, folder: Path) -> None:
    from ci_magic.agents.session import AgentSession
    from ci_magic.cli_io import load_table
    from ci_magic.core.settings import Settings
    from ci_magic.reproduce.verify import verify

    settings = Settings(model="fake-model", base_url=fake.base_url, api_key="k", answer_in_words=False)
    fake.add(fenced("total = sales.revenue.sum()\nprint(round(total, 2))"))
    session = AgentSession(
        settings, folder, dict([load_table(f"sales={folder / 'sales.csv'}")]), {"sales": folder / "sales.csv"}
    )
    try:
        assert session.ask("Total revenue?").ok
        assert session.run("print(sales.region.nunique())").ok
        path = session.export("session.ipynb")
    finally:
        session.close()
    mismatches, _notes = verify(path)
    assert mismatches == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server(fake: FakeModelServer, folder: Path) -> Iterator[tuple[str, str]]:
    port, token = free_port(), "test-token-123"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ci_magic.cli",
            "mcp",
            "--http",
            "--port",
            str(port),
            "--data",
            "sales=sales.csv",
        ],
        env=environment(fake, CI_MAGIC_MCP_TOKEN=token),
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}/mcp", token
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_http_needs_the_token_and_answers_malformed_requests_with_a_protocol_error(
    http_server: tuple[str, str],
) -> None:
    import httpx2

    url, token = http_server
    hello = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    kinds = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    assert post(url, hello, kinds)[0] == 401
    assert post(url, hello, {**kinds, "authorization": "Bearer wrong"})[0] == 401
    status, _ = post(url, b"{not json", {**kinds, "authorization": f"Bearer {token}"})
    assert 400 <= status < 500  # a protocol error, not a crash

    async def session() -> str:
        headers = {"authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=120) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            return texts(await client.call_tool("describe_data", {}))

    assert "sales: pandas DataFrame" in anyio.run(session)
