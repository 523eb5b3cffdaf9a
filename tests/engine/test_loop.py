"""The repair loop, with the scripted fake model and the scripted executor: no kernel is started.

What the code does when it really runs is the sandbox's business (tests/sandbox/test_sandbox.py, test_attacks.py and
the end-to-end tests of the magic); here the executor answers from a script and records what it was asked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import fenced

from ci_magic.core.errors import ProviderResponseError, SandboxError
from ci_magic.core.results import ExecutionResult
from ci_magic.core.settings import Limits, Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.providers.fake import FakeModelServer, Turn
from ci_magic.sandbox.fake import ScriptedExecutor, Step, died, error, timeout


@pytest.fixture
def executor() -> ScriptedExecutor:
    return ScriptedExecutor()


@pytest.fixture
def it(settings: Settings, executor: ScriptedExecutor, tmp_path: Path) -> Iterator[Interpreter]:
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as interp:
        yield interp


def test_success_first_try(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    fake.add(fenced("monthly = sales.groupby(sales.date.dt.month).revenue.mean()\nprint(monthly.head(2))"))
    executor.add(Step("date\n1  100.0\n", creates={"monthly": pd.Series([100.0], name="revenue")}))
    result = it.ask("Average revenue by month", {"sales": sales})
    assert result.ok and len(result.attempts) == 1 and result.attempts[0].code is not None
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    # The data description went to the model; the data itself did not, and the code got the frame it names.
    sent = fake.requests[0]["messages"][-1]["content"]
    assert "sales: pandas DataFrame, 244 rows × 5 columns" in sent and "Average revenue by month" in sent
    assert executor.runs[0].frames == ("sales",) and not executor.runs[0].pristine
    assert "monthly" in result.values  # what the code created comes back by default


def test_error_then_fix_sends_traceback_and_output(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    fake.add(
        fenced("print('partial output')\nsales['revnue'].sum()"), fenced("print(sales['revenue'].sum() > 0)")
    )
    executor.add(error("KeyError", "'revnue'", stdout="partial output\n"), "True\n")
    result = it.ask("Total revenue?", {"sales": sales})
    assert result.ok and [a.outcome for a in result.attempts] == ["error", "ok"]
    feedback = fake.requests[1]["messages"][-1]["content"]
    assert "KeyError" in feedback and "revnue" in feedback and "partial output" in feedback
    assert (
        "The columns are exactly" in feedback and "'revenue'" in feedback
    )  # the real names, next to the error
    # The failed code and the whole dialogue are sent back, and the retry starts from the user's data.
    assert fake.requests[1]["messages"][-2]["role"] == "assistant"
    assert executor.runs[1].pristine
    assert result.attempts[0].problem == feedback and result.attempts[1].problem is None


def test_a_repair_names_the_line_that_raised(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    where = "KeyError: 'revnue'\nCell In[1], line 2\n      1 print(1)\n----> 2 sales['revnue'].sum()\n"
    executor.add(error("KeyError", "'revnue'", traceback=where), "1\n")
    fake.add(fenced("print(1)\nsales['revnue'].sum()"), fenced("sales['revenue'].sum()"))
    assert it.ask("Total revenue?", {"sales": sales}).ok
    feedback = fake.requests[1]["messages"][-1]["content"]
    assert "Line 2 raised the error: `sales['revnue'].sum()`. Change that line" in feedback


def test_reply_without_code_is_a_failed_attempt(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    fake.add("I think the answer is probably 42.", fenced("print(6 * 7)"))
    executor.add("42\n")
    result = it.ask("What is six times seven?")
    assert result.ok and [a.outcome for a in result.attempts] == ["no_code", "ok"]
    assert "contained no Python code block" in fake.requests[1]["messages"][-1]["content"]
    assert len(executor.runs) == 1  # nothing ran for the reply without code


def test_a_truncated_reply_is_sent_back_as_such(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    fake.add(Turn(reply="```python\nprint(1)\n", truncate=True), fenced("print(1)"))
    executor.add("1\n", "1\n")
    result = it.ask("one")
    assert result.ok


def test_attempts_exhausted(fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor) -> None:
    fake.add(*[fenced(f"raise ValueError('still broken')  # try {i}") for i in range(3)])
    executor.add(*[error("ValueError", "still broken")] * 3)
    result = it.ask("Break please", attempts=3)
    assert not result.ok and len(result.attempts) == 3 and len(fake.requests) == 3
    assert all(a.failure == "ValueError: still broken" for a in result.attempts)
    assert result.values == {} and result.files == []


def test_timeout_and_death_are_fed_back(fake: FakeModelServer, settings: Settings, tmp_path: Path) -> None:
    fake.add(fenced("while True: pass"), fenced("import os; os._exit(1)"), fenced("print('fast')"))
    executor = ScriptedExecutor([timeout(1.5), "fast\n"])
    with Interpreter(
        settings.with_(limits=Limits(timeout_s=1.5)), executor=executor, user_dir=tmp_path
    ) as it:
        result = it.ask("loop", attempts=3)
    assert [a.outcome for a in result.attempts] == ["timeout", "ok"]
    assert "stopped after 1.5 s" in fake.requests[1]["messages"][-1]["content"]
    fake.add(fenced("import os; os._exit(1)"), fenced("print('fast')"))
    executor = ScriptedExecutor([died(), "fast\n"])
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        result = it.ask("die", attempts=3)
    assert [a.outcome for a in result.attempts] == ["died", "ok"]
    assert "variables you created are gone" in fake.requests[3]["messages"][-1]["content"]


def test_the_last_attempt_starts_afresh_with_the_failures_as_notes(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    # A second repair of the same idea rarely works where the first did not: the last try is an independent one.
    fake.add(fenced("df.x.mean()"), fenced("df['x'].mean()"), fenced("print(1)"))
    executor.add(error("NameError", "name 'df' is not defined"), error("KeyError", "'x'"), "1\n")
    result = it.ask("mean of x", attempts=3)
    assert result.ok and len(result.attempts) == 3
    second, last = fake.requests[1]["messages"], fake.requests[2]["messages"]
    assert any(m["role"] == "assistant" for m in second)  # the first repair continues the dialogue
    assert [m["role"] for m in last] == ["system", "user"]  # the last starts from the question
    assert "NameError" in last[-1]["content"] and "KeyError" in last[-1]["content"]


def test_the_answer_check_rejects_with_its_reason(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    fake.add(fenced("print('about 7')"), fenced("print('@answer[7]')"))
    executor.add("about 7\n", "@answer[7]\n")

    def check(execution: object) -> str | None:
        text = execution.text()  # type: ignore[attr-defined]
        return None if "@answer[" in text else "print the answer as @answer[value]"

    result = it.ask("The answer?", check=check)
    first = result.attempts[0]
    assert first.outcome == "rejected" and first.rejected == "print the answer as @answer[value]"
    assert first.execution is not None and first.execution.ok  # the run itself worked
    assert "print the answer as @answer[value]" in fake.requests[1]["messages"][-1]["content"]
    assert result.ok and result.attempts[1].rejected is None


def test_follow_up_sees_the_earlier_question_and_code(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    fake.add(
        fenced("by_month = sales.groupby(sales.date.dt.month).revenue.sum()"), fenced("print(len(by_month))")
    )
    executor.add("", "12\n")
    assert it.ask("revenue by month", {"sales": sales}).ok
    assert it.ask("how many months?", {"sales": sales}).outputs[0]["text"] == "12\n"
    history = [m["content"] for m in fake.requests[1]["messages"]]
    assert "Question: revenue by month" in history and any("by_month =" in m for m in history)


@pytest.mark.parametrize("status", [500, 400])
def test_server_errors_are_clear(fake: FakeModelServer, it: Interpreter, status: int) -> None:
    fake.add(*[Turn(status=status, reply="boom")] * 3)
    with pytest.raises(ProviderResponseError, match=f"HTTP {status}"):
        it.ask("anything")
    assert it.asks[-1].error is not None and it.asks[-1].error.startswith("ProviderResponseError")


def test_a_repeated_failure_restarts_the_dialogue_with_notes(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    broken = fenced("print(sales['year'].max())")
    # The second attempt repeats the first (and again when asked once more): it runs, and fails again.
    fake.add(broken, broken, broken, fenced("print(sales['date'].dt.year.max())"))
    executor.add(error("KeyError", "'year'"), error("KeyError", "'year'"), "2024\n")
    result = it.ask("Latest year?", {"sales": sales}, attempts=3)
    assert result.ok and len(result.attempts) == 3
    third = fake.requests[3]["messages"]
    # Fresh start: system + question only (the failed code is not in the dialogue any more) ...
    assert [m["role"] for m in third] == ["system", "user"]
    assert "print(sales['year']" not in third[-1]["content"]
    # ... with what went wrong, and the real column names, as notes.
    assert "Earlier attempts at this question failed" in third[-1]["content"]
    assert "KeyError: 'year'" in third[-1]["content"] and "'revenue'" in third[-1]["content"]
    assert "repeats code that already failed" in fake.requests[2]["messages"][-1]["content"]


def test_a_repair_that_repeats_failed_code_is_asked_again_before_it_runs(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    # A run out of time says nothing about where a copy would fail (a copy that raised is ended as it streams:
    # the test below): the whole reply comes in, and only then is the model asked again.
    executor.add(timeout(), "2024\n")
    broken = fenced("print(sales['year'].max())")
    fake.add(
        broken,
        Turn(broken, usage=(100, 7)),
        Turn(fenced("print(sales['date'].dt.year.max())"), usage=(150, 9)),
    )
    result = it.ask("Latest year?", {"sales": sales}, attempts=2)
    assert result.ok and len(result.attempts) == 2 and len(executor.runs) == 2  # the copy never ran
    assert result.attempts[1].code == "print(sales['date'].dt.year.max())\n"
    again = fake.requests[2]
    told = again["messages"][-1]["content"]
    assert "repeats code that already failed" in told
    assert again["messages"][-2] == {"role": "assistant", "content": broken}
    assert again["temperature"] > fake.requests[1]["temperature"] > 0  # sampled more freely
    # The dialogue goes on with the reply that ran, and the attempt carries both requests' tokens.
    usage = result.attempts[1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (250, 16)


def test_a_repair_writing_failed_code_again_is_ended_there_and_asked_again(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    code = "total = sales['revenue'].sum()\nyear = sales['year'].max()\nprint(total, year)\n"
    where = "KeyError: 'year'\nCell In[1], line 2\n----> 2 year = sales['year'].max()\n"
    executor.add(error("KeyError", "'year'", traceback=where), "2024\n")
    # The repair writes the two failing lines again; what it would say after them cannot save it.
    copy = fenced(code.replace("print(total, year)", "print(year)") + "print('done')")
    fake.add(fenced(code), copy, fenced("print(sales['date'].dt.year.max())"))
    result = it.ask("Latest year?", {"sales": sales}, attempts=2)
    assert result.ok and len(executor.runs) == 2  # the copy never ran
    assert result.attempts[1].code == "print(sales['date'].dt.year.max())\n"
    again = fake.requests[2]["messages"]
    assert (
        "repeats code that already failed" in again[-1]["content"] and "Line 2 raised" in again[-1]["content"]
    )
    assert again[-2] == {"role": "assistant", "content": fenced(code)}  # shown as the copy it was becoming


def test_privacy_below_samples_keeps_values_out_of_repair_messages(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"city": ["Paris", "ZEBRA123"]})
    fake.add(fenced("pd.to_numeric(df.city)"), fenced("print(len(df))"))
    executor = ScriptedExecutor(
        [error("ValueError", 'Unable to parse string "ZEBRA123" at position 1', stdout="Paris 12.5\n"), "2\n"]
    )
    with Interpreter(settings.with_(context_detail="schema"), executor=executor, user_dir=tmp_path) as it:
        assert it.ask("Convert city", {"df": frame}).ok
    sent = "\n".join(m["content"] for r in fake.requests for m in r["messages"])
    assert "ZEBRA123" not in sent and "Paris" not in sent and "12.5" not in sent
    assert "Unable to parse string" in fake.requests[1]["messages"][-1]["content"]  # the kind of error stays


def test_files_of_the_working_attempt_only_come_back(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "q2.csv").write_text("the user's own\n")
    fake.add(fenced("bad()"), fenced("df.to_csv('q2.csv')"))
    executor = ScriptedExecutor(
        [
            Step(error("NameError", "bad"), writes={"broken.csv": b"from the failed attempt"}),
            Step("", writes={"q2.csv": b"a,b\n1,2\n"}),
        ]
    )
    with Interpreter(settings, executor=executor, user_dir=tmp_path, files_dir=out) as it:
        result = it.ask("Save q2")
    assert [(f.path, f.saved_as) for f in result.files] == [("q2.csv", "q2 (2).csv")]
    assert result.files[0].note and "already exists" in result.files[0].note
    assert (out / "q2.csv").read_text() == "the user's own\n"  # never overwritten without --overwrite
    assert (out / "q2 (2).csv").read_bytes() == b"a,b\n1,2\n" and not (out / "broken.csv").exists()


def test_a_per_ask_timeout_does_not_restart_the_sandbox(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    fake.add(fenced("x = 1"), fenced("print(x)"))
    executor = ScriptedExecutor(["", "1\n"])
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        it.ask("one")
        it.reconfigure(settings.with_(limits=Limits(timeout_s=5)))
        assert it.ask("again").ok
    assert executor.restarts == 0 and executor.limits is not None and executor.limits.timeout_s == 5


def test_a_failed_ask_still_gives_the_values_it_printed_in_the_asked_form(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    from ci_magic.notebook.cells import attempts_markdown, summary_text

    def check(execution: ExecutionResult) -> str | None:
        return None if "@mean[" in execution.text() else "it never printed @mean[...]"

    executor = ScriptedExecutor(["mean is 3.5\n", "the mean: 3.5\n"])
    fake.add(fenced("print('mean is', m)"), fenced("print('the mean:', m)"), "@mean[3.5]")
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        result = it.ask("What is the mean? Print @mean[value].", attempts=2, check=check)
    assert not result.ok  # never shown as a success
    assert result.best_effort is not None and result.best_effort.text == "@mean[3.5]"
    assert result.best_effort.from_attempt == 2 and len(executor.runs) == 2  # nothing more was run
    rescue = fake.requests[-1]["messages"]
    assert "the mean: 3.5" in rescue[-1]["content"] and "Do not write code" in rescue[-1]["content"]
    assert (
        rescue[0] == fake.requests[0]["messages"][0] and len(rescue) == 2
    )  # the ask's system prompt, cached
    assert "Best effort" in summary_text(result) and "@mean[3.5]" in attempts_markdown(result)
    assert result.usage.total_tokens > sum(a.usage.total_tokens for a in result.attempts)

    # A reply that states the answer without code: the best effort, marked as computed by nothing.
    fake.add("@mean[3.5]", "The answer is @mean[3.5]")
    with Interpreter(settings, executor=ScriptedExecutor(), user_dir=tmp_path) as it:
        stated = it.ask("What is the mean? Print @mean[value].", attempts=2, check=check)
    assert not stated.ok and stated.best_effort is not None and not stated.best_effort.computed
    assert stated.best_effort.text == "The answer is @mean[3.5]" and stated.best_effort.from_attempt == 2
    assert (
        "nothing computed it" in summary_text(stated) and stated.to_json()["best_effort"]["computed"] is False
    )

    # The model failing at the format step leaves the failed ask as it was: its attempts, no best effort.
    executor = ScriptedExecutor(["mean is 3.5\n"])
    fake.add(fenced("print('mean is', m)"), Turn(status=400, reply="context length exceeded"))
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        failed = it.ask("Mean? Print @mean[value].", attempts=1, check=check)
    assert not failed.ok and failed.best_effort is None and len(failed.attempts) == 1

    # A value the run never printed is invented, not copied: no best effort.
    executor = ScriptedExecutor(["mean is 3.5\n"])
    fake.add(fenced("print('mean is', m)"), "@mean[4.2]")
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        assert it.ask("Mean? Print @mean[value].", attempts=1, check=check).best_effort is None

    # Lines that still fail the check are dropped, and a run that printed nothing has nothing to give.
    executor = ScriptedExecutor(["mean is 3.5\n", ""])
    fake.add(fenced("print(m)"), fenced("x = 1"), "the mean is 3.5")
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        assert it.ask("Mean? Print @mean[value].", attempts=2, check=check).best_effort is None


def test_no_attempt_starts_after_the_asks_time_budget(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    fake.add(fenced("1/0"), fenced("print(1)"))
    executor = ScriptedExecutor([error("ZeroDivisionError", "division by zero"), "1\n"])
    with Interpreter(settings.with_(time_budget_s=0.001), executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Ratio?", attempts=3)
    assert not result.ok and len(result.attempts) == 1 and len(fake.requests) == 1
    assert any("time budget of 0.001 s was spent" in w for w in result.warnings)


def test_the_error_that_ends_an_ask_carries_what_it_spent(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    from ci_magic.core.errors import BudgetExceeded

    fake.add(Turn(fenced("print(1)"), usage=(700, 300)), Turn(status=404, reply="no such model"))
    with pytest.raises(BudgetExceeded) as over:
        it.ask("q", budget="950")
    assert over.value.limit is not None and "950" in over.value.limit
    assert over.value.summary is not None and over.value.summary.usage.total_tokens == 1000
    with pytest.raises(ProviderResponseError) as refused:
        it.ask("q")
    assert refused.value.status == 404 and refused.value.summary is not None
    assert refused.value.summary.ask_id == it.asks[-1].ask_id and not executor.runs


def test_outputs_reach_the_api_as_events_while_the_code_runs(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    from ci_magic.core.events import Event, Output

    fake.add(fenced("print('one')\nprint('two')"))
    executor.add("one\ntwo\n")
    events: list[Event] = []
    result = it.ask("Count", {"sales": sales}, on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds.index("code") < kinds.index("output") < kinds.index("exec_done")
    live = [e for e in events if isinstance(e.data, Output)]
    assert {e.attempt for e in live} == {1} and {e.ask_id for e in live} == {result.ask_id}
    assert "".join(op["text"] for e in live for op in e.data.ops) == "one\ntwo\n"


def test_the_sandbox_starts_while_the_model_reads_the_prompt(
    fake: FakeModelServer,
    settings: Settings,
    sales: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The start finishes only once the model has the request: an ask that started its sandbox first and only
    # then asked the model would wait here until the start gave up.
    executor = ScriptedExecutor(["3\n"])

    def start_after_the_request(*_: object) -> ScriptedExecutor:
        for _ in range(200):
            if fake.requests:
                return executor
            threading.Event().wait(0.05)
        raise AssertionError("the model was not asked while the sandbox started")

    monkeypatch.setattr("ci_magic.engine.interpreter.make_executor", start_after_the_request)
    fake.add(fenced("print(len(sales))"))
    with Interpreter(settings, user_dir=tmp_path) as it:
        result = it.ask("How many rows?", {"sales": sales})
    assert result.ok and result.final is not None and executor.runs[0].code.strip() == "print(len(sales))"


def test_a_sandbox_that_cannot_start_ends_the_ask_with_its_error(
    fake: FakeModelServer,
    settings: Settings,
    sales: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> ScriptedExecutor:
        raise SandboxError("bubblewrap is missing")

    monkeypatch.setattr("ci_magic.engine.interpreter.make_executor", broken)
    fake.add(fenced("print(len(sales))"))
    with Interpreter(settings, user_dir=tmp_path) as it, pytest.raises(SandboxError, match="bubblewrap"):
        it.ask("How many rows?", {"sales": sales})


def test_a_repair_samples_with_a_seed_fixed_by_what_it_sends(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    from ci_magic.engine.step import seed_of

    fake.add(fenced("print(sales['year'].max())"), fenced("print(sales['date'].dt.year.max())"))
    executor.add(error("KeyError", "'year'"), "2024\n")
    assert it.ask("Latest year?", {"sales": sales}).ok
    first, repair = fake.requests
    assert first.get("seed") is None  # greedy: nothing to seed
    # Sampled: the seed follows from the messages and the attempt, not from what the server answered before.
    assert repair["seed"] == seed_of(repair["messages"], repair["temperature"], 2)
    assert seed_of(repair["messages"], 0.4, 2) != seed_of(first["messages"], 0.4, 2)
    assert seed_of(repair["messages"], 0.0, 2) is None


def test_a_fresh_start_that_sends_what_an_earlier_one_sent_draws_another_sample(
    settings: Settings, executor: ScriptedExecutor, fake: FakeModelServer, sales: pd.DataFrame, tmp_path: Path
) -> None:
    # Every attempt fails the same way, so the second fresh start (attempt 5) sends what the first (attempt 3)
    # sent, word for word: with the same seed it would draw the same failed code again.
    fake.add(*(fenced(f"print(sales['year'].max() + {i})") for i in range(5)))
    executor.add(*(error("KeyError", "'year'") for _ in range(5)))
    with Interpreter(replace(settings, attempts=5), executor=executor, user_dir=tmp_path) as it:
        assert not it.ask("Latest year?", {"sales": sales}).ok
    third, fifth = fake.requests[2], fake.requests[4]
    assert third["messages"] == fifth["messages"]
    assert third["seed"] is not None and fifth["seed"] is not None and third["seed"] != fifth["seed"]


def test_an_import_that_already_failed_is_put_right_before_the_next_run(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    wrong = "from sklearn.model_selection import train_test_split, class_weight\n"
    fake.add(fenced(wrong + "print(1)"), fenced("import numpy\n" + wrong + "print(2)"))
    executor.add(
        error("ImportError", "cannot import name 'class_weight' from 'sklearn.model_selection' (/x.py)")
    )
    executor.add("2\n")
    result = it.ask("Balanced model?", attempts=3)
    # The repair kept the line (a small model does, attempt after attempt): what ran, and what the cell and the
    # dialogue hold, imports the name from where the installed sklearn has it.
    mended = "from sklearn.model_selection import train_test_split\nfrom sklearn.utils import class_weight\n"
    assert result.ok and len(fake.requests) == 2
    assert executor.runs[1].code == "import numpy\n" + mended + "print(2)\n"
    assert result.final is not None and result.final.code == executor.runs[1].code
    assert mended in result.final.reply


def test_a_copy_of_code_whose_failure_is_mended_runs_mended_without_asking_again(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    wrong = "from sklearn.model_selection import train_test_split, class_weight\n"
    where = f"ImportError: cannot import name\nCell In[1], line 1\n----> 1 {wrong}"
    fake.add(fenced(wrong + "print(1)"), fenced(wrong + "print(1)"))
    why = "cannot import name 'class_weight' from 'sklearn.model_selection' (/x.py)"
    executor.add(error("ImportError", why, traceback=where), "1\n")
    result = it.ask("Balanced model?", attempts=3)
    # Written again word for word, the failing line is not a certain failure: the loop mends it before it runs.
    assert result.ok and len(fake.requests) == 2 and len(executor.runs) == 2
    assert "from sklearn.utils import class_weight" in executor.runs[1].code


def test_a_module_used_and_never_imported_is_imported_before_the_first_run(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    fake.add(fenced("print(re.sub('a', 'b', sales.city[0]), sales.revenue.sum())"))
    executor.add("bbb 60.0\n")
    result = it.ask("Total?", {"sales": sales})
    # No NameError and no repair: the run had its import, and the cell shows the code that ran.
    assert result.ok and len(fake.requests) == 1
    assert executor.runs[0].code == "import re\nprint(re.sub('a', 'b', sales.city[0]), sales.revenue.sum())\n"
    assert result.final is not None and "```python\nimport re\nprint(re.sub(" in result.final.reply


def test_an_added_import_never_hides_a_name_an_earlier_ask_made(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    fake.add(fenced("stats = {'n': 3}\nprint(stats)"), fenced("print(stats['n'], pearsonr)"))
    executor.add("{'n': 3}\n", "3\n")
    it.ask("Make stats")
    it.ask("And n?")
    # stats is the earlier ask's dict, not scipy's module; pearsonr is still imported.
    assert executor.runs[1].code == "from scipy.stats import pearsonr\nprint(stats['n'], pearsonr)\n"


def test_a_retry_never_runs_on_a_failed_attempts_leftovers(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    fake.add(
        fenced("mean_cases = sales.revenue.mean()\nprint(bad)"),
        fenced(
            "sales['x'] = 1\nprint(mean_cases, sales.x.sum())"
        ),  # only the changed lines: a partial program
        fenced("mean_cases = sales.revenue.mean()\nprint(mean_cases)"),
    )
    executor.add(error("NameError", "name 'bad' is not defined"))
    executor.add(error("NameError", "name 'mean_cases' is not defined"), "20.0\n")
    result = it.ask("Mean?", {"sales": sales}, attempts=3)
    # The partial program ran without the failed attempt's mean_cases (as it would in a fresh kernel), and the
    # repair says why; the complete program binds it itself and nothing is dropped for it.
    assert executor.forgotten == ["mean_cases"] and result.ok and len(executor.runs) == 3
    assert "used before this program makes it" in fake.requests[2]["messages"][-1]["content"]


def test_a_column_spelt_differently_is_put_right_and_run_without_asking_the_model(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    fake.add(fenced("print(sales.groupby('Region')['Revenue'].sum())"))
    executor.add(error("KeyError", "'Region'"), error("KeyError", "'Revenue'"), "a 60.0\n")
    result = it.ask("Revenue by region?", {"sales": sales}, attempts=3)
    # One model request; the names were put right one error at a time, each run its own attempt at no model
    # time, and the cell shows the code that ran.
    assert result.ok and len(fake.requests) == 1 and len(result.attempts) == 3
    assert [r.code for r in executor.runs[1:]] == [
        "print(sales.groupby('region')['Revenue'].sum())\n",
        "print(sales.groupby('region')['revenue'].sum())\n",
    ]
    assert result.final is not None and "groupby('region')['revenue']" in result.final.reply
    assert result.attempts[1].usage.completion_tokens == 0 and result.attempts[1].model_seconds == 0.0


def test_a_column_filled_in_place_through_the_column_runs_as_the_assignment_it_meant(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor, sales: pd.DataFrame
) -> None:
    # Copy-on-write makes the call a no-op that only warns: rewritten before it runs, shown as it ran.
    fake.add(fenced("sales['revenue'].fillna(0, inplace=True)\nprint(sales.revenue.sum())"))
    executor.add("60.0\n")
    result = it.ask("Total revenue, missing as zero?", {"sales": sales}, attempts=2)
    ran = "sales['revenue'] = sales['revenue'].fillna(0)\nprint(sales.revenue.sum())\n"
    assert result.ok and [r.code for r in executor.runs] == [ran]
    assert result.final is not None and "sales['revenue'] = sales['revenue'].fillna(0)" in result.final.reply


def test_numbers_a_conversion_lost_are_kept_without_asking_the_model(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    votes = pd.DataFrame({"diff": ["37,410", "12,202"], "pct": [0.1, 0.2]})
    note = (
        "[ci_magic] pd.to_numeric(errors='coerce') turned 2 of 2 values of 'diff' that hold a number into NaN, "
        "e.g. '37,410', '12,202'\n"
    )
    code = "votes['diff'] = pd.to_numeric(votes['diff'], errors='coerce')\nr, p = votes['diff'].corr(votes['pct'])"
    fake.add(fenced(code))
    traceback = f"----> 2 {code.splitlines()[1]}\nTypeError: cannot unpack non-iterable float object"
    failed = error("TypeError", "cannot unpack non-iterable float object", traceback=traceback)
    executor.add(
        replace(failed, outputs=[{"output_type": "stream", "name": "stderr", "text": note}, *failed.outputs])
    )
    executor.add("@r[1.0]\n")
    result = it.ask("Correlation of diff and pct?", {"votes": votes}, attempts=3)
    # Both mistakes put right in one run at no model time: the pair tested by scipy, the numbers kept.
    assert result.ok and len(fake.requests) == 1 and len(executor.runs) == 2
    ran = executor.runs[1].code
    assert "pd.to_numeric(votes['diff'].astype(str).str.replace(',', '').str.extract(" in ran
    assert "scipy.stats.pearsonr(_pairs.iloc[:, 0], _pairs.iloc[:, 1])" in ran
