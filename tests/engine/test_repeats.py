"""A repair writing failed code again is seen while it streams: where a copy would fail for certain, and where not."""

from __future__ import annotations

from conftest import fenced

from ci_magic.core.results import Attempt, ExecutionResult, Usage
from ci_magic.engine.repeats import Repeats, failed_head
from ci_magic.providers import Completion, enough_at


def failed(code: str, line: int, name: str = "KeyError", *, called_from: int | None = None) -> Attempt:
    rows = code.splitlines()
    where = f"Cell In[1], line {line}\n----> {line} {rows[line - 1].strip()}\n"
    if called_from is not None:  # the error raised inside a function of the cell, called further down
        where = f"Cell In[1], line {called_from}\n----> {called_from} {rows[called_from - 1]}\n" + where
    execution = ExecutionResult(
        "error", error_name=name, error_value="'x'", traceback=f"{name}: 'x'\n{where}"
    )
    return Attempt(
        number=1, reply=fenced(code), code=code, execution=execution, usage=Usage(), model_seconds=1.0
    )


CODE = "import math\ntotal = df['a'].sum()\nyear = df['year'].max()\nprint(total, year)\n"


def test_the_head_ends_with_the_statement_that_raised() -> None:
    assert failed_head(failed(CODE, 3)) == CODE.splitlines()[:3]
    looped = "rows = []\nfor x in df.a:\n    rows.append(d[x])\n    print(x)\nprint(rows)\n"
    # An error in a later pass of a loop follows the loop's later lines: the whole loop is the head.
    assert failed_head(failed(looped, 3)) == looped.splitlines()[:4]
    guarded = "try:\n    v = d['x']\nexcept ValueError:\n    v = 0\nprint(v)\n"
    assert failed_head(failed(guarded, 2)) == guarded.splitlines()[:4]  # another except could catch it
    nested = "def f():\n    return d['x']\n\nprint(1)\nf()\n"
    assert failed_head(failed(nested, 2, called_from=5)) == nested.splitlines()[:5]


def test_failures_that_say_nothing_certain_have_no_head() -> None:
    assert failed_head(failed("x = (\n", 1, "SyntaxError")) is None
    timed_out = failed(CODE, 3)
    timed_out.execution = ExecutionResult(
        "timeout", traceback=timed_out.execution.traceback if timed_out.execution else None
    )
    assert failed_head(timed_out) is None
    no_line = failed(CODE, 3)
    assert no_line.execution is not None
    no_line.execution.traceback = "KeyError: 'x'"
    assert failed_head(no_line) is None


def test_a_reply_is_ended_once_it_has_repeated_the_head() -> None:
    repeats = Repeats([failed(CODE, 3)])
    assert repeats  # there is something to watch for
    copy = fenced(CODE + "print('and more')\n", prose="Sorry, here it is again:")
    cut = enough_at(copy, 0, repeats)
    assert cut is not None and copy[:cut].endswith("year = df['year'].max()\n")
    assert repeats.copied is not None and repeats.copied.code == CODE
    whole = repeats.whole(Completion(copy[:cut], Usage(), 1.0, "enough"))
    assert whole.text == f"Sorry, here it is again:\n```python\n{CODE.rstrip()}\n```"


def test_a_reply_that_changes_the_head_is_left_to_run() -> None:
    fixed = CODE.replace("df['year'].max()", "df['date'].dt.year.max()")
    repeats = Repeats([failed(CODE, 3)])
    assert enough_at(fenced(fixed), 0, repeats) is None and repeats.copied is None
    assert not Repeats([])  # nothing failed yet: nothing to watch


def test_a_head_the_loop_would_mend_is_not_watched() -> None:
    code = "from sklearn.model_selection import class_weight\nprint(1)\n"
    attempt = failed(code, 1, "ImportError")
    assert not Repeats([attempt], mend=lambda c: c.replace("model_selection", "utils"))
    assert Repeats([attempt], mend=lambda c: c)
