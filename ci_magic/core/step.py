"""One attempt: ask the model, find the code in its reply, run it, judge it. Shared by the repair loop and the
vote, which differ only in what they send and in what they do with the attempt afterwards.

Failures of the generated code are data: the :class:`~ci_magic.core.results.Attempt` says whether the reply had
code, how the run ended, and — as its own field — why a run that worked was rejected by the answer check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..providers import Completion, Message, Provider
from .errors import Cancelled
from .events import Event, EventSink
from .executor import Executor, Frame
from .extract import extract_code
from .results import Attempt, ExecutionResult, Usage

#: Inspects a successful execution; returns why it does not answer the question, or None.
Check = Callable[[ExecutionResult], str | None]

#: Called with (tokens spent by this ask so far, the messages about to be sent) before each model request, and
#: with ``None`` as messages after it; raises BudgetExceeded to stop the ask (see ci_magic.observe.cost.Budget).
BudgetCheck = Callable[[Usage, list[Message] | None], None]


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
    """One model request for attempt ``number``: streamed as events, checked against the budget before and
    after, and turned into Cancelled on an interrupt."""
    emit(Event("model_start", number, start or {}))

    def stream(text: str) -> None:
        emit(Event("token", number, {"text": text}))

    def done(completion: Completion) -> None:
        model_done(completion, number, emit)

    return _checked(
        provider, messages, budget, spent, done, on_text=stream, temperature=temperature, seed=seed
    )


def side_step(
    provider: Provider,
    messages: list[Message],
    budget: BudgetCheck | None,
    spent: Usage,
    max_tokens: int,
) -> Completion:
    """A short request that is not an attempt (the answer in words, a failed ask's format step): checked against
    the budget like one, at temperature 0, its text not streamed as an attempt's (the caller reports it)."""
    return _checked(provider, messages, budget, spent, None, temperature=0.0, max_tokens=max_tokens)


def _checked(
    provider: Provider,
    messages: list[Message],
    budget: BudgetCheck | None,
    spent: Usage,
    done: Callable[[Completion], None] | None,
    **options: Any,
) -> Completion:
    """``provider.complete(messages, **options)`` checked against the budget before and after (``done`` sees the
    completion in between, so its report goes out even when the budget then stops the ask); an interrupt
    becomes Cancelled."""
    if budget is not None:
        budget(spent, messages)
    try:
        completion = provider.complete(messages, **options)
    except KeyboardInterrupt:
        raise Cancelled("The ask was cancelled while the model was writing; nothing was run.") from None
    if done is not None:
        done(completion)
    if budget is not None:
        budget(spent + completion.usage, None)
    return completion


def model_done(completion: Completion, number: int, emit: EventSink) -> None:
    u = completion.usage
    data = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "seconds": completion.seconds,
    }
    emit(Event("model_done", number, data))


def run_code(
    executor: Executor, code: str, frames: Mapping[str, Frame], *, pristine: bool
) -> ExecutionResult:
    """Run generated code; an interrupt stops the sandbox too and becomes Cancelled."""
    try:
        return executor.run(code, frames, pristine=pristine)
    except KeyboardInterrupt:
        executor.interrupt()
        raise Cancelled(
            "The ask was cancelled while its code was running; the sandbox was interrupted."
        ) from None


def judge(
    completion: Completion,
    *,
    number: int,
    executor: Executor,
    frames: Mapping[str, Frame],
    emit: EventSink,
    pristine: bool,
    check: Check | None = None,
    sample: bool = False,
) -> Attempt:
    """Find the code in a reply, run it and judge it: the part of an attempt after the model has answered (a
    batched sample arrives already answered)."""
    code = extract_code(completion.text)
    attempt = Attempt(
        number=number,
        reply=completion.text,
        code=code,
        execution=None,
        usage=completion.usage,
        model_seconds=completion.seconds,
        sample=sample,
        finish_reason=completion.finish_reason,
        cached=completion.cached,
    )
    if code is None:
        emit(Event("no_code", number, {"problem": attempt.failure}))
        return attempt
    emit(Event("code", number, {"code": code}))
    attempt.execution = run_code(executor, code, frames, pristine=pristine)
    if attempt.execution.ok and check is not None:
        attempt.rejected = check(attempt.execution)
    emit(exec_done(attempt))
    return attempt


def exec_done(attempt: Attempt) -> Event:
    """The event that reports a finished run (its outputs, and why it failed or was rejected)."""
    execution = attempt.execution
    assert execution is not None
    data = {
        "outcome": attempt.outcome,
        "outputs": execution.outputs,
        "error": None if attempt.ok else attempt.failure,
        "seconds": execution.seconds,
    }
    return Event("exec_done", attempt.number, data)
