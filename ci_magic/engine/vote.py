"""Self-consistency: draw more independent answers to the same question and keep the most common result.

A small model's code usually runs; when it is wrong, it is wrong in a way no traceback reveals (a filter
forgotten, the wrong test). Different samples make different mistakes but tend to agree when right, so the
result most samples agree on is more often right than the first one. Each extra sample is one fresh answer to
the original question (no repair dialogue), sampled at ``VOTE_TEMPERATURE`` with its own seed, and run from
pristine frames. Only answers that ran and passed the check vote; ties go to the earliest, i.e. the repair
loop's own answer. Sampling stops as soon as the leader cannot be overtaken.

Samples are drawn in batches, one request each (the OpenAI ``n`` parameter: the prompt is read once and the
answers are decoded together — our embedded server and most remote ones support it; others get the same
samples one request at a time, see ``Provider.complete_many``): first as many as could settle the vote, then,
only if they did not, the rest.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Hashable

from ..core.events import Event, Vote
from ..core.results import AskResult, Attempt, ExecutionResult
from ..providers import Completion, Message, Request
from .ask import AskRun
from .step import judge, request

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


def hold_vote(run: AskRun, result: AskResult, opening: list[Message], samples: int, key: VoteKey) -> None:
    """Draw the extra samples after the repair loop's attempts (``run.attempts``, which ``result.attempts`` is)
    and make the answer most of them agree on the result (``result.chosen``, ``result.votes``)."""
    draw_samples(run, opening, samples, key)
    chosen, counts = choose(result.attempts, key)
    result.chosen = chosen
    result.votes = {str(k)[:200]: n for k, n in counts.items()}
    number = result.attempts[chosen].number if chosen is not None else None
    run.emit(Event(Vote(number, list(counts.values())), len(result.attempts)))


def first_batch(keys: list[Hashable], remaining: int) -> int:
    """The fewest new samples that could settle the vote now (if they all agreed with the leader)."""
    ranked = Counter(keys).most_common(2)
    lead = ranked[0][1] if ranked else 0
    second = ranked[1][1] if len(ranked) > 1 else 0
    for m in range(1, remaining + 1):
        if lead + m - second > remaining - m:
            return m
    return remaining


def draw_samples(
    run: AskRun, opening: list[Message], samples: int, key: VoteKey = output_key
) -> list[Attempt]:
    """Up to ``samples - 1`` extra single-shot answers after the repair loop's attempts, appended to
    ``run.attempts`` as they are judged; returns them."""
    loop_attempts = len(run.attempts)
    loop_answer = [a for a in run.attempts if a.ok][-1:]  # the loop's answer is the first sample

    def extra() -> list[Attempt]:
        return run.attempts[loop_attempts:]

    def keys() -> list[Hashable]:
        found = [key(a.execution) for a in [*loop_answer, *extra()] if a.ok and a.execution is not None]
        return [k for k in found if k is not None]

    remaining = samples - 1
    while remaining > 0 and not settled(keys(), remaining):
        count = first_batch(keys(), remaining) if not extra() else remaining
        first = len(run.attempts) + 1
        completions = _request(run, opening, count, first, seed=samples - remaining)
        for i, completion in enumerate(completions):
            run.attempts.append(judge(run, completion, first + i, run.check, sample=True))
        remaining -= count
    return extra()


def _request(run: AskRun, opening: list[Message], count: int, first: int, seed: int) -> list[Completion]:
    """``count`` samples of the original question in one request: attempt numbers ``first``…, seeds
    ``seed``…; streamed as events of their own attempts, checked against the budget before and after."""
    sent = Request([dict(m) for m in opening], count, VOTE_TEMPERATURE, seed)
    return request(run, sent, first, [seed + i + 1 for i in range(count)])
