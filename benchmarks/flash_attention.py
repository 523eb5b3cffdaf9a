"""Flash attention on vs off for the embedded model: prompt reading and decoding of the dev set's first prompts.

    .venv/bin/python benchmarks/flash_attention.py [--limit 6] [--max-tokens 64]

Two Llamas are loaded in process exactly as the server loads its model (``ci_magic.local.supervisor
.model_settings``), one with ``flash_attn`` as the server has it and one with the opposite. Per prompt (the first
one ci_magic's eval sends for a dev question) both read it from an empty cache (``Llama.reset``) and decode
greedily, in alternating order (off/on, then on/off) so a machine that slows down weighs on both alike.
Reported per prompt and as medians: prompt tokens/s (time to the first token), decode tokens/s after it, the
ratios on/off, and whether the greedy replies are the same text (the kernels differ in rounding, so a
reply may take another path). Results: ``benchmarks/results/flash_attention.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from batched_sampling import ROOT, dev_prompts, prompt_hash

OUT = ROOT / "benchmarks" / "results" / "flash_attention.json"


def load(gguf: Path, flash: bool) -> Any:
    """A Llama loaded as the embedded server loads it, flash attention set as asked."""
    from llama_cpp.server.model import LlamaProxy

    from ci_magic.local.server import DEFAULT_N_CTX
    from ci_magic.local.supervisor import model_settings

    threads = max(1, min(os.cpu_count() or 2, 8))  # as ci_magic.local.server starts the supervisor
    settings = model_settings(str(gguf), "bench", DEFAULT_N_CTX, threads).model_copy(
        update={"flash_attn": flash}
    )
    return LlamaProxy.load_llama_from_model_settings(settings)


def run(llama: Any, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    """One greedy reply from an empty cache: prompt and decode rates."""
    llama.reset()
    started = time.perf_counter()
    first, pieces, text, prompt_tokens = None, 0, [], 0
    for chunk in llama.create_chat_completion(
        messages=messages, temperature=0, max_tokens=max_tokens, stream=True
    ):
        content = chunk["choices"][0]["delta"].get("content")
        if content:
            if first is None:
                first = time.perf_counter() - started
                # Until the first token is fed back, the context holds the prompt alone.
                prompt_tokens = llama.n_tokens
            pieces += 1  # one chunk per token (multi-byte characters aside)
            text.append(content)
    wall = time.perf_counter() - started
    first = first or wall
    return {
        "prompt_tokens": prompt_tokens,
        "prompt_s": round(first, 2),
        "prompt_tok/s": prompt_tokens / first,
        "tokens": pieces,
        "decode_tok/s": (pieces - 1) / (wall - first) if wall > first and pieces > 1 else 0.0,
        "text": "".join(text),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--limit", type=int, default=6, help="first N dev questions")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from ci_magic.local import ensure_gguf

    prompts = dev_prompts(args.limit)
    _, gguf = ensure_gguf(args.model)
    llamas = {False: load(gguf, flash=False), True: load(gguf, flash=True)}
    for llama in llamas.values():
        run(llama, prompts[0][1], 4)  # warm-up: page the weights in
    rows = []
    for index, (qid, messages) in enumerate(prompts):
        order = (False, True) if index % 2 == 0 else (True, False)
        got = {flash: run(llamas[flash], messages, args.max_tokens) for flash in order}
        off, on = got[False], got[True]
        row = {
            "id": qid,
            "prompt_sha256": prompt_hash(messages),
            "off": {k: v for k, v in off.items() if k != "text"},
            "on": {k: v for k, v in on.items() if k != "text"},
            "prompt_ratio": on["prompt_tok/s"] / off["prompt_tok/s"],
            "decode_ratio": on["decode_tok/s"] / off["decode_tok/s"] if off["decode_tok/s"] else 0.0,
            "same_text": on["text"] == off["text"],
        }
        rows.append(row)
        print(
            f"#{qid}: {off['prompt_tokens']} prompt tokens: off {off['prompt_tok/s']:.1f} / on "
            f"{on['prompt_tok/s']:.1f} tok/s (x{row['prompt_ratio']:.2f}); decode off {off['decode_tok/s']:.1f} / "
            f"on {on['decode_tok/s']:.1f} (x{row['decode_ratio']:.2f}); same reply: {row['same_text']}",
            flush=True,
        )
    summary = {
        "prompt_ratio_median": statistics.median(r["prompt_ratio"] for r in rows),
        "decode_ratio_median": statistics.median(r["decode_ratio"] for r in rows),
        "prompt_tok_s_median": {
            "off": statistics.median(r["off"]["prompt_tok/s"] for r in rows),
            "on": statistics.median(r["on"]["prompt_tok/s"] for r in rows),
        },
        "decode_tok_s_median": {
            "off": statistics.median(r["off"]["decode_tok/s"] for r in rows),
            "on": statistics.median(r["on"]["decode_tok/s"] for r in rows),
        },
        "same_text": sum(r["same_text"] for r in rows),
    }
    print(
        f"median on/off: prompt reading x{summary['prompt_ratio_median']:.2f}, decoding "
        f"x{summary['decode_ratio_median']:.2f}; same greedy reply on {summary['same_text']} of {len(rows)}"
    )
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    result = {
        "command": f"python benchmarks/flash_attention.py --limit {args.limit} --max-tokens {args.max_tokens}",
        "commit": commit,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "machine": {"cpus": os.cpu_count()},
        "summary": summary,
        "questions": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
