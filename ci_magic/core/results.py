"""What an ask produces: attempts (data, including failures), usage, the final code and outputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: Where a server reports no usage we count characters; four per token is the usual rule for English and code.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """At least one token for any non-empty text."""
    return max(1, len(text) // CHARS_PER_TOKEN) if text else 0


Outcome = Literal["ok", "error", "timeout", "died", "no_code", "rejected"]


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False  # True when the server did not report usage and we counted characters

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.estimated or other.estimated,
        )


@dataclass
class ExecutionResult:
    """One run of code in the child kernel. ``outputs`` are nbformat v4 output dicts."""

    outcome: Outcome
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error_name: str | None = None
    error_value: str | None = None
    traceback: str | None = None  # ANSI-free, already trimmed to the useful end
    seconds: float = 0.0
    restarted: bool = False  # the child had to be restarted (frames are restored)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def text(self) -> str:
        """Plain-text rendering of the outputs (streams and text/plain), for terminals and the model."""
        parts: list[str] = []
        for out in self.outputs:
            kind = out.get("output_type")
            if kind == "stream":
                parts.append(str(out.get("text", "")))
            elif kind in ("display_data", "execute_result"):
                data = out.get("data", {})
                if "image/png" in data:  # a figure's text/plain is just "<Figure size ...>"
                    parts.append("[image/png]\n")
                elif "text/plain" in data:
                    parts.append(str(data["text/plain"]).rstrip("\n") + "\n")
            elif kind == "error":
                parts.append(f"{out.get('ename')}: {out.get('evalue')}\n")
        return "".join(parts)


@dataclass
class Attempt:
    number: int
    reply: str  # the model's whole reply text
    code: str | None  # None when the reply had no code
    execution: ExecutionResult | None
    usage: Usage
    model_seconds: float
    problem: str | None = None  # why this attempt failed, as told to the model
    sample: bool = False  # an extra independent answer drawn for a vote (ci_magic/vote.py), not a repair

    @property
    def ok(self) -> bool:
        return self.execution is not None and self.execution.ok

    @property
    def outcome(self) -> Outcome:
        return "no_code" if self.execution is None else self.execution.outcome


@dataclass
class AskResult:
    question: str
    model: str
    endpoint: str
    attempts: list[Attempt]
    context: str  # exactly what described the data to the model
    values: dict[str, Any] = field(default_factory=dict)  # values brought back from the sandbox (Arrow/JSON)
    files: list[str] = field(default_factory=list)  # files the code wrote into the session workdir
    warnings: list[str] = field(default_factory=list)  # transfer notes, e.g. columns sent as strings
    seconds: float = 0.0
    chosen: int | None = None  # index of the answer a vote picked; None: the last attempt is the answer
    votes: dict[str, int] = field(default_factory=dict)  # answer (as compared) -> how many samples gave it

    @property
    def final(self) -> Attempt | None:
        """The attempt whose code and outputs are the answer."""
        if self.chosen is not None:
            return self.attempts[self.chosen]
        return self.attempts[-1] if self.attempts else None

    @property
    def ok(self) -> bool:
        return self.final is not None and self.final.ok

    @property
    def code(self) -> str | None:
        """The working code, or the last code tried when every attempt failed."""
        if self.chosen is not None:
            return self.attempts[self.chosen].code
        for attempt in reversed(self.attempts):
            if attempt.code is not None:
                return attempt.code
        return None

    @property
    def outputs(self) -> list[dict[str, Any]]:
        chosen = self.attempts[self.chosen] if self.chosen is not None else None
        if chosen is not None and chosen.execution is not None:
            return chosen.execution.outputs
        for attempt in reversed(self.attempts):
            if attempt.execution is not None:
                return attempt.execution.outputs
        return []

    @property
    def usage(self) -> Usage:
        total = Usage()
        for attempt in self.attempts:
            total = total + attempt.usage
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "ok": self.ok,
            "model": self.model,
            "endpoint": self.endpoint,
            "code": self.code,
            "outputs": self.outputs,
            "attempts": [
                {
                    "number": a.number,
                    "outcome": a.outcome,
                    "code": a.code,
                    "problem": a.problem,
                    "sample": a.sample,
                    "usage": asdict(a.usage),
                    "model_seconds": round(a.model_seconds, 3),
                    "exec_seconds": round(a.execution.seconds, 3) if a.execution else None,
                }
                for a in self.attempts
            ],
            "usage": {**asdict(self.usage), "total_tokens": self.usage.total_tokens},
            "chosen": self.chosen,
            "votes": self.votes,
            "values": {k: _describe_value(v) for k, v in self.values.items()},
            "warnings": self.warnings,
            "files": self.files,
            "seconds": round(self.seconds, 3),
        }


def _describe_value(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} {'x'.join(str(n) for n in shape)}"
    return f"{type(value).__name__} {value!r}"[:200]
