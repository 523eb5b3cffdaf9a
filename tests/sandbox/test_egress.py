"""Network by name: the sandbox (network namespace without a route out) reaches allowed hosts only, through the
parent's egress proxy. Everything here is on loopback: local HTTP and HTTPS servers under test host names, the
proxy's resolver mapped to them (``MappedResolver``); nothing contacts an outside address."""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import fenced

from ci_magic.core.errors import UsageError
from ci_magic.core.hosts import Policy
from ci_magic.core.settings import Limits, Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.notebook.cells import cells_for
from ci_magic.providers.fake import FakeModelServer
from ci_magic.sandbox import Sandbox, isolation
from ci_magic.sandbox.egress.forward import pump
from ci_magic.sandbox.egress.proxy import MappedResolver

BIG = 3 * 1024 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            port = getattr(self.server, "server_port", 0)
            self.send_header("Location", f"http://elsewhere.test:{port}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"x" * BIG if self.path == "/big" else f"hello from {self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Servers:
    http: int
    https: int
    other: int  # a loopback service no rule names (as the host's model server or Jupyter would be)


def _serve(server: http.server.ThreadingHTTPServer) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=secure.test", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    for s in (plain, secure, other):
        _serve(s)
    yield Servers(plain.server_address[1], secure.server_address[1], other.server_address[1])
    for s in (plain, secure, other):
        s.shutdown()
        s.server_close()


NAMES = ("data.test", "secure.test", "rebind.test", "elsewhere.test", "other.test")
FETCH = """\
import ssl, urllib.request
def get(url):
    try:
        with urllib.request.urlopen(url, timeout=15, context=ssl._create_unverified_context()) as r:
            return f"{r.status} {r.read()[:40].decode()}"
    except Exception as e:
        return f"failed {type(e).__name__}: {str(e)[:160]}"
"""


@pytest.fixture
def sandbox(servers: Servers, tmp_path: Path) -> Iterator[Sandbox]:
    resolver = MappedResolver({name: ["127.0.0.1"] for name in NAMES})
    rules = (
        "data.test",
        "secure.test",
        "rebind.test",
        f"127.0.0.1:{servers.http}",
        f"127.0.0.1:{servers.https}",
    )
    with Sandbox(Limits(timeout_s=60, allow_hosts=rules), tmp_path, resolver=resolver) as sb:
        if not sb.isolated:
            pytest.skip(f"no isolation on this machine: {sb.probe.problem}")
        yield sb


def test_allowed_names_are_reached_and_everything_else_is_refused_and_listed(
    sandbox: Sandbox, servers: Servers
) -> None:
    h, s, o = servers.http, servers.https, servers.other
    code = FETCH + (
        f"print('allowed http ->', get('http://data.test:{h}/'))\n"
        f"print('allowed https ->', get('https://secure.test:{s}/'))\n"
        f"print('unlisted ->', get('http://other.test:{h}/'))\n"
        f"print('ip literal ->', get('http://127.0.0.1:{h}/'))\n"
        f"print('rebinding ->', get('http://rebind.test:{o}/'))\n"
        f"print('redirect ->', get('http://data.test:{h}/redirect'))\n"
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {h}), timeout=3); print('direct -> reached')\n"
        "except OSError as e:\n"
        "    print('direct -> failed', type(e).__name__)\n"
    )
    result = sandbox.run(code)
    out = result.stdout()
    lines = dict(line.split(" -> ", 1) for line in out.splitlines() if " -> " in line)
    assert lines["allowed http"] == f"200 hello from data.test:{h}", out
    assert lines["allowed https"].startswith("200 hello from secure.test"), out
    for refused in ("unlisted", "ip literal", "rebinding", "redirect"):
        assert lines[refused].startswith("failed") and "403" in lines[refused], (refused, out)
    assert lines["direct"].startswith("failed"), out  # no route out but the proxy
    uses = {(u.host, u.port): u for u in result.network}
    assert uses[("data.test", h)].allowed and uses[("data.test", h)].received > 0
    assert uses[("secure.test", s)].allowed and uses[("secure.test", s)].received > 0
    assert "not in the allowed hosts" in uses[("other.test", h)].reason
    assert "by name only" in uses[("127.0.0.1", h)].reason
    assert "not a public address" in uses[("rebind.test", o)].reason
    assert not uses[("elsewhere.test", h)].allowed  # where the redirect pointed


