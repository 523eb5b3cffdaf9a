"""Budget, price table, traces (spans, no key, privacy), OpenTelemetry, the replay cache (bound, --fresh)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import fenced
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from ci_magic.context.frames import build_context
from ci_magic.core.errors import BudgetExceeded, UsageError
from ci_magic.core.results import Usage
from ci_magic.core.settings import Settings
from ci_magic.engine import prompts
from ci_magic.engine.interpreter import Interpreter
from ci_magic.observe import trace
from ci_magic.observe.cost import Budget, BudgetLimit, parse_budget, price_for, price_table
from ci_magic.providers.cache import ReplyCache
from ci_magic.providers.fake import FakeModelServer, Turn

KEY = "sk-MARKER-accounting-91c2"
SECRET_VALUE = "ZEBRA-7734"


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_MAGIC_TRACE_DIR", str(tmp_path / "traces"))
    monkeypatch.setenv("CI_MAGIC_REPLY_CACHE_DIR", str(tmp_path / "replies"))


def spans(tmp_path: Path) -> list[dict[str, object]]:
    return [
        json.loads(line) for f in (tmp_path / "traces").glob("*.jsonl") for line in f.read_text().splitlines()
    ]


# -- prices and budgets (no kernel) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("5000", BudgetLimit(tokens=5000)),
        ("5k", BudgetLimit(tokens=5000)),
        ("1200tok", BudgetLimit(tokens=1200)),
        ("$0.05", BudgetLimit(usd=0.05)),
        ("0.05$", BudgetLimit(usd=0.05)),
        ("2usd", BudgetLimit(usd=2.0)),
        ("0.5", BudgetLimit(usd=0.5)),
    ],
)
def test_parse_budget(text: str, limit: BudgetLimit) -> None:
    assert parse_budget(text) == limit


@pytest.mark.parametrize("text", ["lots", "-5", "0", "$0", "5 euros"])
def test_bad_budget_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--budget"):
        parse_budget(text)


def test_price_table() -> None:
    table = price_table({"my-model": [1, 2]})
    assert price_for("gpt-4o-mini", False, table) == (0.15, 0.60)
    assert price_for("gpt-4o-mini-2024-07-18", False, table) == (0.15, 0.60)  # dated snapshot
    assert price_for("gpt-4o-2024-08-06", False, table) == (2.50, 10.00)  # not gpt-4o-mini
    assert price_for("my-model", False, table) == (1.0, 2.0)
    assert price_for("qwen", True, table) == (0.0, 0.0)  # a local provider (embedded, loopback) costs nothing
    assert price_for("my-model", True, table) == (1.0, 2.0)  # ... unless the table names it
    assert price_for("unknown", False, table) is None
    with pytest.raises(UsageError, match="prices"):
        price_table({"x": "cheap"})
    with pytest.raises(UsageError, match="no price"):
        Budget(BudgetLimit(usd=1.0), None, "unknown")


def test_budget_checks_before_and_after_a_request() -> None:
    budget = Budget(BudgetLimit(tokens=1000), None)
    budget(Usage(), [{"role": "user", "content": "x" * 400}])  # ~100 tokens: fine
    budget(Usage(300, 200), None)
    with pytest.raises(BudgetExceeded, match="would be exceeded by the next model request"):
        budget(Usage(300, 200), [{"role": "user", "content": "x" * 1600}])  # 500 + 400 + 200 > 1000
    with pytest.raises(BudgetExceeded, match="was used up"):
        budget(Usage(900, 200), None)


# -- against the fake model and a real sandbox -----------------------------------------------------------------


def test_budget_stops_the_loop(fake: FakeModelServer, interpreter: Interpreter, tmp_path: Path) -> None:
    fake.add(Turn(fenced("raise ValueError('no')"), usage=(100, 50)))
    first = sum(len(m["content"]) for m in prompts.initial_messages("q", interpreter.context())) // 4
    # Room for the first request (its estimate plus the 150 tokens it reports), not for the longer repair.
    limit = first + 160
    with pytest.raises(BudgetExceeded, match=f"budget of {limit:,} tokens would be exceeded"):
        interpreter.ask("q", budget=Budget(BudgetLimit(tokens=limit), None))
    assert len(fake.requests) == 1  # the repair request was never sent
    ask = [s for s in spans(tmp_path) if s["name"] == "ask"][-1]
    assert "BudgetExceeded" in str(ask["attributes"]["error"])  # type: ignore[index]
    # What the stopped ask spent is on its record: the trace's and the interpreter's.
    attributes = ask["attributes"]
    assert (attributes["prompt_tokens"], attributes["completion_tokens"]) == (100, 50)  # type: ignore[index]
    assert attributes["cost_usd"] == 0.0 and attributes["attempts"] == 1  # type: ignore[index]  # loopback: free
    stopped = interpreter.asks[-1]
    assert stopped.error is not None and stopped.error.startswith("BudgetExceeded") and not stopped.ok
    assert stopped.usage.total_tokens == 150 and stopped.ask_id == ask["ask_id"]
    # Dollars: the first reply alone (2,000 tokens at $1/1M = $0.002) passes $0.001; its code is not run.
    fake.add(Turn(fenced("print('ran')"), usage=(1000, 1000)))
    with pytest.raises(BudgetExceeded, match="was used up"):
        interpreter.ask("q2", budget=Budget(BudgetLimit(usd=0.001), (1.0, 1.0)))
    assert len(fake.requests) == 2


def test_trace_spans_privacy_no_key_and_otel(fake: FakeModelServer, tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.use_tracer_provider(provider)
    frames = {"animals": pd.DataFrame({"name": [SECRET_VALUE, "LION-1"], "age": [3, 5]})}
    settings = Settings(model="fake-model", base_url=fake.base_url, api_key=KEY, context_detail="schema")
    try:
        with Interpreter(settings, user_dir=tmp_path) as it:
            fake.add(fenced("print(animals)\nanimals['nope']"), fenced("print(animals.to_string())"))
            result = it.ask("Show the animals", frames)
            assert result.ok and SECRET_VALUE in result.outputs[0]["text"]
            names = [s["name"] for s in spans(tmp_path) if s["ask_id"] == it.ledger.last.ask_id]  # type: ignore[union-attr]
            assert names == ["context", "model_call", "execution", "model_call", "execution", "ask"]
            # "schema": the value reaches neither the model (context, repair feedback, follow-up) nor the trace.
            assert SECRET_VALUE not in json.dumps(fake.requests)
            text = "".join(f.read_text() for f in (tmp_path / "traces").glob("*.jsonl"))
            assert SECRET_VALUE not in text and KEY not in text
            calls = [s for s in spans(tmp_path) if s["name"] == "model_call"]
            assert calls[-1]["attributes"]["prompt_tokens"] > 0  # type: ignore[index,operator]
            assert calls[-1]["attributes"]["messages"][-1]["role"] == "user"  # type: ignore[index]
            # "samples": examples are sent and outputs are excerpted in the trace.
            it.reconfigure(settings.with_(context_detail="samples"))
            fake.add(fenced("print(animals.to_string())"))
            it.ask("Again", frames)
            assert SECRET_VALUE in json.dumps(fake.requests[-1])
            assert SECRET_VALUE in "".join(f.read_text() for f in (tmp_path / "traces").glob("*.jsonl"))
    finally:
        trace.use_tracer_provider(None)
    otel = exporter.get_finished_spans()
    assert {s.name for s in otel} >= {"ci_magic.ask", "ci_magic.model_call", "ci_magic.execution"}
    root = next(s for s in otel if s.name == "ci_magic.ask")
    assert all(
        s.parent is not None and s.parent.span_id == root.context.span_id
        for s in otel
        if s is not root and s.context.trace_id == root.context.trace_id
    )


def test_reply_cache_replays_and_fresh_bypasses(fake: FakeModelServer, tmp_path: Path) -> None:
    settings = Settings(
        model="fake-model", base_url=fake.base_url, api_key="k", reply_cache=True, answer_in_words=False
    )
    fake.add(fenced("x = 6 * 7\nprint(x)"), fenced("print('fresh')"))
    (tmp_path / "work").mkdir()  # the working folder: ci_magic's traces (in tmp_path) are not its files
    with Interpreter(settings, user_dir=tmp_path / "work") as it:
        first = it.ask("What is six times seven?")
        it.ledger.forget_turns()  # as after a kernel restart: the same conversation
        second = it.ask("What is six times seven?")
        assert len(fake.requests) == 1 and second.code == first.code and second.outputs == first.outputs
        assert second.usage.total_tokens == 0  # a replayed reply costs nothing
        assert [s["attributes"]["cached"] for s in spans(tmp_path) if s["name"] == "model_call"] == [
            False,
            True,
        ]  # type: ignore[index]
        it.ledger.forget_turns()
        third = it.ask("What is six times seven?", fresh=True)
        assert len(fake.requests) == 2 and "fresh" in third.outputs[0]["text"]
        it.ledger.forget_turns()
        assert it.ask("What is six times seven?").code == third.code  # the fresh reply replaced the old one
        assert len(fake.requests) == 2


# -- no kernel ---------------------------------------------------------------------------------------------------


def test_cache_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    cache = ReplyCache(tmp_path / "c", max_mb=3 * 1100 / (1024 * 1024))  # room for three ~1 KB entries
    for i in range(3):
        cache.put(f"{i:02d}" + "a" * 62, {"text": "x" * 1000})
        path = cache._path(f"{i:02d}" + "a" * 62)
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))
    assert cache.get("00" + "a" * 62) is not None  # a hit: entry 0 becomes the most recently used
    cache.put("03" + "a" * 62, {"text": "x" * 1000})
    kept = sorted(p.name[:2] for p in cache.entries())
    assert kept == ["00", "02", "03"] and cache.size() <= cache.max_bytes


def test_context_detail_levels() -> None:
    frames = {"df": pd.DataFrame({"name": [SECRET_VALUE, "b"], "n": [1, 9]})}
    samples = build_context(frames, level="samples").text
    stats = build_context(frames, level="stats").text
    schema = build_context(frames, level="schema").text
    assert SECRET_VALUE in samples
    assert SECRET_VALUE not in stats and "range 1 … 9" in stats and "2 distinct" in stats
    assert SECRET_VALUE not in schema and "range" not in schema and "'n': int64" in schema


def test_magic_budget_history_and_privacy_setting(shell: InteractiveShell, fake: FakeModelServer) -> None:
    fake.add(Turn(fenced("print(sales.revenue.sum())"), usage=(1000, 1000)))
    with capture_output() as cap:
        shell.run_cell('%config Ask.prices = {"fake-model": [1.0, 1.0]}')
        result = shell.run_cell("%%ask --budget $0.001\nTotal?")  # $ must not be eaten by IPython
    assert not result.success and "budget of $0.0010 was used up" in cap.stdout + cap.stderr
    assert "Traceback" not in cap.stdout + cap.stderr
    fake.add(fenced("print(sales.revenue.sum())"))
    try:
        with capture_output() as cap:
            shell.run_cell("%config Ask.context_detail = 'schema'")
            shell.run_cell("%%ask --fresh\nTotal revenue?")
            shell.run_cell("%ask_history")
    finally:  # the shell is a process-wide singleton: its config outlives this test
        shell.run_cell("%config Ask.context_detail = 'samples'")
        shell.run_cell("%config Ask.prices = {}")
    assert "60.0" in cap.stdout and "Total revenue?" in cap.stdout and "total: 2 ask(s)" in cap.stdout
    # The ask stopped by its budget is on the record, with the tokens and money it spent.
    [stopped] = [line for line in cap.stdout.splitlines() if line.startswith("1 ")]
    assert "Total?" in stopped and "BudgetExceeded" in stopped and "1,000" in stopped and "$0.0020" in stopped
    assert "e.g." not in fake.requests[-1]["messages"][-1]["content"]
