"""Sandbox sessions like Code Interpreter's (idle expiry, %ask_reset), and admin-wide settings from an IPython
profile (docs/deploy.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import fenced

import ci_magic.engine.executors as executors
from ci_magic.core.settings import Settings
from ci_magic.engine.executors import ExecutorSlot
from ci_magic.engine.interpreter import Interpreter
from ci_magic.providers.fake import FakeModelServer
from ci_magic.sandbox.fake import ScriptedExecutor


def test_an_idle_sandbox_is_shut_down_and_the_next_ask_says_so(
    fake: FakeModelServer, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executors, "IDLE_POLL_S", 0.05)
    executor = ScriptedExecutor(["", "1\n"])
    fake.add(fenced("x = 1"), fenced("x = 1\nprint(x)"))
    with Interpreter(settings.with_(idle_minutes=0.005), executor=executor, user_dir=tmp_path) as it:
        assert it.ask("make x").ok
        deadline = time.monotonic() + 10
        while executor.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert executor.restarts == 1  # ended while idle (an executor of our own would be closed)
        assert it.ask("print x").ok
    last = fake.requests[-1]["messages"][-1]["content"]
    assert "the sandbox was idle for a while and has been restarted" in last.lower()


def test_an_idle_local_sandbox_is_closed(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executors, "IDLE_POLL_S", 0.05)
    slot = ExecutorSlot(lambda: ScriptedExecutor(), idle_s=0.2)
    first = slot.get()
    assert isinstance(first, ScriptedExecutor)
    deadline = time.monotonic() + 10
    while slot.current is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.closed and slot.expired and slot.get() is not first
    slot.close()


def test_limits_set_while_the_sandbox_starts_in_the_background_apply_to_it() -> None:
    # %load_ext prestarts the sandbox with the defaults (60 s); a first `%%ask --timeout 8` arrives while it is
    # still starting. The 8 s must reach that sandbox, not be dropped because there was no sandbox yet.
    import threading

    from ci_magic.core.settings import Limits

    gate = threading.Event()

    def make() -> ScriptedExecutor:
        gate.wait(10)
        return ScriptedExecutor()

    slot = ExecutorSlot(make, idle_s=600)
    slot.prestart()
    slot.set_limits(Limits(timeout_s=8))
    gate.set()
    executor = slot.get()
    assert isinstance(executor, ScriptedExecutor) and executor.limits == Limits(timeout_s=8)
    slot.drop()  # a new sandbox is made from its own settings, not from the dropped one's limits
    fresh = slot.get()
    assert isinstance(fresh, ScriptedExecutor) and fresh.limits is None
    slot.close()


def test_ask_reset_starts_over(shell: object, fake: FakeModelServer) -> None:
    from IPython.utils.capture import capture_output

    from ci_magic.extension import session_of

    fake.add(fenced("y = 2\nprint(y)"), fenced("print('fresh')"))
    with capture_output():
        assert shell.run_cell("%%ask\nmake y").success  # type: ignore[attr-defined]
        assert shell.run_cell("%ask_reset").success  # type: ignore[attr-defined]
        assert shell.run_cell("%%ask\nanother").success  # type: ignore[attr-defined]
    session = session_of(shell)
    assert session is not None and session.interpreter is not None
    # The follow-up does not carry the earlier question: the reset forgot it, and the sandbox is new.
    assert all("make y" not in m["content"] for m in fake.requests[1]["messages"])


def test_admin_settings_in_an_ipython_profile_are_honoured(tmp_path: Path) -> None:
    """What docs/deploy.md tells admins to do: /etc/ipython/ipython_config.py or a profile's config file."""
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text(
        "c.InteractiveShellApp.extensions = ['ci_magic']\n"
        "c.Ask.model = 'team-model'\n"
        "c.Ask.base_url = 'http://127.0.0.1:9/v1'\n"
        "c.Ask.require_isolation = True\n"
        "c.Ask.gateway_url = 'http://127.0.0.1:8888'\n"
        "c.Ask.prestart = False\n"
        "c.Ask.idle_minutes = 15.0\n"
    )
    probe = (
        "from ci_magic.extension import session_of\n"
        "import json\n"
        "s = session_of(get_ipython()).settings()\n"
        "print('SETTINGS ' + json.dumps({'model': s.model, 'base_url': s.base_url, 'require': s.require_isolation,"
        " 'gateway': s.gateway_url, 'idle': s.idle_minutes}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "CI_MAGIC"))}
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    proc = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("SETTINGS ")), None)
    assert line is not None, proc.stdout + proc.stderr
    assert json.loads(line[len("SETTINGS ") :]) == {
        "model": "team-model",
        "base_url": "http://127.0.0.1:9/v1",
        "require": True,
        "gateway": "http://127.0.0.1:8888",
        "idle": 15.0,
    }
