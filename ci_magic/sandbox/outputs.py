"""Turn iopub messages into nbformat v4 outputs: streams merged, clear_output honoured, size bounded."""

from __future__ import annotations

import re
from typing import Any

import nbformat

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MAX_DISPLAYS = 50


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


class OutputCollector:
    """Accumulates outputs of one execution; keeps the tail of oversized streams with a marker."""

    def __init__(self, max_stream_bytes: int = 1_000_000) -> None:
        self.outputs: list[dict[str, Any]] = []
        self._max = max_stream_bytes
        self._dropped: dict[str, int] = {}
        self._clear_pending = False
        self._displays_dropped = 0

    def add(self, msg: dict[str, Any]) -> None:
        kind = msg["msg_type"]
        if kind == "clear_output":
            if msg["content"].get("wait"):
                self._clear_pending = True
            else:
                self.outputs.clear()
            return
        if kind == "update_display_data":
            self._update(msg)
            return
        if kind not in ("stream", "display_data", "execute_result", "error"):
            return
        if self._clear_pending:
            self.outputs.clear()
            self._clear_pending = False
        out = nbformat.v4.output_from_msg(msg)
        if kind == "display_data" and msg["content"].get("transient", {}).get("display_id"):
            out.setdefault("metadata", {})["ci_magic_display_id"] = msg["content"]["transient"]["display_id"]
        if kind == "stream":
            self._add_stream(out)
            return
        if kind in ("display_data", "execute_result") and self._displays() >= MAX_DISPLAYS:
            self._displays_dropped += 1
            return
        self.outputs.append(out)

    def _displays(self) -> int:
        return sum(o["output_type"] != "stream" for o in self.outputs)

    def _update(self, msg: dict[str, Any]) -> None:
        display_id = msg["content"].get("transient", {}).get("display_id")
        for out in self.outputs:
            if out.get("metadata", {}).get("ci_magic_display_id") == display_id:
                out["data"] = msg["content"]["data"]

    def _add_stream(self, out: dict[str, Any]) -> None:
        last = self.outputs[-1] if self.outputs else None
        if last is not None and last["output_type"] == "stream" and last["name"] == out["name"]:
            last["text"] += out["text"]
            target = last
        else:
            self.outputs.append(out)
            target = out
        excess = len(target["text"]) - self._max
        if excess > 0:
            self._dropped[target["name"]] = self._dropped.get(target["name"], 0) + excess
            target["text"] = target["text"][excess:]

    def finish(self) -> list[dict[str, Any]]:
        """The outputs as a list of valid nbformat outputs, with truncation markers in place."""
        result: list[dict[str, Any]] = []
        for out in self.outputs:
            out.get("metadata", {}).pop("ci_magic_display_id", None)
            if out["output_type"] == "stream" and out["name"] in self._dropped:
                dropped = self._dropped.pop(out["name"])
                out["text"] = (
                    f"[… {dropped:,} characters of {out['name']} truncated; the end follows …]\n"
                    + out["text"]
                )
            result.append(out)
        if self._displays_dropped:
            result.append(
                nbformat.v4.new_output(
                    "stream", name="stderr", text=f"[… {self._displays_dropped} more displays not shown …]\n"
                )
            )
        return result

    def stdout_tail(self, chars: int = 1500) -> str:
        text = "".join(o["text"] for o in self.outputs if o["output_type"] == "stream")
        return strip_ansi(text[-chars:])


_CELL = re.compile(r"^\s*(Cell In\[\d+\], line \d+|File \"<\w+-input-\d+-\w+>\", line \d+)")
_LIBRARY = re.compile(r"^File (\S+?):\d+, in |^  File \"([^\"]+)\", line \d+, in ")
_PACKAGE = re.compile(r"(?:site|dist)-packages/([A-Za-z0-9_]+)")
_STDLIB = re.compile(r"/lib/python3\.\d+/([A-Za-z0-9_]+)")


def trim_traceback(lines: list[str], chars: int = 3000) -> str:
    """The parts of an IPython traceback a model can act on, within ``chars``.

    The error line comes first; then the user's own code around the failing line (the ``Cell In[..]`` block);
    library frames are reduced to the name of the library they are in. Long tracebacks through pandas
    internals otherwise bury the one line that matters.
    """
    text = strip_ansi("\n".join(lines))
    rows = [r for r in text.splitlines() if r.strip() and not set(r.strip()) <= {"-"}]
    if not rows:
        return text[-chars:]
    error_line = rows[-1]
    cell: list[str] = []
    libraries: list[str] = []
    in_cell = False
    for row in rows[:-1]:
        if _CELL.match(row):
            in_cell = True
            cell.append(row.strip())
            continue
        library = _LIBRARY.match(row)
        if library:
            in_cell = False
            path = library.group(1) or library.group(2) or ""
            match = _PACKAGE.search(path) or _STDLIB.search(path)
            name = match.group(1) if match else path.strip("/").split("/")[0] or "a library"
            if name not in libraries:
                libraries.append(name)
            continue
        if in_cell:
            cell.append(row)
    parts = [error_line]
    if cell:
        parts.append("Where it happened in your code:\n" + "\n".join(cell))
    if libraries:
        parts.append("(raised inside " + ", ".join(libraries) + ")")
    summary = "\n".join(parts)
    return summary if len(summary) <= chars else error_line[: chars // 2] + "\n" + summary[-chars // 2 :]
