"""The child kernel as a sandbox: environment, transfer both ways, survival. Real kernels only."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from ci_magic.core.settings import Limits
from ci_magic.sandbox import Sandbox, child_environment


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-456")
    with Sandbox(Limits(timeout_s=5), user_dir=tmp_path) as sb:
        yield sb


def test_text_columns_are_found_the_way_generated_code_looks_for_them(sandbox: Sandbox) -> None:
    # Generated code finds text columns by dtype == 'object', never true of pandas 3's str columns.
    result = sandbox.run(
        "import io\ndf = pd.read_csv(io.StringIO('a,b\\nx,1\\n,2\\n'))\n"
        "print([c for c, t in df.dtypes.items() if t == 'object'], df.a.isna().sum())"
    )
    assert result.text() == "['a'] 1\n", result
    # Works in this pandas, removed in pandas 4: not worth a line of the cell or of a repair's prompt.
    assert sandbox.run("df.dropna(inplace=True)").outputs == []


def test_child_environment_has_no_secrets(sandbox: Sandbox) -> None:
    result = sandbox.run("import os, json\nprint(json.dumps(dict(os.environ)))")
    env = json.loads(result.outputs[0]["text"])
    assert not any(k.startswith("OPENAI") or "TOKEN" in k for k in env)
    assert "sk-test-secret-123" not in result.outputs[0]["text"]
    assert env["HOME"] != os.environ.get("HOME") and "sk-test" not in json.dumps(env)


def test_allowlist_drops_everything_unknown() -> None:
    env = child_environment(
        "/h",
        "/t",
        {"PATH": "/secret/bin", "AWS_SECRET_ACCESS_KEY": "x", "LC_ALL": "C", "FOO": "1", "LC_TOKEN": "y"},
    )
    assert env["LC_ALL"] == "C" and env["HOME"] == "/h" and env["TMPDIR"] == "/t"
    assert "FOO" not in env and "AWS_SECRET_ACCESS_KEY" not in env and "LC_TOKEN" not in env
    assert "/secret/bin" not in env["PATH"]


def test_runs_in_its_own_workdir_with_user_files_visible(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "import os, pandas as pd\nprint(os.getcwd())\nprint(pd.read_csv('data.csv').a.sum())"
    )
    assert result.outputs[0]["text"] == f"{sandbox.workdir}\n1\n"
    assert os.getpid() not in sandbox.pids.values()


def test_written_files_are_reported(sandbox: Sandbox) -> None:
    sandbox.run("open('report.txt', 'w').write('hi')")
    assert sandbox.written_files() == ["report.txt"]


def test_awkward_frames_round_trip(sandbox: Sandbox) -> None:
    frame = pd.DataFrame(
        [[1, "x", 2.5], [2, None, 3.5]],
        columns=pd.Index([0, "dup", "dup"]),
        index=pd.Index(["r1", "r2"], name="rows"),
    )
    mixed = pd.DataFrame({"m": [1, "a", 2.5, None]})
    series = pd.Series([1.5, 2.5], name=("multi", "label"))
    sandbox.send_frames({"frame": frame, "mixed": mixed, "series": series})
    assert any("'m'" in w and "as strings" in w for w in sandbox.warnings)
    back = sandbox.fetch(["frame", "mixed", "series"])
    pd.testing.assert_frame_equal(back["frame"], frame, check_dtype=False)
    assert back["mixed"]["m"].tolist()[:3] == ["1", "a", "2.5"]
    pd.testing.assert_series_equal(back["series"], series)


def test_fetch_scalars_and_refuses_objects(sandbox: Sandbox) -> None:
    sandbox.run("n = 3\nratio = float('nan')\nname = 'x'\nclass Evil:\n    pass\nevil = Evil()")
    got = sandbox.fetch(["n", "ratio", "name", "evil"])
    assert got["n"] == 3 and got["name"] == "x" and got["ratio"] != got["ratio"]
    assert "evil" not in got and any("no pickling" in w for w in sandbox.warnings)


def test_crash_restarts_and_restores_frames(sandbox: Sandbox) -> None:
    sandbox.send_frames({"df": pd.DataFrame({"a": [1, 2, 3]})})
    dead = sandbox.run("import os\nos._exit(1)")
    assert dead.outcome == "died" and dead.restarted
    assert sandbox.run("print(df.a.sum())").outputs[0]["text"] == "6\n"


def test_a_frame_that_cannot_be_reloaded_after_a_restart_is_said_and_sent_again(sandbox: Sandbox) -> None:
    df = pd.DataFrame({"a": [1, 2, 3]})
    sandbox.send_frames({"df": df})
    (sandbox._frames.folder / "df.arrow").write_bytes(b"not arrow")  # what the reload will find
    assert sandbox.run("import os\nos._exit(1)").restarted
    assert any("could not reload df" in w for w in sandbox.warnings), sandbox.warnings
    # Forgotten as sent: the next run that names it sends it afresh, and the code sees the user's data.
    assert sandbox.run("print(df.a.sum())", {"df": df}).text() == "6\n"


def test_memory_limit_gives_memory_error(tmp_path: Path) -> None:
    with Sandbox(Limits(memory_mb=1536, timeout_s=20), user_dir=tmp_path) as sb:
        result = sb.run("x = bytearray(4 * 1024**3)")
        assert result.outcome == "error" and result.error_name == "MemoryError"
        assert sb.run("print('alive')").ok


def test_huge_output_is_truncated_keeping_the_tail(tmp_path: Path) -> None:
    with Sandbox(Limits(timeout_s=30, max_output_bytes=10_000), user_dir=tmp_path) as sb:
        result = sb.run("for i in range(200_000): print(i)")
    text = result.outputs[0]["text"]
    assert text.startswith("[…") and "truncated" in text and text.endswith("199999\n")
    assert len(text) < 11_000


def test_in_place_edits_are_resent_unchanged_frames_are_not(sandbox: Sandbox) -> None:
    frame = pd.DataFrame({"a": range(1000), "b": ["x"] * 1000})
    assert sandbox.send_frames({"f": frame}) == ["f"]
    assert sandbox.send_frames({"f": frame}) == []  # same object, same content: nothing moves
    frame.loc[500, "a"] = -1  # an in-place edit deep inside the frame
    assert sandbox.send_frames({"f": frame}) == ["f"]
    assert sandbox.run("print(int(f.a.min()))").outputs[0]["text"] == "-1\n"
    frame.columns = ["a", "c"]
    assert sandbox.send_frames({"f": frame}) == ["f"]


def test_prestarted_sandbox_is_taken_by_the_first_ask(tmp_path: Path) -> None:
    from ci_magic.engine.interpreter import Interpreter

    with Interpreter(base_url="http://127.0.0.1:9/v1", user_dir=tmp_path) as interp:
        interp.prestart()
        sandbox = interp.sandbox  # waits for the background start
        assert sandbox.run("print('warm')").outputs[0]["text"] == "warm\n"
        assert interp.sandbox is sandbox


def test_sandbox_dies_with_the_kernel_that_started_it(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    # A stand-in for the user's kernel: starts a sandbox, then dies without any cleanup.
    code = (
        "import os, json\nfrom ci_magic.sandbox import Sandbox\n"
        f"sb = Sandbox(user_dir={str(tmp_path)!r})\nprint(json.dumps(sb.pids), flush=True)\nos._exit(0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    pids = [p for p in json.loads(proc.stdout.strip().splitlines()[-1]).values() if p]
    assert pids, proc.stderr[-2000:]

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while any(map(running, pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(running, pids)), "the orphaned sandbox kept running"


def test_polars_and_arrow_frames_travel_as_themselves(sandbox: Sandbox) -> None:
    pl = pytest.importorskip("polars")
    import pyarrow as pa

    frame = pl.DataFrame({"city": ["a", "b", "a"], "n": [1, 2, 3]})
    table = pa.table({"x": [1.5, 2.5]})
    lazy = frame.lazy().filter(pl.col("n") > 1)
    sandbox.send_frames({"pf": frame, "at": table, "lf": lazy})
    seen = sandbox.run(
        "import polars as pl, pyarrow as pa\n"
        "print(type(pf).__name__, type(at).__name__, type(lf).__name__)\n"
        "by_city = pf.group_by('city').agg(pl.col('n').sum()).sort('city')\n"
        "doubled = pa.table({'y': [v * 2 for v in at.column('x').to_pylist()]})"
    )
    assert seen.text() == "DataFrame Table LazyFrame\n", seen.text()
    back = sandbox.fetch(["by_city", "doubled"])
    assert isinstance(back["by_city"], pl.DataFrame) and back["by_city"]["n"].to_list() == [4, 2]
    assert isinstance(back["doubled"], pa.Table) and back["doubled"].column("y").to_pylist() == [3.0, 5.0]


def test_folders_made_for_binds_below_tmp_can_be_entered_and_tmp_keeps_its_mode() -> None:
    # A clean clone in /tmp/project: its venv is bound below the sandbox's own /tmp, and the folders bwrap makes
    # on the way must be enterable by the sandbox user (else: "No module named 'zmq'" at start).
    from ci_magic.sandbox.isolation import _intermediate_dirs

    found = _intermediate_dirs(["/tmp/project/.venv", "/root/.pyenv/versions/3.11.7", "/sandbox/work/a"])
    assert found == ["/root", "/root/.pyenv", "/root/.pyenv/versions", "/tmp/project"]


def test_numbers_a_coercing_conversion_turns_into_nan_are_said_on_stderr(sandbox: Sandbox) -> None:
    # sandbox/losses.py: values that hold a number are named; words and blanks are missing values, not losses.
    result = sandbox.run(
        "s = pd.Series(['1', '37,410', '3+', 'n/a', '', None], name='cases')\n"
        "x = pd.to_numeric(s, errors='coerce')\n"
        "print(int(x.notna().sum()), x.index.equals(s.index))\n"
        "pd.to_numeric(pd.Series(['2', 'n/a']), errors='coerce'); pd.to_numeric(['4', '5'])\n"
        "pd.to_numeric('7', errors='coerce')"
    )
    streams = {o["name"]: o["text"] for o in result.outputs if o["output_type"] == "stream"}
    assert streams["stdout"] == "1 True\n"
    note = "[ci_magic] pd.to_numeric(errors='coerce') turned 2 of 5 values of 'cases' that hold a number"
    assert streams["stderr"] == f"{note} into NaN, e.g. '37,410', '3+'\n"
    assert "ci_magic" not in sandbox.run("pd.to_numeric(pd.Series(['1', 'x1']), errors='raise')").text()
    # Said once per cell, again in the next one.
    twice = "for _ in range(3): pd.to_numeric(pd.Series(['1', 'x1']), errors='coerce')"
    assert sandbox.run(twice).text().count("[ci_magic]") == 1
    assert sandbox.run(twice).text().count("[ci_magic]") == 1
    # One value at a time (a small model's s.apply(lambda v: pd.to_numeric(v, errors='coerce'))): said once, as
    # the cell ends.
    each = sandbox.run(
        "x = s.apply(lambda v: pd.to_numeric(v, errors='coerce'))\nprint(int(x.notna().sum()))"
    )
    assert sorted(each.text().splitlines()) == [
        "1",
        "[ci_magic] pd.to_numeric(errors='coerce') turned 2 of 5 values that hold a number into NaN, one value "
        "at a time, e.g. '37,410', '3+'",
    ]


def test_a_scipy_test_that_returns_nan_over_missing_values_is_said_on_stderr(sandbox: Sandbox) -> None:
    # Imported in the cell that uses it, by either kind of import: watched before the names are bound.
    result = sandbox.run(
        "from scipy.stats import shapiro\nfrom scipy import stats\n"
        "s = pd.Series([2.0, 3.5, None, 4.0, 3.0, 5.5, None], name='nsamplecov')\n"
        "p = shapiro(s).pvalue\nprint('normal' if p > 0.05 else 'not normal')\n"
        "r = stats.pearsonr(s.fillna(0), np.arange(7.0))\n"  # no missing values, no NaN: nothing said
        "stats.ttest_1samp(s, 3, nan_policy='omit')\n"  # the code chose what happens to them
        "print(round(float(shapiro(s.dropna()).pvalue), 2) > 0, shapiro.__name__)"
    )
    streams = {o["name"]: o["text"] for o in result.outputs if o["output_type"] == "stream"}
    assert streams["stdout"] == "not normal\nTrue shapiro\n"
    assert streams["stderr"] == (
        "[ci_magic] scipy.stats.shapiro returned NaN: its input held 2 missing values (NaN) of 'nsamplecov'\n"
    )
    assert "ci_magic" not in sandbox.run("print(stats.skew(np.array([1.0, 2.0, 4.0])))").text()


def test_forgotten_variables_are_gone_and_nothing_else_is(sandbox: Sandbox) -> None:
    sandbox.run("a, b = 1, len(df) + 1", {"df": pd.DataFrame({"x": [1]})})
    sandbox.forget(["a", "missing", "not an identifier; import os"])
    after = sandbox.run("print('a' in globals(), b, len(df), pd.__name__)")
    assert after.text() == "False 2 1 pandas\n"
