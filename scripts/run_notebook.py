"""Execute a notebook headless in a fresh kernel and print each %%ask question with its answer.

    python scripts/run_notebook.py NOTEBOOK [OUT] [--workdir DIR]

The notebook runs in a working copy of its folder (the files git would commit: tracked ones and new ones not
ignored), so the files its asks write (summary.xlsx, charts…) land there, never in the source tree, and every
run starts from the same files. ``--workdir DIR`` makes the copy in DIR and keeps it; by default it is a
temporary folder, removed afterwards. The executed notebook is written to OUT (default: NOTEBOOK with the
suffix .out.ipynb, next to it).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient


def text_of(output: dict) -> str:  # type: ignore[type-arg]
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    data = output.get("data", {})
    if "image/png" in data:
        return "[chart]\n"
    if "text/markdown" in data:
        return str(data["text/markdown"]) + "\n"
    return str(data.get("text/plain", "")) + "\n" if "text/plain" in data else ""


def inputs_of(folder: Path) -> list[Path]:
    """The files a fresh clone would have in ``folder`` (plus new, not ignored ones); every regular file when
    it is not in a git checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "."],
        cwd=folder,
        capture_output=True,
    )
    if listed.returncode == 0:
        names = [n for n in listed.stdout.decode().split("\0") if n and "/" not in n]
        return [folder / n for n in names if (folder / n).is_file()]
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook")
    ap.add_argument("out", nargs="?", help="where to write the executed notebook")
    ap.add_argument("--workdir", help="run in a copy of the notebook's folder made here, and keep it")
    args = ap.parse_args(argv)
    notebook = Path(args.notebook).resolve()
    target = Path(args.out) if args.out else notebook.with_suffix(".out.ipynb")
    work = (
        Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="ci_magic-notebook-"))
    )
    work.mkdir(parents=True, exist_ok=True)
    for source in inputs_of(notebook.parent):
        if not source.name.endswith(".out.ipynb"):
            shutil.copy2(source, work / source.name)
    before = {p for p in work.rglob("*") if p.is_file()}
    nb = nbformat.read(notebook, as_version=4)
    started = time.monotonic()
    asks = sum(1 for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%ask"))
    clock: dict[int, float] = {}

    # Each ask as it starts and ends: executing the notebook takes minutes with the embedded model.
    def starting(cell: Any, cell_index: int, **_: Any) -> None:
        if cell.cell_type == "code" and cell.source.startswith("%%ask"):
            clock[cell_index] = time.monotonic()
            number = sum(1 for i in clock if i <= cell_index)
            question = " ".join(cell.source.splitlines()[1:2]).strip() or cell.source.splitlines()[0]
            print(f"[ask {number}/{asks}] {question[:100]} …", flush=True)

    def finished(cell: Any, cell_index: int, execute_reply: Any = None, **_: Any) -> None:
        if cell_index in clock:
            status = (execute_reply or {}).get("content", {}).get("status", "?")
            print(f"    {status} in {time.monotonic() - clock[cell_index]:.0f} s", flush=True)

    client = NotebookClient(
        nb,
        timeout=1800,
        kernel_name="python3",
        resources={"metadata": {"path": str(work)}},
        on_cell_execute=starting,
        on_cell_executed=finished,
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, target)
        written = sorted(
            (str(p.relative_to(work)), p.stat().st_size)
            for p in work.rglob("*")
            if p.is_file() and p not in before
        )
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("%%ask"):
            print("=" * 78)
            print(cell.source)
            print("-" * 78)
            print("".join(text_of(o) for o in cell.outputs).strip())
    print("=" * 78)
    print(f"executed {notebook.name} in {time.monotonic() - started:.0f} s; outputs saved to {target}")
    where = f"in {work}" if args.workdir else "in its working copy (removed; keep it with --workdir DIR)"
    for name, size in written:
        print(f"  the notebook wrote {name} ({size:,} bytes) {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
