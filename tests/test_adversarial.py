"""Hostile generated code, through %%ask in a real IPython shell, with real sandbox kernels.

Each case: the (fake) model's first reply misbehaves, its second is harmless. The misbehaviour must end as a
clear attempt error fed back to the model, the sandbox must recover, and the user's namespace and files must be
exactly as before (fingerprint).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import fenced, fingerprint, shown
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from ci_magic.providers.fake import FakeModelServer

SECRET = "sk-adversarial-secret-0042"

CASES = {
    # The ask's own limit (--timeout 8), also in the sandbox that %load_ext started with the default one.
    "infinite loop": ("while True:\n    pass", "the 8 s time limit"),
    "memory bomb": ("hog = bytearray(16 * 1024**3)", "MemoryError"),
    "os._exit": ("import os\nos._exit(3)", "exited with code 3"),
    "segfault": ("import ctypes\nctypes.string_at(0)", "killed by signal 11"),
    "kill the parent": (
        "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(1)\nraise RuntimeError('survived')",
        "survived|died",
    ),
    "C code ignoring interrupts": (
        "import re\nre.match(r'(a*)*b', 'a' * 40)",
        "did not respond to an interrupt",
    ),
    "fork bomb": (
        "import os\nwhile True:\n    os.fork()",
        "|".join(["processes", "died", "Resource", "BlockingIOError", "the 8 s time limit"]),
    ),
    # The user's file is a read-only mount in the sandbox's folder; its host path does not exist inside.
    "delete user file": ("import os\nos.remove('precious.csv')", "busy|Read-only file system|not permitted"),
    "delete user file by its host path": ("import os\nos.remove(USER_FILE)", "No such file"),
    "write outside workdir": (
        "open('/tmp/ci_magic_escape.txt', 'w').write('x')  # the sandbox's own /tmp\n"
        "open('/usr/ci_magic_escape.txt', 'w').write('x')",
        "Read-only file system|Permission denied",
    ),
    # No route out; HTTP clients meet the egress proxy, which refuses: no host is allowed (and never by address).
    "network": (
        "import urllib.request\nurllib.request.urlopen('http://1.1.1.1', timeout=3)",
        "unreachable|The network is off",
    ),
    "pip install": (
        "import subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--retries', '0', '--timeout', '3', 'cowsay'],"
        " capture_output=True, text=True)\nassert r.returncode == 0, 'pip failed: ' + r.stderr[-300:]",
        "pip failed",
    ),
    "read ~/.ssh": ("print(open(SSH_KEY).read())", "No such file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_code_is_contained(
    case: str, shell: InteractiveShell, fake: FakeModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, expected = CASES[case]
    user_file = tmp_path / "precious.csv"
    user_file.write_text("a\n1\n")
    home = tmp_path.parent / f"{tmp_path.name}-home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE KEY MATERIAL")
    monkeypatch.setenv("HOME", str(home))  # the sandbox hides the (test's) home directory
    shell.user_ns["USER_FILE_PATH"] = str(user_file)
    prelude = f"USER_FILE = {str(user_file)!r}\nSSH_KEY = {str(home / '.ssh' / 'id_rsa')!r}\n"
    fake.add(fenced(prelude + code), fenced("print('recovered')"))
    before = fingerprint(shell, tmp_path)
    with capture_output() as cap:
        result = shell.run_cell("%%ask --attempts 2 --timeout 8\nDo the thing")
    assert result.success, cap.stderr
    assert "recovered" in cap.stdout, (cap.stdout, cap.stderr, [o.data for o in cap.outputs])
    feedback = fake.requests[1]["messages"][-1]["content"]
    assert any(word in feedback for word in expected.split("|")), feedback[-800:]
    assert "PRIVATE KEY MATERIAL" not in cap.stdout + feedback
    assert fingerprint(shell, tmp_path) == before
    assert not Path("/tmp/ci_magic_escape.txt").exists()


def test_no_secret_is_reachable_anywhere_in_proc(
    shell: InteractiveShell, fake: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # the user's kernel (this process) holds the key
    scan = (
        "import glob, os\nfound = []\n"
        "for p in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):\n"
        "    try:\n        data = open(p, 'rb').read()\n    except OSError:\n        continue\n"
        f"    if b{SECRET!r} in data:\n        found.append(p)\n"
        f"print('secret in env' if {SECRET!r} in str(dict(os.environ)) else 'env clean')\n"
        "print('found', found, 'among', len(os.listdir('/proc')), 'entries')"
    )
    fake.add(fenced(scan))
    with capture_output() as cap:
        assert shell.run_cell("%%ask\nscan").success
    assert "env clean" in cap.stdout and "found []" in cap.stdout
    assert SECRET not in cap.stdout


def test_huge_output_is_truncated(shell: InteractiveShell, fake: FakeModelServer) -> None:
    fake.add(fenced("for i in range(2_000_000):\n    print('x' * 49)"))  # 100 MB of prints
    with capture_output() as cap:
        assert shell.run_cell("%%ask --timeout 120\nprint a lot").success
    assert "truncated" in cap.stdout and len(cap.stdout) < 2_000_000


def test_awkward_frames_and_name_collisions(
    shell: InteractiveShell, fake: FakeModelServer, tmp_path: Path
) -> None:
    shell.user_ns.update(
        mixed=pd.DataFrame({"m": [1, "a", 2.5, None]}),
        empty=pd.DataFrame({"a": pd.Series([], dtype="int64")}),
        wide=pd.DataFrame([[0] * 3000], columns=[f"c{i}" for i in range(3000)]),
        result=5,
    )
    fake.add(fenced("print(mixed.m.tolist(), len(empty), wide.shape)\nresult = pd.DataFrame({'x': [1]})"))
    before = fingerprint(shell, tmp_path)
    with capture_output() as cap:
        assert shell.run_cell("%%ask\nlook").success
    assert "['1', 'a', '2.5'" in cap.stdout and "0 (1, 3000)" in cap.stdout
    assert "sent to the sandbox as strings" in shown(cap)  # a warning, with the ask's notes
    assert "'result' was not brought back" in shown(cap)
    assert shell.user_ns["result"] == 5
    assert fingerprint(shell, tmp_path) == before
    assert len(fake.requests[0]["messages"][-1]["content"]) < 2000 * 4 + 2000  # the context stayed in budget
