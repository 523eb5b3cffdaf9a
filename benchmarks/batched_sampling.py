"""Five samples batched in one request vs five requests vs one, through the embedded server, on the dev questions.

Full run (the figures in ``benchmarks/results/batched_sampling.json``), on a quiet machine, ~4 h with the 1.5B model:

    .venv/bin/python benchmarks/batched_sampling.py

Smoke run: ``--limit 3``. Other options: ``--model`` (default qwen2.5-coder-1.5b), ``--samples`` (5),
``--temperature`` (0.7), ``--max-tokens`` (2048, as ci_magic sends), ``--out``.

Each question's prompt is the first one ci_magic's eval sends (system prompt with the answer rules, data
description of the table as ``df``, the question). Three timings, each from the same cache state (a one-token
request with another prompt runs before each, so each pays the prompt evaluation once):

    (a) one request with n = samples (the batched path),
    (b) ``samples`` requests with n = 1 one after another, seeds seed .. seed + samples - 1 (the prompt is
        evaluated for the first only: llama-cpp-python keeps it cached for the rest),
    (c) one request with n = 1.

All requests stream, as ci_magic does. Reported per question and as medians: wall-time ratios a/c and b/c; the
same for the server's CPU time (``cpu``: less disturbed when other jobs share the cores, so compare it with the
wall ratios before trusting either); and ``decode`` ratios, which leave out the prompt evaluation (wall time after
the first text). The project's goal: a/c <= 1.5.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "eval" / "dabench-dev"
OUT = ROOT / "benchmarks" / "results" / "batched_sampling.json"
RESET = [{"role": "user", "content": "Say OK."}]
KEYS = ("a/c", "b/c", "cpu a/c", "cpu b/c", "decode a/c", "decode b/c")


def dev_prompts(limit: int | None = None) -> list[tuple[int, list[dict[str, str]]]]:
    """(question id, messages) of the first prompt ci_magic's eval sends for each dev question."""
    # The one place that knows where the prompt builder lives (these modules move between packages).
    from ci_magic.context.frames import build_context
    from ci_magic.engine.prompts import initial_messages
    from ci_magic.evaluation.runner import ANSWER_RULES, load_table, read_questions

    prompts = []
    for q in read_questions(DEV / "questions.jsonl")[:limit]:
        context = build_context({"df": load_table(DEV / "tables" / q.file_name)})
        messages = initial_messages(q.prompt(), context.text, system_extra=ANSWER_RULES)
        prompts.append((q.id, [dict(m) for m in messages]))
    return prompts


class Server(NamedTuple):
    client: Any  # openai.OpenAI
    model: str
    pid: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server so far: a figure that other jobs on the machine disturb less."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prompt_hash(messages: list[dict[str, str]]) -> str:
    """Identifies the prompt in the results: it changes whenever the prompt builder or context format does."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


def timed(server: Server, messages: list[dict[str, str]], **kwargs: Any) -> dict[str, Any]:
    """Wall and server CPU time, time to the first text, completion tokens, finish reasons of one request."""
    cpu, started = cpu_seconds(server.pid), time.perf_counter()
    first, pieces, finish, usage = None, 0, {}, None
    stream = server.client.chat.completions.create(
        model=server.model, messages=messages, stream=True, stream_options={"include_usage": True}, **kwargs
    )
    with stream:
        for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                if choice.delta.content:
                    first = first or time.perf_counter() - started
                    pieces += 1
                if choice.finish_reason:
                    finish[choice.index] = choice.finish_reason
    wall, cpu = time.perf_counter() - started, cpu_seconds(server.pid) - cpu
    # llama-cpp-python's n = 1 stream sends no usage, but one chunk per token.
    tokens = usage.completion_tokens if usage is not None else pieces
    print(
        f"  n={kwargs.get('n', 1)}: {wall:.1f} s ({cpu:.1f} s CPU), {tokens} tokens",
        file=sys.stderr,
        flush=True,
    )
    return {
        "wall": wall,
        "cpu": cpu,
        "first": first or wall,
        "tokens": tokens,
        "finish": [finish[i] for i in sorted(finish)],
    }


def cold(server: Server) -> None:
    """Replace the server's cached prompt by an unrelated one, so the next request evaluates its prompt."""
    server.client.chat.completions.create(model=server.model, messages=RESET, max_tokens=1)


def measure(server: Server, messages: list[dict[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    common = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    cold(server)
    one = timed(server, messages, seed=args.seed, **common)
    cold(server)
    batched = timed(server, messages, n=args.samples, seed=args.seed, **common)
    cold(server)
    runs = [timed(server, messages, seed=args.seed + i, **common) for i in range(args.samples)]
    sequential = {
        "wall": sum(r["wall"] for r in runs),
        "cpu": sum(r["cpu"] for r in runs),
        "first": runs[0]["first"],
        "tokens": sum(r["tokens"] for r in runs),
        "finish": [r["finish"][0] for r in runs],
    }
    decode_c = max(one["wall"] - one["first"], 1e-9)
    return {
        "a_batched": batched,
        "b_sequential": sequential,
        "c_one": one,
        "a/c": batched["wall"] / one["wall"],
        "b/c": sequential["wall"] / one["wall"],
        "cpu a/c": batched["cpu"] / one["cpu"],
        "cpu b/c": sequential["cpu"] / one["cpu"],
        "decode a/c": (batched["wall"] - batched["first"]) / decode_c,
        "decode b/c": (sequential["wall"] - sum(r["first"] for r in runs)) / decode_c,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--limit", type=int, default=None, help="first N questions only (smoke run)")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import openai

    from ci_magic.local import ensure_endpoint, ensure_gguf, stop
    from ci_magic.local.assemble import CACHE_ENV

    prompts = dev_prompts(args.limit)
    _, gguf = ensure_gguf(args.model)  # assembled once, in the user's cache
    # Our own server, registered in a scratch dir: a server of this model that another process uses (maybe
    # started by older code) is neither reused nor stopped. Served as a path, its id is the file's stem.
    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="ci_magic_bench_")
    ep = ensure_endpoint(str(gguf))
    rows = []
    try:
        with openai.OpenAI(base_url=ep.base_url, api_key=ep.api_key, max_retries=0, timeout=3600) as client:
            server = Server(client, ep.model, ep.pid)
            cold(server)  # warm-up
            for qid, messages in prompts:
                row = {"id": qid, "prompt_sha256": prompt_hash(messages), **measure(server, messages, args)}
                rows.append(row)
                ratios = "  ".join(f"{k} {row[k]:.2f}" for k in KEYS)
                print(f"#{qid}: {ratios}  (c: {row['c_one']['tokens']} tokens)", flush=True)
    finally:
        stop(ep.model)
        shutil.rmtree(os.environ[CACHE_ENV], ignore_errors=True)
    medians = {k: statistics.median(r[k] for r in rows) for k in KEYS}
    print("median " + "  ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    print(f"goal a/c <= 1.5: {'met' if medians['a/c'] <= 1.5 else 'not met'}")
    git = ["git", "-C", str(ROOT)]
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "dirty": bool(subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "gguf": str(gguf),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "settings": {k: getattr(args, k) for k in ("samples", "temperature", "max_tokens", "seed", "limit")},
        "median": medians,
        "questions": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
