"""A repair of the one statement that raised, instead of a rewrite of the whole program.

Asked for "the complete corrected code", a small model copies its program back with the failing line unchanged
(the same completion, token for token, attempt after attempt), even when the error and its hint name the fix.
Asked for only the statement that raised, it has nothing else to copy, and writes a short reply that is cheap to
decode. The reply is spliced into the program in place of that statement, with its indentation, and the whole
program runs again from pristine frames like any repair.

:func:`target` finds the statement (None when there is none to point at: no traceback line, a syntax error, a
statement that spans a whole block); :func:`splice` builds the repaired program from the reply.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass

from ..core.results import Attempt
from . import hints

#: A failing statement longer than this is a block (a loop, a function): the whole program is better rewritten.
MAX_LINES = 6


@dataclass(frozen=True)
class Target:
    """The statement of ``code`` that raised: lines ``first``..``last`` (1-based, inclusive)."""

    code: str
    first: int
    last: int

    @property
    def text(self) -> str:
        return "\n".join(self.code.splitlines()[self.first - 1 : self.last])


def target(attempt: Attempt) -> Target | None:
    """The statement to repair in a failed attempt, when the traceback points at one the code really has."""
    execution, code = attempt.execution, attempt.code
    if execution is None or code is None or execution.ok or attempt.rejected is not None:
        return None
    if execution.outcome != "error" or execution.error_name in ("SyntaxError", "IndentationError"):
        return None
    found = hints.failing_line(execution.traceback)
    lines = code.splitlines()
    if found is None or not 1 <= found[0] <= len(lines) or lines[found[0] - 1].strip() != found[1].strip():
        return None
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    around = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.stmt) and node.lineno <= found[0] <= (node.end_lineno or node.lineno)
    ]
    if not around:
        return None
    inner = min(around, key=lambda node: (node.end_lineno or node.lineno) - node.lineno)
    first, last = inner.lineno, inner.end_lineno or inner.lineno
    if last - first + 1 > MAX_LINES or isinstance(
        inner, ast.FunctionDef | ast.ClassDef | ast.For | ast.While
    ):
        return None
    return Target(code, first, last)


def splice(spot: Target, replacement: str) -> str:
    """The program with the failing statement replaced by ``replacement`` (the code of the model's reply).

    A reply that is a whole program anyway (as long as half the original, or quoting two of its other lines) is
    taken as it is. Lines the reply repeats from around the statement (context the model quoted) are not doubled."""
    lines = spot.code.splitlines()
    new = textwrap.dedent(replacement).strip("\n").splitlines()
    elsewhere = {
        ln.strip() for i, ln in enumerate(lines, 1) if ln.strip() and not spot.first <= i <= spot.last
    }
    quoted = sum(1 for ln in new if ln.strip() in elsewhere and not _imports(ln))
    if len(new) >= max(MAX_LINES, len(lines) // 2) or quoted >= 2:
        return replacement
    while new and new[0].strip() in elsewhere and not _imports(new[0]):
        new.pop(0)
    while new and new[-1].strip() in elsewhere:
        new.pop()
    if not new:
        return spot.code  # nothing new: it runs, and fails, as before (the loop then starts afresh)
    original = lines[spot.first - 1]
    indent = original[: len(original) - len(original.lstrip())]
    body = [indent + ln if ln.strip() else ln for ln in new]
    return "\n".join([*lines[: spot.first - 1], *body, *lines[spot.last :]]) + "\n"


def _imports(line: str) -> bool:
    return line.lstrip().startswith(("import ", "from "))
