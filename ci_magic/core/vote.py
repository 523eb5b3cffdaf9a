"""Self-consistency: draw more independent answers to the same question and keep the most common result.

A small model's code usually runs; when it is wrong, it is wrong in a way no traceback reveals (a filter
forgotten, the wrong test). Different samples make different mistakes but tend to agree when right, so the
result most samples agree on is more often right than the first one. Each extra sample is one fresh answer to
the original question (no repair dialogue), sampled at ``VOTE_TEMPERATURE`` with its own seed, and run from
pristine frames. Only answers that ran and passed the check vote; ties go to the earliest, i.e. the repair
loop's own answer. Sampling stops as soon as the leader cannot be overtaken.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Hashable, Mapping

from ..context.frames import Frame
from ..providers import Message, Provider
from ..sandbox import Sandbox
from .events import Event, EventSink
from .extract import extract_code
from .loop import BudgetCheck, Check, call_model, exec_done, run_code
from .results import Attempt, ExecutionResult, Usage

#: Diverse enough to make different mistakes, cool enough to stay on the question.
VOTE_TEMPERATURE = 0.7

#: What an answer is compared by; None means the execution has nothing to vote with.
VoteKey = Callable[[ExecutionResult], Hashable | None]

_FLOAT = re.compile(r"-?\d+\.\d+(?:[eE][-+]?\d+)?")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def output_key(execution: ExecutionResult) -> Hashable | None:
    """Text outputs with floats to 6 significant digits (last-digit noise is not disagreement); charts as one
    marker each. Outputs with no text at all do not vote."""
    text = execution.text().strip()
    if not text:
        return None
    text = _ADDRESS.sub("0x…", text)
    return _FLOAT.sub(lambda m: f"{float(m.group()):.6g}", " ".join(text.split()))


def settled(keys: list[Hashable], remaining: int) -> bool:
    """The leading answer keeps the lead whatever the remaining samples say."""
    ranked = Counter(keys).most_common(2)
    if not ranked:
        return False
    second = ranked[1][1] if len(ranked) > 1 else 0
    return ranked[0][1] - second > remaining


def choose(attempts: list[Attempt], key: VoteKey) -> tuple[int | None, dict[Hashable, int]]:
    """Index of the winning attempt (earliest among the most common answers) and the vote counts."""
    keyed = [(i, key(a.execution)) for i, a in enumerate(attempts) if a.ok and a.execution is not None]
    counts = Counter(k for _, k in keyed if k is not None)
    if not counts:
        return None, {}
    best = max(counts.values())
    winner = next(i for i, k in keyed if k is not None and counts[k] == best)
    return winner, dict(counts)


def draw_samples(
    opening: list[Message],
    done: list[Attempt],
    *,
    samples: int,
    provider: Provider,
    sandbox: Sandbox,
    frames: Mapping[str, Frame],
    emit: EventSink,
    check: Check | None = None,
    key: VoteKey = output_key,
    budget: BudgetCheck | None = None,
) -> list[Attempt]:
    """Up to ``samples - 1`` extra single-shot answers after the repair loop's ``done`` attempts."""
    extra: list[Attempt] = []
    loop_answer = [a for a in done if a.ok][-1:]  # the loop's answer is the first sample

    def keys() -> list[Hashable]:
        found = [key(a.execution) for a in [*loop_answer, *extra] if a.ok and a.execution is not None]
        return [k for k in found if k is not None]

    for index in range(1, samples):
        if settled(keys(), samples - index):
            break
        number = len(done) + len(extra) + 1
        spent = sum((a.usage for a in [*done, *extra]), Usage())
        messages = [dict(m) for m in opening]
        completion = call_model(
            provider,
            messages,
            number,
            emit,
            budget,
            spent,
            VOTE_TEMPERATURE,
            seed=index,
            start={"sample": index + 1},
        )
        u = completion.usage
        code = extract_code(completion.text)
        if code is None:
            extra.append(Attempt(number, completion.text, None, None, u, completion.seconds, "no code", True))
            emit(Event("no_code", number, {"problem": "the sample's reply had no code"}))
            continue
        emit(Event("code", number, {"code": code}))
        execution = run_code(sandbox, code, frames, pristine=True)
        problem = None if execution.ok else f"{execution.error_name}: {execution.error_value}"
        if problem is None and check is not None:
            problem = check(execution)
            if problem:
                execution.outcome = "rejected"
        extra.append(Attempt(number, completion.text, code, execution, u, completion.seconds, problem, True))
        emit(exec_done(number, execution, problem))
    return extra
