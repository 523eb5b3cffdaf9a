"""The one record of a session's asks: what each spent, its result, its trace, what follow-ups see of it, and what
the front end made of it (the notebook's cells). ``%ask_history``, ``%ask_export``, follow-up questions and the
insertion span of a trace all read it; nothing else keeps a list of asks.

An entry is opened when an ask starts (so its trace is there to add to while it runs) and closed with its
summary when it ends, whether it finished or raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..core.results import AskResult, AskSummary
from ..observe.trace import AskTrace
from ..sandbox.scan import assigned_names
from .prompts import Turn

__all__ = ["AskEntry", "Ledger"]


@dataclass
class AskEntry:
    """One ask of a session, from its start to what the front end made of it."""

    ask_id: str
    question: str
    trace: AskTrace
    summary: AskSummary | None = None  # when it ended, finished or raised: what it spent
    result: AskResult | None = None  # when it finished
    turn: Turn | None = None  # what follow-up questions see of a working ask (until a reset)
    cells: Any = None  # what the front end made of it: the notebook's Insertion

    @property
    def ended(self) -> bool:
        return self.summary is not None


class Ledger:
    """The asks of one session, in order (see the module docstring)."""

    def __init__(self) -> None:
        self._entries: list[AskEntry] = []
        self._forgotten = 0  # entries before this index are no longer seen by follow-ups (a reset)

    def open(self, ask_id: str, question: str, trace: AskTrace) -> AskEntry:
        entry = AskEntry(ask_id, question, trace)
        self._entries.append(entry)
        return entry

    def get(self, ask_id: str | None) -> AskEntry | None:
        return next((e for e in reversed(self._entries) if e.ask_id == ask_id), None)

    @property
    def last(self) -> AskEntry | None:
        return self._entries[-1] if self._entries else None

    def __iter__(self) -> Iterator[AskEntry]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def summaries(self) -> list[AskSummary]:
        """What every ended ask spent, failed ones included: the rows of ``%ask_history``."""
        return [e.summary for e in self._entries if e.summary is not None]

    def turns(self, limit: int) -> list[Turn]:
        """The last ``limit`` working asks since the last reset: what a follow-up question is told."""
        return (
            [e.turn for e in self._entries[self._forgotten :] if e.turn is not None][-limit:] if limit else []
        )

    def bound_names(self) -> frozenset[str]:
        """Names the working asks' code bound in the sandbox since the last reset: an import added to new code
        (engine/imports.py) must not hide one."""
        return frozenset(
            n
            for e in self._entries[self._forgotten :]
            if e.turn is not None
            for n in assigned_names(e.turn.code)
        )

    def forget_turns(self) -> None:
        """Follow-ups no longer see the asks so far (the sandbox that held their variables is gone)."""
        self._forgotten = len(self._entries)
