"""``ci-magic acp`` hosted by the ACP SDK's own client over stdio, against the fake model."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, fenced

from ci_magic.providers.fake import FakeModelServer, Turn

acp = pytest.importorskip("acp")
from acp import PROTOCOL_VERSION, text_block  # noqa: E402
from acp.stdio import spawn_agent_process  # noqa: E402


class Host:
    """The client side: records every session update the agent sends."""

    def __init__(self) -> None:
        self.updates: list[Any] = []

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        self.updates.append(update)

    async def request_permission(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("ci_magic asks no permission: its code runs in the sandbox")


def kinds(host: Host) -> list[str]:
    return [u.session_update for u in host.updates]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "sales.csv").write_bytes((ROOT / "notebooks" / "sales.csv").read_bytes())
    return tmp_path


def environment(fake: FakeModelServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    env.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="k", CI_MAGIC_ANSWER_IN_WORDS="0")
    return env


async def hosted(
    fake: FakeModelServer, folder: Path, host: Host, prompts: list[str], cancel_after: float = 0
) -> list[Any]:
    args = ["-m", "ci_magic.cli", "acp", "--data", "sales=sales.csv"]
    async with spawn_agent_process(host, sys.executable, *args, env=environment(fake), cwd=folder) as (
        conn,
        _proc,
    ):
        await conn.initialize(protocol_version=PROTOCOL_VERSION)
        session = await conn.new_session(cwd=str(folder))
        answers = []
        for prompt in prompts:
            running = asyncio.ensure_future(
                conn.prompt(session_id=session.session_id, prompt=[text_block(prompt)])
            )
            if cancel_after:
                await asyncio.sleep(cancel_after)
                await conn.cancel(session_id=session.session_id)
            answers.append(await asyncio.wait_for(running, 120))
        return answers


def test_a_prompt_streams_its_attempts_as_tool_calls_and_ends_with_the_answer(
    fake: FakeModelServer, folder: Path
) -> None:
    fake.add(
        fenced("x = sales.revenue.sum() / 0\nprint(x.bogus)"), fenced("print(round(sales.revenue.sum(), 2))")
    )
    host = Host()
    (answer,) = asyncio.run(hosted(fake, folder, host, ["Total revenue?"]))
    assert answer.stop_reason == "end_turn"
    calls = [u for u in host.updates if u.session_update == "tool_call"]
    assert [c.kind for c in calls] == ["execute", "execute"] and "sales.revenue.sum()" in str(
        calls[1].content
    )
    finished = [u for u in host.updates if u.session_update == "tool_call_update" and u.status is not None]
    assert [u.status for u in finished] == ["failed", "completed"]
    message = [u for u in host.updates if u.session_update == "agent_message_chunk"]
    assert message and "Output:" in message[-1].content.text
    assert kinds(host).index("tool_call") < kinds(host).index("agent_message_chunk")


def test_cancel_stops_a_running_prompt(fake: FakeModelServer, folder: Path) -> None:
    fake.add(Turn(fenced("import time\nfor i in range(100):\n    print(i, flush=True)\n    time.sleep(0.5)")))
    host = Host()
    (answer,) = asyncio.run(hosted(fake, folder, host, ["Count slowly"], cancel_after=6.0))
    assert answer.stop_reason == "cancelled"
