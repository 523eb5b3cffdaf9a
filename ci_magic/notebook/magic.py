"""The IPython edge: ``%%ask`` / ``%ask``, configured with traitlets (``%config Ask.model = '...'``)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Dict, Enum, Float, Int, Unicode
from traitlets.config import Configurable

from ..context.frames import build_context, collect_frames
from ..core import prompts
from ..core.errors import CIMagicError, UsageError
from ..core.events import Event, EventSink, ignore
from ..core.interpreter import Interpreter
from ..core.results import AskResult, estimate_tokens
from ..core.settings import Limits, Settings
from .cells import FallbackInserter, Inserter, Insertion, cells_for


class Ask(Configurable):
    """Settings for %%ask. Secrets are read from the environment only, never from config."""

    model = Unicode(None, allow_none=True, help="Model name (default: CI_MAGIC_MODEL, or the server's).").tag(
        config=True
    )
    base_url = Unicode(
        None, allow_none=True, help="OpenAI-compatible base URL (default: OPENAI_BASE_URL)."
    ).tag(config=True)
    attempts = Int(3, help="Attempts per ask, counting repairs.").tag(config=True)
    samples = Int(
        1,
        help="Independent answers per ask; with more than one, the answer most of them agree on is kept "
        "(costs up to that many times the model time).",
    ).tag(config=True)
    timeout = Float(60.0, help="Seconds one execution may run in the sandbox.").tag(config=True)
    request_timeout = Float(120.0, help="Seconds to wait for the model.").tag(config=True)
    context_tokens = Int(2000, help="Token budget for the data description.").tag(config=True)
    memory_mb = Int(4096, help="Address-space limit of the sandbox kernel, in MB.").tag(config=True)
    network = Bool(False, help="Let sandboxed code use the network.").tag(config=True)
    prestart = Bool(
        True, help="Start the sandbox kernel when the extension loads (first ask is faster)."
    ).tag(config=True)
    context_detail = Enum(
        ["schema", "stats", "samples"],
        "samples",
        help="What the data description sent to the model (and traces) may contain: names and types only, "
        "plus statistics, or plus example values.",
    ).tag(config=True)
    cache = Bool(True, help="Replay identical model conversations from disk (see --fresh).").tag(config=True)
    cache_max_mb = Float(200.0, help="Size bound of the reply cache, in MB.").tag(config=True)
    prices = Dict(
        help='USD per 1M tokens per model, e.g. {"gpt-4o-mini": [0.15, 0.6]}; merged over ci_magic.observe.cost defaults.'
    ).tag(config=True)

    def settings(self, **overrides: Any) -> Settings:
        limits = Limits(memory_mb=self.memory_mb, timeout_s=self.timeout, network=self.network)
        base = Settings.from_env(
            attempts=self.attempts,
            samples=self.samples,
            context_tokens=self.context_tokens,
            request_timeout_s=self.request_timeout,
            limits=limits,
            context_detail=self.context_detail,
            reply_cache=self.cache,
            cache_max_mb=self.cache_max_mb,
        )
        return base.with_(model=self.model, base_url=self.base_url).with_(**overrides)


@magics_class
class AskMagics(Magics):
    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.config_obj = Ask(parent=shell)
        shell.configurables.append(self.config_obj)  # makes `%config Ask.model = ...` reach it
        self.interpreter: Interpreter | None = None
        self.inserter: Inserter = FallbackInserter(shell)
        self.current_cell_id: str | None = None
        self.listeners: list[EventSink] = []  # e.g. the panel bridge, which mirrors progress to the UI
        # Every finished ask of this session, for %ask_history and %ask_export (the live-session export).
        self.history: list[tuple[str, AskResult, Insertion]] = []

    def _user_ns(self) -> dict[str, Any]:
        assert self.shell is not None  # magics are always registered on a shell
        ns: dict[str, Any] = self.shell.user_ns
        return ns

    def warm_up(self) -> None:
        """Start this notebook's sandbox in the background (never shared with another notebook)."""
        if self.config_obj.prestart and self.interpreter is None:
            try:
                self.interpreter = Interpreter(self.settings_for())
            except CIMagicError:
                return  # bad settings are reported by the first ask, with its own message
            self.interpreter.prestart()

    def _interpreter(self, settings: Settings) -> Interpreter:
        if self.interpreter is None:
            self.interpreter = Interpreter(settings)
        elif self.interpreter.settings != settings:
            self.interpreter.reconfigure(settings)
        return self.interpreter

    @magic_arguments()
    @argument(
        "--frames", "-f", default=None, help="Comma-separated DataFrame names to describe (default: all)."
    )
    @argument("--attempts", "-n", type=int, default=None, help="Attempts, counting repairs.")
    @argument("--samples", "-s", type=int, default=None, help="Independent answers to vote among.")
    @argument("--model", "-m", default=None, help="Model for this ask.")
    @argument("--keep", "-k", action="append", default=None, help="Bring this variable back (repeatable).")
    @argument("--no-keep", action="store_true", help="Bring nothing back into this notebook.")
    @argument("--timeout", "-t", type=float, default=None, help="Seconds one execution may run.")
    @argument("--context-only", action="store_true", help="Show exactly what would be sent; send nothing.")
    @argument("--budget", "-b", default=None, help="Stop at this many tokens (5000) or dollars ($0.05).")
    @argument("--fresh", action="store_true", help="Ask the model even if the reply cache has an answer.")
    @argument("question", nargs="*", help="The question (or the cell body).")
    @no_var_expand  # "$0.05" must reach --budget as written, not as IPython's $-variable expansion
    @line_cell_magic
    def ask(self, line: str, cell: str | None = None) -> None:
        """Ask a question about the DataFrames in this notebook; the code runs in a sandbox kernel."""
        # CIMagicError renders as one clear paragraph (no traceback) and marks the cell as failed, so "Run All"
        # stops here instead of running later cells on missing results.
        self._ask(line, cell)

    def _ask(self, line: str, cell: str | None) -> None:
        try:
            args = parse_argstring(self.ask, line)
        except Exception as exc:  # argparse/IPython usage errors: say what is wrong, run nothing
            raise UsageError(
                f"{exc}. Usage: %%ask [--frames a,b] [--attempts N] [--samples K] [--model M] [--keep NAME] "
                "[--no-keep] [--timeout S] [--context-only] [--budget N|$X] [--fresh], then the question."
            ) from None
        question = (cell if cell is not None else "").strip() or " ".join(args.question).strip()
        if cell is not None and args.question:
            question = (" ".join(args.question) + "\n" + question).strip()
        names = [n.strip() for n in args.frames.split(",") if n.strip()] if args.frames else None
        if args.context_only:
            settings = self.settings_for(
                model=args.model, attempts=args.attempts, timeout=args.timeout, samples=args.samples
            )
            self._show_context(question, collect_frames(self._user_ns(), names), settings)
            return
        keep: Any = None if args.no_keep else (args.keep or "auto")
        view = LiveView(args.attempts or self.config_obj.attempts, self.shell)
        try:
            insertion = self.run_ask(
                question,
                frame_names=names,
                model=args.model,
                attempts=args.attempts,
                samples=args.samples,
                timeout=args.timeout,
                keep=keep,
                on_event=view,
                anchor_cell_id=self.current_cell_id,
                budget=args.budget,
                fresh=args.fresh,
            )
        finally:
            view.close()
        for note in insertion.notes:  # information (what came back, what was not overwritten)
            print(f"ci_magic: {note}")
        for warning in insertion.result.warnings:  # something about the data the user should look at
            print(f"ci_magic: {warning}", file=sys.stderr)
        frontend = type(self.inserter).__name__
        if not self.inserter.insert(insertion):
            FallbackInserter(self.shell).insert(insertion)
            frontend = "FallbackInserter"
        trace = self.interpreter.last_trace if self.interpreter is not None else None
        if trace is not None:
            trace.insertion(insertion.insertion_id, insertion.anchor_cell_id, frontend)

    def settings_for(
        self,
        *,
        model: str | None = None,
        attempts: int | None = None,
        timeout: float | None = None,
        samples: int | None = None,
    ) -> Settings:
        settings = self.config_obj.settings(model=model, attempts=attempts, samples=samples)
        if timeout is not None:
            settings = settings.with_(limits=replace(settings.limits, timeout_s=timeout))
        return settings

    def run_ask(
        self,
        question: str,
        *,
        frame_names: list[str] | None = None,
        model: str | None = None,
        attempts: int | None = None,
        samples: int | None = None,
        timeout: float | None = None,
        keep: Any = "auto",
        on_event: EventSink = ignore,
        anchor_cell_id: str | None = None,
        budget: str | None = None,
        fresh: bool = False,
    ) -> Insertion:
        """One ask, from any frontend (the magic, the panel bridge): returns the cells to insert.

        Values the code created come back into the user's namespace; existing names are only overwritten
        when named in ``keep``. Extra ``listeners`` (the panel) see every event too.
        """
        if not question.strip():
            raise UsageError("%%ask needs a question: put it in the cell body (or after %ask on the line).")
        frames = collect_frames(self._user_ns(), frame_names)
        settings = self.settings_for(model=model, attempts=attempts, timeout=timeout, samples=samples)
        interpreter = self._interpreter(settings)

        def emit(event: Event) -> None:
            on_event(event)
            for listener in list(self.listeners):
                listener(event)

        interpreter.prices = dict(self.config_obj.prices)
        limit = None
        if budget is not None:
            from ..observe.cost import make_budget

            provider = interpreter.provider
            limit = make_budget(budget, provider.model, provider.endpoint, interpreter.prices)
        result = interpreter.ask(question, frames, keep=keep, on_event=emit, budget=limit, fresh=fresh)
        insertion = cells_for(result, anchor_cell_id)
        self.history.append((question, result, insertion))
        explicit = set(keep) if isinstance(keep, list | tuple) else set()
        self._keep(result.values, explicit=explicit, insertion_notes=insertion.notes)
        return insertion

    @line_magic
    def ask_history(self, line: str = "") -> None:
        """This session's asks: tokens, cost, attempts and time (prices: %config Ask.prices)."""
        from ..observe.cost import history_table

        print(history_table([r for _, r, _ in self.history], self.config_obj.prices))

    @line_magic
    def ask_export(self, line: str = "") -> None:
        """%ask_export OUT.ipynb [--notebook SAVED.ipynb]: a plain, re-runnable notebook of this session."""
        from ..reproduce.export import export_session

        export_session(self, line)

    def _keep(self, values: dict[str, Any], explicit: set[str], insertion_notes: list[str]) -> None:
        user_ns = self._user_ns()
        brought = []
        for name, value in values.items():
            if name in user_ns and name not in explicit:
                insertion_notes.append(
                    f"{name!r} was not brought back because the notebook already has a variable of that name; "
                    f"use --keep {name} to overwrite it."
                )
                continue
            user_ns[name] = value
            brought.append(name)
        if brought:
            insertion_notes.append("brought back into the notebook: " + ", ".join(brought))

    def _show_context(self, question: str, frames: dict[str, Any], settings: Settings) -> None:
        ctx = build_context(frames, settings.context_tokens, settings.context_detail)
        messages = prompts.initial_messages(question or "(your question)", ctx.text)
        print(
            f"ci_magic would send {ctx.tokens:,} tokens of data description (budget "
            f"{settings.context_tokens:,}); nothing was sent.\n"
        )
        for m in messages:
            print(f"--- {m['role']} ---\n{m['content']}\n")


