"""The attack suite again, as an unprivileged user: the usual case outside containers.

As root the sandbox is built by a privileged bubblewrap and drops to uid 65534; as a normal user bubblewrap
makes a user namespace instead. Both paths must hold. This re-runs tests/sandbox/test_attacks.py — and the tests of
what leaves the sandbox for the user's side (files that would run where they land, look-alike names, the
record cell, re-running a generated cell, verify) — in a child pytest as user 'nobody' (uid 65534) through
setpriv. Needs root to switch users (CI runs as root); skipped otherwise,
since then the whole suite already runs unprivileged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
AS_NOBODY = [
    "sandbox/test_attacks.py",
    "sandbox/test_egress.py",
    "notebook/test_record_cell.py",
    "engine/test_files_back.py::test_files_that_would_run_where_they_land_arrive_inert",
    "engine/test_files_back.py::test_a_look_alike_of_a_users_file_arrives_with_a_note",
    "notebook/test_magic.py::test_a_generated_cell_run_again_runs_in_the_sandbox",
    "notebook/test_magic.py::test_values_brought_back_never_hide_builtins_unasked",
    "reproduce/test_export.py::test_verify_runs_generated_code_in_the_sandbox",
]


def _cannot_run_as_nobody() -> str | None:
    if os.geteuid() != 0:
        return "not root: the whole suite already runs unprivileged"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    probe = subprocess.run(
        [*NOBODY, sys.executable, "-c", "import ci_magic, pytest"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"user 'nobody' cannot run this Python ({probe.stderr.strip()[-200:]}); .ci/run grants it"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_cannot_run_as_nobody() is not None, reason=str(_cannot_run_as_nobody()))
def test_attack_suite_as_an_unprivileged_user() -> None:
    work = Path(tempfile.mkdtemp(prefix="ci_magic-nobody-"))
    work.chmod(0o777)  # pytest's own tmp folders are private to root; nobody needs a place of its own
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "CI_MAGIC", "PYTEST"))}
    env.update(
        HOME=str(work), TMPDIR=str(work), CI_MAGIC_TRACE_DIR="off", CI_MAGIC_CACHE_DIR=str(work / "cache")
    )
    try:
        proc = subprocess.run(
            [
                *NOBODY,
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--basetemp={work / 'pytest'}",
                *[str(ROOT / "tests" / name) for name in AS_NOBODY],
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            timeout=1200,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # What failed, and why: the child's error lines first (its whole output is too long to read in a report).
    why = [line for line in proc.stdout.splitlines() if line.startswith(("E ", "FAILED", "ERROR", "____"))]
    assert proc.returncode == 0, ("\n".join(why[:120]), proc.stdout[-3000:], proc.stderr[-2000:])
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-1000:]
