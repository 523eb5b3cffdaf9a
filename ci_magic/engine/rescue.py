"""When every attempt failed: the best the ask has, honestly marked — never shown as a success.

A small model often computes the right values and never prints them in the form the question asks for (the
answer check rejects the run), or prints them before a later line fails. One cheap step then asks the same model
to copy the values its own code printed into the asked form: its output in, answer lines out, no code written
and nothing run. The result passes the same answer check or is dropped. The ask stays failed (``ok`` is False);
:attr:`~ci_magic.core.results.AskResult.best_effort` holds the answer lines, and every front end says where
they came from.
"""

from __future__ import annotations

import re

from ..core.errors import BudgetExceeded, ProviderError
from ..core.events import AnswerStart, Event
from ..core.results import Attempt, BestEffort, ExecutionResult, Usage
from ..providers import Message
from . import prompts
from .answer import said
from .ask import AskRun, Check
from .step import side_step

#: How much of the printed output the step sees (its end: answers are printed last).
OUTPUT_CHARS = 3000
#: Answer lines are short: a cap keeps a model that starts writing code from spending a whole reply.
FORMAT_TOKENS = 256
_FENCE = re.compile(r"^```\w*\s*$", re.M)
#: A number standing alone (not part of a name such as ``@mean_2020``).
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.]*\w)")


def last_printed(attempts: list[Attempt]) -> Attempt | None:
    """The latest attempt whose run printed something (a rejected run, or one that failed after printing)."""
    return next(
        (a for a in reversed(attempts) if a.execution is not None and a.execution.stdout().strip()), None
    )


def stated(attempts: list[Attempt], check: Check) -> BestEffort | None:
    """A reply without code whose text already is the answer in the asked form (the model answered from the
    data description): nothing computed it, and the ask says so."""
    for a in reversed(attempts):
        if a.code is None and a.reply.strip():
            text = _FENCE.sub("", a.reply).strip()
            if check(_as_printed(text)) is None:
                return BestEffort(text, a.number, Usage(), 0.0, computed=False)
    return None


def copied(text: str, output: str) -> bool:
    """Every number in ``text`` is one of ``output``'s, as printed or rounded (or as a percentage of it): a
    format step that invents a value the run never printed is not a best effort."""
    printed = [float(m) for m in _NUMBER.findall(output)]
    for number in _NUMBER.findall(text):
        mantissa, _, exponent = number.lower().partition("e")
        decimals = len(mantissa.partition(".")[2]) - int(exponent or 0)
        tolerance = 0.5 * 10.0**-decimals + 1e-9
        value = float(number)
        if not any(abs(value - m * scale) <= tolerance for m in printed for scale in (1, 100)):
            return False
    return True


def _as_printed(text: str) -> ExecutionResult:
    return ExecutionResult("ok", [{"output_type": "stream", "name": "stdout", "text": text + "\n"}])


def format_answer(run: AskRun, system: Message) -> BestEffort | None:
    """Answer lines in the asked form from what the last run printed, or None (the model's lines still fail the
    check, or the model could not be asked: the ask has failed already, and says so). When no run printed
    anything, a reply without code that states the answer in the asked form is the best effort, marked as not
    computed (:func:`stated`). ``system``: the ask's system message, kept (a local server has it cached); what
    this step asks goes in the user's turn."""
    assert run.check is not None
    source = last_printed(run.attempts)
    if source is None or source.execution is None:
        return stated(run.attempts, run.check)
    output = source.execution.stdout()[-OUTPUT_CHARS:]
    messages: list[Message] = [
        system,
        {"role": "user", "content": prompts.FORMAT_ONLY.format(question=run.question.strip(), output=output)},
    ]
    run.emit(Event(AnswerStart(best_effort=True)))
    try:
        completion = side_step(run, messages, FORMAT_TOKENS)
    except (ProviderError, BudgetExceeded):
        run.emit(said(None, best_effort=True))
        return None
    text = _FENCE.sub("", completion.text).strip()
    passes = bool(text) and run.check(_as_printed(text)) is None and copied(text, output)
    found = text if passes else None
    run.emit(said(found, best_effort=True, usage=completion.usage))
    return None if found is None else BestEffort(found, source.number, completion.usage, completion.seconds)
