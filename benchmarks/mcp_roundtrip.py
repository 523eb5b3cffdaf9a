"""The MCP face's cost: a ``run_python`` call through ``ci-magic mcp`` (stdio, the SDK's own client) vs the same
code through the Python API (``Interpreter.run_code`` in the same kind of sandbox), measured in the same run.

    python benchmarks/mcp_roundtrip.py [--repeat 20]

Prints the medians and their ratio and writes benchmarks/results/mcp_roundtrip.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from ci_magic.core.settings import Settings
from ci_magic.engine.interpreter import Interpreter

ROOT = Path(__file__).resolve().parents[1]
CODE = "total = sum(range(1000))\nprint(total)"


def api(folder: Path, repeat: int) -> float:
    with Interpreter(Settings(), user_dir=folder, files_dir=folder) as it:
        it.run_code("print('warm')")
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            assert it.run_code(CODE).execution.ok
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def over_mcp(folder: Path, repeat: int) -> float:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "ci_magic.cli", "mcp"], cwd=str(folder)
    )

    async def run() -> float:
        async with Client(params, read_timeout_seconds=120) as client:
            await client.call_tool("run_python", {"code": "print('warm')"})
            samples = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                result = await client.call_tool("run_python", {"code": CODE})
                samples.append(time.perf_counter() - t0)
                assert not result.is_error
        return statistics.median(samples)

    return anyio.run(run)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        direct = api(folder, args.repeat)
        mcp = over_mcp(folder, args.repeat)
    out = {
        "api_ms": round(direct * 1000, 1),
        "mcp_stdio_ms": round(mcp * 1000, 1),
        "ratio": round(mcp / direct, 2),
        "repeat": args.repeat,
    }
    print(
        f"run_python round trip: MCP over stdio {mcp * 1000:.1f} ms, Python API {direct * 1000:.1f} ms "
        f"({out['ratio']}x, medians of {args.repeat})"
    )
    path = ROOT / "benchmarks" / "results" / "mcp_roundtrip.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
