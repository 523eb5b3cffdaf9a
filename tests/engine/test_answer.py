"""The answer in words and the doubts before it (ci_magic/engine/answer.py), with the fake model and the scripted
executor; the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, fenced

from ci_magic.core.events import Event
from ci_magic.core.results import ExecutionResult
from ci_magic.core.settings import Settings
from ci_magic.engine import answer
from ci_magic.engine.interpreter import Interpreter
from ci_magic.notebook.cells import _summary_html as summary_html
from ci_magic.notebook.cells import attempts_markdown, cells_for, summary_text
from ci_magic.providers.fake import FakeModelServer, Turn
from ci_magic.sandbox.fake import ScriptedExecutor

WORDS = "The total revenue is 60.0."


@pytest.fixture
def executor() -> ScriptedExecutor:
    return ScriptedExecutor()


@pytest.fixture
def it(settings: Settings, executor: ScriptedExecutor, tmp_path: Path) -> Iterator[Interpreter]:
    with Interpreter(settings.with_(answer_in_words=True), executor=executor, user_dir=tmp_path) as interp:
        yield interp


def printed(text: str) -> ExecutionResult:
    return ExecutionResult("ok", [{"output_type": "stream", "name": "stdout", "text": text}])


def test_a_working_ask_ends_with_its_answer_in_words_everywhere(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    fake.add(fenced("print('total:', sales.revenue.sum())"), f"{WORDS}\n")
    executor.add("total: 60.0\n")
    events: list[Event] = []
    result = it.ask("Total revenue?", on_event=events.append)
    assert result.ok and result.words is not None and result.words.text == WORDS
    # The words continue the dialogue that produced the working code, with its real output; nothing more runs.
    sent = fake.requests[1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[2]["content"].startswith("Here is the code")
    assert "total: 60.0" in sent[-1]["content"] and "one or two short sentences" in sent[-1]["content"]
    assert fake.requests[1]["max_tokens"] == answer.WORDS_TOKENS and len(executor.runs) == 1
    assert result.usage.total_tokens > result.attempts[0].usage.total_tokens  # its tokens are counted
    # Every front end shows it: the summary (text and HTML), the record cell, --json, the panel's events.
    assert f"Answer: {WORDS}" in summary_text(result)
    assert f"<p>Answer: {WORDS}</p>" in summary_html(result)
    assert f"**Answer:** {WORDS}" in attempts_markdown(result)
    assert result.to_json()["answer"] == WORDS
    assert cells_for(result).code_cell.metadata["ci_magic"]["answer"] == WORDS  # what the export reads
    done = next(e for e in events if e.kind == "done")
    assert done.wire()["answer"] == WORDS and done.wire()["doubt"] is None  # as the panel receives it
    kinds = [e.kind for e in events]
    assert kinds.index("answer_start") < kinds.index("answer") < kinds.index("done")
    assert all(e.attempt == 0 for e in events if e.kind.startswith("answer"))  # not an attempt


def test_model_text_in_the_words_stays_text(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    hostile = "It is 3. <img src=x onerror=alert(1)> [link](http://127.0.0.1:9/) ```python\nimport os\n```"
    fake.add(fenced("print(3)"), hostile)
    executor.add("3\n")
    result = it.ask("How many?")
    assert result.words is not None and "import os" not in result.words.text  # code is never part of it
    assert "<img" not in summary_html(result) and "<img" not in attempts_markdown(result)
    assert "\\[link\\]\\(http" in attempts_markdown(result)


def test_a_long_reply_is_cut_at_a_sentence_end() -> None:
    assert answer.tidy("One. Two. " + "x" * 700) == "One. Two."
    assert answer.tidy("The mean is 4.2 and the", cut_off=True) == "The mean is 4.2 and the…"
    assert answer.tidy("First. Second half", cut_off=True) == "First."
    assert answer.tidy("```python\nprint(1)\n```") == ""


def test_an_empty_result_goes_back_as_a_repair_and_the_last_one_is_shown_with_its_doubt(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    empty = "Empty DataFrame\nColumns: [city, sales]\nIndex: []\n"
    executor = ScriptedExecutor([empty, "Mean price: nan\n"])
    fake.add(fenced("df[df.city == 'paris']"), fenced("print('Mean price:', m)"))
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Sales in Paris?", attempts=2)
    assert [a.outcome for a in result.attempts] == ["rejected", "ok"]
    repair = fake.requests[1]["messages"][-1]["content"]
    assert "empty result (Empty DataFrame" in repair and "selected no rows" in repair
    # The last attempt's doubt does not turn a working run into a failure: it is said beside the answer.
    assert result.ok and result.doubt is not None and "NaN is not an answer" in result.doubt
    assert "The answer may be wrong" in summary_text(result)
    assert "The answer may be wrong" in attempts_markdown(result)


def test_a_doubt_sent_back_keeps_printed_values_from_the_model_where_privacy_says_so(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    executor = ScriptedExecutor(["Mean price in Zanzibar: nan\n", "Mean price: 3.0\n"])
    fake.add(fenced("print('Mean price in', city, m)"), fenced("print('Mean price:', m)"))
    with Interpreter(settings.with_(context_detail="schema"), executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Mean price?", attempts=2)
    repair = fake.requests[1]["messages"][-1]["content"]
    assert result.ok and "NaN is not an answer" in repair and "Zanzibar" not in repair


def test_what_no_right_answer_shows() -> None:
    assert answer.doubt(printed("Empty DataFrame\nColumns: [a]\nIndex: []\n")) is not None
    assert answer.doubt(printed("Series([], Name: price, dtype: float64)\n")) is not None
    assert answer.doubt(printed("Correlation = NaN\n")) is not None
    assert answer.doubt(printed("@mean_age[nan]\n")) is not None
    # Tables may hold missing cells, and words that contain "nan" are words.
    assert answer.doubt(printed("   a    b\n0  1.0  NaN\n1  NaN  2.0\n")) is None
    assert answer.doubt(printed("Best seller: Banana\nfinance: 3\n")) is None
    assert answer.doubt(printed("missing values: 0\n")) is None


def test_a_failing_words_step_leaves_the_working_ask_working(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    fake.add(fenced("print(42)"), Turn(status=400, reply="context length exceeded"))
    executor.add("42\n")
    result = it.ask("Answer?")
    assert result.ok and result.words is None
    assert any(w.startswith("The answer in words was not written") for w in result.warnings)


def test_no_words_where_outputs_must_not_reach_the_model(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    executor = ScriptedExecutor(["secret value 17\n"])
    fake.add(fenced("print(df.x.sum())"))
    quiet = settings.with_(answer_in_words=True, context_detail="schema")
    with Interpreter(quiet, executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Sum?")
    assert result.ok and result.words is None and len(fake.requests) == 1


def test_a_failed_ask_is_never_shown_with_an_answer(
    fake: FakeModelServer, it: Interpreter, executor: ScriptedExecutor
) -> None:
    from ci_magic.sandbox.fake import error

    fake.add(fenced("1/0"), fenced("2/0"))
    executor.add(
        error("ZeroDivisionError", "division by zero"), error("ZeroDivisionError", "division by zero")
    )
    result = it.ask("Ratio?", attempts=2)
    assert not result.ok and result.words is None and len(fake.requests) == 2
    assert "found no working code" in summary_text(result) and "Answer:" not in summary_text(result)
    assert result.to_json()["answer"] is None


def test_the_cli_prints_the_answer_and_puts_it_in_json(fake: FakeModelServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "CI_MAGIC"))}
    env.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="k")
    csv = ROOT / "notebooks" / "sales.csv"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ci_magic.cli", "ask", "--data", f"df={csv}", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)

    fake.add(fenced("print(len(df))"), "The table has its rows counted above.")
    proc = cli("--json", "How many rows?")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "The table has its rows counted above."
    fake.add(fenced("print(len(df))"), "It has the rows shown.")
    proc = cli("How many rows?")
    assert proc.returncode == 0 and "Answer: It has the rows shown." in proc.stdout, proc.stderr
    fake.add(fenced("print(len(df))"))
    proc = cli("--no-words", "--json", "How many rows?")
    assert proc.returncode == 0 and json.loads(proc.stdout)["answer"] is None
    assert len(fake.requests) == 5


def test_files_the_question_asks_for_are_the_ones_it_writes_to(tmp_path: Path) -> None:
    (tmp_path / "sales.xlsx").write_bytes(b"x")
    assert answer.files_asked_for("Convert the Q2 sheet of sales.xlsx to q2.csv", tmp_path) == ["q2.csv"]
    assert answer.files_asked_for("Save each region as by_region/<region>.csv", tmp_path) == []
    assert answer.files_asked_for("Split it, saved as (e.g. by_region/North.csv)", tmp_path) == [
        "by_region/North.csv"
    ]
    # A source named but not in the folder (a frame read from it elsewhere) is not demanded; nor are paths out.
    assert answer.files_asked_for("df was read from prices.csv: what is the mean?", tmp_path) == []
    assert answer.files_asked_for("Write it to ../x.csv or /tmp/y.csv", tmp_path) == []


def test_a_file_asked_for_and_not_written_goes_back_as_a_repair(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    from ci_magic.sandbox.fake import Step

    (tmp_path / "customers.csv").write_text("id,name\n1,a\n")
    executor = ScriptedExecutor(["[{'id': 1, 'name': 'a'}]\n", Step("", writes={"customers.json": b"[]"})])
    fake.add(fenced("print(df.to_dict('records'))"), fenced("df.to_json('customers.json', orient='records')"))
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Convert customers.csv to customers.json as a list of records", attempts=2)
    assert [a.outcome for a in result.attempts] == ["rejected", "ok"] and result.doubt is None
    assert "asks for the file(s) 'customers.json'" in fake.requests[1]["messages"][-1]["content"]


def test_a_missing_file_is_said_with_what_was_written_instead_and_the_codes_likely_mistake(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    from ci_magic.sandbox.fake import Step

    (tmp_path / "sales.xlsx").write_bytes(b"PK\x03\x04 not read here")
    one_sheet = (
        "sheets = pd.read_excel('sales.xlsx')\nfor n in sheets.keys():\n    sheets[n].to_csv(f'{n}.csv')"
    )
    executor = ScriptedExecutor(
        [Step("", writes={"region.csv": b"N\n", "units.csv": b"3\n"}), Step("", writes={"Q1.csv": b"a\n1\n"})]
    )
    fake.add(fenced(one_sheet), fenced(one_sheet.replace("'sales.xlsx'", "'sales.xlsx', sheet_name=None")))
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Save every sheet of sales.xlsx as its own CSV file, e.g. Q1.csv", attempts=2)
    assert [a.outcome for a in result.attempts] == ["rejected", "ok"]
    repair = fake.requests[1]["messages"][-1]["content"]
    assert "did not write them (it wrote 'region.csv', 'units.csv' instead)" in repair
    assert "pd.read_excel(path, sheet_name=None), a dict {sheet name: DataFrame}" in repair


def test_a_json_file_asked_for_must_hold_one_json_document(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    from ci_magic.sandbox.fake import Step

    (tmp_path / "customers.csv").write_text("id,name\n1,a\n2,b\n")
    lines = b'{"id":1,"name":"a"}\n{"id":2,"name":"b"}\n'
    executor = ScriptedExecutor(
        [
            Step("", writes={"customers.json": lines}),
            Step("", writes={"customers.json": b'[{"id":1,"name":"a"},{"id":2,"name":"b"}]'}),
        ]
    )
    fake.add(
        fenced("df.to_json('customers.json', orient='records', lines=True)"),
        fenced("df.to_json('customers.json', orient='records')"),
    )
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Convert customers.csv to customers.json as a JSON list", attempts=2)
    assert [a.outcome for a in result.attempts] == ["rejected", "ok"] and result.doubt is None
    repair = fake.requests[1]["messages"][-1]["content"]
    assert "customers.json is not valid JSON: it holds one JSON value per line (JSON Lines)" in repair
    assert "orient='records'" in repair and "Do not pass lines=True" in repair
    # On the last attempt the same problem is said beside the answer, not hidden.
    executor.add(Step("", writes={"customers.json": b"{not json"}))
    fake.add(fenced("open('customers.json', 'w').write('{not json')"))
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        last = it.ask("Convert customers.csv to customers.json", attempts=1)
    assert last.ok and last.doubt is not None and "it does not parse" in last.doubt


def test_a_best_effort_only_copies_numbers_the_run_printed() -> None:
    from ci_magic.engine.rescue import copied

    output = "mean 12.5751\ncount: 0\nshare 0.25341\np = 1.23e-05\n"
    assert copied("@mean[12.58]\n@count[0]", output)  # rounded as the format asks
    assert copied("@share[25.34]\n@p[1.2e-5]\n@mean_2020[12.6]", output)  # a percentage; a digit in a name
    assert not copied("@mean[12.58]\n@other[13.47]", output)  # 13.47 was never printed
    assert not copied("@share[25.7]", output)  # a percentage is held to the printed value's rounding too


def lost_note(counts: str, column: str, example: str) -> str:
    """The sandbox's note on values a coercing conversion turned into NaN (sandbox/losses.py)."""
    return (
        f"[ci_magic] pd.to_numeric(errors='coerce') turned {counts} values of '{column}' that hold a number into "
        f"NaN, e.g. {example}\n"
    )


