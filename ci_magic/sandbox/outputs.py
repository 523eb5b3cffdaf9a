"""Turn iopub messages into nbformat v4 outputs: streams merged, clear_output honoured, bounded in count and
bytes, and made safe to show (``sanitize.py``) before anything else sees them."""

from __future__ import annotations

import json
import re
from typing import Any

import nbformat

from . import sanitize
from .live import LiveOutputs

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MAX_DISPLAYS = 50
#: One display output larger than this is replaced by a note (a chart is far smaller).
MAX_ONE_DISPLAY = 10_000_000


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


class OutputCollector:
    """Accumulates outputs of one execution; keeps the tail of oversized streams with a marker. With ``live``,
    each change is also passed on while the code runs (``live.py``), sanitised the same way."""

    def __init__(
        self,
        max_stream_bytes: int = 1_000_000,
        max_display_bytes: int = 20_000_000,
        live: LiveOutputs | None = None,
    ) -> None:
        self.live = live
        self.outputs: list[dict[str, Any]] = []
        self._max = max_stream_bytes
        self._max_display = max_display_bytes
        self._dropped: dict[str, int] = {}
        self._clear_pending = False
        self._displays_dropped = 0
        self._removed: set[str] = set()  # MIME types removed by the sanitiser
        self.received = 0  # bytes of output content received (a flood is stopped by the kernel runner)
        self._display_bytes = 0

    def add(self, msg: dict[str, Any]) -> None:
        """One iopub message from the (untrusted) kernel; anything malformed is ignored."""
        try:
            self._add(msg)
        except (KeyError, TypeError, ValueError, AttributeError):
            return

    def _add(self, msg: dict[str, Any]) -> None:
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._clear()
            return
        if kind not in ("stream", "display_data", "execute_result", "error", "update_display_data"):
            return
        size = _size(content)
        self.received += size
        if kind == "update_display_data":
            self._update(content, size)
            return
        if self._clear_pending:
            self._clear()
            self._clear_pending = False
        if kind == "stream":
            text = content.get("text")
            name = content.get("name")
            if isinstance(text, str) and name in ("stdout", "stderr"):
                shown = sanitize.shown_text(text)
                self._add_stream(nbformat.v4.new_output("stream", name=name, text=shown))
                if self.live is not None:
                    self.live.stream(name, shown)
            return
        # Errors count against the same caps as displays (code can send any number of them), but the first
        # is always kept: it is how the run failed, and what the repair loop is told (at most ~1 MB, see below).
        first_error = kind == "error" and not any(o["output_type"] == "error" for o in self.outputs)
        if not first_error and (
            self._displays() >= MAX_DISPLAYS
            or size > MAX_ONE_DISPLAY
            or self._display_bytes + size > self._max_display
        ):
            self._displays_dropped += 1
            return
        self._display_bytes += size
        if kind == "error":
            self._append(
                nbformat.v4.new_output(
                    "error",
                    ename=sanitize.shown_text(str(content.get("ename", "Error"))[:200]),
                    evalue=sanitize.shown_text(str(content.get("evalue", ""))[:5000]),
                    traceback=[
                        sanitize.shown_text(str(line)[:5000])
                        for line in list(content.get("traceback") or [])[:200]
                    ],
                )
            )
            return
        out = nbformat.v4.new_output(kind, **self._safe(content))
        out.setdefault("metadata", {})["ci_magic_size"] = size
        display_id = (content.get("transient") or {}).get("display_id")
        if kind == "display_data" and isinstance(display_id, str):
            out.setdefault("metadata", {})["ci_magic_display_id"] = display_id
        self._append(out, display_id if isinstance(display_id, str) else None)

    def _append(self, out: dict[str, Any], display_id: str | None = None) -> None:
        self.outputs.append(out)
        if self.live is not None:
            self.live.output(out, display_id)

    def tick(self) -> None:
        """Pass live changes on if it is time (called by the message loop, also while no message comes)."""
        if self.live is not None:
            self.live.tick()

    def _safe(self, content: dict[str, Any]) -> dict[str, Any]:
        data, removed = sanitize.mime_bundle(dict(content.get("data") or {}))
        self._removed.update(removed)
        safe: dict[str, Any] = {
            "data": data,
            "metadata": sanitize.metadata(dict(content.get("metadata") or {}), data),
        }
        if "execution_count" in content:
            count = content.get("execution_count")
            safe["execution_count"] = count if isinstance(count, int) else None
        return safe

    def _displays(self) -> int:
        return sum(o["output_type"] != "stream" for o in self.outputs)

    def _clear(self) -> None:
        self.outputs.clear()
        self._display_bytes = 0
        if self.live is not None:
            self.live.clear()

    def _update(self, content: dict[str, Any], size: int) -> None:
        display_id = (content.get("transient") or {}).get("display_id")
        for out in self.outputs:
            meta = out.get("metadata", {})
            if meta.get("ci_magic_display_id") == display_id:
                total = self._display_bytes - meta.get("ci_magic_size", 0) + size
                if size > MAX_ONE_DISPLAY or total > self._max_display:
                    return
                self._display_bytes, meta["ci_magic_size"] = total, size
                out["data"] = self._safe(content)["data"]
                if self.live is not None and isinstance(display_id, str):
                    self.live.update(display_id, out["data"])

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
        """The outputs as a list of valid nbformat outputs, with truncation markers in place (and what was
        pending live passed on)."""
        if self.live is not None:
            self.live.flush()
        result: list[dict[str, Any]] = []
        for out in self.outputs:
            out.get("metadata", {}).pop("ci_magic_display_id", None)
            out.get("metadata", {}).pop("ci_magic_size", None)
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
                    "stream",
                    name="stderr",
                    text=f"[… {self._displays_dropped} more displays not shown (too many or too large) …]\n",
                )
            )
        if self._removed:
            result.append(
                nbformat.v4.new_output(
                    "stream",
                    name="stderr",
                    text=f"[ci_magic removed output of type {', '.join(sorted(self._removed))}: it could run "
                    "script in your browser or load content from the network]\n",
                )
            )
        return result


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


def _size(value: Any) -> int:
    """Bytes of a decoded message part (JSON-encoded length: what it costs to keep)."""
    try:
        return len(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError, RecursionError):
        return MAX_ONE_DISPLAY + 1
