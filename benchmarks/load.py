"""Many notebooks at once: 8 sessions asking 5 questions each, together, against one scripted model server.

    python benchmarks/load.py [--notebooks 8] [--questions 5] [--delay 0.5] [--chunk-delay 0.01]
                              [--backends local,gateway]

Each "notebook" is an :class:`~ci_magic.engine.interpreter.Interpreter` with its own sandbox (a local bubblewrap
``Sandbox``, or a ``GatewaySandbox`` on a Jupyter Enterprise Gateway started here on loopback) and its own
frame ``sales_<n>`` whose aggregates differ from every other notebook's. The fake model answers each question
by a rule with code computing that notebook's number, after a realistic delay (time to first token plus a
pause per streamed word). An answer counts as correct only when the printed number is that notebook's: any
cross-talk between sessions shows. Reported per backend:

- answers correct (of notebooks x questions);
- harness overhead per ask, p50 and p95: the ask's wall time minus the model's scripted delay (frames, kernel
  round trips, values brought back, our Python, and queueing on this machine's cores);
- memory per idle sandbox after the asks (its processes' RSS, and PSS, which shares common pages fairly), the
  gateway's own process separately, and from them sandboxes per 24 GB.

Writes benchmarks/results/load.json with the command, commit and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ci_magic.core.executor import Executor
from ci_magic.core.settings import Limits, Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.providers.fake import FakeModelServer, Turn
from ci_magic.sandbox import Sandbox
from ci_magic.sandbox.gateway import GatewaySandbox
from ci_magic.sandbox.gateway.server import LocalGateway, find_gateway, start_local_gateway

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
#: The questions: name, the code that answers it for frame ``f``, and the answer computed here.
QUESTIONS: list[tuple[str, str, Callable[[pd.Series], int]]] = [
    ("total", "int({f}.amount.sum())", lambda s: int(s.sum())),
    ("smallest", "int({f}.amount.min())", lambda s: int(s.min())),
    ("largest", "int({f}.amount.max())", lambda s: int(s.max())),
    ("count", "len({f})", lambda s: len(s)),
    ("even total", "int({f}.amount[{f}.amount % 2 == 0].sum())", lambda s: int(s[s % 2 == 0].sum())),
]


def notebook_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(n)
    rows = 50_000 + 1_000 * n  # every notebook's count, and so its other aggregates, differ
    return pd.DataFrame(
        {"region": rng.choice(["n", "s", "e", "w"], rows), "amount": rng.integers(1, 10_000, rows)}
    )


def reply(code: str) -> str:
    return (
        f"Here is the code that answers it:\n```python\nprint({code})\n```\nThat prints the number asked for."
    )


def model_delay(turn: Turn) -> float:
    """Seconds the fake server waits for one turn: before the first byte, then after each streamed piece."""
    return turn.delay_s + turn.chunk_delay_s * len(re.findall(r"\S*\s*", turn.reply))


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def memory_mb(pids: list[int]) -> dict[str, float]:
    """RSS and PSS of these processes together, in MB."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("Rss", "Pss"):
                    kb = int(value.split()[0])
                    rss, pss = (rss + kb, pss) if key == "Rss" else (rss, pss + kb)
        except (OSError, ValueError):
            continue
    return {"rss_mb": rss / 1024, "pss_mb": pss / 1024}


def sandbox_pids(executor: Executor) -> list[int]:
    if isinstance(executor, GatewaySandbox):
        root = executor.pids.get("kernel")  # a local kernel of the gateway: its pid is on this machine
    else:
        assert isinstance(executor, Sandbox)
        root = executor.pids.get("launcher")
    return tree(root) if root else []