def test_hostile_code_cannot_use_the_socket_to_go_further_or_exhaust_the_parent(
    sandbox: Sandbox, servers: Servers
) -> None:
    h, o = servers.http, servers.other
    code = (
        "import os, socket, time\n"
        "def raw(request):\n"
        "    s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect('/sandbox/egress.sock')\n"
        "    s.sendall(request); answer = s.recv(200); s.close(); return answer.split(b'\\r\\n')[0].decode()\n"
        f"print('connect ip ->', raw(b'CONNECT 127.0.0.1:{o} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'))\n"
        f"print('connect name ->', raw(b'CONNECT other.test:{o} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'))\n"
        "print('garbage ->', raw(b'\\x00\\x01 nonsense\\r\\n\\r\\n'))\n"
        "try:\n    os.remove('/sandbox/egress.sock'); print('remove -> done')\n"
        "except OSError as e:\n    print('remove -> failed', e.errno)\n"
        "idle = []\n"
        "for _ in range(40):\n"
        "    s = socket.socket(socket.AF_UNIX); s.connect('/sandbox/egress.sock'); idle.append(s)\n"
        "time.sleep(0.5)\n"
        "busy = 0\n"
        "for s in idle[-8:]:\n"
        "    s.settimeout(5)\n"
        "    try:\n        busy += s.recv(100).startswith(b'HTTP/1.1 503')\n"
        "    except OSError:\n        pass\n"
        "print('over the limit ->', busy)\n"
        "for s in idle: s.close()\n"
        "time.sleep(0.5)\n"
        f"print('after ->', raw(b'GET http://data.test:{h}/ HTTP/1.1\\r\\nHost: data.test:{h}\\r\\n\\r\\n'))\n"
        f"print('budget ->', len(__import__('urllib.request').request.urlopen('http://data.test:{h}/big').read()))\n"
    )
    # A small budget for this run: the 3 MB download is cut after 1 MB.
    sandbox.set_limits(Limits(timeout_s=60, allow_hosts=sandbox.limits.allow_hosts, network_budget_mb=1))
    result = sandbox.run(code)
    out = result.stdout() + (result.error_value or "")
    lines = dict(line.split(" -> ", 1) for line in out.splitlines() if " -> " in line)
    assert lines["connect ip"].startswith("HTTP/1.1 403"), out
    assert lines["connect name"].startswith("HTTP/1.1 403"), out
    assert lines["garbage"].startswith("HTTP/1.1 400"), out
    assert lines["remove"].startswith("failed"), out  # a read-only bind: the way out cannot be replaced
    assert int(lines["over the limit"]) == 8, out  # 32 at once; the rest answered 503 at once
    assert " 200 " in lines["after"], out
    assert "budget" not in lines or int(lines["budget"]) < BIG, out
    spent = sum(u.sent + u.received for u in result.network)
    assert spent <= 1024 * 1024, spent
    assert any("budget" in u.reason for u in result.network), result.network


def test_rules_are_checked_before_anything_starts() -> None:
    with pytest.raises(UsageError, match="not a host rule"):
        Limits(allow_hosts=("http://data.test/",))
    policy = Policy.parse(["*.example.com:443", "data.test"])
    assert policy.refuse_name("a.example.com", 443) is None
    assert policy.refuse_name("example.com", 443) is not None  # a wildcard is for subdomains only
    assert policy.refuse_name("a.example.com", 80) is not None
    assert policy.refuse_name("DATA.test.", 80) is None
    assert policy.refuse_name("[::1]", 80) is not None


