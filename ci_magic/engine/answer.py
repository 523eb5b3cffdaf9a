"""The answer in words: a working ask ends with one or two sentences written from its real outputs — after the
outputs were looked at for what no right answer shows.

Code Interpreter ends with a sentence that says what the numbers are; a notebook user wants the same, above the
code. The same model writes it, continuing the dialogue that produced the working code: a local server still has
that dialogue in its cache, so only the outputs and one instruction are new prompt tokens, and the reply is
capped at :data:`WORDS_TOKENS`. It is model text: every front end shows it as text, never as markup.

:func:`doubt` comes first: an empty table, or NaN printed where a value was labelled, is a result that
contradicts the question (a filter or join that kept no rows, a computation over missing values); so is a
number the sandbox saw a conversion turn into NaN (sandbox/losses.py: ``'37,410'`` coerced away), and a
scipy.stats result that is NaN because its input held missing values (a decision printed from it — "not
normal", "no correlation" — looks like an answer). While attempts
remain the loop treats it like a rejected check — it goes back as a repair; on the last attempt the ask keeps
its answer and the doubt is shown with it, never hidden.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ..core.errors import BudgetExceeded, ProviderError
from ..core.events import Answer, AnswerStart, Event
from ..core.results import AskResult, ExecutionResult, Usage, Words
from ..providers import Message
from ..sandbox.losses import MARK
from . import prompts, written
from .ask import AskRun
from .step import side_step

#: The reply's cap: two sentences, with room to finish the second.
WORDS_TOKENS = 96
#: How much of the outputs the step sees (their end: results are printed last).
OUTPUT_CHARS = 1200
#: What is kept of the reply, at most (cut at a sentence's end).
MAX_CHARS = 600
#: A file the question asks for is read back, up to this size, to see that it is what was asked (written.py).
CHECK_BYTES = 8 * 1024 * 1024

#: Reads back a file the run wrote (its path as the run reported it); None when it cannot or may not be read.
ReadBack = Callable[[str], bytes | None]

_EMPTY = re.compile(r"^(Empty DataFrame\b.*|Series\(\[\], .*|shape: \(0, \d+\).*)$", re.M)
# A labelled value that is not one: "Mean price: nan", "r = NaN", "@mean[nan]". Table rows (no label
# punctuation) may hold NaN cells legitimately and are not matched.
_UNDEFINED = re.compile(
    r"^(?=.{0,120}$)(\s*\S.*?(?:[:=]|\bis)\s*(?:nan|NaN|<NA>|NaT)\.?\s*|.*@\w+\[\s*(?:nan|NaN)\s*\].*)$",
    re.M,
)
_FENCE = re.compile(r"```.*", re.S)
# The sandbox's note on values a coercing conversion turned into NaN (sandbox/losses.py); the doubt made of it
# starts with LOST_HEAD.
LOST_HEAD = "pd.to_numeric(errors='coerce') turned "
_LOST = re.compile(rf"^{re.escape(MARK)}({re.escape(LOST_HEAD)}.{{0,400}})$", re.M)
# Its note on a scipy.stats function that returned NaN over missing values.
_NAN_FROM_MISSING = re.compile(rf"^{re.escape(MARK)}(scipy\.stats\.\w+ returned NaN: .{{0,300}})$", re.M)
OF_COLUMN = re.compile(r" values of ('[^'\n]{1,100}'|\"[^\"\n]{1,100}\") that hold")
_WRITE_WORD = re.compile(
    r"\b(?:to|as|into|save[ds]?|saving|writ\w*|export\w*|creat\w*|produc\w*|generat\w*|named|called|e\.g\.)"
    r"\W+(?:\w+\W+){0,3}$",
    re.I,
)
_FILE_NAME = re.compile(
    r"(?<![\w./<>-])([\w][\w.-]*(?:/[\w][\w.-]*)*\.(?:csv|tsv|xlsx|xls|json|jsonl|parquet|feather|arrow|txt|md|"
    r"html|pdf|png|jpe?g|svg|gif|zip|xml|yaml|yml|docx|pptx))(?![\w/<>-])",
    re.I,
)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def files_asked_for(question: str, folder: Path) -> list[str]:
    """File names the question asks to be written: named with a data, document or image extension after a word
    that writes (to, as, save, export…), and not already in ``folder`` (a name that is there is an input).
    Templates such as ``<region>.csv`` are skipped."""
    # Only names the question writes to ("... to q2.csv", "save it as chart.png"): a file named as a source
    # that is elsewhere (a frame read from it) must not be demanded as an output.
    names = dict.fromkeys(
        m.group(1) for m in _FILE_NAME.finditer(question) if _WRITE_WORD.search(question[: m.start()][-40:])
    )
    found = []
    for name in names:
        path = Path(name)
        if path.is_absolute() or ".." in path.parts:
            continue
        with contextlib.suppress(OSError):
            if (folder / path).exists():
                continue
        found.append(path.as_posix())
    return found


def doubt(
    execution: ExecutionResult,
    wanted: Sequence[str] = (),
    read: ReadBack | None = None,
    question: str = "",
    *,
    losses: bool = True,
) -> str | None:
    """Why a working run's output cannot be a right answer, or None. ``wanted``: files the question asks for
    (:func:`files_asked_for`), each of which the run must have written; ``read``: how to read one back, to see
    that it is what its name and the ``question`` say (engine/written.py); ``losses``: whether numbers a
    conversion turned into NaN count (the loop asks about them once: some text holds digits and no number)."""
    paths = {f.lstrip("./"): f for f in execution.files}
    found = {n: next((f for w, f in paths.items() if w == n or w.endswith("/" + n)), None) for n in wanted}
    missing = [n for n, f in found.items() if f is None]
    if missing:
        others = [f for f in execution.files if f not in found.values()]
        instead = f" (it wrote {', '.join(repr(f) for f in others[:6])} instead)" if others else ""
        return prompts.DOUBT_FILES.format(names=", ".join(repr(n) for n in missing), instead=instead)
    for name, path in found.items():
        problem = (
            written.problem(name, read(path), question) if read is not None and path is not None else None
        )
        if problem is not None:
            return problem
    loss = lost(execution) if losses else None
    if loss is not None:
        return loss
    text = execution.text()
    nan_input = _NAN_FROM_MISSING.search(text)
    if nan_input is not None:
        return prompts.DOUBT_NAN_MISSING.format(line=nan_input.group(1).strip())
    empty = _EMPTY.search(text)
    if empty is not None:
        return prompts.DOUBT_EMPTY.format(line=empty.group(0).strip()[:120])
    undefined = _UNDEFINED.search(text)
    if undefined is not None:
        return prompts.DOUBT_NAN.format(line=undefined.group(0).strip())
    return None


def lost(execution: ExecutionResult) -> str | None:
    """What to do about values the run's conversion turned into NaN (the sandbox's note: sandbox/losses.py), with
    the exact conversion for the column it names; None when it lost none."""
    notes = losses(execution)
    if not notes:
        return None
    column = OF_COLUMN.search(notes[0])
    example = (
        f"df[{column[1]}] = " + prompts.NUMBER_IN_TEXT.format(s=f"df[{column[1]}]")
        if column is not None
        else "s = " + prompts.NUMBER_IN_TEXT.format(s="s")
    )
    return prompts.DOUBT_LOST.format(line=notes[0].strip(), example=example)


def losses(execution: ExecutionResult) -> list[str]:
    """The sandbox's notes on values a conversion turned into NaN (sandbox/losses.py), without their mark."""
    return [m.group(1) for m in _LOST.finditer(execution.stdout())]


