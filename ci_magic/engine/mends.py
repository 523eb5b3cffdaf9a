"""Failures whose fix is not a question for the model, put right in the code that failed and run again.

A small model, told the exact fix, often writes the same mistake again, attempt after attempt (dev: five repairs
of one KeyError). Two such mistakes are mechanical and their fix certain:

- a column name spelt differently from the data — ``'DATE_TIME'`` for ``'DATE TIME'``, ``'windspeed'`` for
  ``' WINDSPEED'`` (the header had a space after each comma) — when the name the KeyError quotes differs from
  exactly one column only in case, spaces and punctuation;
- a scipy.stats result unpacked into fewer names than it holds (``chi2, p = chi2_contingency(t)``: four values;
  ``slope, intercept = linregress(x, y)``: five), whose values come in a documented order: the first ones are
  kept (``chi2, p, *_ = …``); and pandas' ``.corr()``, one number, unpacked as a coefficient and its p-value
  (``r, p = x.corr(y)``): the scipy.stats test of the same method gives both;
- rows named by a frame where its index was meant: ``df.drop(outliers)`` (a frame of rows to drop: pandas reads
  its column names as labels) and ``df.loc[~outliers.index]`` (``~`` on an index of numbers negates them);
- ``pd.to_numeric(df['diff'], errors='coerce')`` on text such as ``'37,410'`` or ``'15.17%'``, which the sandbox
  saw turn values that hold a number into NaN (sandbox/losses.py): the conversion takes the number each value
  holds instead (:func:`numbers_kept`; told to, the model coerces again, dev q142 four times).

The code runs again as a whole, as a failed import is mended (engine/imports.py), and the cell shows what ran.
"""

from __future__ import annotations

import ast
import io
import itertools
import re
import tokenize
from collections.abc import Iterable

from . import prompts
from .answer import OF_COLUMN
from .hints import failing_line
from .imports import in_scipy_stats

__all__ = ["numbers_kept", "paired", "put_right", "respell", "rows_named", "unpacked"]

_SQUASH = re.compile(r"[\W_]+")
#: Code that renames columns (or strips, lowers… them): the names it uses are its own, not the data's.
_RENAMES = re.compile(r"\.columns\s*=(?!=)|\.rename\s*\(|set_axis\s*\(")


_ONE_NUMBER = re.compile(r"cannot unpack non-iterable (?:numpy\.)?float(?:64)? object")
_NOT_FOUND = re.compile(r"^['\"]?Column not found: (.*?)['\"]?$")
_TOO_MANY = re.compile(r"too many values to unpack \(expected (\d+)\)")
#: ``a, b = f(...)`` at the start of a line: the names, and the call's function.
_UNPACK = re.compile(r"^(\s*)(\w+(?:\s*,\s*\w+)+)(\s*=(?!=)\s*)(?:[\w.]+\.)?(\w+)\(")
#: Examples whose number taking would change: a decimal comma ('3,5'; thousands come in threes), an exponent.
_NOT_LEADING = re.compile(r"\d,(?!\d{3}(?!\d))|\d[eE][-+]?\d")


def put_right(
    code: str, name: str | None, value: str | None, traceback: str | None, columns: Iterable[str]
) -> str | None:
    """``code`` with the mechanical mistake behind its error (``name``: ``value``) put right, or None when the
    failure is not one of them."""
    if name == "KeyError":
        return respell(code, value or "", columns) or rows_named(code, value or "", traceback)
    if name == "ValueError" and (m := _TOO_MANY.search(value or "")):
        return unpacked(code, int(m.group(1)), traceback)
    if name == "TypeError" and _ONE_NUMBER.search(value or ""):
        return paired(code, traceback)
    return None


def _failing(code: str, traceback: str | None) -> tuple[list[str], int] | None:
    """The code's lines and the index of the one its traceback points at."""
    failing = failing_line(traceback)
    lines = code.splitlines(keepends=True)
    if failing is None or not 1 <= failing[0] <= len(lines):
        return None
    return lines, failing[0] - 1


