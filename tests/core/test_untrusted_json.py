"""JSON from the sandbox is measured before it is parsed: nothing it sends recurses in the parent."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest

from ci_magic.core import untrusted_json


@pytest.mark.parametrize(
    ("text", "within"),
    [
        (b"[]", True),
        (b'{"a": [1, {"b": "]]]]"}]}', True),
        (b'{"s": "' + b"[" * 5000 + b'"}', True),  # brackets inside a string are text
        (b'{"s": "\\"' + b"[" * 5000 + b'\\""}', True),  # and escaped quotes do not end the string
        (b"[" * 100 + b"]" * 100, True),
        (b"[" + b"[1]," * 5000 + b"[]]", True),  # many brackets, shallow
        (b"[" * 101 + b"]" * 101, False),
        (b"[{" * 51 + b"}]" * 51, False),
        (b"[" * 100_000, False),
        (b"]" * 200 + b"[" * 200, False),  # never nests, never balances
        ((b"[" * 101 + b"]" * 101) * 10_000, False),  # deep again and again: one linear pass
    ],
)
def test_nesting_is_measured_without_parsing(text: bytes, within: bool) -> None:
    assert untrusted_json.nesting_within(text) is within


class _Finalized:
    """Garbage whose finalizer needs some stack, as a socket's or an event loop's does."""

    def __init__(self) -> None:
        self.cycle = self  # only the cyclic collector frees it: at any allocation, at any depth

    def __del__(self) -> None:
        def down(n: int) -> int:
            return down(n - 1) if n else 0

        down(600)


def test_deep_text_is_refused_before_any_recursion(monkeypatch: pytest.MonkeyPatch) -> None:
    # json.loads would recurse to the limit, and the collector, run by the allocations on the way down, would
    # call the finalizers there, where they fail: unraisable errors in the user's kernel.
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    gc.collect()
    for _ in range(3):
        _Finalized()
    with pytest.raises(ValueError, match="nested deeper"):
        untrusted_json.loads("[" * 100_000)
    gc.collect()
    assert seen == []
    assert untrusted_json.loads(b'{"a": [1, "\xff"]}'.replace(b"\xff", b"\xc3\xa9")) == {"a": [1, "é"]}
    with pytest.raises(ValueError):
        untrusted_json.loads("{not json")
