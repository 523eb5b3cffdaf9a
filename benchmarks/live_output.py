"""Live output, as ratios to baselines measured in the same run.

    python benchmarks/live_output.py [--repeat 10] [--lines 100000]

1. latency: from the moment code in the sandbox prints its first line to the moment the parent holds it as an
   ``output`` op (Sandbox.run with a live sink), vs the same code on a bare ipykernel read with jupyter_client
   (from the print to the stream message).                        goal: ours <= 1.2x bare + 50 ms (median)
2. a flood of --lines printed lines: the parent's CPU time and peak Python memory while the run streams, vs the
   same run with live output off; how many flushes reached the sink and how much text was skipped live (the
   final outputs keep their usual cap).                             goal: CPU <= 1.5x, memory bounded
Prints one line per figure and writes benchmarks/results/live_output.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

from ci_magic.core.settings import Limits
from ci_magic.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
#: Prints the wall-clock time of the print itself, then keeps running: the delay is measured to the first line.
STAMP = "import time\nprint(repr(time.time()), flush=True)\ntime.sleep(0.3)"


def ours(box: Sandbox) -> float:
    """Seconds from the sandbox's print to the parent's sink."""
    got: list[float] = []

    def sink(ops: list[dict[str, Any]]) -> None:
        for op in ops:
            if op.get("op") == "stream" and not got:
                got.append(time.time() - float(op["text"].split()[0]))

    box.run(STAMP, on_output=sink)
    return got[0]


def bare(kc: Any) -> float:
    """Seconds from a bare kernel's print to jupyter_client handing over the stream message."""
    msg_id = kc.execute(STAMP)
    first: float | None = None
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream" and first is None:
            first = time.time() - float(msg["content"]["text"].split()[0])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            assert first is not None
            return first


def flood(box: Sandbox, lines: int, live: bool) -> dict[str, float]:
    """The parent's CPU seconds and peak traced memory (MB) while the sandbox prints ``lines`` lines."""
    flushes = [0, 0]  # flushes, characters passed on

    def sink(ops: list[dict[str, Any]]) -> None:
        flushes[0] += 1
        flushes[1] += sum(len(op.get("text", "")) for op in ops)

    tracemalloc.start()
    cpu, wall = time.process_time(), time.perf_counter()
    result = box.run(f"for i in range({lines}):\n    print('line', i)", on_output=sink if live else None)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    assert result.ok, result.error_value
    return {"cpu_s": cpu, "wall_s": wall, "peak_mb": peak, "flushes": flushes[0], "live_chars": flushes[1]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--lines", type=int, default=100_000)
    args = ap.parse_args()
    out: dict[str, Any] = {}

    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    with tempfile.TemporaryDirectory() as tmp, Sandbox(Limits(timeout_s=120), user_dir=tmp) as box:
        box.run("print('warm')")
        bare(kc)
        ours(box)  # both warm
        theirs = statistics.median(bare(kc) for _ in range(args.repeat))
        mine = statistics.median(ours(box) for _ in range(args.repeat))
        out["latency"] = {
            "ours_ms": round(mine * 1000, 1),
            "bare_jupyter_client_ms": round(theirs * 1000, 1),
            "ratio": round(mine / theirs, 2),
            "goal_met": mine <= 1.2 * theirs + 0.05,
        }
        print(
            f"first printed line → parent: ours {mine * 1000:.1f} ms, bare kernel {theirs * 1000:.1f} ms "
            f"({mine / theirs:.2f}x; goal <= 1.2x + 50 ms: {'met' if out['latency']['goal_met'] else 'NOT met'})"
        )
        off = flood(box, args.lines, live=False)
        on = flood(box, args.lines, live=True)
        out["flood"] = {
            "lines": args.lines,
            "live_off": {k: round(v, 3) for k, v in off.items()},
            "live_on": {k: round(v, 3) for k, v in on.items()},
            "cpu_ratio": round(on["cpu_s"] / max(off["cpu_s"], 1e-9), 2),
        }
        print(
            f"{args.lines:,}-line flood: parent CPU {on['cpu_s']:.2f} s live vs {off['cpu_s']:.2f} s without "
            f"({out['flood']['cpu_ratio']}x), peak traced memory {on['peak_mb']:.1f} MB vs {off['peak_mb']:.1f} MB, "
            f"{on['flushes']:.0f} flushes carrying {on['live_chars']:,.0f} characters, wall {on['wall_s']:.1f} s "
            f"vs {off['wall_s']:.1f} s"
        )
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    path = ROOT / "benchmarks" / "results" / "live_output.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
