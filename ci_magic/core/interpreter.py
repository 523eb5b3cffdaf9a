"""The Python API: ``Interpreter(...).ask(question, frames={...})`` — the same loop the magic and CLI use."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal

from ..context.frames import Frame, build_context
from ..observe.trace import AskTrace
from ..providers import Provider
from ..providers.cache import CachedProvider, ReplyCache
from ..providers.resolve import make_provider
from ..sandbox import Sandbox, assigned_names
from . import prompts
from .events import Event, EventSink, ignore
from .loop import BudgetCheck, Check, run_attempts
from .results import AskResult
from .settings import Settings
from .vote import VoteKey, choose, draw_samples, output_key

#: Follow-up questions see this many earlier asks of the session.
HISTORY_TURNS = 3
#: Frames larger than this are not brought back automatically (only when named with ``keep``).
AUTO_KEEP_MAX_CELLS = 5_000_000

Keep = Sequence[str] | Literal["auto"] | None


class Interpreter:
    """A session: one model endpoint, one sandbox kernel (started on first use), a short memory of asks."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        provider: Provider | None = None,
        user_dir: str | Path | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = (settings or Settings.from_env()).with_(**overrides)
        self._provider = provider
        self._owns_provider = provider is None  # a provider passed in may be shared: its owner closes it
        self._user_dir = user_dir
        self._sandbox: Sandbox | None = None
        self._starting: Future[Sandbox] | None = None
        self.history: list[prompts.Turn] = []
        self.prices: dict[str, Any] = {}  # per-model price overrides for traces (ci_magic.observe.cost)
        self.last_trace: AskTrace | None = None  # the latest ask's trace; the magic adds its insertion span

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = make_provider(self.settings)
        return self._provider

    def prestart(self) -> None:
        """Start the sandbox kernel in the background, so the first ask does not wait for it (warm pool of one)."""
        if self._sandbox is None and self._starting is None:
            self._starting = Future()
            starting = self._starting
            limits, user_dir = self.settings.limits, self._user_dir

            def start() -> None:
                try:
                    starting.set_result(Sandbox(limits, user_dir))
                except BaseException as exc:  # handed to whoever takes the sandbox
                    starting.set_exception(exc)
                finally:
                    # jupyter_client ran its coroutines on an event loop it made for this thread; the thread
                    # ends here, so close the loop instead of leaking its sockets.
                    with contextlib.suppress(RuntimeError):
                        asyncio.get_event_loop_policy().get_event_loop().close()

            threading.Thread(target=start, name="ci_magic-prestart", daemon=True).start()

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            starting, self._starting = self._starting, None
            if starting is not None:
                self._sandbox = starting.result()
            else:
                self._sandbox = Sandbox(self.settings.limits, self._user_dir)
        return self._sandbox

    def _drop_sandbox(self) -> None:
        starting, self._starting = self._starting, None
        if starting is not None:
            with contextlib.suppress(Exception):  # a failed prestart has nothing to close
                starting.result().close()
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def context(self, frames: Mapping[str, Frame] | None = None) -> str:
        """Exactly the data description that :meth:`ask` would send."""
        return build_context(frames or {}, self.settings.context_tokens, self.settings.context_detail).text

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
        budget: BudgetCheck | None = None,
        fresh: bool = False,
        vote_key: VoteKey = output_key,
    ) -> AskResult:
        """One ask. ``budget`` may stop it (BudgetExceeded); ``fresh`` bypasses the replay cache's lookup.

        With ``settings.samples > 1`` more independent answers are drawn after the repair loop and the one most
        of them agree on (compared by ``vote_key``) is the result (ci_magic/vote.py).

        Every ask is traced (ci_magic/trace.py), whether it succeeds, fails or raises."""
        trace = AskTrace(question, self.settings, self.prices)
        self.last_trace = trace
        try:
            result = self._ask(
                question,
                frames,
                attempts,
                keep,
                trace.sink(on_event),
                system_extra,
                check,
                budget,
                fresh,
                trace,
                vote_key,
            )
        except BaseException as exc:
            trace.finish(None, exc)
            raise
        trace.finish(result)
        return result

    def _ask(
        self,
        question: str,
        frames: Mapping[str, Frame] | None,
        attempts: int | None,
        keep: Keep,
        on_event: EventSink,
        system_extra: str | None,
        check: Check | None,
        budget: BudgetCheck | None,
        fresh: bool,
        trace: AskTrace,
        vote_key: VoteKey,
    ) -> AskResult:
        started = time.monotonic()
        frames = dict(frames or {})
        ctx = build_context(frames, self.settings.context_tokens, self.settings.context_detail)
        on_event(Event("context", 0, {"text": ctx.text, "tokens": ctx.tokens}))
        provider = self.provider  # resolve (and fail on configuration) before starting a kernel
        if self.settings.reply_cache:
            cache = ReplyCache(max_mb=self.settings.cache_max_mb)
            s = self.settings
            provider = CachedProvider(
                provider, cache, temperature=s.temperature, max_tokens=s.max_tokens, fresh=fresh
            )
        provider = trace.provider(provider)
        sandbox = self.sandbox
        before = set(sandbox.values()) if keep == "auto" else set()
        messages = prompts.initial_messages(question, ctx.text, self.history[-HISTORY_TURNS:], system_extra)
        opening = [dict(m) for m in messages]
        attempt_list = run_attempts(
            messages,
            provider=provider,
            sandbox=sandbox,
            frames=frames,
            settings=self.settings,
            attempts=attempts or self.settings.attempts,
            emit=on_event,
            check=check,
            budget=budget,
        )
        if self.settings.samples > 1:
            attempt_list += draw_samples(
                opening,
                attempt_list,
                samples=self.settings.samples,
                provider=provider,
                sandbox=sandbox,
                frames=frames,
                emit=on_event,
                check=check,
                key=vote_key,
                budget=budget,
            )
        result = AskResult(
            question=question,
            model=provider.model,
            endpoint=provider.endpoint,
            attempts=attempt_list,
            context=ctx.text,
        )
        if self.settings.samples > 1:
            chosen, counts = choose(attempt_list, vote_key)
            result.chosen = chosen
            result.votes = {str(k)[:200]: n for k, n in counts.items()}
            chosen_number = attempt_list[chosen].number if chosen is not None else None
            on_event(
                Event(
                    "vote",
                    len(attempt_list),
                    {"chosen_attempt": chosen_number, "votes": list(counts.values())},
                )
            )
            last_run = next((a for a in reversed(attempt_list) if a.execution is not None), None)
            final = result.final
            if final is not None and final.ok and final is not last_run and keep is not None and final.code:
                # The sandbox holds the last sample's variables: re-run the chosen code so what comes back
                # (and what follow-ups see) is the chosen answer's.
                sandbox.run(final.code, frames, pristine=True)
        if result.ok:
            final = result.final
            assert final is not None and final.code is not None and final.execution is not None
            # Earlier outputs show data values: follow-ups carry them only when the privacy setting allows.
            excerpt = final.execution.text()[-600:] if self.settings.context_detail == "samples" else ""
            self.history.append(prompts.Turn(question, final.code, excerpt))
            result.values = self._bring_back(keep, before, frames, final.code)
        result.files = sandbox.written_files()
        result.warnings = list(sandbox.warnings)
        sandbox.warnings.clear()
        result.seconds = time.monotonic() - started
        usage = result.usage
        on_event(
            Event(
                "done",
                len(attempt_list),
                {
                    "ok": result.ok,
                    "attempts": len(attempt_list),
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                },
            )
        )
        return result

    def _bring_back(
        self, keep: Keep, before: set[str], frames: Mapping[str, Frame], code: str
    ) -> dict[str, Any]:
        if keep is None:
            return {}
        if keep == "auto":
            # Only what the working code assigned: leftovers of failed attempts stay in the sandbox.
            created = assigned_names(code)
            now = self.sandbox.values()
            names = [
                n
                for n, (_, cells) in now.items()
                if n in created and n not in before and n not in frames and cells <= AUTO_KEEP_MAX_CELLS
            ]
            return self.sandbox.fetch(names) if names else {}
        return self.sandbox.fetch(list(keep))

    def reconfigure(self, settings: Settings) -> None:
        """New settings for later asks. Limits apply at kernel start, so a limits change restarts the sandbox."""
        if settings.limits != self.settings.limits:
            self._drop_sandbox()
        close = getattr(self._provider, "close", None)
        if self._owns_provider and callable(close):
            close()
            self._provider = None
        self.settings = settings

    def interrupt(self) -> None:
        if self._sandbox is not None:
            self._sandbox.interrupt()

    def close(self) -> None:
        self._drop_sandbox()
        close = getattr(self._provider, "close", None)
        if self._owns_provider and callable(close):
            close()
            self._provider = None

    def __enter__(self) -> Interpreter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
