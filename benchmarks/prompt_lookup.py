"""Prompt-lookup decoding vs plain decoding: tokens/s of the same greedy replies to the dev questions, in process.

Full run (the figures in ``benchmarks/results/prompt_lookup.json``), on a quiet machine, several hours:

    .venv/bin/python benchmarks/prompt_lookup.py

Smoke run: ``--limit 3 --k 2,5,10``. Other options: ``--model`` (default qwen2.5-coder-1.5b), ``--max-tokens``
(2048), ``--out``.

Both Llamas are built the way the server builds its model (llama-cpp-python's ``LlamaProxy`` from the
supervisor's ``ModelSettings``); one of them with ``draft_model="prompt-lookup-decoding"``, i.e.
``llama_cpp.llama_speculative.LlamaPromptLookupDecoding``, whose ``num_pred_tokens`` takes every ``--k`` in turn.
Per prompt (the first one ci_magic's eval sends) the plain run and the draft runs alternate, each from an empty
cache (``Llama.reset``), at temperature 0. Reported: tokens/s over the whole request and over the decode after the
first token, the ratio draft/plain for each k, and whether the replies are the same text.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from batched_sampling import ROOT, dev_prompts, prompt_hash

OUT = ROOT / "benchmarks" / "results" / "prompt_lookup.json"


def load(gguf: Path, draft: bool) -> Any:
    """A Llama configured exactly as ci_magic's supervisor configures the server's."""
    from llama_cpp.server.model import LlamaProxy
    from llama_cpp.server.settings import ModelSettings

    threads = max(1, min(os.cpu_count() or 2, 8))  # as ci_magic.local.server starts the supervisor
    settings = ModelSettings(
        model=str(gguf),
        n_ctx=8192,
        n_threads=threads,
        n_threads_batch=threads,
        # Drafts are verified from the logits of every drafted position, so llama-cpp-python needs logits_all
        # with a draft model (without it: "could not broadcast ... into shape (0,)"). Part of its cost.
        logits_all=draft,
        use_mlock=False,
        verbose=False,
        draft_model="prompt-lookup-decoding" if draft else None,
    )
    return LlamaProxy.load_llama_from_model_settings(settings)


def run(llama: Any, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    llama.reset()  # every run evaluates its prompt: whole-request rates compare like with like
    started = time.perf_counter()
    first, pieces, text = None, 0, []
    for chunk in llama.create_chat_completion(
        messages=messages, temperature=0, max_tokens=max_tokens, stream=True
    ):
        content = chunk["choices"][0]["delta"].get("content")
        if content:
            first = first or time.perf_counter() - started
            pieces += 1  # llama-cpp-python streams one chunk per token (multi-byte characters aside)
            text.append(content)
    wall = time.perf_counter() - started
    first = first or wall
    return {
        "wall": wall,
        "first": first,
        "tokens": pieces,
        "tok/s": pieces / wall,
        "decode tok/s": (pieces - 1) / (wall - first) if wall > first else 0.0,
        "text": "".join(text),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--limit", type=int, default=None, help="first N questions only (smoke run)")
    parser.add_argument("--k", default="2,3,4,5,6,7,8,9,10", help="num_pred_tokens values, comma-separated")
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    ks = [int(k) for k in args.k.split(",")]

    from ci_magic.local import ensure_gguf

    prompts = dev_prompts(args.limit)
    _, gguf = ensure_gguf(args.model)
    plain, draft = load(gguf, draft=False), load(gguf, draft=True)
    run(plain, prompts[0][1], 4), run(draft, prompts[0][1], 4)  # warm-up: page the weights in
    rows = []
    for qid, messages in prompts:
        base = run(plain, messages, args.max_tokens)
        row: dict[str, Any] = {
            "id": qid,
            "prompt_sha256": prompt_hash(messages),
            "plain": {k: v for k, v in base.items() if k != "text"},
            "draft": {},
        }
        for k in ks:
            draft.draft_model.num_pred_tokens = k
            got = run(draft, messages, args.max_tokens)
            row["draft"][k] = {
                **{key: v for key, v in got.items() if key != "text"},
                "ratio": got["tok/s"] / base["tok/s"],
                "decode ratio": got["decode tok/s"] / base["decode tok/s"] if base["decode tok/s"] else 0.0,
                "same text": got["text"] == base["text"],
            }
        rows.append(row)
        ratios = "  ".join(f"k={k}: {d['ratio']:.2f}" for k, d in row["draft"].items())
        print(
            f"#{qid}: plain {base['tok/s']:.1f} tok/s ({base['tokens']} tok); draft/plain {ratios}",
            flush=True,
        )
    medians = {
        k: {m: statistics.median(r["draft"][k][m] for r in rows) for m in ("ratio", "decode ratio")}
        for k in ks
    }
    best = max(ks, key=lambda k: medians[k]["ratio"])
    for k in ks:
        print(
            f"median k={k}: draft/plain {medians[k]['ratio']:.2f} (decode only {medians[k]['decode ratio']:.2f})"
        )
    verdict = "enable it" if medians[best]["ratio"] >= 1.3 else "leave it off"
    print(f"best k={best}: {medians[best]['ratio']:.2f}x -> {verdict} (threshold 1.3x)")
    git = ["git", "-C", str(ROOT)]
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "dirty": bool(subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "gguf": str(gguf),
        "machine": {"cpus": os.cpu_count()},
        "settings": {"k": ks, "max_tokens": args.max_tokens, "limit": args.limit, "temperature": 0},
        "median": medians,
        "best_k": best,
        "verdict": verdict,
        "questions": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
