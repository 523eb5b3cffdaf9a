"""Progress events emitted by the loop, consumed by the magic's live view, the panel bridge and traces.

Every event of one ask carries that ask's id (``ask_id``): the :class:`~ci_magic.engine.interpreter.Interpreter`
stamps it on the way out, so the loop and the vote emit events without knowing it, and the trace, the panel and
the bridge agree on which ask an event belongs to. The kinds and their data are the wire format of the panel's
``event`` message (``labextension/src/protocol.ts``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal[
    "context",  # data: {"text": str, "tokens": int}
    "model_start",  # data: {}
    "token",  # data: {"text": str}  (a streamed fragment of the model's reply)
    "model_done",  # data: {"prompt_tokens": int, "completion_tokens": int, "seconds": float}
    "code",  # data: {"code": str}
    "no_code",  # data: {"problem": str}
    "exec_done",  # data: {"outcome": str, "outputs": list, "error": str | None, "seconds": float}
    "retry",  # data: {"problem": str}
    "answer_start",  # data: {"best_effort": bool} (the answer in words, or a failed ask's format step, begins)
    "answer",  # data: {"text": str | None, "best_effort": bool, "prompt_tokens": int, "completion_tokens": int}
    "vote",  # data: {"chosen_attempt": int | None (its number), "votes": list[int]} (ci_magic/vote.py)
    "done",  # data: {"ok": bool, "attempts": int, "prompt_tokens": int, "completion_tokens": int,
    #                "warnings": list[str], "answer": str | None, "best_effort": str | None, "files": list}
]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    attempt: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    ask_id: str = ""  # set by Interpreter.ask for every event of the ask ("" only before it is stamped)


EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default sink."""
