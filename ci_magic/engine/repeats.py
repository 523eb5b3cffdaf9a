"""A repair that writes failed code again, noticed while the model is still writing it.

Asked to fix its code, a small model often writes the code that failed again, word for word: about one repair in
four on the dev set (session traces of 2026-12-06: 37 of 140). The loop used to see it only once the whole reply
was in, and asked again (loop._ask_again); the model's time on the rest of the copy was lost.

A cell runs its top-level statements in order. A reply whose code repeats a failed attempt's lines through the
end of the top-level statement that raised reaches that statement as the failed run did and raises there again,
whatever it says after it. So the reply can end at that line (providers: ``Request.enough``) and the model be
asked again at once, as for a whole copy. The statement is taken whole because a loop's later lines run before
an error in a later pass, and an ``except`` clause after the failing line could catch it.

Only errors raised while running count: a syntax error, a timeout or a crash of the kernel says nothing certain
about a reply that differs after some line. Nor does a failure the loop mends before the code runs (a failed
import taken out, a missing one added: loop._mend): the copy runs mended.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import replace

from ..core.results import Attempt
from ..providers import Completion

__all__ = ["Repeats", "failed_head"]

#: Where a traceback points into the cell: its frame headers ("Cell In[3], line 13") and the arrowed lines
#: (sandbox/outputs.trim_traceback keeps only the cell's own frames, with their arrows).
_CELL_LINE = re.compile(r"Cell In\[\d+\], line (\d+)|<ipython-input-[\w-]+>\", line (\d+)|^-+> *(\d+) ", re.M)
#: Tracebacks clipped to this length may have lost the frame that called into a failing function.
_CLIPPED = 2900
_OPENING = re.compile(r"```[ \t]*(?:python3?|py|ipython)?[ \t]*\n", re.I)
_UNCERTAIN = ("SyntaxError", "IndentationError", "TabError", "KeyboardInterrupt", "MemoryError")


def failed_head(attempt: Attempt) -> list[str] | None:
    """The failed attempt's code lines through the end of the top-level statement that raised (trailing spaces
    dropped), or None when its failure does not say where a copy would fail."""
    execution, code = attempt.execution, attempt.code
    if code is None or execution is None or execution.outcome != "error" or not execution.traceback:
        return None
    if execution.error_name in _UNCERTAIN or len(execution.traceback) >= _CLIPPED:
        return None
    found = [int(next(g for g in m.groups() if g)) for m in _CELL_LINE.finditer(execution.traceback)]
    if not found:
        return None
    line = max(found)  # the frame that called into the cell's own functions comes with the highest line
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return None
    end = next((n.end_lineno for n in body if n.lineno <= line <= (n.end_lineno or n.lineno)), None)
    if end is None:
        return None
    lines = [row.rstrip() for row in code.splitlines()]
    return lines[:end] if end <= len(lines) else None


def _written(reply: str) -> list[str] | None:
    """The complete lines of the reply's first code block so far (leading blank lines dropped, as the code
    that runs has them), or None before the block opens."""
    opening = _OPENING.search(reply)
    if opening is None:
        return None
    body = reply[opening.end() :]
    closing = body.find("```")
    if closing != -1:
        body = body[:closing]
    rows = [row.rstrip() for row in body.split("\n")[:-1]]  # the last piece is an unfinished line
    while rows and not rows[0]:
        rows.pop(0)
    return rows


def _unmended(head: list[str], mend: Callable[[str], str]) -> bool:
    code = "".join(f"{row}\n" for row in head)
    return mend(code) == code


class Repeats:
    """``Request.enough`` for a repair: true once the reply's code repeats a failed attempt's code through the
    statement that raised. :attr:`copied` is then that attempt."""

    def __init__(self, done: list[Attempt], mend: Callable[[str], str] | None = None) -> None:
        # A head the loop's own mends would change (a failed import taken out, a missing one added) does not
        # fail again: the copy runs mended, as it always did.
        self.heads = [
            (a, head)
            for a in reversed(done)
            if (head := failed_head(a)) and (mend is None or _unmended(head, mend))
        ]
        self.copied: Attempt | None = None

    def __bool__(self) -> bool:
        return bool(self.heads)

    def __call__(self, reply: str) -> bool:
        rows = _written(reply)
        if not rows:
            return False
        for attempt, head in self.heads:
            if len(rows) >= len(head) and rows[: len(head)] == head:
                self.copied = attempt
                return True
        return False

    def whole(self, cut: Completion) -> Completion:
        """The reply as it was going: its text before the code, then the copied attempt's code in full (what the
        dialogue shows when the model is asked again)."""
        opening = _OPENING.search(cut.text)
        if self.copied is None or self.copied.code is None or opening is None:
            return cut
        text = cut.text[: opening.end()] + self.copied.code.rstrip("\n") + "\n```"
        return replace(cut, text=text)
