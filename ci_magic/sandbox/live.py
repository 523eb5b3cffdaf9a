"""The outputs of a running execution, passed on while it runs: what a cell that prints as it goes shows.

The kernel runner's collector (``outputs.py``) records each change it makes — text appended to a stream, an
output added, a display updated by its id, everything cleared — as an *op*, after sanitising; :class:`LiveOutputs`
hands the ops pending to a sink at most every :data:`INTERVAL_S` (and once more when the run ends), so a loop that
prints 100,000 lines costs the parent a few updates a second, and a burst's text is cut to its last
:data:`MAX_TEXT_PER_FLUSH` characters (the final outputs keep the usual caps). Front ends replay the ops with
:meth:`ci_magic.core.events.Output.apply`. An op is one of::

    {"op": "stream", "name": "stdout" | "stderr", "text": str}      # appended to the last stream of that name
    {"op": "output", "output": <nbformat output>, "display_id": str | None}
    {"op": "update", "display_id": str, "data": <mime bundle>}      # update_display_data
    {"op": "clear"}                                                 # clear_output: everything so far
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from ..core.executor import OutputSink as LiveSink

__all__ = ["INTERVAL_S", "MAX_TEXT_PER_FLUSH", "LiveOutputs", "LiveSink", "live_op"]

#: The first output goes out at once; later ones at most this often.
INTERVAL_S = 0.1
#: Stream text of one flush at most: a burst keeps its end, which is what a progress bar or a log shows.
MAX_TEXT_PER_FLUSH = 20_000


class LiveOutputs:
    """Pending ops of one execution and when to pass them on (see the module docstring)."""

    def __init__(
        self, sink: LiveSink, interval: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._sink = sink
        self._interval = interval
        self._clock = clock
        self._ops: list[dict[str, Any]] = []
        self._last: float | None = None
        self.flushes = 0
        self.skipped = 0  # characters of stream text never passed on live (still in the final outputs)

    def stream(self, name: str, text: str) -> None:
        last = self._ops[-1] if self._ops else None
        if last is not None and last["op"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            last = {"op": "stream", "name": name, "text": text}
            self._ops.append(last)
        excess = len(last["text"]) - MAX_TEXT_PER_FLUSH
        if excess > 0:
            self.skipped += excess
            # From the start of a line where one is near, so what shows is whole lines.
            tail = last["text"][excess:]
            cut = tail.find("\n", 0, 200)
            last["text"] = tail[cut + 1 :] if cut >= 0 else tail

    def output(self, output: dict[str, Any], display_id: str | None) -> None:
        shown = copy.deepcopy(output)
        meta = shown.get("metadata")
        if isinstance(meta, dict):
            for key in [k for k in meta if k.startswith("ci_magic_")]:
                del meta[key]
        self._ops.append({"op": "output", "output": shown, "display_id": display_id})

    def update(self, display_id: str, data: dict[str, Any]) -> None:
        self._ops.append({"op": "update", "display_id": display_id, "data": copy.deepcopy(data)})

    def clear(self) -> None:
        self._ops = [{"op": "clear"}]  # what was pending is cleared anyway

    def tick(self) -> None:
        """Pass on what is pending if the interval has passed (called after each message and on each idle poll)."""
        now = self._clock()
        if self._ops and (self._last is None or now - self._last >= self._interval):
            self.flush()

    def flush(self) -> None:
        """Pass on what is pending now (the run ended)."""
        if not self._ops:
            return
        ops, self._ops = self._ops, []
        self._last = self._clock()
        self.flushes += 1
        self._sink(ops)


def live_op(output: dict[str, Any]) -> dict[str, Any]:
    """The op that shows one finished output (a stream's text, or any other output)."""
    if output.get("output_type") == "stream":
        return {"op": "stream", "name": output.get("name", "stdout"), "text": output.get("text", "")}
    return {"op": "output", "output": output, "display_id": None}
