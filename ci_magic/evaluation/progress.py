"""What ``ci-magic eval`` shows while it runs: on a terminal a progress bar (done/total, answered, right so far when
labels are given, time left), otherwise one line per question for logs; ``--quiet`` shows nothing.

"Right" here is a quick look, not the benchmark's score: every labelled ``@name[value]`` must appear in the answer
with the same text, or the same number. The strict scorer of the benchmark stays the judge of a run.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["Progress", "read_labels", "right"]

_ANSWER = re.compile(r"@(\w+)\[(.*?)\]")


def read_labels(path: Path) -> dict[str, list[tuple[str, str]]]:
    """``{question id: [(name, value), …]}`` from a JSONL of ``{"id", "common_answers": [[name, value], …]}``."""
    labels: dict[str, list[tuple[str, str]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            labels[str(row["id"])] = [(str(n), str(v)) for n, v in row.get("common_answers", [])]
    return labels


def right(response: str, expected: list[tuple[str, str]]) -> bool:
    """Whether every expected answer is in ``response``, as the same text or the same number."""
    found = {name: value.strip() for name, value in _ANSWER.findall(response)}
    return bool(expected) and all(_same(found.get(name), value.strip()) for name, value in expected)


def _same(got: str | None, want: str) -> bool:
    if got is None:
        return False
    if got == want:
        return True
    try:
        return math.isclose(float(got), float(want), rel_tol=0, abs_tol=1e-9)
    except ValueError:
        return False


class Progress:
    """One per eval run; :meth:`done` after each question, :meth:`close` at the end."""

    def __init__(
        self,
        total: int,
        stream: TextIO = sys.stderr,
        *,
        quiet: bool = False,
        labels: dict[str, list[tuple[str, str]]] | None = None,
    ) -> None:
        self.total, self.stream, self.quiet, self.labels = total, stream, quiet, labels
        self.count = self.answered = self.correct = 0
        self.started = time.monotonic()
        tty = hasattr(stream, "isatty") and stream.isatty()
        self._bar = None if quiet or not tty else tqdm(total=total, file=stream, unit="q", dynamic_ncols=True)

    def done(self, question_id: Any, record: dict[str, Any]) -> None:
        self.count += 1
        self.answered += bool(record.get("response_text"))
        if self.labels is not None:
            self.correct += right(str(record.get("response_text", "")), self.labels.get(str(question_id), []))
        tally = f"answered {self.answered}" + (f", right {self.correct}" if self.labels is not None else "")
        if self._bar is not None:
            self._bar.set_postfix_str(tally, refresh=False)
            self._bar.update(1)
            return
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        left = elapsed / self.count * (self.total - self.count)
        status = "ok" if record.get("ok") else ("error" if "error" in record else "no answer")
        print(
            f"[{self.count}/{self.total}] #{question_id}: {status}, {record.get('attempts', 0)} attempt(s), "
            f"{record.get('seconds', 0):.0f} s · {tally} · elapsed {elapsed / 60:.1f} min, ~{left / 60:.1f} min "
            "left",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
