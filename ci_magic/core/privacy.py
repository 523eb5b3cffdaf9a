"""The privacy levels (``Ask.context_detail``) applied to text that may carry data values.

Below "samples" no data value may reach the model or a trace: not in the context (``context/frames.py``), and
not through the side doors either — an error message quotes the cell it could not parse (``Unable to parse
string 'ZEBRA123'``), a failed attempt's printed output shows rows, a follow-up carries the last answer's
output. :func:`redact` removes quoted values from such text, keeping the names the model may see anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: A quoted literal: '…' or "…" (no newline inside), as Python reprs and most error messages quote values.
_QUOTED = re.compile(r"""(?P<q>['"])(?P<body>[^'"\n]{1,300})(?P=q)""")
#: Numbers that stand alone (not part of a name like c2 or a code line number is kept: "line 3").
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
REDACTED = "…"


def shows_values(level: str) -> bool:
    """Whether data values may be shown at this privacy level."""
    return level == "samples"


def redact(text: str, names: Iterable[str] = (), *, numbers: bool = False) -> str:
    """``text`` with quoted values replaced by '…', except quoted ``names`` (frame and column names: schema
    the model already has). With ``numbers``, standalone numbers go too (for printed output)."""
    keep = {str(n) for n in names}

    def quoted(match: re.Match[str]) -> str:
        body = match.group("body")
        return match.group(0) if body in keep else f"{match.group('q')}{REDACTED}{match.group('q')}"

    text = _QUOTED.sub(quoted, text)
    return _NUMBER.sub(REDACTED, text) if numbers else text
