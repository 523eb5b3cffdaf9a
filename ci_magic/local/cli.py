"""``ci-magic serve``: run, inspect or stop the local model server from a terminal."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..core.errors import CIMagicError, UsageError
from .models import DEFAULT_MODEL, MODELS


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the embedded local model server (used when no OpenAI endpoint is configured)",
        description=(
            "Assemble the local model if needed and start (or reuse) its OpenAI-compatible server on "
            "127.0.0.1. Stays in the foreground until Ctrl-C unless --detach is given."
        ),
    )
    parser.add_argument(
        "--model",
        default=None,
        help=f"{' or '.join(sorted(MODELS))} (default: $CI_MAGIC_GGUF if set, else {DEFAULT_MODEL}), "
        "or a path to a .gguf file",
    )
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--stop", action="store_true", help="stop the server (every server without --model)")
    action.add_argument("--status", action="store_true", help="list running servers")
    action.add_argument(
        "--detach", action="store_true", help="start it and return; it stops by itself when idle"
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=None,
        metavar="MIN",
        help="stop after MIN idle minutes, 0 = never (default: never in the foreground, "
        "else $CI_MAGIC_SERVER_IDLE or 30); applies to a newly started server only",
    )
    parser.set_defaults(func=handle)
    return parser


def _status() -> int:
    from .server import status

    servers = status()
    if not servers:
        print("no local model server is running")
        return 0
    for info in servers:
        state = "healthy" if info.healthy else "NOT RESPONDING"
        print(f"{info.model}: {info.base_url} pid {info.pid}, {info.leases} user(s), {state}; log {info.log}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from . import ensure_endpoint
    from .registry import pid_alive
    from .server import release, status, stop

    before = {info.model: info.pid for info in status()}
    idle = args.idle if args.idle is not None or args.detach else 0.0
    endpoint = ensure_endpoint(args.model, port=args.port, lease=not args.detach, idle_minutes=idle)
    started_here = before.get(endpoint.model) != endpoint.pid
    print(f"{'started' if started_here else 'reusing'} local model server (pid {endpoint.pid})")
    print(f"  base URL: {endpoint.base_url}")
    print(f"  model:    {endpoint.model}")
    print(f"  API key:  {endpoint.api_key}")
    sys.stdout.flush()
    if args.detach:
        return 0
    print("Press Ctrl-C to stop." if started_here else "Press Ctrl-C to leave it to its other users.")
    sys.stdout.flush()
    try:
        while pid_alive(endpoint.pid):
            time.sleep(1.0)
    except KeyboardInterrupt:
        if started_here:
            stop(endpoint.model)
            print("\nstopped")
        else:
            release(endpoint.model)
            print("\nleft running for its other users")
        return 0
    print("the server exited; see its log with: ci-magic serve --status", file=sys.stderr)
    return 1


def handle(args: argparse.Namespace) -> int:
    try:
        if args.status:
            return _status()
        if args.stop:
            from .models import resolve
            from .server import stop

            stopped = stop(resolve(args.model).model_id if args.model else None)
            print(f"stopped: {', '.join(stopped)}" if stopped else "no local model server was running")
            return 0
        return _serve(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CIMagicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m ci_magic.local.cli``) until the main CLI wires :func:`register`."""
    parser = argparse.ArgumentParser(prog="ci-magic")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