def test_a_refused_host_is_told_to_the_model_and_listed_in_the_notes(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    if isolation.probe().problem:
        pytest.skip(f"no isolation on this machine: {isolation.probe().problem}")
    fetch = "import urllib.request\nprint(urllib.request.urlopen('http://not-listed.test/data.csv').read())"
    fake.add(fenced(fetch), fenced("print('used the data I have')"))
    allowed = settings.with_overrides({"limits.allow_hosts": ("data.example.org",)})
    with Interpreter(allowed, user_dir=tmp_path) as it:
        result = it.ask("Fetch the data and print it")
    assert result.ok and len(result.attempts) == 2
    repair = fake.requests[1]["messages"][-1]["content"]
    assert "The network allows only data.example.org" in repair and "not-listed.test:80" in repair
    [use] = result.network
    assert (use.host, use.allowed) == ("not-listed.test", False) and "not in the allowed hosts" in use.reason
    system = fake.requests[0]["messages"][0]["content"]
    assert "these hosts only, by name: data.example.org" in system
    insertion = cells_for(result)
    assert any(n.startswith("network: not-listed.test:80 refused") for n in insertion.notes)
    assert insertion.code_cell.metadata["ci_magic"]["network"][0]["host"] == "not-listed.test"


def test_a_long_one_way_transfer_is_not_cut_by_its_quiet_direction() -> None:
    """A download outlasting the idle limit stays up while bytes flow one way (the client sends nothing)."""
    client, proxy_in = socket.socketpair()
    proxy_out, server = socket.socketpair()
    for s in (proxy_in, proxy_out):
        s.setblocking(False)
    seen = [time.monotonic()]
    pumps = [
        threading.Thread(target=pump, args=(proxy_in, proxy_out, 0.5, None, seen)),
        threading.Thread(target=pump, args=(proxy_out, proxy_in, 0.5, None, seen)),
    ]
    for t in pumps:
        t.start()
    for _ in range(6):  # 1.5 s of trickle: three times the idle limit
        server.sendall(b"x" * 1000)
        time.sleep(0.25)
    server.close()
    client.settimeout(5)
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    for t in pumps:
        t.join(timeout=5)
    for s in (client, proxy_in, proxy_out):
        s.close()
    assert len(received) == 6000


def test_the_proxy_accepts_on_the_sandboxs_listener_and_takes_nothing_else_handed_over(
    sandbox: Sandbox, servers: Servers
) -> None:
    # The sandbox hands its loopback listener to the parent's proxy, which accepts on it itself: no relay thread
    # inside. Hostile code can hand over other descriptors: only a listening TCP socket is taken.
    h = servers.http
    code = FETCH + (
        "import os, socket, threading, urllib.request\n"
        "HAND = b'CI-MAGIC-LISTENER\\r\\n\\r\\n'\n"
        "def hand(payload, fds):\n"
        "    s = socket.socket(socket.AF_UNIX); s.settimeout(15); s.connect('/sandbox/egress.sock')\n"
        "    socket.send_fds(s, [payload], fds); answer = s.recv(100); s.close()\n"
        "    return answer.split(b'\\r\\n')[0].decode() or 'nothing'\n"
        "print('relay thread ->', any(t.name == 'ci-magic-egress' for t in threading.enumerate()))\n"
        "r, w = os.pipe()\n"
        "print('pipe ->', hand(HAND, [r]))\n"
        # Held in a name: a socket made only for its number is closed before it is sent, and the number is then
        # whichever descriptor the kernel gives next (the hand's own socket, or nothing: EBADF, no line).
        "idle = socket.socket()\n"
        "print('not listening ->', hand(HAND, [idle.fileno()]))\n"
        "u = socket.socket(socket.AF_UNIX); u.bind('\\0ci-magic-test'); u.listen(1)\n"
        "print('unix listener ->', hand(HAND, [u.fileno()]))\n"
        "ls = [socket.create_server(('127.0.0.1', 0)) for _ in range(2)]\n"
        "print('two ->', hand(HAND, [s.fileno() for s in ls]))\n"
        f"print('request with a descriptor ->', hand(b'GET http://data.test:{h}/ HTTP/1.1\\r\\nHost: data.test\\r\\n\\r\\n', [r]))\n"
        f"print('after ->', get('http://data.test:{h}/'))\n"
        "print('replaced ->', hand(HAND, [ls[0].fileno()]))\n"
        "via = urllib.request.build_opener(urllib.request.ProxyHandler("
        "{'http': f'http://127.0.0.1:{ls[0].getsockname()[1]}'}))\n"
        f"print('through it ->', via.open('http://data.test:{h}/', timeout=15).status)\n"
        "try:\n"
        f"    via.open('http://other.test:{servers.other}/', timeout=15); print('unlisted -> reached')\n"
        "except Exception as e:\n"
        "    print('unlisted ->', str(e)[:60])\n"
    )
    result = sandbox.run(code)
    out = result.stdout() + (result.error_value or "")
    lines = dict(line.split(" -> ", 1) for line in out.splitlines() if " -> " in line)
    assert lines["relay thread"] == "False", out
    for refused in ("pipe", "not listening", "unix listener", "two"):
        assert lines[refused] == "nothing", (refused, out)
    assert " 200 " in lines["request with a descriptor"], out
    assert lines["after"].startswith("200 hello from data.test"), out
    # Hostile code may replace its own way out; what goes through the new one is decided the same way.
    assert lines["replaced"] == "TAKEN" and lines["through it"] == "200", out
    assert "403" in lines["unlisted"], out
