"""One of each helper: the cache root, the token estimate, provider facts as fields, and no import cycles."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

from ci_magic.context.frames import build_context
from ci_magic.core.paths import cache_root
from ci_magic.core.results import estimate_prompt_tokens, estimate_tokens
from ci_magic.core.settings import Settings
from ci_magic.observe.cost import price_for, price_table
from ci_magic.observe.trace import trace_dir
from ci_magic.providers.cache import default_dir
from ci_magic.providers.openai_compat import OpenAIProvider
from ci_magic.providers.resolve import LocalProvider


def _check_imports() -> object:
    spec = importlib.util.spec_from_file_location("check_imports", ROOT / "scripts" / "check_imports.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_imports"] = module
    spec.loader.exec_module(module)
    return module


def test_one_cache_root_for_replies_traces_and_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CI_MAGIC_CACHE_DIR", "XDG_CACHE_HOME", "CI_MAGIC_TRACE_DIR", "CI_MAGIC_REPLY_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "ci_magic"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "ci_magic"
    assert (default_dir(), trace_dir()) == (cache_root() / "replies", cache_root() / "traces")
    monkeypatch.setenv("CI_MAGIC_CACHE_DIR", str(tmp_path / "all"))
    assert (default_dir(), trace_dir()) == (tmp_path / "all" / "replies", tmp_path / "all" / "traces")
    from ci_magic.local import assemble  # keeps its own copy until the local model's rewrite uses core.paths

    assert assemble.cache_root() == cache_root()
    monkeypatch.setenv("CI_MAGIC_TRACE_DIR", str(tmp_path / "t"))
    monkeypatch.setenv("CI_MAGIC_REPLY_CACHE_DIR", str(tmp_path / "r"))
    assert (default_dir(), trace_dir()) == (tmp_path / "r", tmp_path / "t")


def test_one_token_estimate() -> None:
    assert [estimate_tokens("x" * n) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]
    assert (
        estimate_prompt_tokens([{"role": "user", "content": "abcd"}, {"role": "user", "content": "e"}]) == 2
    )
    ctx = build_context({"df": pd.DataFrame({"a": [1, 2, 3]})})
    assert ctx.tokens == estimate_tokens(ctx.text)  # the data description is counted the same way


def test_providers_report_local_and_close(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback = OpenAIProvider("m", api_key="k", base_url="http://127.0.0.1:9/v1")
    remote = OpenAIProvider("m", api_key="k", base_url="https://api.example.com/v1")
    assert loopback.local and not remote.local and loopback.endpoint == "127.0.0.1:9"
    assert LocalProvider.local is True
    table = price_table()
    assert price_for("m", loopback.local, table) == (0.0, 0.0) and price_for("m", remote.local, table) is None
    loopback.close()
    remote.close()


def test_settings_read_prices_and_require_isolation_from_the_environment() -> None:
    settings = Settings.from_env(
        {"CI_MAGIC_PRICES": '{"a": [1, 2], "b": [3, 4]}', "CI_MAGIC_REQUIRE_ISOLATION": "1"},
        prices={"b": [5, 6]},
    )
    assert settings.prices == {"a": (1.0, 2.0), "b": (5.0, 6.0)} and settings.require_isolation
    assert not Settings.from_env({"CI_MAGIC_REQUIRE_ISOLATION": "0"}).require_isolation
    from ci_magic.core.errors import UsageError

    with pytest.raises(UsageError, match="CI_MAGIC_PRICES must be JSON"):
        Settings.from_env({"CI_MAGIC_PRICES": "cheap"})
    with pytest.raises(UsageError, match=r"Ask\.prices\['x'\]"):
        Settings(prices={"x": "cheap"}, frontend="notebook")
    with pytest.raises(UsageError, match=r"--prices\['x'\]"):
        Settings(prices={"x": [-1, 0]}, frontend="cli")
    assert "%config" in Settings(frontend="notebook").how_to_set("prices", model="m")
    assert "%config" not in Settings(frontend="cli").how_to_set("prices", model="m")


def test_import_cycles_are_found_including_lazy_ones(tmp_path: Path) -> None:
    check = _check_imports()
    pkg = tmp_path / "ci_magic"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")  # lazy: still a cycle
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    (pkg / "d.py").write_text("from . import c\n")
    found = check.cycles(check.graph(pkg))  # type: ignore[attr-defined]
    assert found == [["ci_magic.a", "ci_magic.sub.b", "ci_magic.a"]]
    assert check.main(["--root", str(pkg)]) == 1  # type: ignore[attr-defined]


def test_an_import_against_the_layers_is_named(tmp_path: Path) -> None:
    check = _check_imports()
    pkg = tmp_path / "ci_magic"
    for room in ("core", "engine", "notebook"):
        (pkg / room).mkdir(parents=True)
        (pkg / room / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("from .notebook import magic\n")  # a composition root: anything
    (pkg / "core" / "results.py").write_text(
        "def f():\n    from ..engine import loop\n"
    )  # lazy, still upward
    (pkg / "engine" / "loop.py").write_text("from ..core import results\n")
    (pkg / "notebook" / "magic.py").write_text("from ..engine import loop\n")
    found = check.layer_violations(check.graph(pkg))  # type: ignore[attr-defined]
    assert found == ["ci_magic.core.results -> ci_magic.engine.loop (core may import no other room)"]
    assert check.main(["--root", str(pkg)]) == 1  # type: ignore[attr-defined]


def test_the_real_tree_keeps_its_layers_and_core_imports_no_room() -> None:
    check = _check_imports()
    graph = check.graph(ROOT / "ci_magic")  # type: ignore[attr-defined]
    assert check.layer_violations(graph) == []  # type: ignore[attr-defined]
    core = {t for m, targets in graph.items() if m.startswith("ci_magic.core.") for t in targets}
    assert all(t.startswith("ci_magic.core.") for t in core), core


def test_the_front_ends_and_the_core_are_in_no_import_cycle() -> None:
    check = _check_imports()
    cycles = check.cycles(check.graph(ROOT / "ci_magic"))  # type: ignore[attr-defined]
    # (The context package is being rewritten separately; its own internal cycles are reported by the script.)
    ours = [c for c in cycles if not all(m.startswith("ci_magic.context.") for m in c)]
    assert ours == []


def test_a_sandbox_still_starting_is_waited_for_before_its_view_is_judged() -> None:
    # The race behind a flaky "delete user file" case: a prestarted sandbox still starting when the ask looked for
    # new files counted as none, so the ask ran in a sandbox whose view predates the user's new file.
    import threading

    from ci_magic.engine.executors import ExecutorSlot
    from ci_magic.sandbox.fake import ScriptedExecutor

    gate, made = threading.Event(), []

    def make() -> ScriptedExecutor:
        gate.wait(10)
        made.append(ScriptedExecutor())
        return made[-1]

    slot = ExecutorSlot(make, idle_s=600)
    slot.prestart()
    assert slot.current is None  # not started yet: current does not wait
    threading.Timer(0.2, gate.set).start()
    assert slot.settled() is made[0]  # settled does
    slot.close()
