"""Progress events emitted by the loop, consumed by the magic's live view, the panel bridge and traces.

Every event of one ask carries that ask's id (``ask_id``): the :class:`~ci_magic.engine.interpreter.Interpreter`
stamps it on the way out, so the loop and the vote emit events without knowing it, and the trace, the panel and
the bridge agree on which ask an event belongs to. The kinds and their data are the wire format of the panel's
``event`` message (``labextension/src/protocol.ts``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

EventKind = Literal[
    "context",
    "model_start",
    "token",
    "model_done",
    "code",
    "no_code",
    "output",
    "exec_done",
    "retry",
    "answer_start",
    "answer",
    "vote",
    "done",
]


@dataclass(frozen=True)
class Context:
    """The data description was built (before anything is sent)."""

    kind: ClassVar[EventKind] = "context"
    text: str
    tokens: int


@dataclass(frozen=True)
class ModelStart:
    """The model starts writing attempt ``Event.attempt`` (``sample``: which vote sample it is, if one)."""

    kind: ClassVar[EventKind] = "model_start"
    sample: int | None = None


@dataclass(frozen=True)
class Token:
    """A streamed fragment of the model's reply."""

    kind: ClassVar[EventKind] = "token"
    text: str


@dataclass(frozen=True)
class ModelDone:
    kind: ClassVar[EventKind] = "model_done"
    prompt_tokens: int
    completion_tokens: int
    seconds: float


@dataclass(frozen=True)
class Code:
    """The code found in the reply, about to run."""

    kind: ClassVar[EventKind] = "code"
    code: str


@dataclass(frozen=True)
class NoCode:
    kind: ClassVar[EventKind] = "no_code"
    problem: str


@dataclass(frozen=True)
class Output:
    """Outputs of the running code, as they arrive (sandbox/live.py): ops to replay in order — stream text
    appended, an output added, a display updated, all cleared. Sanitised like the final outputs; coalesced to a
    few a second. The attempt's ``exec_done`` then carries its outputs whole."""

    kind: ClassVar[EventKind] = "output"
    ops: list[dict[str, Any]]

    def apply(self, outputs: list[dict[str, Any]], max_chars: int = 200_000) -> None:
        """Replay the ops onto ``outputs`` (nbformat outputs, changed in place), as a front end showing the run
        does; a stream keeps its last ``max_chars`` characters."""
        for op in self.ops:
            kind = op.get("op")
            if kind == "clear":
                outputs.clear()
            elif kind == "stream":
                last = outputs[-1] if outputs else None
                if (
                    last is not None
                    and last.get("output_type") == "stream"
                    and last.get("name") == op["name"]
                ):
                    last["text"] = (last["text"] + op["text"])[-max_chars:]
                else:
                    outputs.append(
                        {"output_type": "stream", "name": op["name"], "text": op["text"][-max_chars:]}
                    )
            elif kind == "output":
                out = dict(op["output"])
                if op.get("display_id"):
                    out["display_id"] = op["display_id"]
                outputs.append(out)
            elif kind == "update":
                for out in outputs:
                    if out.get("display_id") == op.get("display_id"):
                        out["data"] = op["data"]


@dataclass(frozen=True)
class ExecDone:
    """A run finished: its outputs, and why it failed or was rejected (``error``)."""

    kind: ClassVar[EventKind] = "exec_done"
    outcome: str
    outputs: list[dict[str, Any]]
    error: str | None
    seconds: float
    network: list[dict[str, Any]] = field(default_factory=list)  # hosts reached for (core.results.NetUse)


@dataclass(frozen=True)
class Retry:
    """The attempt failed; ``problem`` is what goes back to the model."""

    kind: ClassVar[EventKind] = "retry"
    problem: str


@dataclass(frozen=True)
class AnswerStart:
    """The answer in words (or a failed ask's format step: ``best_effort``) begins."""

    kind: ClassVar[EventKind] = "answer_start"
    best_effort: bool


@dataclass(frozen=True)
class Answer:
    """The answer in words, or a failed ask's best effort (``text`` None: none came)."""

    kind: ClassVar[EventKind] = "answer"
    text: str | None
    best_effort: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Vote:
    """The vote's pick (engine/vote.py): the chosen attempt's number and the count of each answer."""

    kind: ClassVar[EventKind] = "vote"
    chosen_attempt: int | None
    votes: list[int]


@dataclass(frozen=True)
class Done:
    """The ask's end: what every front end needs (files as ``DeliveredFile`` dicts)."""

    kind: ClassVar[EventKind] = "done"
    ok: bool
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    warnings: list[str]
    answer: str | None
    doubt: str | None
    best_effort: str | None
    files: list[dict[str, Any]]
    # Hosts the ask's code reached for through the egress proxy, allowed or refused (core.results.NetUse).
    network: list[dict[str, Any]] = field(default_factory=list)


EventData = (
    Context
    | ModelStart
    | Token
    | ModelDone
    | Code
    | NoCode
    | Output
    | ExecDone
    | Retry
    | AnswerStart
    | Answer
    | Vote
    | Done
)


@dataclass(frozen=True)
class Event:
    """One step of an ask: typed ``data`` (its class names the ``kind``), the attempt it belongs to (0: the ask
    itself) and the ask's id."""

    data: EventData
    attempt: int = 0
    ask_id: str = ""  # set by Interpreter.ask for every event of the ask ("" only before it is stamped)

    @property
    def kind(self) -> EventKind:
        return self.data.kind

    def wire(self) -> dict[str, Any]:
        """The data as the panel's ``event`` message carries it (labextension/src/protocol.ts)."""
        return asdict(self.data)


EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default sink."""
