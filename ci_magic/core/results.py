"""What an ask produces: attempts (data, including failures), usage, the final code and outputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: Where a server reports no usage we count characters; four per token is the usual rule for English and code.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Characters / 4, rounded up: 0 for empty text, at least 1 otherwise. The one estimate ci_magic uses
    (data descriptions, unreported usage, budgets, previews, the live view)."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_prompt_tokens(messages: Iterable[Mapping[str, str]]) -> int:
    """The estimate for a request: its messages' text together."""
    return estimate_tokens("".join(str(m.get("content", "")) for m in messages))


#: How a run of code ended (the executor's view).
ExecutionOutcome = Literal["ok", "error", "timeout", "died"]
#: How an attempt ended: its run's outcome, or no code in the reply, or a run the answer check rejected.
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
class NetUse:
    """A host the code reached for through the egress proxy during one run: allowed or refused (``reason``
    says why), with its connections and bytes."""

    host: str
    port: int
    allowed: bool
    reason: str = ""
    connections: int = 0
    sent: int = 0
    received: int = 0

    def line(self) -> str:
        where = f"{self.host}:{self.port}"
        if not self.allowed:
            return f"{where} {self.reason} ({self.connections}×)"
        moved = f"{self.received:,} bytes in, {self.sent:,} out"
        return f"{where} allowed: {self.connections} connection(s), {moved}" + (
            f"; {self.reason}" if self.reason else ""
        )


@dataclass(frozen=True)
class Installed:
    """A package installed into the sandbox's own layer at run time (``pip install`` through the egress proxy),
    pinned: what ``verify`` installs again before it re-runs an export."""

    name: str
    version: str
    sha256: str  # of the file pip installed (a wheel or sdist), from its installation report
    url: str = ""

    def requirement(self) -> str:
        """``name==version --hash=sha256:…``: one line of a requirements file pip checks with --require-hashes."""
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


@dataclass
class ExecutionResult:
    """One run of code in the child kernel. ``outputs`` are nbformat v4 output dicts."""

    outcome: ExecutionOutcome
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error_name: str | None = None
    error_value: str | None = None
    traceback: str | None = None  # ANSI-free, already trimmed to the useful end
    seconds: float = 0.0
    restarted: bool = False  # the child had to be restarted (frames are restored)
    files: list[str] = field(default_factory=list)  # files this run created or changed in its folder
    network: list[NetUse] = field(default_factory=list)  # hosts reached for through the egress proxy
    installed: list[Installed] = field(default_factory=list)  # packages this run installed (pinned)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def stdout(self) -> str:
        """What the code printed (stdout and stderr streams, in order)."""
        return "".join(str(o.get("text", "")) for o in self.outputs if o.get("output_type") == "stream")

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


@dataclass(frozen=True)
class DeliveredFile:
    """A file the working code wrote: where it is in the sandbox, what it holds, where the user finds it."""

    path: str  # relative to the sandbox's working folder, '/'-separated
    bytes: int
    sha256: str
    saved_as: str | None = None  # relative to the user's folder; None when not copied
    note: str | None = None  # why it has another name, or why it was not copied