class LiveView:
    """Progress while the model writes and the code runs: one updating line in notebooks, a few in terminals."""

    def __init__(self, attempts: int, shell: Any) -> None:
        from IPython.display import display

        self.attempts = attempts
        self.tokens = 0
        self.total = 0
        self.state = "starting"
        self.attempt = 1
        self.sample: int | None = None  # set while an extra answer for a vote is being drawn
        self._last = 0.0
        # Only kernels can update a display in place; a terminal would print every update on a new line.
        in_kernel = getattr(shell, "kernel", None) is not None
        self._handle = (
            display({"text/plain": "ci_magic: starting…"}, raw=True, display_id=True) if in_kernel else None
        )

    def __call__(self, event: Event) -> None:
        if event.kind == "token":
            self.tokens += estimate_tokens(event.data["text"])
            self.state = "model is writing"
        elif event.kind == "model_start":
            self.attempt, self.tokens, self.state = event.attempt, 0, "waiting for the model"
            self.sample = event.data.get("sample")
        elif event.kind == "model_done":
            self.total += event.data["prompt_tokens"] + event.data["completion_tokens"]
            self.state = "model done"
        elif event.kind == "code":
            self.state = "running in the sandbox"
        elif event.kind in ("retry", "no_code"):
            self.state = "failed, asking for a fix"
        elif event.kind == "done":
            self.state = "done"
        now = time.monotonic()
        if event.kind != "token" or now - self._last > 0.25:  # throttle: streamed tokens arrive fast
            self._last = now
            self._update()

    def _update(self) -> None:
        step = (
            f"sample {self.sample} for the vote" if self.sample else f"attempt {self.attempt}/{self.attempts}"
        )
        text = (
            f"ci_magic: {step} · {self.state} · "
            f"{self.tokens} tokens this reply · {self.total:,} tokens so far"
        )
        if self._handle is not None:
            self._handle.update({"text/plain": text}, raw=True)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.update({"text/plain": ""}, raw=True)
