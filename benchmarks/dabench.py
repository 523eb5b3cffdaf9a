"""Strict DABench accuracy of the %%ask loop vs one-shot, on ../shared/eval/dabench-dev, with time and tokens.

    python benchmarks/dabench.py [--model qwen2.5-coder-1.5b] [--limit N] [--attempts 3] [--samples 5]

Runs ``ci-magic eval`` for each configuration — the full loop (repair attempts + voting among --samples
independent answers), the repair loop alone (samples=1), and one-shot (attempts=1, samples=1) — scores each with
the shared scorer, and writes ``benchmarks/results/dabench-<model>.json`` plus a line per run on stdout. The
questions and tables are read from ../shared (evaluation only; they are never copied into the project).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "eval"
DEV = SHARED / "dabench-dev"


def asked(limit: int | None, scratch: Path) -> tuple[Path, Path]:
    """The questions and labels of the questions asked: with --limit, the first N only, so the accuracy is over
    those (the scorer counts a question without a prediction as wrong)."""
    if not limit:
        return DEV / "questions.jsonl", DEV / "labels.jsonl"
    lines = [line for line in (DEV / "questions.jsonl").read_text().splitlines() if line.strip()][:limit]
    ids = {json.loads(line)["id"] for line in lines}
    labels = [line for line in (DEV / "labels.jsonl").read_text().splitlines() if line.strip()]
    (scratch / "q.jsonl").write_text("".join(f"{line}\n" for line in lines))
    (scratch / "l.jsonl").write_text("".join(f"{x}\n" for x in labels if json.loads(x)["id"] in ids))
    return scratch / "q.jsonl", scratch / "l.jsonl"


def accuracy(out: Path, limit: int | None) -> dict[str, float]:
    """The shared scorer's strict figures for a predictions file, over the questions asked."""
    with tempfile.TemporaryDirectory() as scratch:
        questions, labels = asked(limit, Path(scratch))
        score = subprocess.run(
            [
                *(sys.executable, str(SHARED / "score.py"), "--pred", str(out), "--labels", str(labels)),
                *("--questions", str(questions), "--json"),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    summary = json.loads(score.stdout)
    return {
        "questions": summary["strict"]["n_questions"],
        "strict_abq": summary["strict"]["ABQ"],
        "answered_abq": summary["official_answered_only"]["ABQ"],
    }


def run(model: str | None, attempts: int, samples: int, limit: int | None, out: Path) -> dict[str, object]:
    cmd = [
        sys.executable,
        "-m",
        "ci_magic.cli",
        "eval",
        str(DEV / "questions.jsonl"),
        "--tables",
        str(DEV / "tables"),
        "--out",
        str(out),
        "--attempts",
        str(attempts),
        "--samples",
        str(samples),
        "--fresh",  # every reply from the model, so the times are the model's (eval records any replay)
    ]
    if model:
        cmd += ["--model", model]
    if limit:
        cmd += ["--limit", str(limit)]
    started = time.monotonic()
    subprocess.run(cmd, check=True)
    wall = time.monotonic() - started
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return {
        "attempts": attempts,
        "samples": samples,
        **accuracy(out, limit),
        "mean_seconds": statistics.mean(r["seconds"] for r in rows),
        "median_seconds": statistics.median(r["seconds"] for r in rows),
        "cached_replies": sum(r.get("cached_replies", 0) for r in rows),
        "replies": sum(r.get("replies", 0) for r in rows),
        "mean_prompt_tokens": statistics.mean(r["prompt_tokens"] for r in rows),
        "mean_completion_tokens": statistics.mean(r["completion_tokens"] for r in rows),
        "mean_attempts": statistics.mean(r["attempts"] for r in rows),
        "mean_samples": statistics.mean(r.get("samples", 1) for r in rows),
        "errors": sum("error" in r for r in rows),
        "wall_seconds": round(wall, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None, help="default: the embedded default model")
    ap.add_argument("--attempts", type=int, default=3)
    ap.add_argument("--samples", type=int, default=5, help="independent answers voted on by the full loop")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument(
        "--only",
        choices=["loop", "repair-only", "one-shot"],
        action="append",
        help="run only these configurations (repeatable); the others are kept from the file",
    )
    ap.add_argument("--commit", default="", help="recorded with the figures")
    ap.add_argument("--label", default="", help="suffix of the results file (e.g. a variant being compared)")
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="only score the kept predictions again (no model runs); times and tokens are kept",
    )
    args = ap.parse_args()
    results_dir = ROOT / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    label = args.model or "qwen2.5-coder-1.5b"
    path = results_dir / f"dabench-{label}{'-' + args.label if args.label else ''}.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc.update(model=label, dataset="dabench-dev (57 questions)")
    configs = {
        "loop": ("repair_loop", args.attempts, args.samples),
        "repair-only": ("repair_only", args.attempts, 1),
        "one-shot": ("one_shot", 1, 1),
    }
    for name, (key, attempts, samples) in configs.items():
        if args.only and name not in args.only:
            continue
        pred = path.with_name(f"{path.stem}-{name}.pred.jsonl")
        if args.rescore:
            if key in doc and pred.exists():
                doc[key].update(accuracy(pred, args.limit), rescored=" ".join(["python", *sys.argv]))
            continue
        result = run(args.model, attempts, samples, args.limit, pred)
        result["commit"] = args.commit
        result["command"] = " ".join(["python", "benchmarks/dabench.py", *sys.argv[1:]])
        doc[key] = result
        print(
            f"{label} {name} (attempts={attempts}, samples={samples}): strict accuracy "
            f"{result['strict_abq']:.1%} on {result['questions']} questions; {result['mean_seconds']:.1f} s (median {result['median_seconds']:.1f}), "
            f"{result['mean_prompt_tokens']:.0f} prompt + {result['mean_completion_tokens']:.0f} completion "
            f"tokens, {result['mean_attempts']:.2f} attempts and {result['mean_samples']:.2f} samples per question",
            flush=True,
        )
    if "repair_loop" in doc and "one_shot" in doc:
        doc["loop_over_one_shot"] = round(
            float(doc["repair_loop"]["strict_abq"]) - float(doc["one_shot"]["strict_abq"]), 4
        )
    path.write_text(json.dumps(doc, indent=2) + "\n")
    if "loop_over_one_shot" in doc:
        print(f"repair loop minus one-shot: {doc['loop_over_one_shot']:+.1%} (strict accuracy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
