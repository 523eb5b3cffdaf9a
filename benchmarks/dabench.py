"""Strict DABench accuracy of the %%ask loop vs one-shot, on ../shared/eval/dabench-dev, with time and tokens.

    python benchmarks/dabench.py [--model qwen2.5-coder-1.5b] [--limit N] [--attempts 3] [--samples 5]
    python benchmarks/dabench.py --interleave 3 [--limit N]   # the defaults against 3 attempts, alternately

Runs ``ci-magic eval`` for each configuration — the full loop (repair attempts + voting among --samples
independent answers), the repair loop alone (samples=1), and one-shot (attempts=1, samples=1) — scores each with
the shared scorer, and writes ``benchmarks/results/dabench-<model>.json`` plus a line per run on stdout. The
questions and tables are read from ../shared (evaluation only; they are never copied into the project).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ci_magic.core.settings import Settings

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


#: Why a question was not answered right, in the order the table shows them.
OUTCOMES = (
    "right",
    "wrong value",  # every answer printed, a value differs
    "right value, wrong form",  # equal under the scorer's lenient comparison, not the strict one
    "partly answered",  # some of the asked @names printed
    "no answer: recurring error",
    "no answer: answer check",
    "no answer: timeout",
    "no answer: no code",
    "no answer: crashed",
)


def accuracy(out: Path, limit: int | None) -> dict[str, Any]:
    """The shared scorer's strict figures for a predictions file, over the questions asked, and why each
    question that is not right failed (the table the README shows)."""
    with tempfile.TemporaryDirectory() as scratch:
        questions, labels = asked(limit, Path(scratch))
        details = Path(scratch) / "details.jsonl"
        score = subprocess.run(
            [
                *(sys.executable, str(SHARED / "score.py"), "--pred", str(out), "--labels", str(labels)),
                *("--questions", str(questions), "--json", "--lenient", "--details", str(details)),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        scored = [json.loads(line) for line in details.read_text().splitlines() if line.strip()]
    summary = json.loads(score.stdout)
    records = {r["id"]: r for r in (json.loads(x) for x in out.read_text().splitlines() if x.strip())}
    failures = classify(scored, records)
    return {
        "questions": summary["strict"]["n_questions"],
        "strict_abq": summary["strict"]["ABQ"],
        # Questions whose prediction holds an answer at all (right or wrong), and accuracy among those.
        "answered": round(summary["n_answered"] / summary["strict"]["n_questions"], 4),
        "answered_abq": summary["official_answered_only"]["ABQ"],
        "outcomes": dict(collections.Counter(o for o, _ in failures.values())),
        "recurring_errors": dict(collections.Counter(e for o, e in failures.values() if e)),
        "by_question": {str(q): o for q, (o, _) in sorted(failures.items())},
    }


def classify(scored: list[dict[str, Any]], records: dict[int, dict[str, Any]]) -> dict[int, tuple[str, str]]:
    """(outcome, the error that recurred where that is why) for every question: see OUTCOMES."""
    found: dict[int, tuple[str, str]] = {}
    for row in scored:
        qid, record = row["id"], records.get(row["id"], {})
        printed = [v for v in row["pred"].values() if v is not None]
        if row["all_correct"]:
            found[qid] = ("right", "")
        elif row.get("all_correct_lenient"):
            found[qid] = ("right value, wrong form", "")
        elif printed and len(printed) == len(row["pred"]):
            found[qid] = ("wrong value", "")
        elif printed:
            found[qid] = ("partly answered", "")
        else:
            found[qid] = _unanswered(record)
    return found


def _unanswered(record: dict[str, Any]) -> tuple[str, str]:
    if "error" in record:
        return "no answer: crashed", str(record["error"]).split(":", 1)[0]
    log = [a for a in record.get("attempt_log", []) if not a.get("sample")] or record.get("attempt_log", [])
    if not log:
        return "no answer: crashed", ""
    last = log[-1]
    if last["outcome"] == "timeout":
        return "no answer: timeout", ""
    if last["outcome"] == "no_code":
        return "no answer: no code", ""
    if last["outcome"] == "rejected":
        return "no answer: answer check", ""
    errors = collections.Counter(a["error"] for a in log if a.get("error"))
    return "no answer: recurring error", errors.most_common(1)[0][0] if errors else str(last["outcome"])


def failure_table(result: dict[str, Any]) -> str:
    """The outcomes as a markdown table (README), the commonest recurring errors after it."""
    counts = result.get("outcomes", {})
    total = sum(counts.values()) or 1
    rows = [
        f"| {o} | {counts.get(o, 0)} | {counts.get(o, 0) / total:.0%} |" for o in OUTCOMES if counts.get(o)
    ]
    errors = ", ".join(
        f"{e} × {n}" for e, n in sorted(result.get("recurring_errors", {}).items(), key=lambda x: -x[1])
    )
    return "\n".join(["| outcome | questions | share |", "|---|---|---|", *rows]) + (
        f"\n\nRecurring errors: {errors}." if errors else ""
    )


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
    return summary(model, attempts, samples, limit, out, time.monotonic() - started)


def summary(
    model: str | None,
    attempts: int,
    samples: int,
    limit: int | None,
    out: Path,
    wall: float,
    decode_tok_s: float | None = None,
) -> dict[str, Any]:
    """The figures of one configuration's predictions file (accuracy, outcomes, time, tokens); the decode rate
    is measured now unless given."""
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
        "time_breakdown": time_breakdown(
            rows, decode_tok_s or (decode_rate(model) if not limit or limit > 5 else None)
        ),
    }


def run_interleaved(
    model: str | None, attempts: tuple[int, int], limit: int | None, outs: tuple[Path, Path]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The repair loop at two attempt limits, question by question in one process: question 1 at A then B,
    question 2 at B then A, and so on, so that a machine that slows down or speeds up during the run weighs on
    both alike. The embedded server keeps the last prompt read (a prefix cache): an ask would read for free what
    it shares with the one before — all of its first prompt after its own twin, the data description after a
    question on the same table. So before every ask the cache is made to hold nothing of any question, and every
    ask of both configurations reads its prompts from the same start. Returns both configurations' figures and
    the paired time comparison (the median over questions of time at A / time at B, and the medians of each)."""
    from ci_magic.evaluation.progress import Progress
    from ci_magic.evaluation.runner import read_questions, run_eval

    questions = read_questions(DEV / "questions.jsonl")[:limit]
    base = Settings.from_env(frontend="cli").with_overrides({"model": model, "samples": 1})
    walls = [0.0, 0.0]
    # Started and warm before the first ask (as for the runs of `ci-magic eval`, whose first question would
    # otherwise carry the server's start, and here always at A).
    rate = decode_rate(model)
    with outs[0].open("w", encoding="utf-8") as out_a, outs[1].open("w", encoding="utf-8") as out_b:
        files = (out_a, out_b)
        order = [(which, q) for n, q in enumerate(questions) for which in ((0, 1) if n % 2 == 0 else (1, 0))]
        for which, q in order:
            forget_prompt(model)
            started = time.monotonic()
            settings = base.with_overrides({"attempts": attempts[which]})
            quiet = Progress(1, sys.stderr, quiet=True)
            (record,) = run_eval(
                [q],
                DEV / "tables",
                files[which],
                settings=settings,
                attempts=attempts[which],
                fresh=True,
                progress=quiet,
            )
            walls[which] += time.monotonic() - started
            print(
                f"q{q.id} attempts={attempts[which]}: {record['seconds']:.1f} s, "
                f"{record['attempts']} attempts, {'ok' if record['ok'] else 'not ok'}",
                file=sys.stderr,
                flush=True,
            )
    found = [summary(model, attempts[i], 1, limit, outs[i], walls[i], rate) for i in (0, 1)]
    return found[0], found[1], paired_time(found, outs)


