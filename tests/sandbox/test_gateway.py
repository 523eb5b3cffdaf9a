"""The sandbox on Jupyter Enterprise Gateway: a real gateway on loopback with local kernels, as in production
but without Kubernetes. Same behaviour as the local sandbox is the bar: outputs, errors as data, time limits,
deaths, frames both ways, distrust of what comes back, the user's files, no secrets, cleanup."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
import test_attacks
from conftest import fenced

from ci_magic.core.errors import SandboxError, TransferError
from ci_magic.core.events import ignore
from ci_magic.core.settings import GATEWAY_TOKEN_ENV, Limits, Settings
from ci_magic.engine.ask import AskRun
from ci_magic.engine.executors import make_executor
from ci_magic.engine.loop import run_attempts
from ci_magic.providers.fake import FakeModelServer
from ci_magic.providers.resolve import make_provider
from ci_magic.sandbox import transfer
from ci_magic.sandbox.gateway import GatewaySandbox, kernel_environment
from ci_magic.sandbox.gateway.client import decode
from ci_magic.sandbox.gateway.files import named_files
from ci_magic.sandbox.gateway.rest import network_declaration
from ci_magic.sandbox.gateway.server import LocalGateway, find_gateway, start_local_gateway

pytestmark = pytest.mark.skipif(
    find_gateway() is None,
    reason="Jupyter Enterprise Gateway is not installed (./dev installs it into .venv/gateway)",
)

#: The hostile exporters of the local sandbox's attack suite, replayed against the gateway sandbox.
HOSTILE = next(
    mark.args[1]
    for mark in test_attacks.test_the_parent_does_not_trust_what_comes_back.pytestmark
    if mark.name == "parametrize"
)


@pytest.fixture(scope="module")
def gateway() -> Iterator[LocalGateway]:
    with start_local_gateway() as gw:
        yield gw


def kernels(gw: LocalGateway) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{gw.url}/api/kernels", headers={"Authorization": f"token {gw.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        found: list[dict[str, Any]] = json.loads(response.read())
    return found


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3,4\n")
    return tmp_path


@pytest.fixture
def sandbox(
    gateway: LocalGateway, user_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GatewaySandbox]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-gateway-secret-123")
    monkeypatch.setenv("KERNEL_SERVICE_TOKEN", "tok-456")  # KERNEL_-prefixed, but named like a secret
    with GatewaySandbox(Limits(timeout_s=5), user_dir, url=gateway.url, token=gateway.token) as sb:
        yield sb


def test_runs_code_and_returns_sanitised_nbformat_outputs(sandbox: GatewaySandbox) -> None:
    result = sandbox.run(
        "from IPython.display import HTML, display\nprint('a'); print('b')\n"
        "display(HTML('<b>x</b><script>window.pwned=1</script>'))\n6 * 7"
    )
    kinds = [o["output_type"] for o in result.outputs]
    assert result.ok and kinds == ["stream", "display_data", "execute_result"]  # the two prints merged
    assert result.outputs[0]["text"] == "a\nb\n" and result.outputs[2]["data"]["text/plain"] == "42"
    assert "<b>x</b>" in result.outputs[1]["data"]["text/html"] and "<script" not in json.dumps(
        result.outputs
    )
    nbformat.validate(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=result.outputs)]))


def test_errors_are_data(sandbox: GatewaySandbox) -> None:
    result = sandbox.run("print('before')\n{}['missing']")
    assert result.outcome == "error" and result.error_name == "KeyError"
    assert "missing" in (result.traceback or "") and result.outputs[0]["text"] == "before\n"


def test_forgotten_variables_are_gone_and_lost_numbers_are_said(sandbox: GatewaySandbox) -> None:
    sandbox.run("a, b = 1, 2")
    sandbox.forget(["a", "not an identifier; import os"])
    assert sandbox.run("print('a' in globals(), b)").text() == "False 2\n"
    # sandbox/losses.py runs in a gateway kernel too.
    lost = sandbox.run("x = pd.to_numeric(pd.Series(['1', '2,5']), errors='coerce')").text()
    assert lost.startswith("[ci_magic] pd.to_numeric(errors='coerce') turned 1 of 2 values")


def test_timeout_interrupts_and_the_kernel_stays_usable(sandbox: GatewaySandbox) -> None:
    sandbox.run("kept = 1")
    started = time.monotonic()
    result = sandbox.run("import time\nwhile True: time.sleep(0.1)")
    assert result.outcome == "timeout" and "5 s time limit" in (result.error_value or "")
    assert not result.restarted and time.monotonic() - started < 15
    assert sandbox.run("print(kept)").outputs[0]["text"] == "1\n"
    frame = pd.DataFrame({"a": [1, 2]})
    stubborn = sandbox.run(
        "import signal\nn = len(df)\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
        {"df": frame},
    )
    assert (
        stubborn.outcome == "timeout" and stubborn.restarted and "restarted" in (stubborn.error_value or "")
    )
    assert sandbox.run("print(df.a.sum())").outputs[0]["text"] == "3\n"  # frames are back after the restart


def test_huge_and_oversized_output(gateway: LocalGateway, user_dir: Path) -> None:
    limits = Limits(timeout_s=60, max_output_bytes=10_000)
    with GatewaySandbox(limits, user_dir, url=gateway.url, token=gateway.token) as sb:
        text = sb.run("for i in range(200_000): print(i)").outputs[0]["text"]
        assert text.startswith("[…") and text.endswith("199999\n") and len(text) < 11_000
        lost = sb.run("print('x' * (40 << 20))")  # one message over the 32 MB cap: dropped, not read
        assert lost.error_name == "OutputTooLarge", lost
        assert sb.run("print('after')").outputs[0]["text"] == "after\n"


def test_limits_change_without_a_new_kernel(sandbox: GatewaySandbox) -> None:
    sandbox.run("kept = 1")
    sandbox.set_limits(dataclasses.replace(sandbox.limits, timeout_s=1))
    result = sandbox.run("import time\ntime.sleep(30)")
    assert result.outcome == "timeout" and "1 s time limit" in (result.error_value or "")
    assert sandbox.run("print(kept)").outputs[0]["text"] == "1\n"
    with pytest.raises(SandboxError, match="new sandbox"):
        sandbox.set_limits(dataclasses.replace(sandbox.limits, memory_mb=2048))


def test_memory_limit_gives_memory_error(gateway: LocalGateway, user_dir: Path) -> None:
    with GatewaySandbox(
        Limits(memory_mb=1536, timeout_s=20), user_dir, url=gateway.url, token=gateway.token
    ) as sb:
        result = sb.run("x = bytearray(4 * 1024**3)")
        assert result.outcome == "error" and result.error_name == "MemoryError"
        assert sb.run("print('alive')").ok


def test_kernel_death_restarts_with_frames_restored(sandbox: GatewaySandbox) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3]})
    sandbox.run("print(df.a.sum())", {"df": frame})
    dead = sandbox.run("import os\nos._exit(1)", {"df": frame})
    assert dead.outcome == "died" and dead.restarted
    assert sandbox.run("print(df.a.sum())", {"df": frame}).outputs[0]["text"] == "6\n"
    sandbox.restart()  # an explicit restart too
    assert sandbox.run("print(df.a.sum())").outputs[0]["text"] == "6\n"


def test_awkward_frames_round_trip(sandbox: GatewaySandbox) -> None:
    frame = pd.DataFrame(
        [[1, "x", 2.5], [2, None, 3.5]],
        columns=pd.Index([0, "dup", "dup"]),
        index=pd.Index(["r1", "r2"], name="rows"),
    )
    mixed = pd.DataFrame({"m": [1, "a", 2.5, None]})
    series = pd.Series([1.5, 2.5], name=("multi", "label"))
    assert sorted(sandbox.send_frames({"frame": frame, "mixed": mixed, "series": series})) == [
        "frame",
        "mixed",
        "series",
    ]
    assert any("'m'" in w and "as strings" in w for w in sandbox.warnings)
    back = sandbox.fetch(["frame", "mixed", "series"])
    pd.testing.assert_frame_equal(back["frame"], frame, check_dtype=False)
    assert back["mixed"]["m"].tolist()[:3] == ["1", "a", "2.5"]
    pd.testing.assert_series_equal(back["series"], series)


def test_values_come_back_and_objects_are_refused(sandbox: GatewaySandbox) -> None:
    sales = pd.DataFrame({"region": ["n", "s", "n"], "revenue": [1.0, 2.0, 4.0]})
    sandbox.run(
        "by = sales.groupby('region').revenue.sum()\ntable = by.to_frame()\nn = len(sales)\nratio = float('nan')\n"
        "name = 'x'\nwhen = pd.Timestamp('2024-01-02')\nclass Evil:\n    pass\nevil = Evil()",
        {"sales": sales},
    )
    listing = sandbox.values()
    assert listing["by"] == ("series", 2) and listing["n"] == ("scalar", 1) and "evil" not in listing
    got = sandbox.fetch(["by", "table", "n", "ratio", "name", "when", "evil", "nothing"])
    pd.testing.assert_series_equal(got["by"], sales.groupby("region").revenue.sum())
    assert (
        got["table"].shape == (2, 1) and got["n"] == 3 and got["name"] == "x" and got["ratio"] != got["ratio"]
    )
    assert got["when"] == pd.Timestamp("2024-01-02") and "evil" not in got and "nothing" not in got
    assert any("no pickling" in w for w in sandbox.warnings) and any("nothing" in w for w in sandbox.warnings)


def test_unchanged_frames_are_not_resent_edited_ones_are(sandbox: GatewaySandbox) -> None:
    frame = pd.DataFrame({"a": range(1000), "b": ["x"] * 1000})
    assert sandbox.send_frames({"f": frame}) == ["f"]
    assert sandbox.send_frames({"f": frame}) == []
    frame.loc[500, "a"] = -1
    assert sandbox.send_frames({"f": frame}) == ["f"]
    assert sandbox.run("print(int(f.a.min()))").outputs[0]["text"] == "-1\n"
    # pristine: an in-place edit by a failed attempt is undone from the bytes the kernel holds
    sandbox.run("f.loc[0, 'a'] = 999", {"f": frame})
    assert sandbox.run("print(int(f.a.max()))", {"f": frame}, pristine=True).outputs[0]["text"] == "999\n"


@pytest.fixture(scope="class")
def shared(gateway: LocalGateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySandbox]:
    """One sandbox for a class of tests (closed before the tests that count the gateway's kernels)."""
    with GatewaySandbox(None, tmp_path_factory.mktemp("shared"), url=gateway.url, token=gateway.token) as sb:
        yield sb


@pytest.fixture
def hijacked(shared: GatewaySandbox) -> Iterator[GatewaySandbox]:
    """The shared sandbox, whose transfer helpers a test replaces: put back afterwards (cheaper than a
    restart), and the sandbox must still answer."""
    yield shared
    source = Path(transfer.__file__).read_text()
    restore = f"import sys\nexec(compile({source!r}, 'transfer', 'exec'), sys.modules['_ci_child'].__dict__)"
    assert shared.run(restore).ok
    shared.warnings.clear()
    assert shared.run("print('still here')").text() == "still here\n"


class TestTheParentDistrustsTheKernel:
    """Hostile answers to the parent's requests, replayed from the local sandbox's attack suite."""

    @pytest.mark.parametrize("name,body", HOSTILE, ids=[case[0] for case in HOSTILE])
    def test_hostile_exports_are_refused(self, hijacked: GatewaySandbox, name: str, body: str) -> None:
        result = hijacked.run(test_attacks._hostile_export(body))
        assert result.ok, result.traceback
        started = time.monotonic()
        assert hijacked.fetch(["x"]) == {} and time.monotonic() - started < 10
        assert hijacked.warnings, name

    def test_listing_lies_are_ignored(self, hijacked: GatewaySandbox) -> None:
        hijacked.run(
            "import _ci_child, json\n_ci_child.list_values = lambda ns: json.dumps("
            "{**{f'v{i}': ['frame', 10**30] for i in range(50000)}, 'bad name': ['frame', 1], 'y': ['evil', 1]})"
        )
        listing = hijacked.values()
        assert "bad name" not in listing and "y" not in listing and len(listing) <= 10_000


def test_oversized_replies_are_refused(gateway: LocalGateway, user_dir: Path) -> None:
    with GatewaySandbox(Limits(max_transfer_mb=1), user_dir, url=gateway.url, token=gateway.token) as sb:
        sb.run("big = pd.DataFrame({'a': range(1_000_000)})")
        assert sb.fetch(["big"]) == {} and any("over the limit" in w or "MB" in w for w in sb.warnings)
        sb.run("open('big.bin', 'wb').write(b'0' * 3_000_000)")
        with pytest.raises(TransferError, match="limit"):
            sb.read_file("big.bin", 1_000_000)


def test_hostile_binary_frames_are_refused_cheaply() -> None:
    deep = b"[" * 100_000  # never handed to json.loads, in either framing
    for raw in (
        *(b"\xff\xff\xff\xff" + b"\0" * 12, b"\0\0\0\x02\0\0\0\x0c\0\0\0\x08{}", b"{not json"),
        *(deep.decode(), b"\0\0\0\x01\0\0\0\x08" + deep),
    ):
        with pytest.raises(ValueError):
            decode(raw)


def test_user_files_go_in_and_written_files_come_back(sandbox: GatewaySandbox, user_dir: Path) -> None:
    (user_dir / ".env").write_text("SECRET=1")
    (user_dir / "sub").mkdir()
    (user_dir / "sub" / "more.csv").write_text("a\n5\n")
    os.symlink("/etc/passwd", user_dir / "link.csv")
    result = sandbox.run(
        "import os, pandas as pd\nprint(pd.read_csv('data.csv').a.sum(), pd.read_csv('./sub/more.csv').a.sum())\n"
        "print(sorted(os.listdir('.')), [os.path.exists(n) for n in ('.env', 'link.csv')])\n"
        "open('report.txt', 'w').write('made here')\nos.makedirs('out', exist_ok=True)\n"
        "open('out/t.csv', 'w').write('x')\nos.symlink('/etc/passwd', 'leak.txt')\nos.mkfifo('trap.fifo')"
    )
    assert result.outputs[0]["text"] == "4 5\n['data.csv', 'sub'] [False, False]\n", result.outputs
    assert result.files == ["out/t.csv", "report.txt"]  # what this run wrote: the user's files are not in it
    assert sandbox.written_files() == ["out/t.csv", "report.txt"]
    assert sandbox.read_file("report.txt", 100) == b"made here"
    for refused in ("leak.txt", "trap.fifo", "../x", "/etc/passwd"):
        with pytest.raises(TransferError):
            sandbox.read_file(refused, 1000)
    (user_dir / "data.csv").write_text("a,b\n10,2\n")  # changed: sent again on its next mention
    assert sandbox.run("print(pd.read_csv('data.csv').a.sum())").outputs[0]["text"] == "10\n"


def test_no_environment_secret_reaches_the_kernel(sandbox: GatewaySandbox) -> None:
    result = sandbox.run("import os, json\nprint(json.dumps(dict(os.environ)))")
    env = json.loads(result.outputs[0]["text"])
    assert (
        "sk-gateway-secret-123" not in result.outputs[0]["text"]
        and "tok-456" not in result.outputs[0]["text"]
    )
    assert not any(k.startswith("OPENAI") or "TOKEN" in k for k in env)
    assert env["KERNEL_USERNAME"] and env["KERNEL_CI_MAGIC_MEMORY_MB"] == "4096"
    sent = kernel_environment(Limits(), {"OPENAI_API_KEY": "x", "KERNEL_AUTH": "y", "KERNEL_NAMESPACE": "ns"})
    assert "OPENAI_API_KEY" not in sent and "KERNEL_AUTH" not in sent and sent["KERNEL_NAMESPACE"] == "ns"


def test_isolation_is_reported_honestly(sandbox: GatewaySandbox, gateway: LocalGateway) -> None:
    (line,) = sandbox.isolation_warnings()
    host = gateway.url.split("//")[1]
    assert f"the sandbox runs on the gateway at {host} (kernelspec ci_magic_python)" in line
    assert "ci_magic limits its memory, time and output" in line and "network" in line
    report = sandbox.isolation_report
    assert report["tool"] == "enterprise-gateway" and report["isolated"] is (not report["network"])
    assert sandbox.isolated is report["isolated"]  # no route out is the one isolation we can see from inside


def test_a_kernelspec_may_declare_its_network_isolation() -> None:
    declared = {"spec": {"metadata": {"ci_magic": {"network": "egress denied by  NetworkPolicy ci-magic"}}}}
    assert network_declaration(declared) == "egress denied by NetworkPolicy ci-magic"
    for model in (None, {}, {"spec": {"metadata": {"ci_magic": {"network": 5}}}}, {"spec": []}):
        assert network_declaration(model) is None


def test_named_files_are_plain_relative_paths() -> None:
    code = "open('a.csv'); open('/etc/x'); open('../up'); open('.env'); open('./d/b.txt'); f'{x}.csv'"
    assert named_files(code) == ["a.csv", "d/b.txt"]


def test_close_deletes_the_kernel(gateway: LocalGateway, user_dir: Path) -> None:
    sb = GatewaySandbox(None, user_dir, url=gateway.url, token=gateway.token)
    assert [k["id"] for k in kernels(gateway)] == [sb.kernel.kernel_id]
    sb.close()
    assert kernels(gateway) == []


def test_a_wrong_token_is_a_clear_error(gateway: LocalGateway, user_dir: Path) -> None:
    with pytest.raises(SandboxError, match=r"HTTP 401.*token"):
        GatewaySandbox(None, user_dir, url=gateway.url, token="wrong")
    with pytest.raises(SandboxError, match="could not be reached"):
        GatewaySandbox(None, user_dir, url="http://127.0.0.1:9", token="x")


def test_a_killed_owner_leaves_no_kernel(gateway: LocalGateway, user_dir: Path) -> None:
    code = (
        "import os, sys, time\nfrom ci_magic.sandbox.gateway import GatewaySandbox\n"
        "sb = GatewaySandbox(None, sys.argv[1], url=os.environ['GW_URL'], token=os.environ['GW_TOKEN'])\n"
        "print(sb.kernel.kernel_id, flush=True)\ntime.sleep(600)"
    )
    env = {**os.environ, "GW_URL": gateway.url, "GW_TOKEN": gateway.token}
    owner = subprocess.Popen(
        [sys.executable, "-c", code, str(user_dir)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert owner.stdout is not None
        kernel_id = owner.stdout.readline().strip()
        assert kernel_id in [k["id"] for k in kernels(gateway)]
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while kernels(gateway) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert kernels(gateway) == [], "the killed owner's kernel is still on the gateway"
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


def test_the_repair_loop_runs_on_the_gateway(gateway: LocalGateway, user_dir: Path) -> None:
    sales = pd.DataFrame({"month": [1, 1, 2], "revenue": [10.0, 20.0, 30.0]})
    with (
        FakeModelServer() as fake,
        GatewaySandbox(None, user_dir, url=gateway.url, token=gateway.token) as sb,
    ):
        fake.add(
            fenced("print('partial')\nprint(sales['revnue'].sum())"), fenced("print(sales['revenue'].sum())")
        )
        settings = Settings(
            model="fake-model", base_url=fake.base_url, api_key="k", limits=Limits(timeout_s=10)
        )
        provider = make_provider(settings)
        messages = [{"role": "system", "content": "answer"}, {"role": "user", "content": "Total revenue?"}]
        try:
            run = AskRun("gw", "Total revenue?", settings, provider, lambda: sb, {"sales": sales}, ignore)
            attempts = run_attempts(run, messages, 3)
        finally:
            provider.close()
    assert [a.outcome for a in attempts] == ["error", "ok"]
    feedback = fake.requests[1]["messages"][-1]["content"]
    assert "KeyError" in feedback and "revnue" in feedback and "partial" in feedback
    assert attempts[1].execution is not None and attempts[1].execution.outputs[0]["text"] == "60.0\n"


def test_settings_made_in_python_take_the_token_from_the_environment(
    gateway: LocalGateway, user_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GATEWAY_TOKEN_ENV, gateway.token)
    executor = make_executor(Settings(gateway_url=gateway.url, limits=Limits(timeout_s=30)), user_dir)
    try:
        assert executor.run("print(6 * 7)").text().strip() == "42"
    finally:
        executor.close()