def run_backend(
    args: argparse.Namespace, fake: FakeModelServer, gateway: LocalGateway | None
) -> dict[str, Any]:
    """All notebooks at once on one backend: the local sandbox (``gateway`` None) or the gateway's."""
    settings = Settings(model="fake-model", base_url=fake.base_url, api_key="k", limits=Limits(timeout_s=120))
    frames = [notebook_frame(n) for n in range(args.notebooks)]
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory() as folder:
        executors: list[Executor] = []
        starting = time.monotonic()
        for n in range(args.notebooks):
            user_dir = Path(folder) / f"nb{n}"
            user_dir.mkdir()
            if gateway is not None:
                executors.append(
                    GatewaySandbox(settings.limits, user_dir, url=gateway.url, token=gateway.token)
                )
            else:
                executors.append(Sandbox(settings.limits, user_dir))
        started_s = time.monotonic() - starting
        go = threading.Barrier(args.notebooks)

        def notebook(n: int) -> None:
            name = f"sales_{n}"
            with Interpreter(settings, user_dir=Path(folder) / f"nb{n}", executor=executors[n]) as interp:
                go.wait()
                for question, code, answer in QUESTIONS[: args.questions]:
                    delay = model_delay(fake_turn(args, code.format(f=name)))
                    began = time.monotonic()
                    result = interp.ask(f"What is the {question} of {name}.amount?", {name: frames[n]})
                    wall = time.monotonic() - began
                    printed = (
                        result.outputs[0].get("text", "").strip() if result.ok and result.outputs else None
                    )
                    expected = str(answer(frames[n].amount))
                    with lock:
                        answers.append(
                            {
                                "notebook": n,
                                "question": question,
                                "correct": printed == expected,
                                "printed": printed,
                                "expected": expected,
                                "attempts": len(result.attempts),
                                "wall_s": wall,
                                "model_delay_s": delay * len(result.attempts),
                                "overhead_s": wall - delay * len(result.attempts),
                            }
                        )

        threads = [threading.Thread(target=notebook, args=(n,)) for n in range(args.notebooks)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall_s = time.monotonic() - began
        time.sleep(2)  # idle: what a sandbox costs while its user reads
        idle = [memory_mb(sandbox_pids(e)) for e in executors]
        shared = memory_mb(tree(gateway.pid)) if gateway is not None else {"rss_mb": 0.0, "pss_mb": 0.0}
        for executor in executors:
            executor.close()
    overheads = sorted(a["overhead_s"] * 1000 for a in answers)
    pss = statistics.mean(m["pss_mb"] for m in idle)
    rss = statistics.mean(m["rss_mb"] for m in idle)
    if gateway is not None:  # the gateway's own process is counted once, not per sandbox
        shared["rss_mb"] -= sum(m["rss_mb"] for m in idle)
        shared["pss_mb"] -= sum(m["pss_mb"] for m in idle)
    return {
        "answers": len(answers),
        "answers_correct": sum(a["correct"] for a in answers),
        "wrong": [a for a in answers if not a["correct"]],
        "sandboxes_start_s": started_s,
        "wall_s": wall_s,
        "model_delay_per_reply_s": statistics.mean(a["model_delay_s"] / a["attempts"] for a in answers),
        "overhead_ms": {
            "p50": statistics.median(overheads),
            "p95": overheads[min(len(overheads) - 1, int(0.95 * len(overheads)))],
        },
        "idle_sandbox_mb": {"rss": rss, "pss": pss},
        "gateway_process_mb": {"rss": shared["rss_mb"], "pss": shared["pss_mb"]},
        "sandboxes_per_24gb": int((24 * GIB / 2**20 - shared["pss_mb"]) // pss) if pss else None,
    }


def fake_turn(args: argparse.Namespace, code: str) -> Turn:
    return Turn(reply=reply(code), delay_s=args.delay, chunk_delay_s=args.chunk_delay)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebooks", type=int, default=8)
    ap.add_argument("--questions", type=int, default=5, choices=range(1, len(QUESTIONS) + 1))
    ap.add_argument("--delay", type=float, default=0.5, help="seconds before the model's first token")
    ap.add_argument("--chunk-delay", type=float, default=0.01, help="seconds between streamed words")
    ap.add_argument("--backends", default="local,gateway")
    args = ap.parse_args()
    rules = [
        (rf"the {re.escape(q)} of sales_{n}\.amount", fake_turn(args, code.format(f=f"sales_{n}")))
        for n in range(args.notebooks)
        for q, code, _ in QUESTIONS
    ]
    results: dict[str, Any] = {}
    with FakeModelServer(rules=rules) as fake:
        for backend in args.backends.split(","):
            if backend == "local":
                results["local"] = run_backend(args, fake, None)
            elif backend == "gateway" and find_gateway() is None:
                results["gateway"] = {"skipped": "Jupyter Enterprise Gateway is not installed"}
            elif backend == "gateway":
                with start_local_gateway() as gateway:
                    results["gateway"] = run_backend(args, fake, gateway)
    for backend, r in results.items():
        if "skipped" in r:
            print(f"{backend}: skipped ({r['skipped']})")
            continue
        print(
            f"{backend}: {r['answers_correct']}/{r['answers']} answers correct; harness overhead per ask "
            f"p50 {r['overhead_ms']['p50']:.0f} ms, p95 {r['overhead_ms']['p95']:.0f} ms (model delay "
            f"{r['model_delay_per_reply_s']:.2f} s per reply taken off); idle sandbox {r['idle_sandbox_mb']['pss']:.0f} "
            f"MB PSS ({r['idle_sandbox_mb']['rss']:.0f} MB RSS)"
            + (
                f", gateway process {r['gateway_process_mb']['pss']:.0f} MB PSS"
                if backend == "gateway"
                else ""
            )
            + f"; about {r['sandboxes_per_24gb']} sandboxes per 24 GB"
        )
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    document = {
        "command": " ".join(["python", "benchmarks/load.py", *sys.argv[1:]]),
        "commit": commit,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GIB, 1),
        },
        "notebooks": args.notebooks,
        "questions": args.questions,
        "model": {"delay_s": args.delay, "chunk_delay_s": args.chunk_delay},
        "results": results,
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(document, indent=2) + "\n")
    ok = all("skipped" in r or r["answers_correct"] == r["answers"] for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
