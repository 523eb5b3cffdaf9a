"""Inside the sandbox: values generated code loses without an error, said on stderr where the run shows them.

``pd.to_numeric(s, errors='coerce')`` is a small model's favourite conversion of a text column, and on values
such as ``'37,410'``, ``'3+'`` or ``'630308[495000-801000]'`` it returns NaN for every one of them: the mean,
the correlation or the count that follows is computed over the rest, runs cleanly and is wrong. A pandas user
would want to know; so does the parent, which reads the note (engine/answer.py) and sends the run back as a
repair (at most twice an ask). Only values that hold a digit count as lost: ``'N/A'``, ``'-'`` or ``''`` are missing values that
coercion is right to drop.

The same holds for a scipy.stats function given a column with missing values: ``stats.shapiro(df['x'])``
returns NaN for the statistic and the p-value, and ``'yes' if p > 0.05 else 'no'`` then prints a clean, wrong
"no". pandas skips missing values and scipy does not; a note says which function returned NaN over how many
missing values, and the parent sends the run back like a lost conversion. scipy.stats is watched from the moment
it is imported (:class:`_AfterImport`): generated code imports it in the cell that uses it.

Exec'd into the kernel at every start (startup.py, gateway/kernel.py) from its source, like ``transfer.py``: it
imports nothing of ci_magic. The wrapper returns exactly what pandas returns, and any failure of its own
bookkeeping is swallowed — a note is never worth breaking the user's code.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from typing import Any

#: Every note starts with this; the parent looks for it, and ``ci-magic verify`` leaves such lines out.
MARK = "[ci_magic] "
#: At most this many notes per cell (code that converts column after column says it once per column).
MAX_NOTES = 5
#: Examples of lost values quoted in a note, each cut to this many characters.
EXAMPLES, EXAMPLE_CHARS = 3, 40

_said: set[str] = set()
#: Conversions of one value at a time (``s.apply(lambda v: pd.to_numeric(v, errors='coerce'))``) in this cell:
#: how many values were converted, and the ones that hold a number and became NaN. Said once, when it ends.
_one_by_one: dict[str, Any] = {"seen": 0, "lost": []}


def lost(arg: Any, result: Any) -> str | None:
    """The note for one coercing conversion (``arg`` in, ``result`` out), or None when no value that holds a
    digit became NaN. A single value is counted towards the cell's note instead (:func:`_count_one`)."""
    import numpy as np
    import pandas as pd

    if not isinstance(arg, pd.Series | pd.Index | np.ndarray | list | tuple):
        return None
    # Positions, not labels: a Series with repeated labels cannot be aligned with its result.
    before = pd.Series(list(arg) if isinstance(arg, list | tuple) else arg).reset_index(drop=True)
    after = pd.Series(np.asarray(result))
    present = before.notna()
    gone = before[present & after.isna()]
    if gone.empty:
        return None
    text = gone.astype(str)
    with_digit = text[text.str.contains(r"\d", regex=True)]
    if with_digit.empty:
        return None
    label = getattr(arg, "name", None)
    name = f" of {str(label)!r}" if label is not None else ""
    examples = _examples(with_digit.tolist())
    return (
        f"{MARK}pd.to_numeric(errors='coerce') turned {len(with_digit)} of {int(present.sum())} values{name} "
        f"that hold a number into NaN, e.g. {examples}"
    )


def _examples(values: list[str]) -> str:
    return ", ".join(repr(v[:EXAMPLE_CHARS]) for v in list(dict.fromkeys(values))[:EXAMPLES])


def _count_one(arg: Any, result: Any) -> None:
    """One value converted on its own: counted, and kept when it held a digit and became NaN."""
    import pandas as pd

    if isinstance(arg, str | bytes | int | float) and not pd.isna(arg):
        _one_by_one["seen"] += 1
        value = arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)
        if pd.isna(result) and any(c.isdigit() for c in value):
            _one_by_one["lost"].append(value)


def _cell_ended(*_: Any) -> None:
    seen, gone = _one_by_one["seen"], _one_by_one["lost"]
    _one_by_one.update(seen=0, lost=[])
    if gone:
        examples = _examples(gone)
        _say(
            f"{MARK}pd.to_numeric(errors='coerce') turned {len(gone)} of {seen} values that hold a number into "
            f"NaN, one value at a time, e.g. {examples}"
        )


