"""generate → run → fix: the bounded repair loop. Failures of the generated code are data, not exceptions."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from ..context.frames import Frame
from ..providers import Completion, Message, Provider
from ..sandbox import Sandbox
from . import prompts
from .errors import Cancelled
from .events import Event, EventSink
from .extract import extract_code
from .results import Attempt, ExecutionResult, Usage
from .settings import Settings

#: A failed number conversion: "could not convert string to float: '37,410'", "invalid literal for int()".
_CONVERSION = re.compile(
    r"could not convert string to float|invalid literal for int\(\)|Unable to parse string"
)

#: Sampling temperature for repair attempts (the first attempt uses the configured one, 0 by default).
RETRY_TEMPERATURE = 0.4

#: Inspects a successful execution; returns why it does not answer the question, or None.
Check = Callable[[ExecutionResult], str | None]

#: Called with (tokens spent by this ask so far, the messages about to be sent) before each model request, and
#: with ``None`` as messages after it; raises BudgetExceeded to stop the ask (see ci_magic.observe.cost.Budget).
BudgetCheck = Callable[[Usage, list[Message] | None], None]


def run_attempts(
    messages: list[Message],
    *,
    provider: Provider,
    sandbox: Sandbox,
    frames: Mapping[str, Frame],
    settings: Settings,
    attempts: int,
    emit: EventSink,
    check: Check | None = None,
    budget: BudgetCheck | None = None,
) -> list[Attempt]:
    """Ask, run, and feed failures back, at most ``attempts`` times. ``messages`` grows with the dialogue.

    ``check`` inspects a successful execution and may return a problem (e.g. "the answer is not in the required
    format"); the attempt then counts as failed and the problem goes back to the model like a traceback.
    """
    done: list[Attempt] = []
    opening = [dict(m) for m in messages]  # the system prompt and the question, as first sent
    for number in range(1, attempts + 1):
        # A repair at temperature 0 tends to repeat the failed code word for word; a little sampling breaks that.
        temperature = None if number == 1 else max(settings.temperature, RETRY_TEMPERATURE)
        spent = sum((a.usage for a in done), Usage())
        completion = call_model(provider, messages, number, emit, budget, spent, temperature)
        messages.append({"role": "assistant", "content": completion.text})
        code = extract_code(completion.text)
        if code is None:
            why = (
                prompts.TRUNCATED.format(reason=f"finish_reason={completion.finish_reason}")
                if completion.finish_reason in ("length", "truncated")
                else prompts.NO_CODE
            )
            done.append(
                Attempt(number, completion.text, None, None, completion.usage, completion.seconds, why)
            )
            emit(Event("no_code", number, {"problem": why}))
            messages.append({"role": "user", "content": why})
            continue
        emit(Event("code", number, {"code": code}))
        execution = run_code(sandbox, code, frames, pristine=bool(done))
        problem: str | None = None if execution.ok else _feedback(execution, settings, frames)
        if problem is None and check is not None:
            complaint = check(execution)
            if complaint:
                problem = prompts.CHECK_FAILED.format(problem=complaint)
                execution.outcome = "rejected"
        if problem is not None and any(a.code == code for a in done):
            problem = prompts.SAME_CODE + "\n\n" + problem
        done.append(
            Attempt(number, completion.text, code, execution, completion.usage, completion.seconds, problem)
        )
        emit(exec_done(number, execution, problem if execution.outcome == "rejected" else None))
        if execution.ok:
            break
        assert problem is not None
        messages.append({"role": "user", "content": problem})
        if _stuck(done):
            # Small models copy their own failed code while it stays in the dialogue: start over from the
            # question, with what went wrong as notes, so the next attempt is written afresh.
            messages[:] = _fresh_start(opening, done, frames)
        if number < attempts:
            emit(Event("retry", number, {"problem": problem}))
    return done


def call_model(
    provider: Provider,
    messages: list[Message],
    number: int,
    emit: EventSink,
    budget: BudgetCheck | None,
    spent: Usage,
    temperature: float | None,
    seed: int | None = None,
    start: dict[str, Any] | None = None,
) -> Completion:
    """One model request for attempt ``number``: streamed as events, checked against the budget before and after,
    and turned into Cancelled on an interrupt."""
    emit(Event("model_start", number, start or {}))

    def stream(text: str) -> None:
        emit(Event("token", number, {"text": text}))

    if budget is not None:
        budget(spent, messages)
    try:
        completion = provider.complete(messages, on_text=stream, temperature=temperature, seed=seed)
    except KeyboardInterrupt:
        raise Cancelled("The ask was cancelled while the model was writing; nothing was run.") from None
    u = completion.usage
    data = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "seconds": completion.seconds,
    }
    emit(Event("model_done", number, data))
    if budget is not None:
        budget(spent + u, None)
    return completion


def run_code(sandbox: Sandbox, code: str, frames: Mapping[str, Frame], *, pristine: bool) -> ExecutionResult:
    """Run generated code; an interrupt stops the sandbox too and becomes Cancelled."""
    try:
        return sandbox.run(code, frames, pristine=pristine)
    except KeyboardInterrupt:
        sandbox.interrupt()
        raise Cancelled(
            "The ask was cancelled while its code was running; the sandbox was interrupted."
        ) from None


def exec_done(number: int, execution: ExecutionResult, error: str | None = None) -> Event:
    """The event that reports a finished run of attempt ``number`` (its outputs, and why it failed)."""
    if error is None and not execution.ok:
        error = f"{execution.error_name}: {execution.error_value}"
    data = {
        "outcome": execution.outcome,
        "outputs": execution.outputs,
        "error": error,
        "seconds": execution.seconds,
    }
    return Event("exec_done", number, data)


def _failure(attempt: Attempt) -> str:
    execution = attempt.execution
    if execution is None:
        return "the reply contained no Python code block"
    if execution.outcome == "rejected":
        prefix = prompts.CHECK_FAILED.split("{problem}")[0]
        line = next((ln for ln in (attempt.problem or "").splitlines() if ln.startswith(prefix)), prefix)
        return "the output did not answer: " + line[len(prefix) :][:300]
    return f"{execution.error_name}: {execution.error_value}"[:300]


def _stuck(done: list[Attempt]) -> bool:
    """The last attempt repeats an earlier one's code or its exact failure."""
    if len(done) < 2:
        return False
    last, earlier = done[-1], done[:-1]
    return any(a.code == last.code or _failure(a) == _failure(last) for a in earlier)


def _fresh_start(opening: list[Message], done: list[Attempt], frames: Mapping[str, Frame]) -> list[Message]:
    notes = list(dict.fromkeys(_failure(a) for a in done))
    if any(
        a.execution is not None and a.execution.error_name in ("KeyError", "AttributeError") for a in done
    ):
        notes += [
            f"the columns of {n} are exactly {list(o.columns)[:80]!r}"
            for n, o in frames.items()
            if isinstance(o, pd.DataFrame)
        ]
    fresh = [dict(m) for m in opening]
    fresh[-1]["content"] += prompts.EARLIER_FAILURES.format(notes="\n".join(f"- {n}" for n in notes))
    return fresh


def _feedback(execution: ExecutionResult, settings: Settings, frames: Mapping[str, Frame]) -> str:
    error = execution.traceback or f"{execution.error_name}: {execution.error_value}"
    if execution.error_name in ("KeyError", "AttributeError") and frames:
        # The usual cause is a misspelt or guessed column name: put the real ones next to the error.
        listing = "\n".join(
            f"{name}: {list(obj.columns)[:80]!r}"
            for name, obj in frames.items()
            if isinstance(obj, pd.DataFrame)
        )
        if listing:
            error += f"\nThe columns are exactly:\n{listing}"
    if execution.error_name == "ValueError" and _CONVERSION.search(execution.error_value or ""):
        error += (
            "\nThe column holds text that is not a plain number. Clean it first, e.g. "
            "pd.to_numeric(s.astype(str).str.replace(',', ''), errors='coerce'), or take the leading number with "
            "s.astype(str).str.extract(r'^\\s*([-+]?[\\d.]+)')[0].astype(float); then drop the missing values."
        )
    if execution.restarted:
        error += "\nThe sandbox was restarted: variables you created are gone; the DataFrames are reloaded."
    stdout_tail = "".join(o.get("text", "") for o in execution.outputs if o.get("output_type") == "stream")[
        -1500:
    ]
    if settings.context_detail != "samples":
        stdout_tail = ""  # printed output shows data values, which this privacy setting keeps from the model
    return prompts.repair_message(
        error, stdout_tail, timed_out=execution.outcome == "timeout", timeout_s=settings.limits.timeout_s
    )