def test_numbers_a_conversion_lost_go_back_twice_and_stay_said(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    note = lost_note("544 of 856", "cases", "'630308[495000-801000]'")
    executor = ScriptedExecutor([note + "@mean_cases[2199.55]\n"] * 2 + [note + "@mean_cases[2081990.36]\n"])
    # Conversions that take numbers out of text already (engine/mends.py leaves them to the model).
    fake.add(
        *[
            fenced(f"x = pd.to_numeric(df.cases.str.extract(r'(\\d+)')[0], errors='coerce') # {n}")
            for n in range(3)
        ]
    )
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Mean number of cases?", attempts=5)
    repair = fake.requests[1]["messages"][-1]["content"]
    assert "turned 544 of 856 values of 'cases'" in repair
    assert "df['cases'] = pd.to_numeric(df['cases'].astype(str).str.replace(',', '').str.extract(" in repair
    # Some text holds digits and no number: after two repairs a run that still loses values is not sent back…
    assert [a.outcome for a in result.attempts] == ["rejected", "rejected", "ok"] and len(fake.requests) == 3
    # …and the user is told what it lost.
    assert result.ok and result.doubt is not None and "544 of 856" in result.doubt
    assert answer.doubt(printed("[ci_magic] something else\n")) is None


def test_values_lost_are_said_beside_a_rejected_answer_they_explain(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    note = lost_note("524 of 856", "deaths", "'298[110-510]'")
    executor = ScriptedExecutor([note + "@r[nan]\n", "@r[0.97]\n"])
    fake.add(fenced("r = pearsonr(a, b)[0]"), fenced("r = 0.97"))
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Correlation?", check=lambda e: "@r printed nan" if "[nan]" in e.stdout() else None)
    assert result.ok
    repair = fake.requests[1]["messages"][-1]["content"]
    assert "@r printed nan\npd.to_numeric(errors='coerce') turned 524 of 856 values of 'deaths'" in repair


def test_a_run_that_fails_after_losing_values_is_told_how_to_keep_them(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    # All of 'diff' held '37,410'-like text: coerced away and dropped, nothing was left to correlate.
    note = lost_note("3112 of 3112", "diff", "'37,410'")
    failed = ExecutionResult(
        "error",
        [{"output_type": "stream", "name": "stderr", "text": note}],
        error_name="ValueError",
        error_value="`x` and `y` must have length at least 2.",
    )
    executor = ScriptedExecutor([failed, "@r[0.02]\n"])
    fake.add(fenced("r = pearsonr(df['diff'].dropna(), df['y'])[0]"), fenced("r = 0.02"))
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        assert it.ask("Correlation?").ok
    repair = fake.requests[1]["messages"][-1]["content"]
    assert "must have length at least 2" in repair
    assert "df['diff'] = pd.to_numeric(df['diff'].astype(str).str.replace(',', '')" in repair


def test_a_scipy_result_that_is_nan_over_missing_values_goes_back(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    note = "[ci_magic] scipy.stats.shapiro returned NaN: its input held 165 missing values (NaN) of 'x'\n"
    executor = ScriptedExecutor([note + "@is_normal[no]\n", "@is_normal[no]\n"])
    fake.add(fenced("p = stats.shapiro(df.x).pvalue"), fenced("p = stats.shapiro(df.x.dropna()).pvalue"))
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Is x normal?", attempts=3)
    # The clean "no" was decided from a NaN p-value: sent back with how to drop the missing values.
    assert result.ok and [a.outcome for a in result.attempts] == ["rejected", "ok"]
    repair = fake.requests[1]["messages"][-1]["content"]
    assert "scipy.stats.shapiro returned NaN: its input held 165 missing values" in repair
    assert "stats.shapiro(s.dropna())" in repair