def paired(code: str, traceback: str | None) -> str | None:
    """The failing line ``r, p = x.corr(y)`` (pandas gives one number, no p-value) as the scipy.stats test of
    the same method on the pairs .corr() would use (both values present), or None."""
    found = _failing(code, traceback)
    if found is None:
        return None
    lines, index = found
    line = lines[index]
    indent = line[: len(line) - len(line.lstrip())]
    try:
        node = ast.parse(line.strip()).body[0]
    except (SyntaxError, ValueError, RecursionError, MemoryError, IndexError):
        return None
    if not (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(target := node.targets[0], ast.Tuple)
        and len(target.elts) == 2
        and isinstance(call := node.value, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "corr"
        and len(call.args) == 1
    ):
        return None
    methods = {"pearson": "pearsonr", "spearman": "spearmanr", "kendall": "kendalltau"}
    method = "pearson"
    for keyword in call.keywords:
        if keyword.arg != "method" or not isinstance(keyword.value, ast.Constant):
            return None  # min_periods, a callable method: not a test scipy has
        method = str(keyword.value.value)
    if method not in methods:
        return None
    x, y = ast.unparse(call.func.value), ast.unparse(call.args[0])
    lines[index] = (
        f"{indent}_pairs = pandas.concat([{x}, {y}], axis=1).dropna()  # as .corr() pairs them\n"
        f"{indent}{ast.unparse(target).strip('()')} = scipy.stats.{methods[method]}(_pairs.iloc[:, 0], "
        "_pairs.iloc[:, 1])\n"
    )
    return "import pandas\nimport scipy.stats\n" + "".join(lines)


def unpacked(code: str, expected: int, traceback: str | None) -> str | None:
    """The failing line ``a, b = stats_function(...)`` (``expected`` names) as ``a, b, *_ = …``, or None."""
    found = _failing(code, traceback)
    if found is None:
        return None
    lines, index = found
    m = _UNPACK.match(lines[index])
    if m is None or len(m.group(2).split(",")) != expected or not in_scipy_stats(m.group(4)):
        return None
    lines[index] = f"{m.group(1)}{m.group(2)}, *_{lines[index][m.end(2) :]}"
    return "".join(lines)


_DROP_FRAME = re.compile(r"\.drop\(\s*(\w+)\s*(?=[,)])")
_NOT_INDEX = re.compile(r"\b(\w+)(\.loc)?\[\s*~\s*(\w+)\.index\b(?!\.)")


def rows_named(code: str, error: str, traceback: str | None) -> str | None:
    """The failing line with a frame's index where the frame itself was meant, or None: ``X.drop(rows)`` where
    ``rows = X[mask]`` was made in the code (pandas looked for its column names among the row labels: "[…] not
    found in axis") becomes ``X.drop(rows.index)``; ``X.loc[~rows.index`` (the numbers negated: "None of
    [Index([-3, …])]") becomes ``X.loc[~X.index.isin(rows.index)``."""
    found = _failing(code, traceback)
    if found is None:
        return None
    lines, index = found
    line = lines[index]
    if "not found in axis" in error and (m := _DROP_FRAME.search(line)) and m[1] in _filtered(code):
        lines[index] = f"{line[: m.start(1)]}{m[1]}.index{line[m.end(1) :]}"
        return "".join(lines)
    if error.startswith(("None of [", "'None of [", '"None of [')) and (m := _NOT_INDEX.search(line)):
        frame, rows = m[1], m[3]
        lines[index] = (
            f"{line[: m.start()]}{frame}{m[2] or ''}[~{frame}.index.isin({rows}.index){line[m.end() :]}"
        )
        return "".join(lines)
    return None


def _parsed(code: str) -> ast.Module | None:
    """The code's tree, or None when it does not parse (the run said so already)."""
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _filtered(code: str) -> set[str]:
    """Names the code binds to rows picked out of a frame by a condition: ``rows = df[df['x'] > 3]``."""
    tree = _parsed(code)
    if tree is None:
        return set()
    return {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Subscript)
        and isinstance(node.value.slice, ast.Compare | ast.BinOp | ast.UnaryOp | ast.Call)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def numbers_kept(code: str, notes: Iterable[str]) -> str | None:
    """``code`` with each ``to_numeric(<column>, errors='coerce')`` whose column a note of the sandbox names
    (``notes``: "turned 2677 of 3141 values of 'diff' that hold a number into NaN, e.g. '37,410', …") taking
    the number each value holds, or None when there is nothing to put right. Left alone: a conversion that
    takes numbers out of text already, notes without a column (values converted one at a time: a single value
    has no ``.str``), and examples whose number taking would change (a decimal comma, an exponent)."""
    lost = set()
    for note in notes:
        found = OF_COLUMN.search(note)
        if found is None or _NOT_LEADING.search(note[found.end() :]):
            continue
        lost.add(found[1][1:-1])  # the name without its quotes
    tree = _parsed(code) if lost else None
    if tree is None:
        return None
    lines = code.splitlines(keepends=True)
    edits: list[tuple[tuple[int, int], tuple[int, int], str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not _coerced(node):
            continue
        arg = node.args[0]
        text = ast.get_source_segment(code, arg)
        # The column as the code names it: df['diff'] or df.diff.
        names = {
            n.value if isinstance(n, ast.Constant) else n.attr
            for n in ast.walk(arg)
            if (isinstance(n, ast.Constant) and isinstance(n.value, str)) or isinstance(n, ast.Attribute)
        }
        if text is None or ".extract(" in text or not names & lost or arg.end_lineno is None:
            continue
        plain = isinstance(arg, ast.Name | ast.Attribute | ast.Subscript | ast.Call)
        edits.append(
            (
                (arg.lineno, _chars(lines, arg.lineno, arg.col_offset)),
                (arg.end_lineno, _chars(lines, arg.end_lineno, arg.end_col_offset or 0)),
                (text if plain else f"({text})") + prompts.LEADING_NUMBER,
            )
        )
    edits.sort()
    if any(a[1] > b[0] for a, b in itertools.pairwise(edits)):
        return None  # one conversion inside another: not a mechanical case
    return _apply(code, edits) if edits else None


def _coerced(node: ast.Call) -> bool:
    """``pd.to_numeric(x, errors='coerce')`` (or ``to_numeric`` imported as a name)."""
    if not node.args:
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return name == "to_numeric" and any(
        k.arg == "errors" and isinstance(k.value, ast.Constant) and k.value.value == "coerce"
        for k in node.keywords
    )


def _chars(lines: list[str], row: int, offset: int) -> int:
    """ast's column (UTF-8 bytes into the line) as characters, as :func:`_apply` counts them."""
    return len(lines[row - 1].encode()[:offset].decode(errors="ignore"))


def _squash(name: str) -> str:
    return _SQUASH.sub("", name).lower()


def respell(code: str, error: str, columns: Iterable[str]) -> str | None:
    """``code`` with each string literal that the ``error`` quotes and that is no column, but one column up to
    case, spaces and punctuation, replaced by that column's name; None when there is nothing to put right.

    ``columns``: the data's column names. Columns the code itself creates (``df['Month'] = …``) count too, so a
    later ``'month'`` becomes ``'Month'``. The code runs again as a whole, so a wrong guess costs one run of it
    and no model time."""
    if _RENAMES.search(code):
        return None
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
        made = _created(ast.parse(code))
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    data = set(columns)
    by_squash: dict[str, set[str]] = {}
    for name in data | made:
        by_squash.setdefault(_squash(name), set()).add(name)
    edits: list[tuple[tuple[int, int], tuple[int, int], str]] = []
    for tok in tokens:
        if tok.type != tokenize.STRING:
            continue
        try:
            value = ast.literal_eval(tok.string)  # an f-string is no literal: left alone
        except (ValueError, SyntaxError, RecursionError, MemoryError):
            continue
        # A name the code makes and the error still quotes was read before it was made (df['A_B'] =
        # f(df['A_B']) for the column 'A B'): it is put right with the rest.
        if not isinstance(value, str) or value in data or not _quoted(value, error):
            continue
        match = by_squash.get(_squash(value), set()) - {value}
        if len(match) == 1 and _squash(value):
            edits.append((tok.start, tok.end, repr(next(iter(match)))))
    return _apply(code, edits) if edits else None


def _quoted(value: str, error: str) -> bool:
    """Whether the error names ``value`` (KeyError: 'x'; "['x', 'y'] not in index"; "None of [Index(['x'])…";
    a groupby's 'Column not found: x', unquoted)."""
    unquoted = _NOT_FOUND.search(error)
    return repr(value) in error or f'"{value}"' in error or (unquoted is not None and unquoted[1] == value)


def _created(tree: ast.AST) -> set[str]:
    """Column names the code assigns by subscript: ``frame['name'] = …`` (and augmented, annotated alike)."""
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            found.add(node.slice.value)
    return found


def _apply(code: str, edits: list[tuple[tuple[int, int], tuple[int, int], str]]) -> str:
    """The edits made on the code: tokenize's (row, column) positions count characters, rows from 1."""
    lines = code.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    out, at = [], 0
    for (row, col), (end_row, end_col), text in edits:
        begin, end = starts[row - 1] + col, starts[end_row - 1] + end_col
        out += [code[at:begin], text]
        at = end
    return "".join(out) + code[at:]
