"""The Python API: ``Interpreter(...).ask(question, frames={...})`` — the same loop the magic and CLI use."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..context.columns import columns
from ..context.files import describe_files
from ..context.frames import Frame, build_context
from ..core import privacy
from ..core.errors import SandboxError, UsageError
from ..core.events import Context, Done, Event, EventSink, ignore
from ..core.executor import Executor
from ..core.results import AskResult, AskSummary, CodeRun, DeliveredFile
from ..core.settings import Settings
from ..observe.cost import make_budget
from ..observe.trace import AskTrace
from ..providers import Message, Provider
from ..providers.cache import CachedProvider, ReplyCache
from ..providers.resolve import make_provider
from . import answer, prompts, rescue
from .ask import AskRun, BudgetCheck, Check
from .delivery import Keep, bring_back, deliver
from .executors import ExecutorSlot, make_executor
from .ledger import Ledger
from .loop import read_back, run_attempts
from .vote import VoteKey, hold_vote, output_key

#: Follow-up questions see this many earlier asks of the session.
HISTORY_TURNS = 3


@dataclass(frozen=True)
class _Order:
    """What one ask was asked to do (``Interpreter.ask``'s arguments about the question and its outcome)."""

    question: str
    frames: dict[str, Frame]
    attempts: int
    keep: Keep
    system_extra: str | None


@dataclass(frozen=True)
class _Options:
    """How one ask is judged and paid for (``Interpreter.ask``'s remaining arguments)."""

    check: Check | None
    budget: BudgetCheck | str | None
    fresh: bool
    vote_key: VoteKey


class Interpreter:
    """A session: one model endpoint, one sandbox (started on first use, ended when idle), a short memory.

    ``user_dir`` is the folder whose files the model sees and the code reads (the current one by default);
    ``files_dir`` is where files the working code writes are copied (not copied when None: ``result.files``
    still lists them with size and hash). ``executor`` runs the code instead of a sandbox made from the
    settings (a :class:`~ci_magic.sandbox.fake.ScriptedExecutor` in tests)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        provider: Provider | None = None,
        user_dir: str | Path | None = None,
        files_dir: str | Path | None = None,
        executor: Executor | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = (settings or Settings.from_env()).with_(**overrides)
        self._provider = provider
        self._owns_provider = provider is None  # a provider passed in may be shared: its owner closes it
        self._user_dir = Path(user_dir or os.getcwd()).resolve()
        self.files_dir = Path(files_dir).resolve() if files_dir is not None else None
        make = (
            (lambda: executor)
            if executor is not None
            else (lambda: make_executor(self.settings, self._user_dir))
        )
        self._slot = ExecutorSlot(make, self.settings.idle_minutes * 60, owned=executor is None)
        self._delivered: set[str] = set()  # top-level names of files copied back into the user's folder
        self.ledger = Ledger()  # every ask of this session: spend, result, trace, follow-up turn, cells

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = make_provider(self.settings)
        return self._provider

    @property
    def asks(self) -> list[AskSummary]:
        """What every ended ask of this session spent, failed ones included (read from :attr:`ledger`)."""
        return self.ledger.summaries()

    def prestart(self) -> None:
        """Start the sandbox in the background, so the first ask does not wait for it (warm pool of one)."""
        self._slot.prestart()

    @property
    def sandbox(self) -> Executor:
        """The executor (started now if need be): a local bubblewrap sandbox, or a kernel on the gateway."""
        return self._slot.get()

    def reset(self) -> None:
        """Start over: the sandbox is ended (the next ask starts a fresh one) and follow-ups forget earlier asks."""
        self._slot.drop()
        self._slot.expired = False
        self.ledger.forget_turns()

    def _opening(
        self,
        question: str,
        frames: Mapping[str, Frame],
        system_extra: str | None,
        settings: Settings,
    ) -> tuple[str, int, list[Message]]:
        """The data description (text, estimated tokens) and the first messages of an ask: the one place
        they are built, so a preview is the request."""
        ctx = build_context(frames, settings.context_tokens, settings.context_detail)
        files = describe_files(
            self._user_dir,
            budget_tokens=max(200, settings.context_tokens // 3),
            detail=settings.context_detail,
            loaded=columns(frames),
        )
        text = f"{ctx.text}\n\n{files.text}"
        turns = self.ledger.turns(HISTORY_TURNS)
        # After an idle sandbox was shut down, earlier answers' variables are gone: follow-ups must know.
        note = prompts.SANDBOX_EXPIRED if (self._slot.expired or self._stale()) and turns else None
        limits = settings.limits
        network = None if limits.network else prompts.network_note(limits.allow_hosts, limits.package_index)
        extra = "\n\n".join(x for x in (network, system_extra) if x) or None
        messages = prompts.initial_messages(question, text, turns, extra, note=note)
        return text, ctx.tokens + files.tokens, messages

    def context(self, frames: Mapping[str, Frame] | None = None) -> str:
        """Exactly the data description that :meth:`ask` would send."""
        return self._opening("", frames or {}, None, self.settings)[0]

    def preview(
        self,
        question: str,
        frames: Mapping[str, Frame] | None = None,
        *,
        system_extra: str | None = None,
        settings: Settings | None = None,
    ) -> list[Message]:
        """Exactly the messages :meth:`ask` would send first — system prompt, the earlier asks a follow-up
        sees, the data description and the question — without sending anything or starting the sandbox.

        ``settings``: preview as after :meth:`reconfigure` with them (what the next ask will use)."""
        return self._opening(question, frames or {}, system_extra, settings or self.settings)[2]

    def ask(
        self,
        question: str,
        frames: Mapping[str, Frame] | None = None,
        *,
        attempts: int | None = None,
        keep: Keep = "auto",
        on_event: EventSink = ignore,
        system_extra: str | None = None,
        check: Check | None = None,
        budget: BudgetCheck | str | None = None,
        fresh: bool = False,
        vote_key: VoteKey = output_key,
        ask_id: str | None = None,
    ) -> AskResult:
        """One ask. ``budget`` may stop it (BudgetExceeded): a check, or the text of ``--budget`` ("5000",
        "$0.05"); ``fresh`` bypasses the replay cache's lookup.

        With ``settings.samples > 1`` more independent answers are drawn after the repair loop and the one most
        of them agree on (compared by ``vote_key``) is the result (ci_magic/engine/vote.py).

        ``ask_id`` names the ask (a new one when None): every event, the trace and the result carry it. Every
        ask is traced (ci_magic/observe/trace.py) and entered in :attr:`ledger`, whether it succeeds, fails
        or raises. With ``settings.require_isolation`` an ask is refused (SandboxError) before the model is
        called when the sandbox is not isolated; otherwise the result's ``warnings`` say what is missing."""
        if not question.strip():
            raise UsageError("An ask needs a question, and this one is empty; nothing was sent.")
        ask_id = ask_id or uuid.uuid4().hex
        trace = AskTrace(ask_id, question, self.settings)
        entry = self.ledger.open(ask_id, question, trace)
        traced = trace.sink(on_event)

        def stamped(event: Event) -> None:
            traced(dataclasses.replace(event, ask_id=ask_id))

        order = _Order(question, dict(frames or {}), attempts or self.settings.attempts, keep, system_extra)
        options = _Options(check, budget, fresh, vote_key)
        try:
            result = self._ask(ask_id, order, options, stamped, trace)
        except BaseException as exc:
            summary = entry.summary = trace.finish(None, exc)
            # What the ask spent goes with the error that ended it (CIMagicError.summary; any other too).
            with contextlib.suppress(AttributeError, TypeError):
                exc.summary = summary  # type: ignore[attr-defined]
            raise
        result.ask_id = ask_id
        entry.result, entry.summary = result, trace.finish(result)
        return result

    def _stale(self) -> bool:
        # A sandbox still starting in the background planned its view before files made since: wait for it
        # (the ask would anyway) rather than let it miss them.
        current = self._slot.settled()
        return current is not None and current.stale(self._delivered)

    def _refuse_unisolated(self, executor: Executor) -> None:
        """With ``require_isolation``: refuse when the sandbox reports it is not isolated (nothing sent or run)."""
        if self.settings.require_isolation and not executor.isolated:
            missing = "; ".join(w.rstrip(".") for w in executor.isolation_warnings())
            raise SandboxError(
                f"Isolation is required, and {missing or 'the sandbox reports it is not isolated'}. Nothing was "
                "sent to the model and no code ran. Make isolation work on this machine (see README, Security "
                f"model), or allow running without it: {self.settings.how_to_set('require_isolation')}."
            )

    def _ask(
        self, ask_id: str, order: _Order, options: _Options, on_event: EventSink, trace: AskTrace
    ) -> AskResult:
        started = time.monotonic()
        question, frames = order.question, order.frames
        if self._stale():
            # New files in the user's folder: a sandbox sees the folder as it was when it started. A fresh
            # one sees them (the model is told that earlier variables are gone).
            self._slot.drop()
            self._slot.expired = True
        context, context_tokens, messages = self._opening(question, frames, order.system_extra, self.settings)
        on_event(Event(Context(context, context_tokens)))
        if self.settings.require_isolation:
            self._refuse_unisolated(self._slot.get())  # before resolving (maybe starting) a model
        provider, limit = self._provider_for(trace, options.budget, options.fresh)
        existing = self._slot.current
        if existing is None:
            # No sandbox yet (a CLI or API ask, or one after an idle shutdown): it starts while the model reads
            # the prompt (seconds on a local model) and is waited for when code first runs. A new sandbox holds
            # none of the user's variables, so nothing existed "before" the ask.
            self._slot.prestart()
        with self._slot.held():
            self._slot.expired = False  # the model was told (in the opening) if it had expired
            before = set(existing.values()) if existing is not None and order.keep == "auto" else set()
            run = AskRun(
                ask_id,
                question,
                self.settings,
                provider,
                self._slot.get,
                frames,
                on_event,
                check=options.check,
                budget=limit,
                deadline=started + self.settings.time_budget_s,
                wanted=answer.files_asked_for(question, self._user_dir),
                session_names=self.ledger.bound_names(),
            )
            dialogue = [dict(m) for m in messages]  # grows with the loop's replies and feedback
            run_attempts(run, dialogue, order.attempts)
            result = AskResult(
                question, provider.model, provider.endpoint, run.attempts, context, local=provider.local
            )
            if self.settings.samples > 1:
                hold_vote(run, result, messages, self.settings.samples, options.vote_key)
            if not result.ok and run.check is not None:
                # No attempt passed: the values the last run printed, put into the asked form (never a success).
                result.best_effort = rescue.format_answer(run, messages[0])
            self._finish(run, result, order, before)
            # What isolation is missing comes first and with every ask: a degraded sandbox is never silent.
            executor = run.executor
            result.warnings = [*executor.isolation_warnings(), *executor.warnings]
            executor.warnings.clear()
        loop_attempts = sum(not a.sample for a in result.attempts)
        if not result.ok and loop_attempts < order.attempts:
            result.warnings.append(
                f"Stopped after {loop_attempts} attempt(s): the ask's time budget of "
                f"{self.settings.time_budget_s:g} s was spent (time_budget_s)."
            )
        if result.ok and self.settings.answer_in_words and privacy.shows_values(self.settings.context_detail):
            # Outputs show data values: the words step sends them only where the privacy level allows.
            note = answer.write(run, result, dialogue, messages)
            result.warnings += [note] if note else []
        result.seconds = time.monotonic() - started
        on_event(Event(Done(**result.done_data()), len(result.attempts)))
        return result

    def _finish(self, run: AskRun, result: AskResult, order: _Order, before: set[str]) -> None:
        """What a working ask leaves behind: the chosen code's run in the sandbox, the turn follow-ups see, the
        values and files brought back (``before``: the sandbox's names before the ask) and any doubt about the
        output."""
        final = result.final
        last_run = next((a for a in reversed(result.attempts) if a.execution is not None), None)
        if final is not None and final.ok and final is not last_run and final.code:
            # The sandbox holds a later sample's variables and files: re-run the chosen code, so what comes
            # back (values, files) and what follow-ups see is the chosen answer's.
            final.execution = run.executor.run(final.code, run.frames, pristine=True)
        if not result.ok:
            return
        assert final is not None and final.code is not None and final.execution is not None
        # Earlier outputs show data values: follow-ups carry them only when the privacy setting allows.
        excerpt = final.execution.text()[-600:] if self.settings.context_detail == "samples" else ""
        entry = self.ledger.get(run.id)
        assert entry is not None  # opened by ask() before the run
        entry.turn = prompts.Turn(order.question, final.code, excerpt)
        result.values = bring_back(run.executor, order.keep, before, run.frames, final.code)
        result.files = self._deliver(run.executor, final.execution.files)
        result.doubt = answer.doubt(
            final.execution, run.wanted, functools.partial(read_back, run), run.question
        )

    def run_code(self, code: str, frames: Mapping[str, Frame] | None = None) -> CodeRun:
        """Run code as it is in this session's sandbox (no model): what a generated cell does when it is run
        again. Its values and files come back as an ask's do; errors are data."""
        frames = dict(frames or {})
        with self._slot.using() as executor:
            self._refuse_unisolated(executor)
            execution = executor.run(code, frames)
            run = CodeRun(execution)
            if execution.ok:
                run.values = bring_back(executor, "auto", set(), frames, code)
                run.files = self._deliver(executor, execution.files)
            run.warnings = [*executor.isolation_warnings(), *executor.warnings]
            executor.warnings.clear()
        return run

    def _deliver(self, executor: Executor, paths: list[str]) -> list[DeliveredFile]:
        """The working run's files, copied into ``files_dir`` (engine/delivery.py); remembered as ours."""
        files = deliver(
            executor,
            paths,
            self.files_dir,
            overwrite=self.settings.overwrite_files,
            cap_bytes=self.settings.max_files_mb * 2**20,
        )
        self._delivered |= {f.saved_as.split("/")[0] for f in files if f.saved_as}
        return files

    def _provider_for(
        self, trace: AskTrace, budget: BudgetCheck | str | None, fresh: bool
    ) -> tuple[Provider, BudgetCheck | None]:
        """The provider for one ask — resolved (failing on configuration before a kernel starts), cached and
        traced — and its budget check (a text budget is priced for this model)."""
        provider = self.provider
        if isinstance(budget, str):
            how = self.settings.how_to_set("prices", model=provider.model)
            budget = make_budget(budget, provider.model, provider.local, self.settings.prices, how)
        if self.settings.reply_cache:
            s = self.settings
            provider = CachedProvider(
                provider,
                ReplyCache(max_mb=s.cache_max_mb),
                temperature=s.temperature,
                max_tokens=s.max_tokens,
                fresh=fresh,
            )
        return trace.provider(provider), budget

    def reconfigure(self, settings: Settings) -> None:
        """New settings for later asks. Limits the sandbox started with (memory, network…) and a new gateway
        need a new sandbox; a time limit per ask does not (the sandbox and its variables stay)."""
        old = self.settings
        self.settings = settings
        where = (old.gateway_url, old.gateway_kernel) != (settings.gateway_url, settings.gateway_kernel)
        if where or old.limits.needs_restart(settings.limits):
            self._slot.drop()
        elif old.limits != settings.limits:
            self._slot.set_limits(settings.limits)
        self._slot.idle_s = settings.idle_minutes * 60
        if self._owns_provider and self._provider is not None:
            self._provider.close()
            self._provider = None

    def interrupt(self) -> None:
        executor = self._slot.current
        if executor is not None:
            executor.interrupt()

    def close(self) -> None:
        self._slot.close()
        if self._owns_provider and self._provider is not None:
            self._provider.close()
            self._provider = None

    def __enter__(self) -> Interpreter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
