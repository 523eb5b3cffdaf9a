"""One object for the lifetime of one ask, as nbclient keeps one client per execution.

What every step of an ask needs — its id and question, the settings as they were when it started, the model
(provider), the sandbox (executor) and the frames it runs on, where its events go, the answer check, the budget
and the time it may take — travels as one :class:`AskRun` instead of eight parameters threaded through the
loop, the vote and each request. Its :attr:`~AskRun.attempts` is the one list of the ask's attempts, in order:
the loop and the vote append to it, and what the ask has spent is read from it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..core.events import EventSink
from ..core.executor import Executor, Frame
from ..core.results import Attempt, ExecutionResult, Usage
from ..core.settings import Settings
from ..providers import Message, Provider

#: Inspects a successful execution; returns why it does not answer the question, or None.
Check = Callable[[ExecutionResult], str | None]

#: Called with (tokens spent by this ask so far, the messages about to be sent) before each model request, and
#: with ``None`` as messages after it; raises BudgetExceeded to stop the ask (see ci_magic.observe.cost.Budget).
BudgetCheck = Callable[[Usage, list[Message] | None], None]


@dataclass
class AskRun:
    """One ask while it runs (see the module docstring). ``sandbox``: gives the executor when code first needs
    it (a sandbox may still be starting while the model reads the prompt); ``wanted``: files the question asks
    for by name; ``deadline``: ``time.monotonic()`` after which no attempt starts (None: no limit);
    ``session_names``: names earlier asks' code bound in the sandbox (an import added to the code must not hide
    one)."""

    id: str
    question: str
    settings: Settings
    provider: Provider
    sandbox: Callable[[], Executor]
    frames: Mapping[str, Frame]
    emit: EventSink
    check: Check | None = None
    budget: BudgetCheck | None = None
    deadline: float | None = None
    wanted: Sequence[str] = ()
    session_names: frozenset[str] = frozenset()
    attempts: list[Attempt] = field(default_factory=list)

    @functools.cached_property
    def executor(self) -> Executor:
        """The sandbox, waited for (or started) on first use; its start's error, if any, ends the ask."""
        return self.sandbox()

    def spent(self) -> Usage:
        """The tokens of every attempt so far (the budget is checked against them)."""
        return sum((a.usage for a in self.attempts), Usage())