def shown(execution: ExecutionResult) -> str:
    """The outputs as the step sees them: the text's end (a chart shows as [image/png]), and the files written."""
    text = execution.text().strip()[-OUTPUT_CHARS:] or "(no printed output)"
    if execution.files:
        text += "\n(files written: " + ", ".join(execution.files[:10]) + ")"
    return text


def write(run: AskRun, result: AskResult, dialogue: list[Message], opening: list[Message]) -> str | None:
    """Set ``result.words`` for a working ask, continuing the dialogue that ends with the working reply (the
    prefix a local server has cached); a vote's pick that is not the last reply continues from the opening.

    The ask has worked whatever happens here: a model error or a spent budget leaves it without words and
    returns a note saying why (an interrupt still cancels)."""
    final = result.final
    assert final is not None and final.execution is not None
    if not (dialogue and dialogue[-1]["role"] == "assistant" and dialogue[-1]["content"] == final.reply):
        dialogue = [*opening, {"role": "assistant", "content": final.reply}]
    run.emit(Event(AnswerStart(best_effort=False)))
    try:
        result.words = in_words(run, dialogue, final.execution)
    except (ProviderError, BudgetExceeded) as exc:
        run.emit(said(None, best_effort=False))
        return f"The answer in words was not written: {exc}"
    words = result.words
    run.emit(said(words.text if words else None, best_effort=False, usage=words.usage if words else Usage()))
    return None


def said(text: str | None, *, best_effort: bool, usage: Usage | None = None) -> Event:
    """The ``answer`` event: the words of a working ask, or a failed ask's best effort (None: none came)."""
    u = usage or Usage()
    return Event(Answer(text, best_effort, u.prompt_tokens, u.completion_tokens))


def in_words(run: AskRun, dialogue: list[Message], execution: ExecutionResult) -> Words | None:
    """One or two sentences that answer the question from ``execution``'s outputs; ``dialogue`` ends with the
    reply whose code produced them. None when the model gives nothing usable."""
    messages = [*dialogue, {"role": "user", "content": prompts.IN_WORDS.format(output=shown(execution))}]
    completion = side_step(run, messages, WORDS_TOKENS)
    text = tidy(completion.text, cut_off=completion.finish_reason == "length")
    if not text:
        return None
    return Words(text, completion.usage, completion.seconds)


def tidy(reply: str, *, cut_off: bool = False) -> str:
    """The reply as one short paragraph: no code, no half sentence at the end."""
    text = " ".join(_FENCE.sub("", reply).split())
    if len(text) > MAX_CHARS or cut_off:
        ends = [m.end() for m in _SENTENCE_END.finditer(text[:MAX_CHARS])]
        text = text[: ends[-1]] if ends else text[:MAX_CHARS].rstrip() + "…"
    return text
