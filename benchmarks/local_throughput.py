"""Local model: assembly time, server cold start, and tokens/s through the server vs in-process llama_cpp.

    .venv/bin/python benchmarks/local_throughput.py [--model qwen2.5-coder-1.5b] [--fresh-cache]

``--fresh-cache`` assembles into a new temp cache dir, so the assembly time is that of a first run
(the part files are likely in the page cache after pip install, as on a user's machine).
Both throughput runs use the same prompt, n_ctx, threads and greedy decoding; the server run goes
through the ``openai`` client over loopback HTTP, as ``%%ask`` does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

PROMPT = (
    "Write a detailed, well-commented Python function using pandas that loads a CSV of sales, "
    "cleans missing values, groups by region and month, and plots the totals with matplotlib. "
    "Explain each step."
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--fresh-cache", action="store_true")
    args = parser.parse_args()

    fresh = tempfile.mkdtemp(prefix="ci_magic_bench_") if args.fresh_cache else None
    if fresh:
        os.environ["CI_MAGIC_CACHE_DIR"] = fresh
    from ci_magic.local import ensure_endpoint, ensure_gguf, stop
    from ci_magic.local.server import DEFAULT_N_CTX

    try:
        t0 = time.perf_counter()
        model, gguf = ensure_gguf(args.model)
        print(f"assemble/verify {model}: {time.perf_counter() - t0:.1f} s ({gguf.stat().st_size:,} bytes)")

        stop(model)
        t0 = time.perf_counter()
        ep = ensure_endpoint(model)
        print(f"server cold start to healthy: {time.perf_counter() - t0:.2f} s")
        messages = [{"role": "user", "content": PROMPT}]

        import openai

        with openai.OpenAI(base_url=ep.base_url, api_key=ep.api_key, max_retries=0, timeout=600) as client:
            client.chat.completions.create(model=ep.model, messages=messages, max_tokens=8)  # type: ignore[arg-type]
            server_rates = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                reply = client.chat.completions.create(
                    model=ep.model,
                    messages=messages,  # type: ignore[arg-type]
                    max_tokens=args.max_tokens,
                    temperature=0,
                )
                wall = time.perf_counter() - t0
                tokens = reply.usage.completion_tokens if reply.usage else 0
                server_rates.append(tokens / wall)
                print(f"  server: {tokens} tokens in {wall:.2f} s = {tokens / wall:.1f} tok/s")
        stop(model)  # free the cores for the in-process run

        from llama_cpp import Llama

        threads = max(1, min(os.cpu_count() or 2, 8))
        llm = Llama(str(gguf), n_ctx=DEFAULT_N_CTX, n_threads=threads, n_threads_batch=threads, verbose=False)
        llm.create_chat_completion(messages=messages, max_tokens=8)  # type: ignore[arg-type]
        direct_rates = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            out = llm.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                max_tokens=args.max_tokens,
                temperature=0,
            )
            wall = time.perf_counter() - t0
            tokens = out["usage"]["completion_tokens"]  # type: ignore[index]
            direct_rates.append(tokens / wall)
            print(f"  in-process: {tokens} tokens in {wall:.2f} s = {tokens / wall:.1f} tok/s")
        llm.close()

        server_best, direct_best = max(server_rates), max(direct_rates)
        print(f"server:     {server_best:.1f} tok/s (best of {args.runs})")
        print(f"in-process: {direct_best:.1f} tok/s (best of {args.runs})")
        print(f"ratio server/in-process: {server_best / direct_best:.2f}")
    finally:
        if fresh:
            stop()
            shutil.rmtree(fresh, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
