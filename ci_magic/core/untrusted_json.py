"""JSON written by the sandbox (its messages, its answers to our helpers), parsed without trusting its shape.

``json.loads`` recurses once per level of nesting, in the parent — which may be the user's own kernel. A text
nested 100,000 deep ends in RecursionError, and every finalizer the garbage collector happens to run near the
limit (a socket's, an event loop's, one of the user's objects') fails as well, as an unraisable error. So the
nesting is measured first, with byte operations that do not recurse, and anything deeper than MAX_DEPTH (or not
balanced, which would not parse anyway) is refused as malformed: ValueError, like any other bad JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Deeper than any message or answer of ours (a chart spec nests about ten levels); far below the recursion limit.
MAX_DEPTH = 100

_OTHER_BYTES = bytes(sorted(set(range(256)) - set(b"[]{}")))
#: A JSON string (brackets inside it are text, not nesting); the unrolled form never backtracks.
_STRING = re.compile(rb'"[^"\\]*(?:\\[\s\S][^"\\]*)*"')
_CHUNK = 1 << 20


def nesting_within(data: bytes, limit: int = MAX_DEPTH, *, whole: bool = True) -> bool:
    """Whether the JSON text ``data`` nests at most ``limit`` levels deep (False when its brackets do not
    balance; a prefix, ``whole=False``, may leave brackets open)."""
    brackets = data.translate(None, _OTHER_BYTES)
    if len(brackets) <= limit:
        return True  # cannot nest deeper than it has brackets: the common case costs one translate
    import numpy  # only here: most texts never get this far

    brackets = _STRING.sub(b"", data).translate(None, _OTHER_BYTES)
    steps = numpy.frombuffer(brackets, dtype=numpy.uint8)
    depth = 0
    for start in range(0, len(steps), _CHUNK):  # in chunks: a 32 MB message costs megabytes, not a gigabyte
        # "[" and "{" are 0x5b and 0x7b, "]" and "}" 0x5d and 0x7d: the bit of value 2 is set in openers only.
        levels = depth + numpy.cumsum((steps[start : start + _CHUNK] & 2).astype(numpy.int32) - 1)
        if levels.max() > limit or levels.min() < 0:
            return False
        depth = int(levels[-1])
    return depth == 0 or not whole


def loads(data: str | bytes) -> Any:
    """``json.loads`` for text from the sandbox; ValueError when it is malformed or nested too deep. Bytes
    that are not UTF-8 are replaced, as jupyter_client's own unpacker does."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if not nesting_within(raw):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(raw.decode("utf-8", "replace"))
    except RecursionError:  # not expected below MAX_DEPTH; still malformed for the caller, never a crash
        raise ValueError("JSON nested too deep") from None
