"""%%ask in a real IPython shell, against the fake model: a real sandbox kernel where the code's effects are the
point, the scripted executor where only the front end is."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import fenced, fingerprint
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from ci_magic.providers.fake import FakeModelServer
from ci_magic.sandbox.fake import ScriptedExecutor


def test_ask_shows_outputs_and_offers_the_code(shell: InteractiveShell, fake: FakeModelServer) -> None:
    fake.add(fenced("avg = sales.groupby('month').revenue.mean()\nprint(avg.to_dict())"))
    with capture_output() as cap:
        result = shell.run_cell("%%ask\nAverage revenue by month")
    assert result.success, cap.stderr
    assert "{1: 15.0, 2: 30.0}" in cap.stdout
    assert shell.rl_next_input is not None and "groupby('month')" in shell.rl_next_input
    assert any("ci_magic worked: 1 attempt" in o.data.get("text/plain", "") for o in cap.outputs)
    # New frames the code made are brought back, through Arrow, as real pandas objects.
    assert shell.user_ns["avg"].to_dict() == {1: 15.0, 2: 30.0}


def test_failing_attempts_leave_namespace_and_files_unchanged(
    shell: InteractiveShell, fake: FakeModelServer, tmp_path: Path
) -> None:
    (tmp_path / "keep.csv").write_text("x\n1\n")
    before = fingerprint(shell, tmp_path)
    evil = "sales.drop(columns=['revenue'], inplace=True)\nimport os\nos.remove('keep.csv')\nx = 1/0"
    fake.add(*[fenced(evil)] * 3)  # the second attempt repeats the first, and again when asked once more
    with capture_output() as cap:
        shell.run_cell("%%ask --attempts 2\nBreak things")
    assert any("found no working code" in o.data.get("text/plain", "") for o in cap.outputs)
    assert fingerprint(shell, tmp_path)["ns"] == before["ns"]
    # The child deleted its *link* to the file, never the user's file.
    assert (tmp_path / "keep.csv").read_text() == "x\n1\n"


def test_context_only_sends_nothing(scripted_shell: InteractiveShell, fake: FakeModelServer) -> None:
    shell = scripted_shell
    shell.user_ns["secret_number"] = 42
    with capture_output() as cap:
        shell.run_cell("%%ask --context-only\nAnything")
    assert fake.requests == []
    assert "sales: pandas DataFrame, 3 rows × 2 columns" in cap.stdout and "secret_number" not in cap.stdout


def test_frames_option_limits_what_is_described(
    scripted_shell: InteractiveShell, fake: FakeModelServer, scripted: ScriptedExecutor
) -> None:
    shell = scripted_shell
    scripted.add("3\n")
    shell.run_cell("other = pd.DataFrame({'z': [1]})")
    fake.add(fenced("print(len(sales))"))
    with capture_output():
        shell.run_cell("%%ask --frames sales\nHow many rows?")
    sent = fake.requests[0]["messages"][-1]["content"]
    assert "sales: pandas DataFrame" in sent and "other" not in sent


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%%ask --attempts many\nq", "argument --attempts"),
        ("%%ask --frames nosuch\nq", "no variable of that name"),
        ("%%ask --bogus\nq", "unrecognized arguments"),
        ("%%ask\n   ", "needs a question"),
        ("%%ask --attempts 0\nq", "attempts must be between 1 and 20"),
    ],
)
def test_bad_arguments_give_one_clear_error(
    scripted_shell: InteractiveShell, fake: FakeModelServer, tmp_path: Path, line: str, message: str
) -> None:
    shell = scripted_shell
    before = fingerprint(shell, tmp_path)
    with capture_output() as cap:
        result = shell.run_cell(line)
    assert not result.success
    assert message in cap.stdout + cap.stderr
    assert "Traceback" not in cap.stdout + cap.stderr
    assert fake.requests == [] and fingerprint(shell, tmp_path) == before


def test_config_traitlet_sets_the_model(
    scripted_shell: InteractiveShell, fake: FakeModelServer, scripted: ScriptedExecutor
) -> None:
    shell = scripted_shell
    scripted.add("1\n")
    fake.add(fenced("print(1)"))
    try:
        with capture_output():
            shell.run_cell("%config Ask.model = 'other-model'\n")
            shell.run_cell("%%ask\nq")
    finally:  # %config writes into the shell's config, which outlives this test (the shell is a singleton)
        shell.run_cell("%config Ask.model = None")
    assert fake.requests[0]["model"] == "other-model"


def test_unreachable_model_is_a_clear_error(
    scripted_shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell = scripted_shell
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with capture_output() as cap:
        result = shell.run_cell("%%ask\nq")
    assert not result.success and "Could not connect to the model server" in cap.stdout + cap.stderr
    assert "Traceback" not in cap.stdout + cap.stderr


def test_a_generated_cell_run_again_runs_in_the_sandbox(
    shell: InteractiveShell, fake: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Code that behaves when sandboxed and steals when not: running the offered cell again ("Run All") must
    # not be its way into the user's kernel.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-user-secret-77")
    code = (
        "import os\nkey = os.environ.get('OPENAI_API_KEY')\n"
        "where = 'outside' if key else 'inside'\nprint(where)\ntotal = sales.revenue.sum()"
    )
    fake.add(fenced(code))
    with capture_output() as cap:
        assert shell.run_cell("%%ask\nTotal revenue").success, cap.stderr
    offered = shell.rl_next_input
    assert offered is not None and offered.startswith("%%sandbox") and code in offered
    shell.user_ns["sales"].loc[0, "revenue"] = 100.0  # the re-run sees the notebook's frame as it is now
    with capture_output() as cap:
        assert shell.run_cell(offered).success, cap.stderr
    assert "inside" in cap.stdout and "sk-user-secret-77" not in cap.stdout
    assert shell.user_ns["total"] == 150.0 and shell.user_ns["key"] is None
    assert shell.user_ns["where"] == "inside"
    # A failing cell fails (Run All stops there); without ci_magic the cell does not run at all.
    with capture_output():
        assert not shell.run_cell("%%sandbox\nraise ValueError('nope')").success
        shell.run_cell("%unload_ext ci_magic")
        outside = shell.run_cell(offered)
    assert not outside.success and shell.user_ns.get("where") == "inside"
    shell.run_cell("%load_ext ci_magic")


def test_values_brought_back_never_hide_builtins_unasked(
    shell: InteractiveShell, fake: FakeModelServer
) -> None:
    fake.add(fenced("len = 3\nsorted = 'x'\ntotal = 1"), fenced("len = 3"))
    with capture_output() as cap:
        assert shell.run_cell("%%ask\nCount").success, cap.stderr
    assert "len" not in shell.user_ns and "sorted" not in shell.user_ns and shell.user_ns["total"] == 1
    assert "would hide Python's built-in 'len'" in "\n".join(
        o.data.get("text/plain", "") for o in cap.outputs
    )
    with capture_output() as cap:
        assert shell.run_cell("%%ask --keep len\nAgain").success, cap.stderr
    assert shell.user_ns["len"] == 3
    del shell.user_ns["len"]
