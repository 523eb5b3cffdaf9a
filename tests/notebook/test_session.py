"""One core, thin front ends: the preview is the request, one ask id per ask, every ask on the record, the
%%ask options declared once (fake model, real sandbox kernels, real IPython shells)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import connect, fenced, shown
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from ci_magic.core.errors import UsageError
from ci_magic.core.events import Event
from ci_magic.core.results import AskResult
from ci_magic.core.settings import Limits, Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.extension import session_of
from ci_magic.notebook import options
from ci_magic.notebook.bridge import Bridge
from ci_magic.notebook.config import Ask
from ci_magic.notebook.session import NotebookSession, Preview
from ci_magic.providers.fake import FakeModelServer, Turn
from ci_magic.reproduce.export import fallback_outputs, split_ask
from ci_magic.sandbox.fake import ScriptedExecutor, Step


def the_session(shell: InteractiveShell) -> NotebookSession:
    session = session_of(shell)
    assert session is not None
    return session


def spans(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in directory.glob("*.jsonl") for line in f.read_text().splitlines()]


# -- the preview is the request ----------------------------------------------------------------------------------


def test_interpreter_preview_is_what_the_follow_up_sends(
    fake: FakeModelServer, interpreter: Interpreter, sales: pd.DataFrame
) -> None:
    fake.add(
        fenced("by_month = sales.groupby(sales.date.dt.month).revenue.sum()"), fenced("print(len(by_month))")
    )
    assert interpreter.ask("revenue by month", {"sales": sales}).ok
    preview = interpreter.preview("how many months?", {"sales": sales})
    assert interpreter.ask("how many months?", {"sales": sales}).ok
    assert preview == fake.requests[1]["messages"]  # system, the earlier ask and its code, data, question
    assert "Question: revenue by month" in [m["content"] for m in preview]
    assert interpreter.context({"sales": sales}) in preview[-1]["content"]


def test_magic_and_panel_previews_of_a_follow_up_are_what_it_sends(
    scripted_shell: InteractiveShell, fake: FakeModelServer, scripted: ScriptedExecutor
) -> None:
    shell = scripted_shell
    avg = pd.Series([15.0, 30.0], index=pd.Index([1, 2], name="month"), name="revenue")
    scripted.add(Step("", creates={"avg": avg}), "30.0\n")
    fake.add(fenced("avg = sales.groupby('month').revenue.mean()"), fenced("print(avg.max())"))
    bridge = Bridge(shell, the_session(shell))
    bridge.attach()
    comm = connect(bridge)
    try:
        with capture_output() as cap:
            assert shell.run_cell("%%ask\nAverage revenue by month").success
            comm.deliver({"v": 1, "type": "context", "frames": None})
            assert shell.run_cell("%%ask --context-only\nAnd the best month?").success
            assert shell.run_cell("%%ask\nAnd the best month?").success
    finally:
        bridge.close()
    assert len(fake.requests) == 2  # the preview sent nothing
    sent = fake.requests[1]["messages"]
    expected = Preview(sent, [], 0).text()
    assert expected in cap.stdout  # exactly the messages, the earlier question and code included
    assert "Question: Average revenue by month" in expected and "avg = sales.groupby" in expected
    # The panel's preview (no question typed yet) is the same request with a placeholder question.
    panel = comm.of_type("context")[-1]
    assert panel["text"] == expected.replace("And the best month?", "(your question)")
    assert panel["tokens"] > 0 and panel["frames"] == ["sales", "avg"]


# -- one id per ask --------------------------------------------------------------------------------------------


def test_every_event_the_trace_and_the_result_carry_the_ask_id(
    fake: FakeModelServer, interpreter: Interpreter, tmp_path_factory: pytest.TempPathFactory
) -> None:
    fake.add(fenced("x = 1/0"), fenced("print(1)"), fenced("print(2)"))
    events: list[Event] = []
    result = interpreter.ask("q", on_event=events.append, ask_id="given-id")
    assert result.ask_id == "given-id" and {e.ask_id for e in events} == {"given-id"}
    assert {"context", "model_start", "token", "exec_done", "retry", "done"} <= {e.kind for e in events}
    assert interpreter.ledger.last is not None and interpreter.ledger.last.trace.ask_id == "given-id"
    traces = tmp_path_factory.getbasetemp() / "traces"
    assert {s["name"] for s in spans(traces) if s["ask_id"] == "given-id"} >= {
        "ask",
        "model_call",
        "execution",
    }
    events.clear()
    second = interpreter.ask("again", on_event=events.append)  # no id given: a new one, the same everywhere
    assert second.ask_id not in ("", "given-id") and {e.ask_id for e in events} == {second.ask_id}
    assert interpreter.asks[-1].ask_id == second.ask_id


def test_panel_and_cell_asks_keep_their_ids_end_to_end(
    scripted_shell: InteractiveShell, fake: FakeModelServer, scripted: ScriptedExecutor
) -> None:
    shell = scripted_shell
    scripted.add("panel\n", "cell\n")
    session = the_session(shell)
    bridge = Bridge(shell, session)
    bridge.attach()
    comm = connect(bridge)
    fake.add(fenced("print('panel')"), fenced("print('cell')"))
    try:
        comm.deliver({"v": 1, "type": "ask", "ask_id": "panel-7", "prompt": "From the panel", "frames": None})
        with capture_output():
            assert shell.run_cell("%%ask\nFrom a cell", cell_id="c1").success
    finally:
        bridge.close()
    [result] = comm.of_type("result")
    assert result["ask_id"] == "panel-7"
    panel_ask, cell_ask = session.history
    assert panel_ask.summary.ask_id == "panel-7" and panel_ask.result is not None
    events = comm.of_type("event")
    assert {e["origin"] for e in events if e["ask_id"] == "panel-7"} == {"panel"}
    cell_events = [e for e in events if e["ask_id"] != "panel-7"]
    # The cell's events carry the id the interpreter gave that ask: no guessing where an ask starts.
    assert {e["ask_id"] for e in cell_events} == {cell_ask.summary.ask_id}
    assert {e["origin"] for e in cell_events} == {"cell"} and cell_events[-1]["kind"] == "done"


# -- every ask on the record -----------------------------------------------------------------------------------


def test_failed_asks_are_recorded_with_what_they_spent(
    scripted_shell: InteractiveShell, fake: FakeModelServer
) -> None:
    shell = scripted_shell
    fake.add(Turn(fenced("print(1)"), usage=(700, 300)), Turn(status=400, reply="bad request"))
    try:
        with capture_output() as cap:
            shell.run_cell('%config Ask.prices = {"fake-model": [2.0, 2.0]}')
            assert not shell.run_cell("%%ask --budget 950\nOver budget").success
            assert not shell.run_cell("%%ask\nServer says no").success
            shell.run_cell("%ask_history")
    finally:
        shell.run_cell("%config Ask.prices = {}")
    over, refused = the_session(shell).history
    assert over.result is None and over.summary.error is not None
    assert over.summary.error.startswith("BudgetExceeded") and over.summary.usage.total_tokens == 1000
    assert refused.summary.outcome == "ProviderResponseError" and refused.summary.usage.total_tokens == 0
    table = cap.stdout[cap.stdout.index("#  question") :]
    assert "Over budget" in table and "BudgetExceeded" in table and "$0.0020" in table
    assert (
        "Server says no" in table and "total: 2 ask(s), 700 prompt + 300 completion tokens, $0.0020" in table
    )


# -- the options, declared once ---------------------------------------------------------------------------------


def test_options_and_request_fields_match_and_defaults_come_from_settings() -> None:
    fields = set(options.AskRequest.__dataclass_fields__) - {"question"}
    assert {o.name for o in options.OPTIONS} == fields
    by_name = {o.name: o for o in options.OPTIONS}
    assert by_name["attempts"].default == Settings().attempts
    assert by_name["samples"].default == Settings().samples
    assert by_name["timeout"].default == Limits().timeout_s
    assert f"(default: {Settings().attempts})" in options.help_text()
    # The notebook's traitlets default to the core's values too.
    ask = Ask()
    assert (ask.attempts, ask.samples, ask.timeout) == (Settings().attempts, Settings().samples, 60.0)
    assert (ask.memory_mb, ask.network, ask.context_tokens) == (
        Limits().memory_mb,
        Limits().network,
        Settings().context_tokens,
    )
    assert ask.require_isolation is Settings().require_isolation is False
    # One ask's options change the settings they name, through the same declaration.
    request = options.parse_line("-n 2 -t 5 --overwrite -m other", "why\n")
    assert request.overrides() == {
        "attempts": 2,
        "limits.timeout_s": 5.0,
        "overwrite_files": True,
        "model": "other",
    }
    changed = ask.settings(request.overrides())
    assert (changed.attempts, changed.limits.timeout_s, changed.overwrite_files, changed.model) == (
        2,
        5.0,
        True,
        "other",
    )


def test_the_line_parser_the_export_and_the_panel_read_one_declaration() -> None:
    request = options.parse_line("-n 2 --keep a -k b --budget $0.05 why", "is it so\n")
    assert request == options.AskRequest(
        question="why\nis it so", attempts=2, keep=("a", "b"), budget="$0.05"
    )
    assert request.keep_policy == ["a", "b"] and options.parse_line("--no-keep", "q").keep_policy is None
    with pytest.raises(UsageError, match=r"unrecognized arguments: --bogus\. Usage: %%ask \[--frames a,b\]"):
        options.parse_line("--bogus", "q")
    # Export tells options from question words with the same declaration (no parser internals, no cycle).
    assert split_ask("%%ask -n 2 --fresh -b 5k why not\nbody") == ("-n 2 --fresh -b 5k", "why not\nbody")
    assert options.flags_with_values() >= {"--frames", "-f", "--budget", "-b", "--keep", "-k"}
    assert not options.flags_with_values() & {"--fresh", "--no-keep", "--context-only"}
    panel = options.from_panel(
        {"v": 1, "type": "ask", "ask_id": "x", "prompt": " q ", "frames": ["a"], "attempts": 2, "fresh": True}
    )
    assert panel == options.AskRequest(question=" q ", frames=("a",), attempts=2, fresh=True)
    for bad in ({"attempts": "two"}, {"attempts": 2.5}, {"frames": "a"}, {"fresh": "yes"}, {"samples": True}):
        if bad == {"frames": "a"}:
            assert options.from_panel(bad).frames == ("a",)  # a comma list, as on the line
            continue
        with pytest.raises(UsageError, match=next(iter(bad))):
            options.from_panel(bad)
    assert (
        options.from_panel({"keep": ["x"], "context_only": True}) == options.AskRequest()
    )  # not panel fields


def test_export_recognises_ci_magic_output_by_metadata_not_by_text() -> None:
    progress = {
        "output_type": "display_data",
        "data": {"text/plain": ""},
        "metadata": {"ci_magic": {"role": "progress"}},
    }
    notes = {
        "output_type": "display_data",
        "data": {"text/plain": "ci_magic: brought back into the notebook: avg"},
        "metadata": {"ci_magic": {"role": "notes"}},
    }
    user = {"output_type": "stream", "name": "stdout", "text": "ci_magic: printed by the user's own code\n"}
    summary = {
        "output_type": "display_data",
        "data": {"text/plain": "ci_magic worked"},
        "metadata": {"ci_magic": {"role": "fallback", "model": "m", "code": "print(1)"}},
    }
    meta, results = fallback_outputs([progress, notes, user, summary])
    assert results == [user] and meta is not None and meta["code"] == "print(1)"


def test_session_api_is_the_only_way_in(scripted_shell: InteractiveShell) -> None:
    shell = scripted_shell
    session = the_session(shell)
    assert isinstance(session.interpreter, Interpreter | type(None))
    with pytest.raises(AttributeError):
        session.interpreter = None  # type: ignore[misc]
    with pytest.raises(AttributeError):
        session.history = ()  # type: ignore[misc]
    heard: list[Event] = []
    session.subscribe(heard.append)
    session.subscribe(heard.append)  # once is enough
    session.unsubscribe(heard.append)
    assert session.preview("q").messages[-1]["content"].endswith("Question: q")
    assert (
        isinstance(session.settings({"attempts": 5}).attempts, int)
        and session.settings({"attempts": 5}).attempts == 5
    )
    assert session.settings().frontend == "notebook"


def test_magic_notes_are_marked_as_ci_magic_output(
    scripted_shell: InteractiveShell, fake: FakeModelServer, scripted: ScriptedExecutor
) -> None:
    shell = scripted_shell
    scripted.add(Step("", creates={"avg": 2, "total": 3}))
    shell.user_ns["avg"] = 1
    fake.add(fenced("avg = 2\ntotal = 3"))
    with capture_output() as cap:
        assert shell.run_cell("%%ask\nq").success
    [notes] = [o for o in cap.outputs if o.metadata and o.metadata.get("ci_magic", {}).get("role") == "notes"]
    text = notes.data["text/plain"]
    assert "'avg' was not brought back" in text and "brought back into the notebook: total" in text
    assert shell.user_ns["avg"] == 1 and shell.user_ns["total"] == 3
    assert "brought back" in shown(cap)


def test_results_record_the_ask(fake: FakeModelServer, interpreter: Interpreter) -> None:
    fake.add(fenced("print(1)"))
    result = interpreter.ask("q", ask_id="rid")
    assert isinstance(result, AskResult) and result.to_json()["ask_id"] == "rid"
    assert result.local and interpreter.asks[-1] == result.summary()  # the fake server is on loopback
