"""Shared fixtures: the scripted fake model on loopback, real sandbox kernels or the scripted executor, real
IPython shells."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

from ci_magic.core.settings import Limits, Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.extension import load
from ci_magic.notebook.bridge import PROTOCOL_VERSION, Bridge
from ci_magic.providers.fake import FakeModelServer
from ci_magic.sandbox.fake import ScriptedExecutor

ROOT = Path(__file__).resolve().parent.parent


def fenced(code: str, prose: str = "Here is the code:") -> str:
    return f"{prose}\n```python\n{code.strip()}\n```"


def shown(cap: Any) -> str:
    """Everything a captured cell showed as text: streams and the text of displays (notes, summaries)."""
    displays = [str(o.data.get("text/plain", "")) for o in cap.outputs]
    return "\n".join([cap.stdout, cap.stderr, *displays])


@pytest.fixture(autouse=True)
def private_cache_and_traces(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies and traces that tests write stay out of the user's ~/.cache."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("CI_MAGIC_TRACE_DIR", str(root / "traces"))
    monkeypatch.setenv("CI_MAGIC_REPLY_CACHE_DIR", str(root / "replies"))


@pytest.fixture
def fake() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


@pytest.fixture
def settings(fake: FakeModelServer) -> Settings:
    # The answer in words is one more model request per working ask: tests of the loop script only the code
    # replies; tests/engine/test_answer.py turns it on.
    return Settings(
        model="fake-model",
        base_url=fake.base_url,
        api_key="test-key",
        limits=Limits(timeout_s=10),
        answer_in_words=False,
    )


@pytest.fixture
def interpreter(settings: Settings, tmp_path: Path) -> Iterator[Interpreter]:
    with Interpreter(settings, user_dir=tmp_path) as it:
        yield it


@pytest.fixture
def sales() -> pd.DataFrame:
    return pd.read_csv(ROOT / "notebooks" / "sales.csv", parse_dates=["date"])


@pytest.fixture
def shell(
    fake: FakeModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InteractiveShell]:
    """An IPython shell with ci_magic loaded as ``%load_ext`` does: real sandbox kernels run the code."""
    yield from _loaded_shell(fake, tmp_path, monkeypatch, None)


@pytest.fixture
def scripted() -> ScriptedExecutor:
    """What runs the code of :func:`scripted_shell`: script its runs with ``scripted.add(...)``."""
    return ScriptedExecutor()


@pytest.fixture
def scripted_shell(
    fake: FakeModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedExecutor
) -> Iterator[InteractiveShell]:
    """The same shell with the sandbox-side fake: front-end tests without a kernel."""
    yield from _loaded_shell(fake, tmp_path, monkeypatch, lambda: scripted)


def _loaded_shell(
    fake: FakeModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    factory: Callable[[], ScriptedExecutor] | None,
) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("CI_MAGIC_MODEL", "fake-model")
    monkeypatch.setenv("CI_MAGIC_ANSWER_IN_WORDS", "0")  # scripts hold the code replies only
    sh = InteractiveShell.instance()
    if factory is None:
        sh.run_cell("%load_ext ci_magic")
    else:
        load(sh, executor_factory=factory)
        sh.extension_manager.loaded.add("ci_magic")  # so that %unload_ext finds it, as after %load_ext
    sh.run_cell(
        "import pandas as pd\nsales = pd.DataFrame({'month': [1, 1, 2], 'revenue': [10.0, 20.0, 30.0]})"
    )
    yield sh
    sh.run_cell("%unload_ext ci_magic")
    sh.reset(new_session=False)
    sh.rl_next_input = None


def fingerprint(sh: InteractiveShell, directory: Path) -> dict[str, Any]:
    """What a user would notice changing: names, frame contents, scalar values, files."""
    state: dict[str, Any] = {}
    for name, value in sh.user_ns.items():
        if name.startswith("_") or name in ("In", "Out", "exit", "quit", "get_ipython"):
            continue
        if isinstance(value, pd.DataFrame | pd.Series):
            state[name] = int(pd.util.hash_pandas_object(value).sum())
        elif isinstance(value, int | float | str):
            state[name] = value
        else:
            state[name] = type(value).__name__
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir() if p.is_file()}
    return {"ns": state, "files": files}


# -- the panel's side of the comm (tests of the bridge, the session and isolation warnings) -----------------------


class RecordingComm:
    """A frontend's comm as the kernel sees it; ``sent`` holds what the frontend would receive."""

    def __init__(self, comm_id: str = "comm-1") -> None:
        self.comm_id = comm_id
        self.sent: list[dict[str, Any]] = []
        self.closed = False
        self._on_msg: Callable[[dict[str, Any]], None] | None = None
        self._on_close: Callable[[dict[str, Any]], None] | None = None

    def send(self, data: dict[str, Any]) -> None:
        self.sent.append(json.loads(json.dumps(data)))  # what cannot cross the wire fails here too

    def on_msg(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._on_msg = callback

    def on_close(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._on_close = callback

    def close(self) -> None:
        self.closed = True

    def deliver(self, data: dict[str, Any]) -> None:
        assert self._on_msg is not None
        self._on_msg({"content": {"data": data}})

    def frontend_closes(self) -> None:
        assert self._on_close is not None
        self._on_close({"content": {"data": {}}})

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == kind]


def connect(bridge: Bridge, comm_id: str = "comm-1") -> RecordingComm:
    comm = RecordingComm(comm_id)
    bridge.on_open(comm, {"content": {"data": {"v": PROTOCOL_VERSION, "type": "hello"}}})
    return comm