@dataclass
class CodeRun:
    """Code run in the sandbox as it is, without the model (a generated cell run again through ``%%sandbox``)."""

    execution: ExecutionResult
    values: dict[str, Any] = field(default_factory=dict)  # what it assigned, brought back
    files: list[DeliveredFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Attempt:
    """One model reply and what became of it (ci_magic/engine/step.py). Built by keyword."""

    number: int
    reply: str  # the model's whole reply text
    code: str | None  # None when the reply had no code
    execution: ExecutionResult | None
    usage: Usage
    model_seconds: float
    rejected: str | None = None  # the run worked, but the answer check found this wrong with its output
    problem: str | None = None  # what the model was told about this attempt (repair feedback), if anything
    sample: bool = (
        False  # an extra independent answer drawn for a vote (ci_magic/engine/vote.py), not a repair
    )
    finish_reason: str | None = None  # the model's ("stop", "length", "truncated" when the stream broke)
    cached: bool = False  # the reply came from the replay cache

    @property
    def ok(self) -> bool:
        return self.execution is not None and self.execution.ok and self.rejected is None

    @property
    def outcome(self) -> Outcome:
        if self.execution is None:
            return "no_code"
        if self.execution.ok and self.rejected is not None:
            return "rejected"
        return self.execution.outcome

    @property
    def failure(self) -> str | None:
        """Why the attempt failed, in one line (None when it worked)."""
        if self.execution is None:
            if self.finish_reason in ("length", "truncated"):
                return (
                    f"the reply was cut off before its code was complete (finish_reason={self.finish_reason})"
                )
            return "the reply contained no Python code block"
        if self.rejected is not None:
            return f"the output did not answer: {self.rejected}"[:300]
        if not self.execution.ok:
            return f"{self.execution.error_name}: {self.execution.error_value}"[:300]
        return None


@dataclass(frozen=True)
class AskSummary:
    """One ask as accounting sees it, whether it finished or raised: a row of ``%ask_history``, the trace's
    ``ask`` record. Tokens are those spent until the end, including a reply that broke a budget."""

    ask_id: str
    question: str
    model: str
    endpoint: str
    local: bool  # the embedded model or a loopback server: no price per token
    usage: Usage
    attempts: int  # model replies asked for (repairs and samples included)
    seconds: float
    ok: bool
    error: str | None = None  # "BudgetExceeded: ..." when the ask raised

    @property
    def outcome(self) -> str:
        if self.error is not None:
            return self.error.split(":", 1)[0]
        return "ok" if self.ok else "failed"


@dataclass(frozen=True)
class BestEffort:
    """Answer lines an ask that failed could still give (engine/rescue.py): the values its last run printed, put
    into the asked form by one more model step without code. Never counted as a success."""

    text: str
    from_attempt: int  # the attempt whose printed output (or, not computed, whose reply) they come from
    usage: Usage
    model_seconds: float
    computed: bool = True  # False: the model stated them in a reply without code; nothing computed them


@dataclass(frozen=True)
class Words:
    """The answer in words (engine/answer.py): one or two sentences the model wrote from the working run's outputs."""

    text: str
    usage: Usage
    model_seconds: float


@dataclass
class AskResult:
    question: str
    model: str
    endpoint: str
    attempts: list[Attempt]
    context: str  # exactly what described the data to the model
    ask_id: str = ""  # shared by this ask's events, its trace and the panel
    local: bool = False  # see AskSummary.local
    values: dict[str, Any] = field(default_factory=dict)  # values brought back from the sandbox (Arrow/JSON)
    files: list[DeliveredFile] = field(
        default_factory=list
    )  # files the working code wrote (engine/delivery.py)
    # What the user should know: the sandbox's missing protections first, then transfer notes (columns sent as
    # strings). Every front end shows them with the ask's summary.
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    chosen: int | None = None  # index of the answer a vote picked; None: the last attempt is the answer
    votes: dict[str, int] = field(default_factory=dict)  # answer (as compared) -> how many samples gave it
    best_effort: BestEffort | None = None  # a failed ask's answer lines, from its last printed output
    words: Words | None = None  # a working ask's answer in one or two sentences
    doubt: str | None = None  # what in the working run's output contradicts an answer (engine/answer.py)

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
        for extra in (self.best_effort, self.words):
            if extra is not None:
                total = total + extra.usage
        return total

    @property
    def network(self) -> list[NetUse]:
        """Every host the ask's runs reached for through the egress proxy, summed over its attempts."""
        merged: dict[tuple[str, int, bool, str], NetUse] = {}
        for attempt in self.attempts:
            for use in attempt.execution.network if attempt.execution is not None else []:
                key = (use.host, use.port, use.allowed, use.reason)
                total = merged.setdefault(key, NetUse(use.host, use.port, use.allowed, use.reason))
                total.connections += use.connections
                total.sent += use.sent
                total.received += use.received
        return list(merged.values())

    @property
    def installed(self) -> list[Installed]:
        """Packages the ask's runs installed into the sandbox (pinned), in order, each once."""
        found = [p for a in self.attempts if a.execution is not None for p in a.execution.installed]
        return list(dict.fromkeys(found))

    def done_data(self) -> dict[str, Any]:
        """The data of the ask's ``done`` event (ci_magic/core/events.py): what every front end needs at its end."""
        usage = self.usage
        return {
            "ok": self.ok,
            "attempts": len(self.attempts),
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "warnings": list(self.warnings),
            "answer": self.words.text if self.words is not None else None,
            "doubt": self.doubt,
            "best_effort": self.best_effort.text if self.best_effort is not None else None,
            "files": [asdict(f) for f in self.files],
            "network": [asdict(u) for u in self.network],
        }

    def summary(self) -> AskSummary:
        return AskSummary(
            self.ask_id,
            self.question,
            self.model,
            self.endpoint,
            self.local,
            self.usage,
            len(self.attempts),
            self.seconds,
            self.ok,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ask_id": self.ask_id,
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
            "answer": self.words.text if self.words is not None else None,
            "doubt": self.doubt,
            "best_effort": (
                {
                    "text": self.best_effort.text,
                    "from_attempt": self.best_effort.from_attempt,
                    "computed": self.best_effort.computed,
                }
                if self.best_effort is not None
                else None
            ),
            "values": {k: _describe_value(v) for k, v in self.values.items()},
            "warnings": self.warnings,
            "files": [asdict(f) for f in self.files],
            "seconds": round(self.seconds, 3),
        }


def _describe_value(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} {'x'.join(str(n) for n in shape)}"
    return f"{type(value).__name__} {value!r}"[:200]