def paired_time(found: list[dict[str, Any]], outs: tuple[Path, Path]) -> dict[str, Any]:
    """The two configurations' times question by question: the median of A / B over the questions asked in
    both, and over those that took the same path in both (as many attempts, as many tokens), where only the
    machine can make them differ; the questions that took different paths."""
    rows = [
        {r["id"]: r for r in (json.loads(x) for x in o.read_text().splitlines() if x.strip())} for o in outs
    ]
    both = [q for q in rows[0] if q in rows[1]]
    ratios = {q: rows[0][q]["seconds"] / rows[1][q]["seconds"] for q in both if rows[1][q]["seconds"]}
    path = [{q: (r[q]["attempts"], r[q]["completion_tokens"]) for q in both} for r in rows]
    same = [ratios[q] for q in ratios if path[0][q] == path[1][q]]
    return {
        "attempts": [f["attempts"] for f in found],
        "questions": len(both),
        "median_seconds": [f["median_seconds"] for f in found],
        "mean_seconds": [round(f["mean_seconds"], 1) for f in found],
        "median_ratio_a_over_b": round(statistics.median(ratios.values()), 3),
        "questions_faster_at_a": sum(r < 1 for r in ratios.values()),
        "questions_slower_at_a": sum(r > 1 for r in ratios.values()),
        "same_path_questions": len(same),
        "same_path_median_ratio": round(statistics.median(same), 3) if same else None,
        "same_path_ratio_range": [round(min(same), 2), round(max(same), 2)] if same else None,
        "other_paths": [q for q in both if path[0][q] != path[1][q]],
    }


@contextlib.contextmanager
def embedded(model: str | None) -> Iterator[tuple[Any, str] | None]:
    """The embedded server's ``chat.completions.create`` and its model name (the server started if need be);
    None without the local extra (a remote model)."""
    try:
        from ci_magic.local import ensure_endpoint
    except ImportError:
        yield None
        return
    import openai

    ep = ensure_endpoint(model or "qwen2.5-coder-1.5b")
    with openai.OpenAI(base_url=ep.base_url, api_key=ep.api_key, max_retries=0, timeout=600) as client:
        yield client.chat.completions.create, ep.model


