"""generate → run → fix: the bounded repair loop. Failures of the generated code are data, not exceptions.

Each attempt is one :func:`~ci_magic.engine.step.attempt` (ask, extract, run, judge); the loop adds the dialogue:
what went wrong goes back to the model as the next user message, and a dialogue that goes round in circles is
restarted from the question with the failures as notes. A failure whose fix is mechanical (engine/mends.py: a
column name spelt differently, a test's result unpacked short) is put right and run as the next attempt without
asking the model.
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Mapping
from dataclasses import replace

from ..context.columns import columns
from ..core import privacy
from ..core.errors import CIMagicError
from ..core.events import Event, Retry
from ..core.executor import Frame
from ..core.results import Attempt, ExecutionResult, Usage
from ..core.settings import Settings
from ..providers import Completion, Message
from ..sandbox.scan import assigned_names
from . import answer, hints, imports, prompts
from .ask import AskRun, BudgetCheck, Check
from .copy_on_write import unchained
from .extract import extract_code
from .mends import numbers_kept, put_right
from .repeats import Repeats
from .step import call_model, judge, side_step

__all__ = ["BudgetCheck", "Check", "run_attempts"]

#: Sampling temperature for repair attempts (the first attempt uses the configured one, 0 by default).
RETRY_TEMPERATURE = 0.4
#: ... and for a repair asked again because it gave back code that already failed.
AGAIN_TEMPERATURE = 0.8


def run_attempts(run: AskRun, messages: list[Message], attempts: int) -> list[Attempt]:
    """Ask, run, and feed failures back, at most ``attempts`` times; each attempt is appended to
    ``run.attempts`` (returned). ``messages`` grows with the dialogue.

    ``run.check`` inspects a successful execution and may return a problem (e.g. "the answer is not in the
    required format"); the attempt then counts as failed and the problem goes back to the model like a
    traceback. While attempts remain, an output that contradicts any answer (engine/answer.py: an empty table, a
    NaN result) is such a problem too, as is a file the question asks for (``run.wanted``) that the run did not
    write; the last attempt's is left for the caller to show. No attempt starts after ``run.deadline``
    (``time.monotonic()``): the attempts made are returned.
    """
    done = run.attempts
    opening = [dict(m) for m in messages]  # the system prompt and the question, as first sent
    righted: Completion | None = None  # a failed reply with its mechanical mistake put right: run, not asked
    for number in range(1, attempts + 1):
        if done and run.deadline is not None and time.monotonic() >= run.deadline:
            break
        if righted is not None:
            completion, righted = righted, None
        else:
            # A repair at temperature 0 tends to repeat the failed code word for word; a little sampling breaks
            # that.
            temperature = None if number == 1 else max(run.settings.temperature, RETRY_TEMPERATURE)
            # Failed code written again is seen while it is written (engine/repeats.py), and otherwise once
            # the reply is in: either way the model is asked again before anything runs.
            repeats = Repeats(done, functools.partial(_mend, run, done=done))
            completion = call_model(run, messages, number, temperature, repeats or None)
            copied: Attempt | None = repeats.copied
            if copied is not None:
                completion = repeats.whole(completion)
            else:
                completion = _mended(run, completion, done)
                copied = _copied(extract_code(completion.text), done)
            if copied is not None:
                completion = _mended(run, _ask_again(run, messages, completion, copied, number), done)
        messages.append({"role": "assistant", "content": completion.text})
        stale = _leftovers(run, extract_code(completion.text), done)
        if stale:  # the retry runs as the program it is, not on a failed attempt's values
            run.executor.forget(stale)
        check = run.check if number == attempts else _doubting(run)
        attempt = judge(run, completion, number, check)
        if attempt.ok:
            done.append(attempt)
            break
        # Small models copy their own failed code while it stays in the dialogue, and a second repair of the
        # same idea rarely works where the first did not: after every second failure the next attempt starts
        # over from the question, with what went wrong as notes (an independent try, then its one repair).
        restart = _stuck([*done, attempt]) or number % 2 == 0
        attempt.problem = feedback(
            attempt, run.settings, run.frames, repeated=_copied(attempt.code, done) is not None
        )
        done.append(attempt)
        messages.append({"role": "user", "content": attempt.problem})
        if restart:
            messages[:] = _fresh_start(opening, done, run.frames, run.settings.context_detail)
        righted = _put_right(run, completion, attempt)
        if number < attempts:
            run.emit(Event(Retry(attempt.problem), number))
    return done


def _mended(run: AskRun, completion: Completion, done: list[Attempt]) -> Completion:
    """The reply put right before it runs (:func:`_mend`). The code runs and stays in the dialogue as mended,
    so the cell shows what ran and the model sees the code that works."""
    code = extract_code(completion.text)
    if code is None:
        return completion
    fixed = _mend(run, code, done)
    return completion if fixed == code else replace(completion, text=_rewritten(completion.text, code, fixed))


def _mend(run: AskRun, code: str, done: list[Attempt]) -> str:
    """``code`` put right: an import that already failed in this ask (imports.mend), a module or scipy.stats
    function used and never imported (imports.lacking), a column filled in place through the column, which
    copy-on-write makes a no-op (copy_on_write.unchained)."""
    missing = {
        (m[1], m[2])
        for a in done
        if a.execution is not None
        and a.execution.error_name == "ImportError"
        and (m := imports.CANNOT_IMPORT.search(a.execution.error_value or ""))
    }
    fixed = imports.mend(code, missing) or code
    added = imports.lacking(fixed, [*run.frames, *run.session_names])
    fixed = "".join(f"{line}\n" for line in added) + fixed
    return unchained(fixed) or fixed


def _rewritten(reply: str, code: str, fixed: str) -> str:
    """The reply with its code replaced by ``fixed`` (the prose around it kept)."""
    body = code.rstrip("\n")
    return reply.replace(body, fixed.rstrip("\n"), 1) if body in reply else f"```python\n{fixed}```"


def _put_right(run: AskRun, completion: Completion, attempt: Attempt) -> Completion | None:
    """The failed reply with its mechanical mistakes put right (engine/mends.py: a column name spelt differently,
    a test's result unpacked into too few names, numbers a conversion lost), as a reply that costs no model
    time; None when the failure is not one of them."""
    execution = attempt.execution
    if execution is None or attempt.code is None:
        return None
    known = [c for cols in columns(run.frames).values() for c in cols]
    fixed = put_right(attempt.code, execution.error_name, execution.error_value, execution.traceback, known)
    # Values lost to a conversion are the usual cause of the error that follows ("x and y must have length at
    # least 2") or of the rejection: kept, whatever else was put right.
    fixed = numbers_kept(fixed or attempt.code, answer.losses(execution)) or fixed
    if fixed is None:
        return None
    return Completion(_rewritten(completion.text, attempt.code, fixed), Usage(), 0.0, finish_reason="stop")


def _leftovers(run: AskRun, code: str | None, done: list[Attempt]) -> list[str]:
    """Names the code uses and never makes that only an earlier (failed) attempt of this ask made. A small
    model's repair often sends only the lines it changed: run in the sandbox that still holds the failed
    attempt's variables, it would print their values as its answer (dev q55 printed the mean of a conversion it
    had just been told was wrong) and fail in a fresh kernel or a re-run of the export."""
    if code is None or not done:
        return []
    made = (
        set().union(*(assigned_names(a.code) for a in done if a.code)) - set(run.frames) - run.session_names
    )
    return [n for n in imports.undefined(code, [*run.frames, *run.session_names]) if n in made]


def _copied(code: str | None, done: list[Attempt]) -> Attempt | None:
    """The latest earlier (failed) attempt with this very code, if any."""
    return None if code is None else next((a for a in reversed(done) if a.code == code), None)


def _ask_again(
    run: AskRun, messages: list[Message], first: Completion, copied: Attempt, number: int
) -> Completion:
    """A repair that gives back code which already failed would fail again (a small model copies its own code,
    and at a low temperature its second try is often its first): ask once more, told so, sampling more freely,
    before anything runs. The attempt keeps the new reply, with both requests' usage and time."""
    failing = hints.failing_line(copied.execution.traceback) if copied.execution is not None else None
    told = prompts.SAME_CODE + (
        "" if failing is None else " " + prompts.FAILING_LINE.format(number=failing[0], line=failing[1][:300])
    )
    again = [*messages, {"role": "assistant", "content": first.text}, {"role": "user", "content": told}]
    second = side_step(run, again, None, AGAIN_TEMPERATURE, number)
    return replace(second, usage=first.usage + second.usage, seconds=first.seconds + second.seconds)


#: How many times values lost to a conversion are sent back in one ask.
LOST_REPAIRS = 2


def _doubting(run: AskRun) -> Check:
    check = run.check
    # Values lost to a conversion go back twice (once may land on a fresh start, which sees it only as a note):
    # a run that still loses some after that may be right to (text with digits and no number), and another
    # repair of it would only spend an attempt.
    told = sum(bool(a.rejected and answer.LOST_HEAD in a.rejected) for a in run.attempts) >= LOST_REPAIRS

    def both(execution: ExecutionResult) -> str | None:
        problem = check(execution) if check is not None else None
        doubt = answer.doubt(
            execution, run.wanted, functools.partial(read_back, run), run.question, losses=not told
        )
        if problem is not None and doubt is not None and doubt.startswith(answer.LOST_HEAD):
            return f"{problem}\n{doubt}"  # values lost are the usual cause of a NaN the check rejects
        return problem or doubt

    return both


def read_back(run: AskRun, path: str) -> bytes | None:
    """A file the run wrote, read out of the sandbox (at most answer.CHECK_BYTES; None beyond, or when
    the sandbox cannot give it: a file that cannot be read raises no doubt)."""
    out = io.BytesIO()
    try:
        run.executor.copy_file(path, out, answer.CHECK_BYTES)
    except CIMagicError:
        return None
    return out.getvalue()


def feedback(
    attempt: Attempt, settings: Settings, frames: Mapping[str, Frame], *, repeated: bool = False
) -> str:
    """What the model is told about a failed attempt, so that it can repair it."""
    if attempt.execution is None:
        if attempt.finish_reason in ("length", "truncated"):
            return prompts.TRUNCATED.format(reason=f"finish_reason={attempt.finish_reason}")
        return prompts.NO_CODE
    if attempt.rejected is not None:
        problem = "\n".join([attempt.rejected, *hints.for_code(attempt.code, attempt.rejected)])
        if not privacy.shows_values(settings.context_detail):  # a doubt quotes the printed line: values
            problem = privacy.redact(problem, schema_names(frames))
        text = prompts.CHECK_FAILED.format(problem=problem)
    else:
        text = _run_feedback(attempt.execution, settings, frames)
    return prompts.SAME_CODE + "\n\n" + text if repeated and attempt.code is not None else text


def _stuck(done: list[Attempt]) -> bool:
    """The last attempt repeats an earlier one's code or its exact failure."""
    if len(done) < 2:
        return False
    last, earlier = done[-1], done[:-1]
    return any(a.code == last.code or a.failure == last.failure for a in earlier)


def schema_names(frames: Mapping[str, Frame]) -> list[str]:
    """Frame and column names: what the model may see at every privacy level."""
    names = list(frames)
    listing = columns(frames)
    for name, obj in frames.items():
        if name in listing:
            names += listing[name]
        elif getattr(obj, "name", None) is not None:
            names.append(str(obj.name))
    return names


def _fresh_start(
    opening: list[Message], done: list[Attempt], frames: Mapping[str, Frame], level: str
) -> list[Message]:
    # Each failure with its usual fix (engine/hints.py): the dialogue that carried the hints is dropped here, and
    # a note that names only the error invites the same mistake again.
    notes = list(dict.fromkeys(_noted(a, frames) for a in done))
    if not privacy.shows_values(level):
        notes = [privacy.redact(n, schema_names(frames)) for n in notes]
    if any(
        a.execution is not None and a.execution.error_name in ("KeyError", "AttributeError") for a in done
    ) and not any("columns are exactly" in n for n in notes):
        notes += [f"the columns of {n} are exactly {cols[:80]!r}" for n, cols in columns(frames).items()]
    fresh = [dict(m) for m in opening]
    fresh[-1]["content"] += prompts.EARLIER_FAILURES.format(notes="\n".join(f"- {n}" for n in notes))
    return fresh


def _noted(attempt: Attempt, frames: Mapping[str, Frame]) -> str:
    """One failed attempt as a note for a fresh start: why it failed, then the hints for that failure."""
    found = hints.hints(attempt.execution, frames) if attempt.execution is not None else []
    found += hints.for_code(attempt.code, attempt.rejected or "")
    loss = answer.lost(attempt.execution) if attempt.execution is not None and not attempt.rejected else None
    found += [loss] if loss is not None else []  # a rejected run's failure says it already
    return "\n  ".join([str(attempt.failure), *found])


def _run_feedback(execution: ExecutionResult, settings: Settings, frames: Mapping[str, Frame]) -> str:
    error = execution.traceback or f"{execution.error_name}: {execution.error_value}"
    for hint in hints.hints(execution, frames):  # the usual cause of this kind of failure, and its fix
        error += f"\n{hint}"
    # A run that failed after a conversion lost values mostly failed of it ("x and y must have length at least 2"
    # once every value was coerced away and dropped): the printed note alone does not say how to keep them.
    loss = answer.lost(execution)
    if loss is not None:
        error += f"\n{loss}"
    if execution.restarted:
        error += "\nThe sandbox was restarted: variables you created are gone; the DataFrames are reloaded."
    refused = [u.line() for u in execution.network if not u.allowed]
    if refused:  # the repair must not guess at DNS or certificates: say what the network allows
        error += "\n" + prompts.refused_note(settings.limits.allow_hosts, refused)
    stdout_tail = execution.stdout()[-1500:]
    if not privacy.shows_values(settings.context_detail):
        # Printed output shows data values, and error messages quote them: this privacy level keeps both from
        # the model. Frame and column names stay (the model has them from the context).
        stdout_tail = ""
        error = privacy.redact(error, schema_names(frames))
    return prompts.repair_message(
        error,
        stdout_tail,
        timed_out=execution.outcome == "timeout",
        timeout_s=settings.limits.timeout_s,
        failing=hints.failing_line(execution.traceback),
    )
