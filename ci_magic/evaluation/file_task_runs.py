"""Running a file-conversion task the way a user would: ``ci-magic ask --json QUESTION`` in a fresh folder
holding only its inputs, then the task's checker on the folder. ``tree`` runs another checkout's code (its folder
goes first on ``PYTHONPATH``), which is how benchmarks/file_tasks.py measures before and after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .file_tasks import FileTask, check

CLI = "import sys; from ci_magic.cli import main; sys.exit(main())"


def cli_env(tree: Path | None, base_url: str | None = None) -> dict[str, str]:
    """The environment of a run: no OpenAI settings unless a base URL is given (the embedded model then), and
    ``tree`` first on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    if base_url:
        env["OPENAI_BASE_URL"] = base_url
        env["OPENAI_API_KEY"] = os.environ.get("OPENAI_API_KEY", "none")
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def code_tree(env: dict[str, str], python: str = sys.executable) -> str:
    """The folder ``ci_magic`` is imported from under this environment (run from a neutral folder)."""
    with tempfile.TemporaryDirectory() as neutral:
        out = subprocess.run(
            [
                python,
                "-c",
                "import ci_magic, os; print(os.path.dirname(os.path.realpath(ci_magic.__file__)))",
            ],
            cwd=neutral,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return out.stdout.strip()


def run_task(
    t: FileTask,
    *,
    tree: Path | None = None,
    model: str | None = None,
    base_url: str | None = None,
    timeout_s: float = 900.0,
    python: str = sys.executable,
    keep: Path | None = None,
) -> dict[str, Any]:
    """Run ``t`` through ``ci-magic ask --json`` in a fresh folder and check it. ``keep``: copy the folder
    there afterwards (to look at a failure)."""
    with tempfile.TemporaryDirectory(prefix=f"file_task-{t.name}-") as d:
        folder = Path(d)
        t.inputs(folder)
        before = {p for p in folder.rglob("*") if p.is_file()}
        command = [python, "-c", CLI, "ask", "--json"]
        if model:
            command += ["--model", model]
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [*command, t.question],
                cwd=folder,
                env=cli_env(tree, base_url),
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
            exit_code: int | None = proc.returncode
            stdout, stderr = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            exit_code, stdout, stderr = None, str(exc.stdout or ""), str(exc.stderr or "")
        seconds = time.monotonic() - started
        problem = check(t, folder)
        written = sorted(
            str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p not in before
        )
        record: dict[str, Any] = {
            "task": t.name,
            "question": t.question,
            "passed": problem is None,
            "problem": problem,
            "exit_code": exit_code,
            "seconds": round(seconds, 1),
            "files_in_folder_after": written,
        }
        record.update(_summary_of(stdout, stderr))
        if keep is not None:
            import shutil

            shutil.copytree(folder, keep / t.name, dirs_exist_ok=True)
    return record


def _summary_of(stdout: str, stderr: str) -> dict[str, Any]:
    """What the ask's JSON says: its verdict, attempts, tokens, the files it reported, the last code."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        return {"ask_ok": None, "cli_error": (stderr or stdout).strip()[-600:]}
    attempts = doc.get("attempts") or []
    last = attempts[-1] if attempts else {}
    files = doc.get("files") or []
    return {
        "ask_ok": doc.get("ok"),
        "attempts": len(attempts),
        "outcomes": [a.get("outcome") for a in attempts],
        "tokens": (doc.get("usage") or {}).get("total_tokens"),
        "files_reported": [f.get("saved_as") or f.get("path") if isinstance(f, dict) else f for f in files],
        "last_problem": (last.get("problem") or "")[-400:] or None,
        "last_code": (doc.get("code") or last.get("code") or "")[:1500] or None,
    }
