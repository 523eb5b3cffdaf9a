"""The ci-magic command, as a user runs it, against the fake model."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, fenced

from ci_magic.providers.fake import FakeModelServer


def run(args: list[str], server: FakeModelServer | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    if server is not None:
        env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="k", CI_MAGIC_ANSWER_IN_WORDS="0")
    return subprocess.run(
        [sys.executable, "-m", "ci_magic.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_ask_prints_code_output_and_attempts(fake: FakeModelServer, tmp_path: Path) -> None:
    fake.add(
        fenced("print(df.revenue.sum() > 0)\nimport matplotlib.pyplot as plt\ndf.revenue.plot(); plt.show()")
    )
    csv = ROOT / "notebooks" / "sales.csv"
    proc = run(["ask", "--data", f"df={csv}", "--save-images", "imgs", "Total revenue?"], fake, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "print(df.revenue.sum() > 0)" in proc.stdout and "True" in proc.stdout
    assert "succeeded after 1 attempt(s)" in proc.stdout
    assert (tmp_path / "imgs" / "output-1.png").read_bytes().startswith(b"\x89PNG")


def test_json_output_and_exit_1_when_exhausted(fake: FakeModelServer, tmp_path: Path) -> None:
    fake.add(fenced("1/0"), fenced("2/0"))
    proc = run(["ask", "--attempts", "2", "--json", "q"], fake, tmp_path)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and [a["outcome"] for a in doc["attempts"]] == ["error", "error"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = run(["ask", "--data", "df=missing.csv", "q"], None, tmp_path)
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
    assert run(["ask"], None, tmp_path).returncode == 2
    proc = run(["ask", "--data", "not an identifier=x.csv", "q"], None, tmp_path)
    assert proc.returncode == 2 and "NAME=PATH" in proc.stderr


def test_an_empty_question_is_a_usage_error_as_in_the_magic(fake: FakeModelServer, tmp_path: Path) -> None:
    csv = ROOT / "notebooks" / "sales.csv"
    proc = run(["ask", "--data", f"df={csv}", "  "], fake, tmp_path)
    assert proc.returncode == 2 and "needs a question" in proc.stderr and "Traceback" not in proc.stderr
    assert fake.requests == []


def test_prices_and_errors_speak_the_cli_s_language(tmp_path: Path) -> None:
    # A remote model the price table does not know: a dollar budget needs --prices (not %config).
    remote = ["ask", "--base-url", "http://ci-magic-test.invalid/v1", "--model", "mystery-model"]
    proc = run([*remote, "--budget", "$0.01", "q"], None, tmp_path)
    assert proc.returncode == 2 and "no price for 'mystery-model'" in proc.stderr
    assert "--prices" in proc.stderr and "CI_MAGIC_PRICES" in proc.stderr and "%config" not in proc.stderr
    # With a price the budget is accepted; the unreachable server is then reported in the CLI's words too.
    prices = json.dumps({"mystery-model": [1, 2]})
    proc = run([*remote, "--budget", "$0.01", "--prices", prices, "q"], None, tmp_path)
    assert proc.returncode == 1 and "Could not connect" in proc.stderr, proc.stderr
    assert "--base-url or OPENAI_BASE_URL" in proc.stderr and "%config" not in proc.stderr
    proc = run([*remote, "--prices", "{not json", "q"], None, tmp_path)
    assert proc.returncode == 2 and "--prices must be JSON" in proc.stderr


def test_the_cli_help_and_the_magic_help_say_what_config_ask_says(capsys: pytest.CaptureFixture[str]) -> None:
    from ci_magic.cli import build_parser
    from ci_magic.notebook.config import Ask
    from ci_magic.notebook.options import help_text

    with pytest.raises(SystemExit):
        build_parser().parse_args(["ask", "--help"])
    flat = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    magic = " ".join(help_text().split())
    traits = Ask.class_traits(config=True)
    for name in ("model", "base_url", "attempts", "samples", "timeout", "request_timeout", "gateway_url"):
        said = " ".join(str(traits[name].help).split()).rstrip(".")
        assert said in flat, name
    for name in ("model", "attempts", "samples", "timeout", "overwrite_files"):
        assert " ".join(str(traits[name].help).split()).rstrip(".") in magic, name


def test_every_setting_is_declared_once_and_made_into_each_front_end() -> None:
    """core/declared.py is the one list: a trait per declared setting with its help and default, a CLI flag for
    each that has one, and the %%ask options that set one point at the same Settings field."""
    from ci_magic.cli import build_parser
    from ci_magic.core.declared import DECLARED
    from ci_magic.core.settings import Settings
    from ci_magic.notebook.config import Ask
    from ci_magic.notebook.options import OPTIONS

    traits = Ask.class_traits(config=True)
    assert set(traits) == {d.name for d in DECLARED}
    for d in DECLARED:
        assert traits[d.name].help == d.help and traits[d.name].default() == d.default, d.name
        if d.path is not None and d.notebook_default is None:
            assert Ask().settings().get(d.path) == Settings.from_env(frontend="notebook").get(d.path), d.name
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("ask", "eval"):
        flags = {f for a in sub.choices[command]._actions for f in a.option_strings}
        assert {d.cli for d in DECLARED if d.cli} <= flags, command
    paths = {d.path for d in DECLARED}
    assert all(o.setting in paths for o in OPTIONS if o.setting is not None)


def test_ask_on_a_terminal_shows_printed_lines_as_they_come(fake: FakeModelServer, tmp_path: Path) -> None:
    """In a pseudo-terminal, as a user sees it: each line the code prints arrives while the code still runs."""
    import pty
    import select
    import time

    code = "import time\nfor i in range(4):\n    print(f'line {i}', flush=True)\n    time.sleep(0.7)"
    fake.add(fenced(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    env.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="k", CI_MAGIC_ANSWER_IN_WORDS="0")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_magic.cli", "ask", "Count slowly"],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        cwd=tmp_path,
        env=env,
    )
    os.close(follower)
    seen: dict[str, float] = {}
    buffer = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                buffer += chunk
                for n in range(4):
                    if f"line {n}".encode() in buffer:
                        seen.setdefault(f"line {n}", time.monotonic())
                if b"done (" in buffer:
                    seen.setdefault("done", time.monotonic())
            elif proc.poll() is not None:
                break
    finally:
        proc.wait(timeout=60)
        os.close(leader)
    assert proc.returncode == 0, buffer.decode(errors="replace")[-2000:]
    lines = [seen[f"line {n}"] for n in range(4)]
    assert lines == sorted(lines) and lines[3] - lines[0] > 1.4  # one by one, not in one piece at the end
    assert seen["done"] - lines[0] > 1.4
