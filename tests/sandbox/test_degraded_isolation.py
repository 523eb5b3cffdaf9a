"""A sandbox that cannot isolate is never silent: every summary says so, and ``require_isolation`` refuses.

The sandbox is built with ``PATH`` set to an empty folder, so its isolation tool cannot be found (the kernel is
started with an absolute ``sys.executable`` and still starts). The sandbox module caches its probe per process:
each test starts from an empty cache and leaves the real one in place. Only ``Sandbox.isolation_report`` and
``Sandbox.isolation_warnings()`` are read, whichever tool the sandbox probes for.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import connect, fenced, shown
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from ci_magic.core.errors import SandboxError
from ci_magic.core.settings import Limits, Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.extension import session_of
from ci_magic.notebook.bridge import Bridge
from ci_magic.providers.fake import FakeModelServer
from ci_magic.sandbox import isolation


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    if isinstance(getattr(isolation, "_probe_cache", None), dict):
        monkeypatch.setattr(
            isolation, "_probe_cache", {}
        )  # probe again, here; the real cache comes back after
    yield empty


def unisolated_warnings(interpreter: Interpreter) -> list[str]:
    sandbox = interpreter.sandbox
    if sandbox.isolation_report.get("isolated"):
        pytest.skip("the sandbox found its isolation tool without PATH")
    warnings = sandbox.isolation_warnings()
    assert warnings, "a sandbox that is not isolated must say so"
    return warnings


def test_every_result_carries_the_warning_and_require_isolation_refuses(
    empty_path: Path, fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    fake.add(fenced("print(6 * 7)"))
    with Interpreter(settings, user_dir=tmp_path) as it:
        expected = unisolated_warnings(it)
        result = it.ask("q")
        assert result.ok and result.warnings[: len(expected)] == expected
        assert result.to_json()["warnings"][: len(expected)] == expected
    with Interpreter(settings.with_(require_isolation=True), user_dir=tmp_path) as it:
        with pytest.raises(SandboxError, match="Isolation is required") as refused:
            it.ask("q")
        assert expected[0].rstrip(".") in str(refused.value) and "Settings(require_isolation=False)" in str(
            refused.value
        )
        assert it.asks[-1].error is not None and it.asks[-1].error.startswith("SandboxError")
    assert len(fake.requests) == 1  # the refused ask never reached the model, so no code ran either


def run_cli(
    args: list[str], fake: FakeModelServer, cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "CI_MAGIC_REQUIRE"))}
    environ.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="k", CI_MAGIC_ANSWER_IN_WORDS="0", **env)
    return subprocess.run(
        [sys.executable, "-m", "ci_magic.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
        timeout=120,
    )


def test_cli_summary_warns_and_require_isolation_refuses(
    empty_path: Path, fake: FakeModelServer, tmp_path: Path
) -> None:
    fake.add(fenced("print(6 * 7)"))
    proc = run_cli(["ask", "q"], fake, tmp_path, PATH=str(empty_path))
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout[proc.stdout.index("succeeded after") :]
    warnings = [line for line in summary.splitlines() if line.startswith("warning: ")]
    if not warnings:
        pytest.skip("the sandbox found its isolation tool without PATH")
    assert "isolation" in warnings[0]
    for args, env in (
        (["ask", "--require-isolation", "q"], {}),
        (["ask", "q"], {"CI_MAGIC_REQUIRE_ISOLATION": "1"}),
    ):
        refused = run_cli(args, fake, tmp_path, PATH=str(empty_path), **env)
        assert refused.returncode == 1 and "Isolation is required" in refused.stderr, refused.stderr
        assert "--require-isolation" in refused.stderr and "%config" not in refused.stderr
    assert len(fake.requests) == 1


def test_magic_and_panel_show_the_warning_and_config_refuses(
    empty_path: Path, shell: InteractiveShell, fake: FakeModelServer
) -> None:
    session = session_of(shell)
    assert session is not None
    fake.add(fenced("print(6 * 7)"), fenced("print(7 * 6)"))
    bridge = Bridge(shell, session)
    bridge.attach()
    comm = connect(bridge)
    try:
        with capture_output() as cap:
            # Other limits: a new sandbox, started here without the isolation tool.
            shell.run_cell(f"%config Ask.memory_mb = {Limits().memory_mb // 2}")
            assert shell.run_cell("%%ask\nq").success
            comm.deliver({"v": 1, "type": "ask", "ask_id": "p", "prompt": "from the panel", "frames": None})
            shell.run_cell("%config Ask.require_isolation = True")
            refused = shell.run_cell("%%ask\nrefused")
        assert session.interpreter is not None
        expected = unisolated_warnings(session.interpreter)
    finally:
        bridge.close()
        shell.run_cell(f"%config Ask.memory_mb = {Limits().memory_mb}")
        shell.run_cell("%config Ask.require_isolation = False")
    assert f"ci_magic: warning: {expected[0]}" in shown(cap)
    [result] = comm.of_type("result")
    assert expected[0] in result["notes"]
    assert not refused.success and "Isolation is required" in cap.stdout + cap.stderr
    assert "%config Ask.require_isolation = False" in cap.stdout + cap.stderr
    assert "Traceback" not in cap.stdout + cap.stderr
    assert len(fake.requests) == 2


def test_cli_passes_the_environment_flag_through(tmp_path: Path) -> None:
    # An invalid value is a usage error before anything starts.
    proc = subprocess.run(
        [sys.executable, "-m", "ci_magic.cli", "ask", "q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "CI_MAGIC_REQUIRE_ISOLATION": "maybe"},
        timeout=60,
    )
    assert proc.returncode == 2 and "CI_MAGIC_REQUIRE_ISOLATION must be 1 or 0" in proc.stderr
