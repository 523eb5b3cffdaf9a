"""Self-consistency voting (ci_magic/engine/vote.py), with the scripted fake model and the scripted executor."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from conftest import fenced

from ci_magic.core.results import ExecutionResult
from ci_magic.core.settings import Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.engine.vote import VOTE_TEMPERATURE, first_batch, output_key, settled
from ci_magic.notebook.cells import summary_text
from ci_magic.providers.fake import FakeModelServer
from ci_magic.sandbox.fake import ScriptedExecutor, Step, error


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


def test_the_first_batch_is_as_small_as_can_settle() -> None:
    assert first_batch(["a"], remaining=4) == 2  # 3 of 5 agreeing settles it
    assert first_batch([], remaining=4) == 3  # the loop failed: 3 of the 4 samples must agree
    assert first_batch(["a"], remaining=2) == 1
    assert first_batch(["a", "b"], remaining=1) == 1


def test_majority_of_samples_wins_and_its_values_come_back(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"x": [1, 2, 3, 4]})
    fake.add(
        fenced("answer = int(df.x.sum()) + 1\nprint(answer)"),  # the repair loop's answer: 11 (wrong)
        fenced("answer = int(df.x.sum())\nprint(answer)"),  # sample 2: 10
        fenced("answer = int(df['x'].sum())\nprint(answer)"),  # sample 3: 10 again, other code
    )
    executor = ScriptedExecutor(
        rules=[
            (r"\+ 1", Step("11\n", creates={"answer": 11})),
            (r"answer = ", Step("10\n", creates={"answer": 10})),
        ]
    )
    with Interpreter(settings.with_(samples=3), executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Sum of x?", {"df": frame})
    assert [a.sample for a in result.attempts] == [False, True, True]
    assert result.ok and result.chosen == 1 and sorted(result.votes.values()) == [1, 2]
    assert result.outputs[0]["text"] == "10\n" and "int(df.x.sum())\n" in (result.code or "")
    # The chosen code ran again (it was not the last run), so what comes back is its value.
    assert executor.runs[-1].code == result.code and executor.runs[-1].pristine
    assert result.values["answer"] == 10
    assert "sample 2 (chosen by the vote): ok" in summary_text(result)
    assert "2 of 3 working answers agreed" in summary_text(result)
    # The fake server answers one choice per request (like llama.cpp's own): the samples came one by one,
    # each answering the original question afresh, sampled, with its own seed.
    sample_requests = fake.requests[1:]
    assert all(r["temperature"] == VOTE_TEMPERATURE for r in sample_requests)
    assert [r["seed"] for r in sample_requests] == [1, 2]
    assert all(r["messages"] == fake.requests[0]["messages"] for r in sample_requests)


def test_samples_come_in_one_request_where_the_server_honours_n(settings: Settings, tmp_path: Path) -> None:
    with FakeModelServer(n_choices=True) as fake:
        fake.add(
            fenced("print(4)"),
            fenced("print(4) # b"),
            fenced("print(5)"),
            fenced("print(4) # d"),
            fenced("print(4) # e"),
        )
        executor = ScriptedExecutor(rules=[(r"print\(4\)", "4\n"), (r"print\(5\)", "5\n")])
        s = settings.with_(base_url=fake.base_url, samples=5)
        with Interpreter(s, executor=executor, user_dir=tmp_path) as it:
            result = it.ask("Two plus two?")
    # The loop's answer, then a first batch of 2 (could have settled: 3 of 5), then the other 2 in a second.
    assert [r.get("n", 1) for r in fake.requests] == [1, 2, 2]
    assert [r.get("seed") for r in fake.requests[1:]] == [1, 3]
    assert len(result.attempts) == 5 and result.chosen == 0 and sorted(result.votes.values()) == [1, 4]
    # Billed as one request each: the prompt counted once per request, not per sample.
    samples = result.attempts[1:]
    assert samples[0].usage.prompt_tokens > 0 and samples[1].usage.prompt_tokens == 0
    assert [a.number for a in result.attempts] == [1, 2, 3, 4, 5]


def test_sampling_stops_once_the_answer_is_settled(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    fake.add(fenced("print(2 + 2)"), fenced("print(4)"), fenced("print(5)"))
    executor = ScriptedExecutor(["4\n", "4\n", "4\n"])
    with Interpreter(settings.with_(samples=3), executor=executor, user_dir=tmp_path) as it:
        result = it.ask("Two plus two?")
    assert len(fake.requests) == 2  # 2 of 3 agree after one extra sample: the third cannot change that
    assert result.chosen == 0 and result.outputs[0]["text"] == "4\n"
    assert len(executor.runs) == 3  # the chosen code ran again: the sandbox held the sample's variables


def test_failed_samples_do_not_vote_and_a_sample_can_rescue_a_failed_loop(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    fake.add(
        fenced("raise ValueError('first')"),
        fenced("raise ValueError('second')"),  # the loop (2 attempts) fails
        fenced("print(undefined_name)"),  # sample 2 fails too
        fenced("print(42)"),  # sample 3 answers
    )
    executor = ScriptedExecutor(
        [
            error("ValueError", "first"),
            error("ValueError", "second"),
            error("NameError", "undefined_name"),
            "42\n",
        ]
    )
    with Interpreter(settings.with_(samples=3, attempts=2), executor=executor, user_dir=tmp_path) as it:
        result = it.ask("The answer?")
    assert [a.outcome for a in result.attempts] == ["error", "error", "error", "ok"]
    assert result.ok and result.chosen == 3 and result.outputs[0]["text"] == "42\n"
    assert all(run.pristine for run in executor.runs[1:])  # every retry and sample from the user's data


def test_a_rejected_answer_does_not_vote(fake: FakeModelServer, settings: Settings, tmp_path: Path) -> None:
    fake.add(fenced("print('7')"), fenced("print('@a[7]')"), fenced("print('@a[7]') # again"))
    executor = ScriptedExecutor(rules=[(r"@a", "@a[7]\n"), (r"print", "7\n")])

    def check(execution: ExecutionResult) -> str | None:
        return None if "@a[" in execution.text() else "use @a[value]"

    with Interpreter(settings.with_(samples=3, attempts=1), executor=executor, user_dir=tmp_path) as it:
        result = it.ask("a?", check=check)
    assert [a.outcome for a in result.attempts] == ["rejected", "ok", "ok"]
    assert result.chosen == 1 and result.votes == {"@a[7]": 2}
