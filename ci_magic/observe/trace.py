"""Traces: every ask leaves a JSONL record of its steps, and OpenTelemetry spans when the SDK is installed.

One line per finished span, appended to ``<trace dir>/YYYY-MM-DD.jsonl`` (one file per UTC day, so a folder of
traces is easy to prune; a ``session`` id tells notebooks apart). The trace dir is ``CI_MAGIC_TRACE_DIR``, else
``<cache root>/traces`` (:func:`ci_magic.core.paths.cache_root`); ``CI_MAGIC_TRACE_DIR=off`` writes none.

Spans of one ask share the ask's id, given by the :class:`~ci_magic.engine.interpreter.Interpreter` (the same id
its events carry): ``ask`` (the root: question, model, tokens and cost — also of an ask that raised, counting
what was spent until then — outcome or error), ``context``
(the data description built), ``model_call`` (messages sent, reply, tokens, whether the replay cache answered),
``execution`` (outcome, error, outputs summarised), and ``insertion`` (written later by the magic).

Privacy follows ``context_detail``: the messages recorded are exactly those sent, which are already built at
that level; execution outputs are recorded as an excerpt only with ``"samples"`` (otherwise kinds and sizes).
No credential is ever recorded: settings are not dumped, only the model name and the endpoint's host:port.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core.events import Code, Context, Event, EventSink, ExecDone, ModelStart
from ..core.paths import cache_root
from ..core.results import AskResult, AskSummary, Usage
from ..core.settings import Settings
from ..providers import Completion, Message, OneReply, OnText, Provider, Request, endpoint_label, is_loopback
from .cost import cost_usd, format_cost, price_for, price_table
from .otel import attribute_value, tracer, use_tracer_provider

__all__ = ["AskTrace", "trace_dir", "use_tracer_provider", "write_span"]

log = logging.getLogger(__name__)

#: One id per Python process (a notebook's kernel): groups the asks of a session inside a day's file.
SESSION_ID = uuid.uuid4().hex[:12]
OUTPUT_EXCERPT = 500

_write_lock = threading.Lock()


def trace_dir() -> Path | None:
    explicit = os.environ.get("CI_MAGIC_TRACE_DIR")
    if explicit is not None and explicit.strip().lower() in ("off", "none", "0", "false"):
        return None
    if explicit:
        return Path(explicit).expanduser()
    return cache_root() / "traces"


def _now_iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


def write_span(record: dict[str, Any], directory: Path | None) -> None:
    if directory is None:
        return
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    path = directory / f"{datetime.now(UTC).date().isoformat()}.jsonl"
    try:
        with _write_lock:
            directory.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)
    except OSError as exc:  # tracing must never fail an ask
        log.warning("ci_magic: could not write the trace to %s: %s", path, exc)


# -- one ask -----------------------------------------------------------------------------------------------


class AskTrace:
    """Collects the spans of one ask from its events and its provider calls."""

    def __init__(
        self,
        ask_id: str,
        question: str,
        settings: Settings,
        directory: Path | Callable[[], Path | None] | None = trace_dir,
    ) -> None:
        self.ask_id = ask_id  # the ask's own id: events, panel and trace agree
        self.question = question
        self.detail = settings.context_detail
        self.prices = price_table(settings.prices)
        # Until the provider is known (a configuration error may come first): what the settings say.
        self.model = settings.model or "?"
        self.endpoint = endpoint_label(settings.base_url) if settings.base_url or settings.api_key else "?"
        self.local = is_loopback(settings.base_url)
        self.spent = Usage()  # every completion of this ask, including one that broke a budget
        self.model_calls = 0
        self.directory = directory() if callable(directory) else directory
        self.started_wall = time.time()
        self._started = time.monotonic()
        self._attempt = 0
        self._exec_started: tuple[float, float] | None = None
        self.cached_calls = 0
        self.spans: list[dict[str, Any]] = []  # kept in memory too: %ask_history and tests read them
        self._otel = tracer()
        self._otel_root: Any = None
        self._otel_ctx: Any = None
        if self._otel is not None:
            from opentelemetry import trace as otel_trace

            self._otel_root = self._otel.start_span(
                "ci_magic.ask",
                start_time=int(self.started_wall * 1e9),
                attributes={"ci_magic.ask_id": self.ask_id},
            )
            self._otel_ctx = otel_trace.set_span_in_context(self._otel_root)

    # -- recording ---------------------------------------------------------------------------------------------

    def span(self, name: str, start_wall: float, duration_s: float, **attributes: Any) -> dict[str, Any]:
        record = {
            "session": SESSION_ID,
            "ask_id": self.ask_id,
            "name": name,
            "start": _now_iso(start_wall),
            "duration_s": round(max(0.0, duration_s), 4),
            "attributes": attributes,
        }
        self.spans.append(record)
        write_span(record, self.directory)
        if self._otel is not None and name != "ask":
            otel_span = self._otel.start_span(
                f"ci_magic.{name}",
                context=self._otel_ctx,
                start_time=int(start_wall * 1e9),
                attributes={
                    f"ci_magic.{k}": attribute_value(v) for k, v in attributes.items() if v is not None
                },
            )
            otel_span.end(end_time=int((start_wall + max(0.0, duration_s)) * 1e9))
        return record

    def sink(self, downstream: EventSink) -> EventSink:
        """An event sink that records context and executions, then passes every event on."""

        def on_event(event: Event) -> None:
            try:
                self._on_event(event)
            finally:
                downstream(event)

        return on_event

    def _on_event(self, event: Event) -> None:
        now_wall, now = time.time(), time.monotonic()
        data = event.data
        if isinstance(data, Context):
            self.span(
                "context",
                self.started_wall,
                now - self._started,
                tokens=data.tokens,
                context_detail=self.detail,
                text=data.text,
            )
        elif isinstance(data, ModelStart):
            self._attempt = event.attempt
        elif isinstance(data, Code):
            self._exec_started = (now_wall, now)
        elif isinstance(data, ExecDone):
            wall, mono = self._exec_started or (now_wall, now)
            self._exec_started = None
            self.span(
                "execution",
                wall,
                now - mono,
                attempt=event.attempt,
                outcome=data.outcome,
                error=data.error,
                seconds=data.seconds,
                outputs=self._summarise(data.outputs),
                network=data.network,
            )

    def _summarise(self, outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        summary: list[dict[str, Any]] = []
        for out in outputs:
            kind = out.get("output_type")
            item: dict[str, Any] = {"type": kind}
            if kind == "stream":
                text = str(out.get("text", ""))
                item.update(name=out.get("name"), chars=len(text))
            elif kind in ("display_data", "execute_result"):
                data = out.get("data", {})
                item["mime"] = sorted(data)
                text = str(data.get("text/plain", ""))
                item["chars"] = sum(len(str(v)) for v in data.values())
            elif kind == "error":
                text = f"{out.get('ename')}: {out.get('evalue')}"
                item["ename"] = out.get("ename")
            else:
                text = ""
            if self.detail == "samples" and text:
                item["excerpt"] = text[:OUTPUT_EXCERPT]  # outputs show data values: only at "samples"
            summary.append(item)
        return summary

    def provider(self, inner: Provider) -> Provider:
        self.model, self.endpoint, self.local = inner.model, inner.endpoint, inner.local
        return _TracingProvider(inner, self)

    def model_call(
        self,
        messages: list[Message],
        start_wall: float,
        duration: float,
        completion: Completion | None,
        error: BaseException | None,
        cached: bool,
        temperature: float | None,
    ) -> None:
        if cached:
            self.cached_calls += 1
        usage = completion.usage if completion is not None else Usage()
        self.spent = self.spent + usage
        self.model_calls += completion is not None
        self.span(
            "model_call",
            start_wall,
            duration,
            attempt=self._attempt,
            messages=[{"role": m.get("role"), "content": m.get("content")} for m in messages],
            reply=completion.text if completion is not None else None,
            finish_reason=completion.finish_reason if completion is not None else None,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            estimated=usage.estimated,
            cached=cached,
            temperature=temperature,
            error=f"{type(error).__name__}: {error}" if error is not None else None,
        )

    def finish(self, result: AskResult | None, error: BaseException | None = None) -> AskSummary:
        """Write the ``ask`` record — for an ask that raised too, with the tokens spent until then — and return
        it as an :class:`~ci_magic.core.results.AskSummary` (what ``%ask_history`` lists)."""
        duration = time.monotonic() - self._started
        if result is not None:
            summary = result.summary()
        else:
            summary = AskSummary(
                self.ask_id,
                self.question,
                self.model,
                self.endpoint,
                self.local,
                self.spent,
                self.model_calls,
                duration,
                False,
                f"{type(error).__name__}: {error}" if error is not None else "no result",
            )
        price = price_for(summary.model, summary.local, self.prices)
        attrs: dict[str, Any] = {
            "question": self.question,
            "context_detail": self.detail,
            "model": summary.model,
            "endpoint": summary.endpoint,
            "ok": summary.ok,
            "attempts": summary.attempts,
            "prompt_tokens": summary.usage.prompt_tokens,
            "completion_tokens": summary.usage.completion_tokens,
            "estimated": summary.usage.estimated,
            "cost_usd": cost_usd(summary.usage, price),
            "cost": format_cost(cost_usd(summary.usage, price)),
            "cached_calls": self.cached_calls,
        }
        if error is not None:
            attrs["error"] = f"{type(error).__name__}: {error}"
        self.span("ask", self.started_wall, duration, **attrs)
        if self._otel_root is not None:
            for k, v in attrs.items():
                if v is not None:
                    self._otel_root.set_attribute(f"ci_magic.{k}", attribute_value(v))
            self._otel_root.end(end_time=int((self.started_wall + duration) * 1e9))
        return summary

    def insertion(self, insertion_id: str, anchor_cell_id: str | None, frontend: str) -> None:
        self.span(
            "insertion",
            time.time(),
            0.0,
            insertion_id=insertion_id,
            anchor_cell_id=anchor_cell_id,
            frontend=frontend,
        )


class _TracingProvider(OneReply):
    def __init__(self, inner: Provider, trace: AskTrace) -> None:
        self.inner = inner
        self.trace = trace
        self.model = inner.model
        self.endpoint = inner.endpoint
        self.local = inner.local

    def complete_many(self, request: Request, on_text: OnText | None = None) -> list[Completion]:
        sent = [dict(m) for m in request.messages]  # the loop appends to its list afterwards
        wall, started = time.time(), time.monotonic()
        try:
            completions = self.inner.complete_many(request, on_text)
        except BaseException as exc:
            self.trace.model_call(
                sent, wall, time.monotonic() - started, None, exc, False, request.temperature
            )
            raise
        for completion in completions:  # one span per sample, each with its share of the billed tokens
            self.trace.model_call(
                sent,
                wall,
                time.monotonic() - started,
                completion,
                None,
                completion.cached,
                request.temperature,
            )
        return completions

    def close(self) -> None:
        self.inner.close()
