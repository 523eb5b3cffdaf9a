"""``ci-magic mcp`` and ``ci-magic acp``: the commands that put ci_magic behind another agent (ci_magic/agents/).
Their SDKs are extras, imported only when a command runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .cli_io import load_table
from .cli_settings import data_option, setting_options, settings_of
from .core.errors import UsageError

EXIT_OK = 0  # as cli.py: these commands end when their client goes away


def register(sub: Any) -> None:
    mcp = sub.add_parser(
        "mcp",
        help="Serve this folder's data and a sandbox to other agents over the Model Context Protocol.",
        description="Tools: describe_data, ask, run_python, reset, export_notebook. stdio by default (what agent "
        "clients launch); --http serves streamable HTTP on loopback with a bearer token. Needs the `mcp` extra: "
        "pip install 'ci-magic[mcp]'.",
    )
    mcp.add_argument("--http", action="store_true", help="Streamable HTTP instead of stdio.")
    mcp.add_argument("--host", default="127.0.0.1", help="With --http: the address (default: loopback only).")
    mcp.add_argument("--port", type=int, default=8765, help="With --http: the port (default: 8765).")
    mcp.set_defaults(func=cmd_mcp)
    acp = sub.add_parser(
        "acp",
        help="Be an Agent Client Protocol agent on stdio: an ACP client (Zed, JetBrains…) asks, ci_magic answers.",
        description="Each prompt is a question about the data in the session's folder (and the --data tables); "
        "attempts stream as tool calls, the answer as the agent's message; cancel stops the ask. Needs the `acp` "
        "extra: pip install 'ci-magic[acp]'.",
    )
    acp.set_defaults(func=cmd_acp)
    for parser in (mcp, acp):
        data_option(parser)
        setting_options(parser)


def tables_of(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Path]]:
    """The ``--data`` tables: the frames, and the file each came from."""
    frames = dict(load_table(spec) for spec in args.data)
    return frames, {spec.partition("=")[0]: Path(spec.partition("=")[2]) for spec in args.data}


def cmd_mcp(args: argparse.Namespace) -> int:
    try:
        from .agents.mcp_server import serve
        from .agents.session import AgentSession
    except ImportError as exc:
        raise UsageError(
            f"ci-magic mcp needs the MCP SDK ({exc.name} is missing): pip install 'ci-magic[mcp]'."
        ) from None
    frames, tables = tables_of(args)
    session = AgentSession(settings_of(args), Path.cwd(), frames, tables)
    try:
        serve(session, http=args.http, host=args.host, port=args.port)
    finally:
        session.close()
    return EXIT_OK


def cmd_acp(args: argparse.Namespace) -> int:
    try:
        from .agents.acp_agent import serve
    except ImportError as exc:
        raise UsageError(
            f"ci-magic acp needs the ACP SDK ({exc.name} is missing): pip install 'ci-magic[acp]'."
        ) from None
    frames, tables = tables_of(args)
    serve(settings_of(args), frames, tables)
    return EXIT_OK
