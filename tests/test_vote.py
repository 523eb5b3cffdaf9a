"""Self-consistency voting (ci_magic/vote.py) against the fake model and a real sandbox kernel."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from conftest import fenced

from ci_magic.core.interpreter import Interpreter
from ci_magic.core.results import ExecutionResult
from ci_magic.core.settings import Settings
from ci_magic.core.vote import VOTE_TEMPERATURE, output_key, settled
from ci_magic.notebook.cells import summary_text
from ci_magic.providers.fake import FakeModelServer


def stream(text: str) -> ExecutionResult:
    return ExecutionResult("ok", [{"output_type": "stream", "name": "stdout", "text": text}])


def test_output_key_ignores_float_noise_and_whitespace() -> None:
    assert output_key(stream("mean: 2.0000000001\n")) == output_key(stream("mean:  2.0\n"))
    assert output_key(stream("mean: 2.5")) != output_key(stream("mean: 2.6"))
    assert output_key(stream("   \n")) is None


def test_settled_when_the_leader_cannot_be_overtaken() -> None:
    assert settled(["a", "a"], remaining=1)
    assert not settled(["a", "b"], remaining=1)
    assert not settled(["a", "a"], remaining=2)
    assert not settled([], remaining=0)


def test_majority_of_samples_wins_and_its_values_come_back(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"x": [1, 2, 3, 4]})
    fake.add(
        fenced("answer = int(df.x.sum()) + 1\nprint(answer)"),  # the repair loop's answer: 11 (wrong)
        fenced("answer = int(df.x.sum())\nprint(answer)"),  # sample 2: 10
        fenced("answer = int(df['x'].sum())\nprint(answer)"),  # sample 3: 10 again, other code
    )
    with Interpreter(settings.with_(samples=3), user_dir=tmp_path) as it:
        result = it.ask("Sum of x?", {"df": frame})
    assert [a.sample for a in result.attempts] == [False, True, True]
    assert result.ok and result.chosen == 1 and sorted(result.votes.values()) == [1, 2]
    assert result.outputs[0]["text"] == "10\n" and "int(df.x.sum())\n" in (result.code or "")
    # The chosen code was re-run, so what comes back is its value, not the last sample's.
    assert result.values["answer"] == 10
    assert "sample 2 (chosen by the vote): ok" in summary_text(result)
    assert "2 of 3 working answers agreed" in summary_text(result)
    # Samples answer the original question afresh, sampled, each with its own seed.
    sample_requests = fake.requests[1:]
    assert all(r["temperature"] == VOTE_TEMPERATURE for r in sample_requests)
    assert [r["seed"] for r in sample_requests] == [1, 2]
    assert all(r["messages"] == fake.requests[0]["messages"] for r in sample_requests)


def test_sampling_stops_once_the_answer_is_settled(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    fake.add(fenced("print(2 + 2)"), fenced("print(4)"), fenced("print(5)"))
    with Interpreter(settings.with_(samples=3), user_dir=tmp_path) as it:
        result = it.ask("Two plus two?")
    assert len(fake.requests) == 2  # 2 of 3 agree after one extra sample: the third cannot change that
    assert result.chosen == 0 and result.outputs[0]["text"] == "4\n"


def test_failed_samples_do_not_vote_and_a_sample_can_rescue_a_failed_loop(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    fake.add(
        fenced("raise ValueError('first')"),
        fenced("raise ValueError('second')"),  # the loop (2 attempts) fails
        fenced("print(undefined_name)"),  # sample 2 fails too
        fenced("print(42)"),  # sample 3 answers
    )
    with Interpreter(settings.with_(samples=3, attempts=2), user_dir=tmp_path) as it:
        result = it.ask("The answer?")
    assert [a.outcome for a in result.attempts] == ["error", "error", "error", "ok"]
    assert result.ok and result.chosen == 3 and result.outputs[0]["text"] == "42\n"


def test_a_retry_starts_from_the_users_data_not_the_failed_attempts_edits(
    fake: FakeModelServer, interpreter: Interpreter
) -> None:
    frame = pd.DataFrame({"x": [1.0, None, 3.0]})
    fake.add(
        fenced(
            "df.dropna(inplace=True)\ndf['x'] = df.x * 100\nraise RuntimeError('after editing df in place')"
        ),
        fenced("print(len(df), df.x.sum())"),
    )
    result = interpreter.ask("Rows and total?", {"df": frame})
    assert [a.outcome for a in result.attempts] == ["error", "ok"]
    assert result.outputs[0]["text"] == "3 4.0\n"
    assert frame.x.isna().sum() == 1  # and the user's own frame was never touched
