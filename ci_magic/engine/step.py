"""One attempt: ask the model, find the code in its reply, run it, judge it. Shared by the repair loop and the
vote, which differ only in what they send and in what they do with the attempt afterwards.

Failures of the generated code are data: the :class:`~ci_magic.core.results.Attempt` says whether the reply had
code, how the run ended, and — as its own field — why a run that worked was rejected by the answer check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ..core.errors import Cancelled
from ..core.events import Code, Event, EventSink, ExecDone, ModelDone, ModelStart, NoCode, Output, Token
from ..core.results import Attempt, ExecutionResult, Usage
from ..providers import Completion, Enough, Message, OnText, Request
from .ask import AskRun, BudgetCheck, Check
from .extract import extract_code

__all__ = ["BudgetCheck", "Check", "call_model", "judge", "request", "side_step"]


def call_model(
    run: AskRun, messages: list[Message], number: int, temperature: float | None, enough: Enough | None = None
) -> Completion:
    """One model request for attempt ``number``: streamed as events, checked against the budget before and
    after, and turned into Cancelled on an interrupt. ``enough`` may end the reply early (Request.enough)."""
    sent = Request(messages, 1, temperature, seed_of(messages, temperature, number), enough=enough)
    return request(run, sent, number, [None])[0]


def seed_of(messages: list[Message], temperature: float | None, attempt: int = 0) -> int | None:
    """The seed of a sampled request, fixed by what it sends and by the attempt it serves (None when it is not
    sampled): the same request draws the same reply whatever the server did before. Without one, llama.cpp's
    server draws from one generator shared by every request since it started, so an ask's repairs would change
    with the asks before it, and a run of many questions could not be compared question by question. The
    attempt is part of it because a later attempt can send exactly what an earlier one did (a fresh start whose
    notes name the same failure): with the same seed it would draw the same failed code again."""
    if not temperature:
        return None
    sent = json.dumps([attempt, messages], sort_keys=True)
    digest = hashlib.sha256(sent.encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def request(run: AskRun, sent: Request, first: int, samples: list[int | None]) -> list[Completion]:
    """The ``sent.n`` completions of one request, for attempts ``first``, ``first + 1``… (a repair: one; the
    vote's samples: several, numbered by ``samples``): each streamed as the events of its attempt
    (``model_start``, ``token``, ``model_done``), checked against the budget before and after."""
    for i, sample in enumerate(samples):
        run.emit(Event(ModelStart(sample), first + i))

    def stream(index: int, text: str) -> None:
        run.emit(Event(Token(text), first + index))

    def done(completions: list[Completion]) -> None:
        for i, completion in enumerate(completions):
            model_done(completion, first + i, run.emit)

    return _checked(run, sent, done, stream)


def side_step(
    run: AskRun,
    messages: list[Message],
    max_tokens: int | None,
    temperature: float = 0.0,
    attempt: int = 0,
) -> Completion:
    """A request that is not an attempt of its own (the answer in words, a failed ask's format step, a repair
    asked again — for ``attempt``): checked against the budget like one, at temperature 0 unless told, its text
    not streamed as an attempt's (the caller reports it)."""
    seed = seed_of(messages, temperature, attempt)
    sent = Request(messages, temperature=temperature, max_tokens=max_tokens, seed=seed)
    return _checked(run, sent)[0]


def _checked(
    run: AskRun,
    sent: Request,
    done: Callable[[list[Completion]], None] | None = None,
    on_text: OnText | None = None,
) -> list[Completion]:
    """``run.provider.complete_many(sent, on_text)`` checked against the budget before and after (``done`` sees
    the completions in between, so their report goes out even when the budget then stops the ask); an interrupt
    becomes Cancelled."""
    spent = run.spent()
    if run.budget is not None:
        run.budget(spent, sent.messages)
    try:
        completions = run.provider.complete_many(sent, on_text)
    except KeyboardInterrupt:
        raise Cancelled("The ask was cancelled while the model was writing; nothing was run.") from None
    if done is not None:
        done(completions)
    if run.budget is not None:
        run.budget(spent + sum((c.usage for c in completions), Usage()), None)
    return completions


def model_done(completion: Completion, number: int, emit: EventSink) -> None:
    u = completion.usage
    emit(Event(ModelDone(u.prompt_tokens, u.completion_tokens, completion.seconds), number))


def run_code(run: AskRun, code: str, number: int, *, pristine: bool) -> ExecutionResult:
    """Run attempt ``number``'s code, its outputs sent on as ``output`` events while it runs; an interrupt stops
    the sandbox too and becomes Cancelled."""

    def live(ops: list[dict[str, Any]]) -> None:
        run.emit(Event(Output(ops), number))

    try:
        return run.executor.run(code, run.frames, pristine=pristine, on_output=live)
    except KeyboardInterrupt:
        run.executor.interrupt()
        raise Cancelled(
            "The ask was cancelled while its code was running; the sandbox was interrupted."
        ) from None


def judge(
    run: AskRun, completion: Completion, number: int, check: Check | None, sample: bool = False
) -> Attempt:
    """Find the code in a reply, run it and judge it: the part of an attempt after the model has answered (a
    batched sample arrives already answered). It runs from pristine frames unless it is the ask's first."""
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
        run.emit(Event(NoCode(attempt.failure or ""), number))
        return attempt
    run.emit(Event(Code(code), number))
    attempt.execution = run_code(run, code, number, pristine=bool(run.attempts))
    if attempt.execution.ok and check is not None:
        attempt.rejected = check(attempt.execution)
    run.emit(exec_done(attempt))
    return attempt


def exec_done(attempt: Attempt) -> Event:
    """The event that reports a finished run (its outputs, and why it failed or was rejected)."""
    execution = attempt.execution
    assert execution is not None
    error = None if attempt.ok else attempt.failure
    network = [asdict(u) for u in execution.network]
    return Event(
        ExecDone(attempt.outcome, execution.outputs, error, execution.seconds, network), attempt.number
    )
