"""Code written for pandas before copy-on-write, made to do what it says before it runs.

Generated code, like most pandas code a model learnt from, fills a column in place through the column:
``df['Age'].fillna(median, inplace=True)``. Up to pandas 2 that changed ``df``; with copy-on-write (always on
from pandas 3) it changes a temporary copy and nothing else — pandas warns, the run goes on, and every number
after it is computed on the unfilled column: a wrong answer that looks right. Such a statement is rewritten as
the assignment it meant, ``df['Age'] = df['Age'].fillna(median)``, which does the same in every pandas version
(and for a frame held in a dict or list, where the call did work in place, too). The cell shows what ran.
"""

from __future__ import annotations

import ast

__all__ = ["unchained"]

#: Methods that keep a column's length, so ``x[k] = x[k].method(...)`` is what ``inplace=True`` meant.
_IN_PLACE = frozenset({"fillna", "replace", "ffill", "bfill", "interpolate", "clip", "where", "mask"})


def unchained(code: str) -> str | None:
    """``code`` with each statement ``x[k].method(..., inplace=True)`` (or ``x.k.method(...)``) written as
    ``x[k] = x[k].method(...)``; None when there is none (or the code does not parse)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    lines = code.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        statement = _rewritten(code, node)
        if statement is not None and isinstance(node, ast.stmt) and node.end_lineno is not None:
            begin = starts[node.lineno - 1] + _offset(lines[node.lineno - 1], node.col_offset)
            end = starts[node.end_lineno - 1] + _offset(lines[node.end_lineno - 1], node.end_col_offset or 0)
            edits.append((begin, end, statement))
    if not edits:
        return None
    for begin, end, statement in sorted(edits, reverse=True):
        code = code[:begin] + statement + code[end:]
    return code


def _rewritten(code: str, node: ast.AST) -> str | None:
    """The assignment an ``x[k].method(..., inplace=True)`` statement meant, or None."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return None
    call = node.value
    method = call.func
    if not (isinstance(method, ast.Attribute) and method.attr in _IN_PLACE):
        return None
    column = method.value
    chained = isinstance(column, ast.Subscript) and not isinstance(column.slice, ast.Slice)
    if not (chained or (isinstance(column, ast.Attribute) and isinstance(column.value, ast.Name))):
        return None
    flags = [k for k in call.keywords if k.arg == "inplace"]
    if len(flags) != 1 or not (isinstance(flags[0].value, ast.Constant) and flags[0].value.value is True):
        return None
    target = ast.get_source_segment(code, column)
    parts = [ast.get_source_segment(code, a) for a in call.args]
    parts += [ast.get_source_segment(code, k) for k in call.keywords if k.arg != "inplace"]
    if target is None or any(p is None for p in parts) or "\n" in target:
        return None
    # ``x.k = …`` for the attribute form: a frame sets its existing column, any other object its attribute.
    return f"{target} = {target}.{method.attr}({', '.join(p for p in parts if p is not None)})"


def _offset(line: str, col: int) -> int:
    """ast's column offsets count UTF-8 bytes; the text's offsets count characters."""
    return len(line.encode("utf-8")[:col].decode("utf-8", "replace"))