def forget_prompt(model: str | None) -> None:
    """Make the embedded server's prefix cache hold nothing of any question: a one-token reply to a prompt of
    its own."""
    with embedded(model) as server:
        if server is not None:
            create, name = server
            create(model=name, messages=[{"role": "user", "content": "Say ok."}], max_tokens=1)


def time_breakdown(rows: list[dict[str, Any]], decode_tok_s: float | None = None) -> dict[str, float]:
    """Where a question's time goes, in mean seconds: the model writing the attempts (split into reading the
    prompt and decoding, with the decode rate measured in the same run), the steps after them (the answer in
    words, a failed ask's format step), the code running, and the rest (the sandbox's start, the data
    description, files, our own bookkeeping)."""
    logs = [r.get("attempt_log", []) for r in rows]
    model = [sum(a.get("model_seconds", 0.0) for a in log) for log in logs]
    side = [float(r.get("side_seconds", 0.0)) for r in rows]
    runs = [sum(a.get("seconds", 0.0) - a.get("model_seconds", 0.0) for a in log) for log in logs]
    rest = [r["seconds"] - m - w - x for r, m, w, x in zip(rows, model, side, runs, strict=True)]
    found = {
        "model_s": round(statistics.mean(model), 2),
        "after_attempts_s": round(statistics.mean(side), 2),
        "execution_s": round(statistics.mean(runs), 2),
        "other_s": round(statistics.mean(rest), 2),
    }
    if decode_tok_s:
        decoded = [sum(a.get("completion_tokens", 0) for a in log) / decode_tok_s for log in logs]
        found["model_decoding_s"] = round(statistics.mean(decoded), 2)
        found["model_prompt_s"] = round(found["model_s"] - found["model_decoding_s"], 2)
        found["decode_tok_s"] = round(decode_tok_s, 1)
    return found


def decode_rate(model: str | None) -> float | None:
    """Tokens per second the embedded server decodes at, measured now (a short prompt, 160 tokens greedy): the
    rate that splits the model's time into reading prompts and decoding. None for a remote model."""
    prompt = [{"role": "user", "content": "Count from 1 to 200, one number per line."}]
    with embedded(model) as server:
        if server is None:
            return None
        create, name = server
        create(model=name, messages=prompt, max_tokens=4)  # the prompt is cached from here on
        started = time.perf_counter()
        reply = create(model=name, messages=prompt, max_tokens=160, temperature=0)
        wall = time.perf_counter() - started
    return (reply.usage.completion_tokens if reply.usage else 0) / wall


def report(label: str, name: str, result: dict[str, Any]) -> str:
    """One configuration's line on stdout."""
    return (
        f"{label} {name} (attempts={result['attempts']}, samples={result['samples']}): strict accuracy "
        f"{result['strict_abq']:.1%} on {result['questions']} questions; {result['mean_seconds']:.1f} s "
        f"(median {result['median_seconds']:.1f}), {result['mean_prompt_tokens']:.0f} prompt + "
        f"{result['mean_completion_tokens']:.0f} completion tokens, {result['mean_attempts']:.2f} attempts and "
        f"{result['mean_samples']:.2f} samples per question"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None, help="default: the embedded default model")
    ap.add_argument("--attempts", type=int, default=Settings().attempts, help="default: the product's")
    ap.add_argument("--samples", type=int, default=5, help="independent answers voted on by the full loop")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument(
        "--only",
        choices=["loop", "repair-only", "one-shot"],
        action="append",
        help="run only these configurations (repeatable); the others are kept from the file",
    )
    ap.add_argument(
        "--interleave",
        type=int,
        metavar="ATTEMPTS",
        help="the repair loop at --attempts and at this many attempts, question by question alternately in "
        "one run (a time comparison that machine drift does not bias); stored as repair_only and "
        "repair_only_interleaved",
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
    if args.interleave:
        outs = (
            path.with_name(f"{path.stem}-repair-only.pred.jsonl"),
            path.with_name(f"{path.stem}-interleaved.pred.jsonl"),
        )
        if (
            args.rescore
        ):  # the kept predictions of both configurations (a run stopped early: its complete pairs)
            pairs = [
                summary(args.model, a, 1, args.limit, o, 0.0)
                for a, o in zip((args.attempts, args.interleave), outs, strict=True)
            ]
            found = (pairs[0], pairs[1], paired_time(pairs, outs))
        else:
            found = run_interleaved(args.model, (args.attempts, args.interleave), args.limit, outs)
        command = " ".join(["python", "benchmarks/dabench.py", *sys.argv[1:]])
        for key, result in zip(("repair_only", "repair_only_interleaved"), found[:2], strict=True):
            doc[key] = {**result, "commit": args.commit, "command": command, "interleaved": True}
            print(report(label, "repair-only", result), flush=True)
            print(failure_table(result), flush=True)
        doc["interleaved_time"] = found[2]
        print(f"interleaved: {json.dumps(found[2])}", flush=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        return 0
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
        print(report(label, name, result), flush=True)
        print(failure_table(result), flush=True)
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
