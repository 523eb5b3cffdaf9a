"""The one record of a session's asks (engine/ledger.py), as the interpreter keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import fenced

from ci_magic.core.errors import BudgetExceeded
from ci_magic.core.settings import Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.providers.fake import FakeModelServer, Turn
from ci_magic.sandbox.fake import ScriptedExecutor


def test_every_ask_is_entered_once_with_its_trace_result_and_turn(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    fake.add(fenced("x = 1\nprint(x)"), Turn(fenced("print(2)"), usage=(5000, 10)))
    executor = ScriptedExecutor()
    executor.add("1\n", "2\n")
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        first = it.ask("one")
        with pytest.raises(BudgetExceeded):
            it.ask("two", budget="100")
        entries = list(it.ledger)
        assert [e.question for e in entries] == ["one", "two"] and all(e.ended for e in entries)
        assert entries[0].result is first and entries[0].trace.ask_id == first.ask_id
        assert entries[1].result is None and entries[1].summary is not None and entries[1].summary.error
        assert it.asks == [e.summary for e in entries]  # the history table's rows, failed ask included
        assert [t.question for t in it.ledger.turns(5)] == ["one"]  # what a follow-up is told
        it.reset()
        assert it.ledger.turns(5) == [] and len(it.ledger) == 2  # forgotten by follow-ups, still on record