def _cell_starts(*_: Any) -> None:
    _said.clear()
    _one_by_one.update(seen=0, lost=[])


def _say(note: str) -> None:
    if note in _said or len(_said) >= MAX_NOTES:
        return
    _said.add(note)
    print(note, file=sys.stderr, flush=True)


def nan_from_missing(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> str | None:
    """The note for a scipy.stats function that returned NaN over inputs holding missing values, or None."""
    import numpy as np
    import pandas as pd

    if "nan_policy" in kwargs:
        return None  # the code chose what happens to them
    values = [getattr(result, a) for a in ("statistic", "pvalue") if hasattr(result, a)]
    values = values or (list(result) if isinstance(result, tuple) else [result])
    if not any(isinstance(v, float | np.floating) and np.isnan(v) for v in values):
        return None
    missing, named = 0, []
    for arg in [*args, *kwargs.values()]:
        if isinstance(arg, pd.Series | pd.DataFrame):
            count = int(arg.isna().to_numpy().sum())
        elif isinstance(arg, np.ndarray | list) and len(arg) and np.asarray(arg).dtype.kind == "f":
            count = int(np.isnan(np.asarray(arg, dtype=float)).sum())
        else:
            continue
        missing += count
        if count and isinstance(arg, pd.Series) and arg.name is not None:
            named.append(repr(str(arg.name)[:EXAMPLE_CHARS]))
    if not missing:
        return None
    of = f" of {', '.join(dict.fromkeys(named))}" if named else ""
    return f"{MARK}scipy.stats.{name} returned NaN: its input held {missing} missing values (NaN){of}"


def _watch_stats(module: Any) -> None:
    """Each public function of ``scipy.stats`` replaced by one that says when it returned NaN over missing
    values (:func:`nan_from_missing`) and returns exactly what the function returns."""
    import inspect

    for name in getattr(module, "__all__", []):
        original = getattr(module, name, None)
        if inspect.isfunction(original) and not getattr(original, "_ci_magic_watched", False):
            setattr(module, name, _watching(name, original))


def _watching(name: str, original: Any) -> Any:
    @functools.wraps(original)
    def watched(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        try:
            note = nan_from_missing(name, args, kwargs, result)
            if note is not None:
                _say(note)
        except Exception:  # the bookkeeping never breaks the user's code
            pass
        return result

    watched._ci_magic_watched = True  # type: ignore[attr-defined]
    return watched


class _AfterImport:
    """A finder on ``sys.meta_path`` that lets the usual finders find ``scipy.stats`` and watches the module as
    soon as it has run, before an import statement binds its names."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "scipy.stats":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                run = spec.loader.exec_module

                def exec_module(module: Any, _run: Any = run) -> None:
                    _run(module)
                    with contextlib.suppress(Exception):  # a module left as it is rather than broken
                        _watch_stats(module)

                spec.loader.exec_module = exec_module  # type: ignore[method-assign]
                return spec
            if spec is not None:
                return spec
        return None


def _install() -> None:
    if "scipy.stats" in sys.modules:
        _watch_stats(sys.modules["scipy.stats"])
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
    _watch_to_numeric()


def _watch_to_numeric() -> None:
    import pandas as pd

    original = pd.to_numeric
    if getattr(original, "_ci_magic_watched", False):
        return

    @functools.wraps(original)
    def to_numeric(arg: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(arg, *args, **kwargs)
        if kwargs.get("errors", args[0] if args else None) == "coerce":
            try:
                note = lost(arg, result)
                if note is not None:
                    _say(note)
                else:
                    _count_one(arg, result)
            except Exception:  # the bookkeeping never breaks the user's code
                pass
        return result

    to_numeric._ci_magic_watched = True  # type: ignore[attr-defined]
    pd.to_numeric = to_numeric
    try:  # a fresh allowance of notes for each cell; values converted one at a time are said at its end
        from IPython import get_ipython

        get_ipython().events.register("pre_run_cell", _cell_starts)
        get_ipython().events.register("post_run_cell", _cell_ended)
    except Exception:  # outside IPython every note is said once per process
        pass
