"""The repair loop against the scripted fake model and a real sandbox kernel."""

from __future__ import annotations

import nbformat
import pandas as pd
import pytest
from conftest import fenced

from ci_magic.core.interpreter import Interpreter
from ci_magic.core.settings import Limits
from ci_magic.notebook.cells import cells_for
from ci_magic.providers.fake import FakeModelServer, Turn


def test_success_first_try(fake: FakeModelServer, interpreter: Interpreter, sales: pd.DataFrame) -> None:
    fake.add(
        fenced("monthly = sales.groupby(sales.date.dt.month).revenue.mean()\nprint(monthly.round(1).head(2))")
    )
    result = interpreter.ask("Average revenue by month", {"sales": sales})
    assert result.ok and len(result.attempts) == 1
    assert "date" in result.outputs[0]["text"]
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    # The data description went to the model; the data itself did not.
    sent = fake.requests[0]["messages"][-1]["content"]
    assert "sales: DataFrame, 244 rows × 5 columns" in sent and "Average revenue by month" in sent
    assert "monthly" in result.values  # new frames come back by default


def test_error_then_fix_sends_traceback(
    fake: FakeModelServer, interpreter: Interpreter, sales: pd.DataFrame
) -> None:
    fake.add(
        fenced("print('partial output')\nsales['revnue'].sum()"), fenced("print(sales['revenue'].sum() > 0)")
    )
    result = interpreter.ask("Total revenue?", {"sales": sales})
    assert result.ok and [a.outcome for a in result.attempts] == ["error", "ok"]
    feedback = fake.requests[1]["messages"][-1]["content"]
    assert "KeyError" in feedback and "revnue" in feedback and "partial output" in feedback
    # The failed code and the whole dialogue are sent back, not just the error.
    assert fake.requests[1]["messages"][-2]["role"] == "assistant"
    assert result.outputs == [{"output_type": "stream", "name": "stdout", "text": "True\n"}]


def test_reply_without_code_is_a_failed_attempt(fake: FakeModelServer, interpreter: Interpreter) -> None:
    fake.add("I think the answer is probably 42.", fenced("print(6 * 7)"))
    result = interpreter.ask("What is six times seven?")
    assert result.ok and [a.outcome for a in result.attempts] == ["no_code", "ok"]
    assert "contained no Python code block" in fake.requests[1]["messages"][-1]["content"]


def test_attempts_exhausted(fake: FakeModelServer, interpreter: Interpreter) -> None:
    fake.add(*[fenced("raise ValueError('still broken')")] * 3)
    result = interpreter.ask("Break please", attempts=3)
    assert not result.ok and len(result.attempts) == 3 and len(fake.requests) == 3
    assert all(a.execution and a.execution.error_name == "ValueError" for a in result.attempts)
    assert result.values == {}


def test_timeout_is_interrupted_and_fed_back(fake: FakeModelServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake.add(fenced("import time\nwhile True: time.sleep(0.1)"), fenced("print('fast')"))
    with Interpreter(
        model="fake-model",
        base_url=fake.base_url,
        api_key="k",
        limits=Limits(timeout_s=1.5),
        user_dir=tmp_path,
    ) as it:
        result = it.ask("loop")
    assert [a.outcome for a in result.attempts] == ["timeout", "ok"]
    assert "1.5 s time limit" in fake.requests[1]["messages"][-1]["content"]


def test_outputs_are_valid_nbformat(
    fake: FakeModelServer, interpreter: Interpreter, sales: pd.DataFrame
) -> None:
    fake.add(
        fenced(
            "import matplotlib.pyplot as plt\nprint('a'); print('b')\n"
            "sales.revenue.plot.hist(); plt.show()\nsales.head(3)"
        )
    )
    result = interpreter.ask("chart", {"sales": sales})
    kinds = [o["output_type"] for o in result.outputs]
    assert kinds == ["stream", "display_data", "execute_result"]  # the two prints were merged
    assert "image/png" in result.outputs[1]["data"] and "text/html" in result.outputs[2]["data"]
    insertion = cells_for(result, "anchor")
    nb = nbformat.v4.new_notebook(cells=[insertion.code_cell, insertion.record_cell])
    nbformat.validate(nb)
    assert insertion.code_cell.metadata["ci_magic"]["attempts"] == 1


def test_follow_up_sees_earlier_variables_and_question(
    fake: FakeModelServer, interpreter: Interpreter, sales: pd.DataFrame
) -> None:
    fake.add(
        fenced("by_month = sales.groupby(sales.date.dt.month).revenue.sum()"), fenced("print(len(by_month))")
    )
    assert interpreter.ask("revenue by month", {"sales": sales}).ok
    second = interpreter.ask("how many months?", {"sales": sales})
    assert second.outputs[0]["text"] == "12\n"
    history = [m["content"] for m in fake.requests[1]["messages"]]
    assert "Question: revenue by month" in history and any("by_month =" in m for m in history)


def test_changed_frames_are_resent_unchanged_are_not(
    fake: FakeModelServer, interpreter: Interpreter, sales: pd.DataFrame
) -> None:
    fake.add(fenced("print(len(sales))"), fenced("print(len(sales))"), fenced("print(len(sales))"))
    interpreter.ask("n", {"sales": sales})
    assert interpreter.sandbox.send_frames({"sales": sales}) == []
    smaller = sales.head(10)
    assert interpreter.ask("n", {"sales": smaller}).outputs[0]["text"] == "10\n"


@pytest.mark.parametrize("status", [500, 400])
def test_server_errors_are_clear(fake: FakeModelServer, interpreter: Interpreter, status: int) -> None:
    from ci_magic.core.errors import ProviderResponseError

    fake.add(*[Turn(status=status, reply="boom")] * 3)
    with pytest.raises(ProviderResponseError, match=f"HTTP {status}"):
        interpreter.ask("anything")


def test_a_repeated_failure_restarts_the_dialogue_with_notes(
    fake: FakeModelServer, interpreter: Interpreter, sales: pd.DataFrame
) -> None:
    broken = fenced("print(sales['year'].max())")
    fake.add(broken, broken, fenced("print(sales['date'].dt.year.max())"))
    result = interpreter.ask("Latest year?", {"sales": sales}, attempts=3)
    assert result.ok and len(result.attempts) == 3
    third = fake.requests[2]["messages"]
    # Fresh start: system + question only (the failed code is not in the dialogue any more) ...
    assert [m["role"] for m in third] == ["system", "user"]
    assert "print(sales['year']" not in third[-1]["content"]
    # ... with what went wrong, and the real column names, as notes.
    assert "Earlier attempts at this question failed" in third[-1]["content"]
    assert "KeyError: 'year'" in third[-1]["content"] and "'revenue'" in third[-1]["content"]
    assert fake.requests[1]["messages"][-1]["role"] == "user" and len(fake.requests[1]["messages"]) == 4
