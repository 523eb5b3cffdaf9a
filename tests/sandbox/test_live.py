"""Outputs passed on while code runs (sandbox/live.py and the collector's side of it): coalesced, bounded,
sanitised like the final outputs, and replayed by front ends to the same outputs."""

from __future__ import annotations

import time
from typing import Any

from conftest import fenced

from ci_magic.core.events import Event, Output
from ci_magic.engine.interpreter import Interpreter
from ci_magic.notebook.liveview import terminal_tail
from ci_magic.providers.fake import FakeModelServer
from ci_magic.sandbox.live import MAX_TEXT_PER_FLUSH, LiveOutputs
from ci_magic.sandbox.outputs import OutputCollector


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def msg(kind: str, **content: Any) -> dict[str, Any]:
    return {"msg_type": kind, "content": content}


def collector() -> tuple[OutputCollector, list[list[dict[str, Any]]], Clock]:
    flushed: list[list[dict[str, Any]]] = []
    clock = Clock()
    return OutputCollector(live=LiveOutputs(flushed.append, 0.1, clock)), flushed, clock


def test_the_first_output_goes_at_once_and_a_burst_in_one_flush() -> None:
    out, flushed, clock = collector()
    out.add(msg("stream", name="stdout", text="first\n"))
    out.tick()
    assert flushed == [[{"op": "stream", "name": "stdout", "text": "first\n"}]]
    for i in range(1000):  # a burst within the interval: one op, not a thousand
        out.add(msg("stream", name="stdout", text=f"{i}\n"))
        out.tick()
    assert len(flushed) == 1
    clock.now = 0.2
    out.tick()
    assert len(flushed) == 2 and len(flushed[1]) == 1 and flushed[1][0]["text"].endswith("999\n")
    final = out.finish()  # nothing was pending: no extra flush; the final outputs hold everything
    assert len(flushed) == 2 and final[0]["text"].startswith("first\n0\n1\n")


def test_a_flood_is_cut_to_its_end_and_control_sequences_never_pass() -> None:
    out, flushed, clock = collector()
    out.add(msg("stream", name="stdout", text="x"))
    out.tick()
    out.add(msg("stream", name="stdout", text="\x1b]52;c;cGFzdGU=\x07" + "line\n" * 100_000))
    clock.now = 1.0
    out.tick()
    text = flushed[1][0]["text"]
    assert len(text) <= MAX_TEXT_PER_FLUSH and text.startswith("line\n") and "\x1b" not in text
    assert out.live is not None and out.live.skipped > 400_000


def test_displays_updates_and_clears_replay_to_what_the_collector_keeps() -> None:
    out, flushed, clock = collector()
    steps = [
        msg("stream", name="stdout", text="a\n"),
        msg("display_data", data={"text/plain": "10%"}, metadata={}, transient={"display_id": "bar"}),
        msg("update_display_data", data={"text/plain": "90%"}, metadata={}, transient={"display_id": "bar"}),
        msg("display_data", data={"text/html": "<script>alert(1)</script>", "text/plain": "t"}, metadata={}),
        msg("clear_output", wait=False),
        msg("stream", name="stderr", text="b\n"),
        msg("error", ename="ValueError", evalue="bad", traceback=["ValueError: bad"]),
    ]
    shown: list[dict[str, Any]] = []
    for step in steps:
        out.add(step)
        clock.now += 0.2  # every change flushed on its own (a clear drops only what is pending)
        out.tick()
    final = out.finish()
    for ops in flushed:
        Output(ops).apply(shown)
    assert [o["output_type"] for o in shown] == [o["output_type"] for o in final] == ["stream", "error"]
    kept: list[dict[str, Any]] = []
    for ops in flushed:
        for op in ops:
            if op["op"] == "output" and "data" in op["output"]:
                kept.append(op["output"]["data"])
    assert {"text/html": "", "text/plain": "t"} in kept  # the script cleaned out, as from the final outputs
    before_clear: list[dict[str, Any]] = []
    for ops in flushed:
        Output([op for op in ops if op["op"] != "clear"]).apply(before_clear)
    assert any(o.get("display_id") == "bar" and o["data"] == {"text/plain": "90%"} for o in before_clear)


def test_a_terminal_shows_the_last_lines_with_carriage_returns_applied() -> None:
    bar = "\r 10%|#   |\r 50%|##  |\r100%|####|\n"
    assert terminal_tail("start\n" + bar, 5) == "start\n100%|####|\n"
    assert terminal_tail("\n".join(str(i) for i in range(100)), 3) == "97\n98\n99"


def test_a_real_sandbox_passes_lines_on_while_the_code_runs(
    fake: FakeModelServer, interpreter: Interpreter
) -> None:
    """The Python API sees ``output`` events in order, the first long before the run ends."""
    events: list[tuple[float, Event]] = []
    code = "import time\nfor i in range(5):\n    print(f'line {i}', flush=True)\n    time.sleep(0.5)"
    fake.add(fenced(code))
    result = interpreter.ask("Count slowly", on_event=lambda e: events.append((time.monotonic(), e)))
    assert result.ok
    live = [(t, e.data) for t, e in events if isinstance(e.data, Output)]
    done = next(t for t, e in events if e.kind == "exec_done")
    text = "".join(op.get("text", "") for _, data in live for op in data.ops)
    assert text == "".join(f"line {i}\n" for i in range(5))
    assert done - live[0][0] > 1.5 and len(live) >= 4  # the first line came about 2 s before the end
