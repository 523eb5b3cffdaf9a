"""An MCP agent for the browser tests: ``python mcp_call.py URL TOKEN TOOL JSON_ARGS`` calls one tool with the
SDK's own client over streamable HTTP and prints the text it got back (exit 1 when the call failed)."""

from __future__ import annotations

import json
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation


async def main(url: str, token: str, tool: str, args: str) -> int:
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=120) as http,
        Client(
            streamable_http_client(url, http_client=http),
            client_info=Implementation(name="browser-test-agent", version="1"),
        ) as client,
    ):
        result = await client.call_tool(tool, json.loads(args))
    print("\n".join(c.text for c in result.content if c.type == "text"))
    return 1 if result.is_error else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, *sys.argv[1:5]))
