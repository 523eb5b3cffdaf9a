"""File-conversion tasks through the CLI: pass/fail and time per task.

    python benchmarks/file_tasks.py [--label after] [--tree DIR] [--model M] [--only NAME,...] [--repeat N]

Each task of ``ci_magic/evaluation/file_tasks.py`` gets a fresh temporary folder holding only its input files;
``ci-magic ask --json QUESTION`` runs there (as a user would, with the embedded model unless ``--base-url``),
then the checker reads the output file(s). ``--tree DIR`` runs the CLI (and so the sandbox and everything else)
from another checkout, e.g. a ``git worktree`` of an older commit: DIR goes first on ``PYTHONPATH``, and the
folder ``ci_magic`` was really imported from is recorded. Results are merged into
benchmarks/results/file_tasks.json under ``--label``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from ci_magic.evaluation.file_task_runs import cli_env, code_tree, run_task
from ci_magic.evaluation.file_tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "file_tasks.json"


def git(folder: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True)
    return out.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="after", help="name of this run in the results file")
    ap.add_argument("--tree", type=Path, help="run the CLI from this checkout (first on PYTHONPATH)")
    ap.add_argument("--model", help="e.g. qwen2.5-coder-0.5b (default: the CLI's, the embedded 1.5B)")
    ap.add_argument("--base-url", help="an OpenAI-compatible server instead of the embedded model")
    ap.add_argument("--only", help="comma-separated task names")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each task")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds one ask may take")
    ap.add_argument("--keep", type=Path, help="copy each task's folder here afterwards")
    ap.add_argument("--note", default="", help="recorded with the run")
    args = ap.parse_args()
    tasks = [t for t in TASKS if not args.only or t.name in args.only.split(",")]
    tree = args.tree.resolve() if args.tree else None
    imported_from = code_tree(cli_env(tree, args.base_url))
    checkout = tree or ROOT
    print(f"ci_magic from {imported_from} ({git(checkout, 'rev-parse', '--short', 'HEAD')})", flush=True)
    records: list[dict[str, Any]] = []
    for n in range(args.repeat):
        for t in tasks:
            record = run_task(
                t,
                tree=tree,
                model=args.model,
                base_url=args.base_url,
                timeout_s=args.timeout,
                keep=args.keep / f"run{n}" if args.keep else None,
            )
            record["run"] = n
            records.append(record)
            verdict = "PASS" if record["passed"] else "FAIL"
            why = "" if record["passed"] else f"  {record['problem'][:150]}"
            print(
                f"{verdict} {t.name:22s} {record['seconds']:6.1f} s  ask_ok={record.get('ask_ok')}{why}",
                flush=True,
            )
    passed = sum(r["passed"] for r in records)
    per_task = {
        t.name: f"{sum(r['passed'] for r in records if r['task'] == t.name)}/{args.repeat}" for t in tasks
    }
    run = {
        "command": " ".join(["python", "benchmarks/file_tasks.py", *sys.argv[1:]]),
        "commit": git(checkout, "rev-parse", "HEAD"),
        "working_copy_changes": bool(git(checkout, "status", "--porcelain", "--untracked-files=no")),
        "ci_magic_from": imported_from,
        "note": args.note,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "load_average_1min_at_end": os.getloadavg()[0],
        },
        "model": args.model or ("embedded default" if not args.base_url else "server default"),
        "passed": passed,
        "runs": len(records),
        "per_task": per_task,
        "median_seconds": statistics.median(r["seconds"] for r in records) if records else None,
        "results": records,
    }
    print(f"{args.label}: {passed}/{len(records)} passed; median {run['median_seconds']} s per task")
    doc: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    doc["tasks"] = {t.name: t.question for t in TASKS}
    doc.setdefault("runs", {})[args.label] = run
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
