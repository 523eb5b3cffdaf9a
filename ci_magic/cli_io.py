"""What ``ci-magic ask`` reads and writes besides the question: the ``--data`` tables and the images of
``--save-images``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from .core.errors import UsageError


def load_table(spec: str) -> tuple[str, Any]:
    import pandas as pd

    name, sep, path = spec.partition("=")
    if not sep or not name.isidentifier() or not path:
        raise UsageError(f"--data expects NAME=PATH with NAME a Python identifier, got {spec!r}.")
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--data {name}: no such file {path!r}.")
    suffix = file.suffix.lower()
    readers: dict[str, Any] = {
        ".csv": pd.read_csv,
        ".tsv": lambda p: pd.read_csv(p, sep="\t"),
        ".parquet": pd.read_parquet,
        ".json": pd.read_json,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".xlsx": pd.read_excel,
        ".xls": pd.read_excel,
    }
    reader = readers.get(suffix, pd.read_csv)
    try:
        return name, reader(file)
    except Exception as exc:
        raise UsageError(
            f"--data {name}: could not read {path!r} as a table ({type(exc).__name__}: {exc})."
        ) from None


def save_images(outputs: list[dict[str, Any]], directory: str | None) -> list[str]:
    if not directory:
        return []
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    saved = []
    for i, out in enumerate(outputs):
        data = out.get("data", {})
        if "image/png" in data:
            path = target / f"output-{i}.png"
            path.write_bytes(base64.b64decode(data["image/png"]))
            saved.append(str(path))
    return saved


def live_text(ops: list[dict[str, Any]]) -> str:
    """What a terminal shows of a running execution's live ops (ci_magic/sandbox/live.py): the text printed, and a
    one-line mention of anything else (a chart, a table). Carriage returns stay, so a progress bar redraws."""
    parts = []
    for op in ops:
        if op.get("op") == "stream":
            parts.append(str(op.get("text", "")))
        elif op.get("op") == "output":
            output = op.get("output") or {}
            if output.get("output_type") == "error":
                parts.append(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}\n")
                continue
            data = output.get("data") or {}
            kinds = ", ".join(sorted(data)) or "empty"
            text = data.get("text/plain")
            parts.append(f"{text}\n" if isinstance(text, str) and len(data) == 1 else f"[output: {kinds}]\n")
    return "".join(parts)
