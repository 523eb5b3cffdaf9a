"""Describing the working folder's files, as a ratio to listing them.

    python benchmarks/files_context.py [--repeat 15] [--budget 2000]

Builds a temporary folder of 1,000 files of mixed kinds, interleaved, in four folders (CSV, Excel, Parquet,
JSON, JSON Lines, PNG, PDF when pypdf is importable, Python/Markdown/notebooks), twelve of them sparse 1 GB
files (CSV, Parquet- and JSON-looking), and times ``describe_files`` (median of ``--repeat`` runs, warm page
cache) against a baseline measured in the same run: ``os.scandir`` + ``stat`` over the same tree. Also times
the first call in a fresh process, which imports openpyxl, pypdf and Pillow when it meets such files.
Goal: well under a second. Prints one line per figure and writes benchmarks/results/files_context.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ci_magic.context.files import describe_files

ROOT = Path(__file__).resolve().parents[1]
GB = 1_000_000_000
FOLDERS = ["", "data", "data/2024", "reports"]


def timed(fn: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds of ``repeat`` calls (wall time, or ``time.process_time`` on a busy machine)."""
    samples = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return statistics.median(samples)


def sparse(path: Path, head: bytes = b"") -> None:
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(GB)


def build(root: Path) -> Counter[str]:
    """1,000 files; one template per kind, copied (the content does not matter to the cost, the kind does)."""
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    templates = root / ".templates"
    templates.mkdir()
    pq.write_table(
        pa.table({"id": range(1000), "amount": [i * 0.5 for i in range(1000)]}), templates / "t.parquet"
    )
    (templates / "t.json").write_text(
        json.dumps([{"id": i, "name": f"n{i}", "ok": True} for i in range(200)])
    )
    (templates / "t.jsonl").write_text(
        "".join(json.dumps({"ts": i, "kind": "click"}) + "\n" for i in range(200))
    )
    (templates / "t.py").write_text("import pandas as pd\n" * 50)
    (templates / "t.md").write_text("# Notes\n\nSome text.\n" * 20)
    (templates / "t.ipynb").write_text(json.dumps({"cells": [], "nbformat": 4, "nbformat_minor": 5}))
    kinds = {"csv": 310, "parquet": 150, "json": 100, "jsonl": 50, "py": 40, "md": 30, "ipynb": 20}
    try:
        import openpyxl

        wb = openpyxl.Workbook()
        for title in ("Q1", "Q2", "Q3"):
            ws = wb.create_sheet(title)
            ws.append(["date", "region", "units", "price"])
            for i in range(500):
                ws.append([f"2024-01-{i % 28 + 1:02d}", "north", i, i * 1.5])
        wb.save(templates / "t.xlsx")
        kinds["xlsx"] = 100
    except ImportError:
        kinds["csv"] += 100
    try:
        from PIL import Image

        Image.new("RGB", (640, 480), "white").save(templates / "t.png")
        kinds["png"] = 150
    except ImportError:
        kinds["csv"] += 150
    try:
        from pypdf import PdfWriter

        writer = PdfWriter()
        for _ in range(12):
            writer.add_blank_page(width=595, height=842)
        with open(templates / "t.pdf", "wb") as f:
            writer.write(f)
        kinds["pdf"] = 50
    except ImportError:
        kinds["md"] += 50
    made: Counter[str] = Counter()
    order = [kind for kind, count in kinds.items() for _ in range(count)]
    random.Random(0).shuffle(
        order
    )  # kinds interleaved: the files a budget shows are a mix, as in a real folder
    for n, kind in enumerate(order):
        path = root / FOLDERS[n % len(FOLDERS)] / f"file_{n:04d}.{kind}"
        if kind == "csv":
            cols = ",".join(f"col_{n}_{j}" for j in range(6))
            path.write_text(
                cols + "\n" + "\n".join(",".join(str(i * j) for j in range(6)) for i in range(200))
            )
        else:
            shutil.copyfile(templates / f"t.{kind}", path)
        made[kind] += 1
    shutil.rmtree(templates)
    huge = (
        [("csv", b"id,amount,region\n1,2.5,north\n")] * 5
        + [("parquet", b"")] * 5
        + [("json", b'[{"id": 1}, ')] * 2
    )
    for i, (kind, head) in enumerate(huge):  # replace small files: the folder still holds 1,000
        victim = next((root / "data").glob(f"file_*.{kind}"))
        victim.unlink()
        made[kind] -= 1
        sparse(root / "data" / f"huge_{i:02d}.{kind}", head)
        made[f"sparse 1 GB {kind}"] += 1
    return made


def scan(root: Path) -> int:
    """The baseline: list the tree with os.scandir and stat every entry."""
    total, stack = 0, [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    total += st.st_size
    return total


def first_call(root: Path, budget: int) -> float:
    """Seconds of the first describe_files in a fresh process (pandas imported first, as in a notebook)."""
    code = (
        "import sys, time; import pandas; from pathlib import Path; "
        "from ci_magic.context.files import describe_files; t0 = time.perf_counter(); "
        f"describe_files(Path(sys.argv[1]), budget_tokens={budget}); print(time.perf_counter() - t0)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument(
        "--budget", type=int, default=2000, help="token budget (Ask.context_tokens defaults to 2000)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        made = build(root)
        files = sum(1 for p in root.rglob("*") if p.is_file())
        apparent = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        describe_files(root, budget_tokens=args.budget)  # imports the optional libraries once
        ctx = describe_files(root, budget_tokens=args.budget)
        full = describe_files(root, budget_tokens=1_000_000)
        ours = timed(lambda: describe_files(root, budget_tokens=args.budget), args.repeat)
        ours_cpu = timed(
            lambda: describe_files(root, budget_tokens=args.budget), args.repeat, time.process_time
        )
        everything = timed(lambda: describe_files(root, budget_tokens=1_000_000), max(3, args.repeat // 3))
        baseline = timed(lambda: scan(root), args.repeat)
        cold = first_call(root, args.budget)
    results = {
        "command": " ".join(["python", "benchmarks/files_context.py", *sys.argv[1:]]),
        "commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "files": files,
        "apparent_bytes": apparent,
        "mix": dict(made),
        "budget_tokens": args.budget,
        "describe_ms": ours * 1000,
        "describe_cpu_ms": ours_cpu * 1000,
        "load_average_1min": os.getloadavg()[0],
        "tokens": ctx.tokens,
        "files_described": len(ctx.files),
        "scandir_stat_ms": baseline * 1000,
        "ratio": ours / baseline,
        "unlimited_budget_ms": everything * 1000,
        "unlimited_budget_tokens": full.tokens,
        "unlimited_budget_files_described": len(full.files),
        "first_call_fresh_process_ms": cold * 1000,
    }
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        f"{files:,} files, {apparent / GB:.1f} GB apparent ({', '.join(f'{v} {k}' for k, v in made.items())})"
    )
    print(
        f"describe_files, budget {args.budget:,} tokens: {ours * 1000:.1f} ms (CPU {ours_cpu * 1000:.1f} ms), "
        f"{ctx.tokens:,} tokens, "
        f"{len(ctx.files)} files described; os.scandir + stat of the tree {baseline * 1000:.2f} ms "
        f"(ratio {ours / baseline:.1f})"
    )
    print(
        f"unlimited budget: {everything * 1000:.1f} ms, {full.tokens:,} tokens, "
        f"{len(full.files)} files described"
    )
    print(f"first call in a fresh process (optional libraries imported on first use): {cold * 1000:.0f} ms")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "files_context.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
