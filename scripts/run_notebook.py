"""Execute a notebook headless in a fresh kernel and print each %%ask question with its answer."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def text_of(output: dict) -> str:  # type: ignore[type-arg]
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    data = output.get("data", {})
    if "image/png" in data:
        return "[chart]\n"
    return str(data.get("text/plain", "")) + "\n" if "text/plain" in data else ""


def main(path: str, out: str | None = None) -> int:
    notebook = Path(path).resolve()
    nb = nbformat.read(notebook, as_version=4)
    started = time.monotonic()
    client = NotebookClient(
        nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
    )
    try:
        client.execute()
    finally:
        target = Path(out) if out else notebook.with_suffix(".out.ipynb")
        nbformat.write(nb, target)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("%%ask"):
            print("=" * 78)
            print(cell.source)
            print("-" * 78)
            print("".join(text_of(o) for o in cell.outputs).strip())
    print("=" * 78)
    print(f"executed {notebook.name} in {time.monotonic() - started:.0f} s; outputs saved to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
