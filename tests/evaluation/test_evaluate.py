"""ci-magic eval: DABench-format questions through the loop, against the fake model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import fenced

from ci_magic.core.settings import Settings
from ci_magic.evaluation.runner import Question, read_questions, run_eval
from ci_magic.providers.fake import FakeModelServer, Turn


def write_questions(tmp_path: Path) -> Path:
    (tmp_path / "t.csv").write_text("x,y\n1,2\n3,4\n")
    rows = [
        {
            "id": 1,
            "question": "Mean of x?",
            "constraints": "Round to 2.",
            "format": "@mean_x[mean]",
            "file_name": "t.csv",
        },
        {
            "id": 2,
            "question": "Sum of y?",
            "constraints": "",
            "format": "@sum_y[total]",
            "file_name": "t.csv",
        },
        {"id": 3, "question": "Missing table", "constraints": "", "format": "@a[b]", "file_name": "nope.csv"},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_format_check_repairs_and_failures_are_recorded(fake: FakeModelServer, tmp_path: Path) -> None:
    questions = read_questions(write_questions(tmp_path))
    fake.add(
        fenced("print(df.x.mean())"),  # right number, wrong format: the check sends it back
        fenced("print(f'@mean_x[{round(df.x.mean(), 2)}]')"),
        *[Turn(status=500, reply="model crashed")] * 3,  # question 2: the server fails (client retries twice)
    )
    out = io.StringIO()
    settings = Settings(model="fake-model", base_url=fake.base_url, api_key="k", answer_in_words=False)
    records = list(run_eval(questions, tmp_path, out, settings=settings, attempts=2, progress=io.StringIO()))
    first, second, third = records
    assert first["ok"] and first["attempts"] == 2 and first["response_text"] == "@mean_x[2.0]\n"
    assert "never printed @mean_x[...]" in fake.requests[1]["messages"][-1]["content"]
    assert "Answer format: @mean_x[mean]" in fake.requests[0]["messages"][-1]["content"]
    assert not second["ok"] and "HTTP 500" in second["error"]
    assert not third["ok"] and "nope.csv" in third["error"]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["id"] for r in lines] == [1, 2, 3]
    assert set(lines[0]) >= {
        "id",
        "response_text",
        "attempts",
        "prompt_tokens",
        "completion_tokens",
        "seconds",
    }


def test_placeholder_echo_is_rejected(fake: FakeModelServer, tmp_path: Path) -> None:
    q = Question(7, "q", "", "@value[number]", "t.csv")
    (tmp_path / "t.csv").write_text("x\n1\n")
    fake.add(fenced("print('@value[number]')"), fenced("print('@value[1]')"))
    settings = Settings(model="fake-model", base_url=fake.base_url, api_key="k", answer_in_words=False)
    (record,) = run_eval([q], tmp_path, io.StringIO(), settings=settings, attempts=2, progress=io.StringIO())
    assert record["ok"] and record["response_text"] == "@value[1]\n"
    assert "placeholder" in fake.requests[1]["messages"][-1]["content"]


def test_a_format_cut_off_before_its_last_bracket_still_names_the_answer(
    fake: FakeModelServer, tmp_path: Path
) -> None:
    q = Question(8, "Mean x by y?", "", "@by_y[{'y_1':mean_1, ..., 'y_4':mean_4", "t.csv")
    (tmp_path / "t.csv").write_text("x,y\n1,2\n3,4\n")
    assert q.answer_lines() == 'print(f"@by_y[{by_y}]")'
    fake.add(fenced("print(df.groupby('y').x.mean())"), fenced("print('@by_y[' + str({'y_2': 1.0}) + ']')"))
    settings = Settings(model="fake-model", base_url=fake.base_url, api_key="k", answer_in_words=False)
    (record,) = run_eval([q], tmp_path, io.StringIO(), settings=settings, attempts=2, progress=io.StringIO())
    # The table printed as it is is no answer in that form: sent back, not taken.
    assert "never printed @by_y[...]" in fake.requests[1]["messages"][-1]["content"]
    assert record["ok"] and record["response_text"] == "@by_y[{'y_2': 1.0}]\n"


def test_answers_are_rounded_as_the_format_says_and_words_are_checked(
    fake: FakeModelServer, tmp_path: Path
) -> None:
    (tmp_path / "t.csv").write_text("x\n1\n2\n2\n")
    q = Question(
        8,
        "Mean of x, and is it above 1.5?",
        "",
        '@mean_x[m] @above[a] where "m" is rounded to 2 decimal places and "a" is either "yes" or "no".',
        "t.csv",
    )
    fake.add(
        fenced("print(f'@mean_x[{df.x.mean()}]')\nprint('@above[True]')"),  # a word outside "yes"/"no"
        fenced(
            "m = df.x.mean()\nprint(f'@mean_x[{m}]')\nprint('@above[' + ('yes' if m > 1.5 else 'no') + ']')"
        ),
    )
    settings = Settings(model="fake-model", base_url=fake.base_url, api_key="k", answer_in_words=False)
    (record,) = run_eval([q], tmp_path, io.StringIO(), settings=settings, attempts=2, progress=io.StringIO())
    assert 'must be exactly one of "yes" or "no"' in fake.requests[1]["messages"][-1]["content"]
    # 1.6666666666666667 printed, 1.67 recorded: rounding as the format says costs no model call.
    assert record["ok"] and record["response_text"] == "@mean_x[1.67]\n@above[yes]\n"


def test_samples_vote_on_the_answers(fake: FakeModelServer, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("x\n1\n2\n4\n")
    q = Question(9, "Median of x?", "", '@median_x[v] where "v" is rounded to 1 decimal place', "t.csv")
    fake.add(
        fenced("print(f'@median_x[{df.x.mean()}]')"),  # the first answer is wrong: 2.33
        fenced("print('some chatter 1.0')\nprint(f'@median_x[{df.x.median()}]')"),
        fenced("print(f'@median_x[{float(df.x.median()):.4f}]')"),  # 2.0000: the same answer, other text
    )
    settings = Settings(
        model="fake-model", base_url=fake.base_url, api_key="k", answer_in_words=False, samples=3
    )
    (record,) = run_eval([q], tmp_path, io.StringIO(), settings=settings, attempts=1, progress=io.StringIO())
    assert record["samples"] == 3 and record["attempts"] == 1
    assert record["response_text"].endswith("@median_x[2.0]\n")


def test_nan_answers_are_sent_back(fake: FakeModelServer, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("x,y\n1,a\n,b\n3,c\n")
    q = Question(10, "Mean of x?", "", "@mean_x[m]", "t.csv")
    fake.add(
        fenced("import numpy as np\nprint(f'@mean_x[{np.mean(df.x.values)}]')"),
        fenced("print(f'@mean_x[{df.x.dropna().mean()}]')"),
    )
    settings = Settings(model="fake-model", base_url=fake.base_url, api_key="k", answer_in_words=False)
    (record,) = run_eval([q], tmp_path, io.StringIO(), settings=settings, attempts=2, progress=io.StringIO())
    assert "printed nan, not a value" in fake.requests[1]["messages"][-1]["content"]
    assert record["ok"] and record["response_text"] == "@mean_x[2.0]\n"


def test_none_is_an_answer_where_the_format_lists_it() -> None:
    from ci_magic.evaluation.runner import answer_check
    from ci_magic.sandbox.fake import ok

    q = Question(
        11,
        "Relationship?",
        "",
        '@kind[k] where k is a word that can be "linear", "nonlinear", or "none"',
        "t.csv",
    )
    assert answer_check(q)(ok("@kind[none]\n")) is None
    plain = Question(12, "Mean?", "", "@mean_x[m]", "t.csv")
    stray = answer_check(plain)(ok("@2.5[2.5]\n")) or ""
    assert "It printed @2.5[2.5] instead: the name after @ is plain text" in stray
    assert "printed None, not a value" in (answer_check(plain)(ok("@mean_x[None]\n")) or "")


def test_replayed_replies_are_recorded_and_fresh_asks_the_model(
    fake: FakeModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outside the tables' folder: the model sees that folder's files, so a cache inside would change the prompt.
    monkeypatch.setenv("CI_MAGIC_REPLY_CACHE_DIR", str(tmp_path.parent / f"{tmp_path.name}-replies"))
    questions = read_questions(write_questions(tmp_path))[:1]
    answer = fenced("print(f'@mean_x[{round(df.x.mean(), 2)}]')")
    fake.add(answer, answer)
    settings = Settings(
        model="fake-model", base_url=fake.base_url, api_key="k", answer_in_words=False, reply_cache=True
    )

    def once(fresh: bool) -> dict[str, object]:
        out = io.StringIO()
        kwargs = {"settings": settings, "attempts": 1, "progress": io.StringIO(), "fresh": fresh}
        return next(iter(run_eval(questions, tmp_path, out, **kwargs)))  # type: ignore[arg-type]

    first, replayed, fresh = once(False), once(False), once(True)
    assert (first["replies"], first["cached_replies"]) == (1, 0)
    assert (replayed["replies"], replayed["cached_replies"]) == (1, 1)  # its time is not the model's
    assert (fresh["replies"], fresh["cached_replies"]) == (1, 0)
    assert len(fake.requests) == 2 and first["ok"] and replayed["ok"] and fresh["ok"]


def test_each_question_sees_only_its_own_table(fake: FakeModelServer, tmp_path: Path) -> None:
    # The tables' folder holds every question's table; a user asking about one file has only that one.
    (tmp_path / "other.csv").write_text("a\n1\n")
    (question,) = read_questions(write_questions(tmp_path))[:1]
    fake.add(fenced("open('made.txt', 'w').write('x')\nprint(f'@mean_x[{round(df.x.mean(), 2)}]')"))
    settings = Settings(model="fake-model", base_url=fake.base_url, api_key="k", answer_in_words=False)
    (record,) = run_eval(
        [question], tmp_path, io.StringIO(), settings=settings, attempts=1, progress=io.StringIO()
    )
    sent = "\n".join(m["content"] for m in fake.requests[0]["messages"])
    assert record["ok"] and "'t.csv'" in sent and "other.csv" not in sent and "q.jsonl" not in sent
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other.csv",
        "q.jsonl",
        "t.csv",
    ]  # nothing written here


def test_eval_progress_counts_answers_and_right_ones_and_stays_quiet_when_asked() -> None:
    from ci_magic.evaluation.progress import Progress, right

    labels = {"1": [("mean", "2.50"), ("kind", "No")], "2": [("n", "3")]}
    assert right("@mean[2.50]\n@kind[No]", labels["1"]) and right("@n[3.0]", labels["2"])
    assert not right("@mean[2.5]", labels["1"]) and not right("", labels["2"])
    stream = io.StringIO()
    shown = Progress(2, stream, labels=labels)
    shown.done(1, {"response_text": "@mean[2.50]\n@kind[No]", "ok": True, "attempts": 1, "seconds": 3})
    shown.done(2, {"response_text": "@n[4]", "ok": True, "attempts": 2, "seconds": 5})
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/2] #1: ok") and "answered 1, right 1" in lines[0]
    assert "answered 2, right 1" in lines[1] and "min left" in lines[1]
    quiet = io.StringIO()
    Progress(1, quiet, quiet=True).done(1, {"response_text": "x"})
    assert quiet.getvalue() == ""
