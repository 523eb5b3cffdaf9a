"""The sandbox's secrets guarantee as an unprivileged user (the usual case outside containers).

Runs a real Sandbox in a process with uid/gid 65534 (nobody) whose environment holds an API key, and has the
sandboxed code scan every /proc/*/environ for it. Needs root to switch users (CI runs as root); skipped
otherwise, since then the rest of the suite already runs unprivileged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PROBE = r"""
import json, os, sys
from ci_magic.sandbox import Sandbox
from ci_magic.core.settings import Limits
os.environ["OPENAI_API_KEY"] = "sk-nonroot-marker"
code = '''
import glob, json, os
hits = []
for p in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
    try:
        data = open(p, "rb").read()
    except OSError:
        continue
    if b"sk-nonroot-marker" in data:
        hits.append(p)
try:
    open(sys.argv[1] + "/victim.txt", "a").write("x")
    wrote = True
except OSError:
    wrote = False
print(json.dumps({"hits": hits, "env_has_key": "OPENAI_API_KEY" in os.environ, "wrote_user_file": wrote}))
'''.replace("sys.argv[1]", repr(sys.argv[1]))
with Sandbox(Limits(timeout_s=30), user_dir=sys.argv[1]) as sb:
    result = sb.run("import sys\n" + code)
    print(json.dumps({"isolated": sb.isolation_report.get("isolated"), "out": result.text(), "ok": result.ok,
                      "problems": sb.isolation_report.get("problems"),
                      "error": result.error_value, "uid": os.getuid()}))
"""


def _can_run_as_nobody() -> str | None:
    if os.geteuid() != 0:
        return "not root: the whole suite already runs unprivileged"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    probe = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-c",
            "import ci_magic",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"user 'nobody' cannot run this Python ({probe.stderr.strip()[-200:]}); .ci/run grants it"
    return None


@pytest.mark.skipif(_can_run_as_nobody() is not None, reason=str(_can_run_as_nobody()))
def test_unprivileged_sandbox_cannot_reach_the_key() -> None:
    # pytest's own tmp_path is private to root; nobody needs a folder it can enter.
    work = Path(tempfile.mkdtemp(prefix="ci_magic-nobody-"))
    work.chmod(0o777)
    try:
        _check(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check(work: Path) -> None:
    (work / "victim.txt").write_text("original")
    (work / "victim.txt").chmod(0o666)  # writable for the user: only the sandbox's read-only view protects it
    (work / "probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    env["HOME"] = str(work)
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            str(work / "probe.py"),
            str(work),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["uid"] == 65534 and report["isolated"] is True and report["ok"], report
    assert report["problems"] == [], report
    inner = json.loads(report["out"])
    assert inner == {"hits": [], "env_has_key": False, "wrote_user_file": False}
    assert (work / "victim.txt").read_text() == "original"
