"""Packages at run time, pinned: code in the sandbox installs a package from an index served on loopback (a
wheel this test builds), through the egress proxy, into the sandbox's own layer; the pin (name==version, sha256)
is recorded, exported, and ``verify`` installs exactly that before it re-runs the export and reproduces it."""

from __future__ import annotations

import base64
import hashlib
import http.server
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import fenced

from ci_magic.core.results import Installed
from ci_magic.core.settings import Limits, Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.notebook.cells import cells_for
from ci_magic.providers.fake import FakeModelServer
from ci_magic.reproduce.environment import EXPORT_KEY
from ci_magic.reproduce.export import export_notebook
from ci_magic.reproduce.verify import verify
from ci_magic.sandbox import Sandbox, isolation

WHEEL = "cimagic_tiny-1.0-py3-none-any.whl"


def build_wheel(folder: Path) -> tuple[Path, str]:
    """A one-module pure-Python wheel (``cimagic_tiny.VALUE == 42``) and its sha256."""
    files = {
        "cimagic_tiny/__init__.py": b"VALUE = 42\n",
        "cimagic_tiny-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: cimagic-tiny\nVersion: 1.0\n",
        "cimagic_tiny-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("cimagic_tiny-1.0.dist-info/RECORD,,")
    path = folder / WHEEL
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("cimagic_tiny-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """A PEP 503 index on 127.0.0.1 serving the wheel: (port, the wheel's sha256)."""
    wheel, sha = build_wheel(tmp_path_factory.mktemp("index"))
    page = f'<a href="/files/{WHEEL}#sha256={sha}">{WHEEL}</a>'.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = (
                page
                if self.path.rstrip("/") == "/simple/cimagic-tiny"
                else wheel.read_bytes()
                if self.path == f"/files/{WHEEL}"
                else None
            )
            self.send_response(200 if body is not None else 404)
            html = self.path.startswith("/simple")
            self.send_header("Content-Type", "text/html" if html else "application/octet-stream")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], sha
    server.shutdown()
    server.server_close()


def network(port: int) -> dict[str, str]:
    """The index by name ('localhost', whose loopback address a rule names: never reached otherwise)."""
    return {
        "CI_MAGIC_ALLOW_HOSTS": f"localhost 127.0.0.1:{port}",
        "CI_MAGIC_PACKAGE_INDEX": f"http://localhost:{port}/simple",
    }


@pytest.fixture(autouse=True)
def isolated() -> None:
    if isolation.probe().problem:
        pytest.skip(f"no isolation on this machine: {isolation.probe().problem}")


def test_code_installs_a_package_into_the_sandbox_only_and_it_is_pinned(
    index: tuple[int, str], tmp_path: Path
) -> None:
    port, sha = index
    limits = Limits(
        timeout_s=120,
        allow_hosts=("localhost", f"127.0.0.1:{port}"),
        package_index=f"http://localhost:{port}/simple",
    )
    with Sandbox(limits, tmp_path) as sandbox:
        result = sandbox.run(
            "%pip install -q cimagic-tiny\nimport cimagic_tiny\nprint('value', cimagic_tiny.VALUE)"
        )
        assert "value 42" in result.stdout(), (result.stdout(), result.error_value)
        assert result.installed == [Installed("cimagic-tiny", "1.0", sha, result.installed[0].url)]
        assert sandbox.run("import cimagic_tiny; print(cimagic_tiny.VALUE)").stdout().strip() == "42"
    with pytest.raises(ImportError):  # never into the user's environment
        __import__("cimagic_tiny")
    assert not any("cimagic_tiny" in p for p in sys.path)


def test_without_the_index_host_allowed_nothing_is_installed(tmp_path: Path) -> None:
    with Sandbox(Limits(timeout_s=120, allow_hosts=("data.example.org",)), tmp_path) as sandbox:
        result = sandbox.run("%pip install -q --retries 0 --timeout 5 cimagic-tiny")
    assert result.installed == []
    assert any(u.host == "pypi.org" and not u.allowed for u in result.network), result.network


def test_the_export_lists_the_pin_and_verify_installs_it_and_reproduces(
    index: tuple[int, str],
    fake: FakeModelServer,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, sha = index
    for name, value in network(port).items():
        monkeypatch.setenv(name, value)
    code = "%pip install -q cimagic-tiny\nimport cimagic_tiny\nprint('value', cimagic_tiny.VALUE)"
    fake.add(fenced(code))
    asking = settings.with_overrides(
        {
            "limits.allow_hosts": ("localhost", f"127.0.0.1:{port}"),
            "limits.package_index": f"http://localhost:{port}/simple",
            "limits.timeout_s": 120,
        }
    )
    with Interpreter(asking, user_dir=tmp_path) as it:
        result = it.ask("Use cimagic_tiny to print its value")
    assert result.ok and [p.name for p in result.installed] == ["cimagic-tiny"]
    insertion = cells_for(result, "ask-cell")
    ask = nbformat.v4.new_code_cell("%%ask\nUse cimagic_tiny to print its value")
    ask.id = "ask-cell"
    nb = export_notebook(nbformat.v4.new_notebook(cells=[ask, insertion.code_cell]), tmp_path)
    env = nb.cells[0]
    assert env.metadata[EXPORT_KEY]["installed"][0]["sha256"] == sha
    assert "RECORDED_INSTALLED = {'cimagic-tiny': '1.0'}" in env.source
    nbformat.write(nb, tmp_path / "export.ipynb")
    mismatches, notes = verify(tmp_path / "export.ipynb", timeout=120)
    assert mismatches == [], (mismatches, notes)
