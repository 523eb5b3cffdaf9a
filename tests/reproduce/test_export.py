"""A notebook built with two %%ask cells (real nbclient run, fake model) → export → verify in a fresh kernel;
tampering fails verify at that cell; re-running the original hits the replay cache; no key in any file."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import fenced
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from nbclient import NotebookClient

from ci_magic import cli
from ci_magic.providers.fake import FakeModelServer
from ci_magic.reproduce.export import EXPORT_KEY

KEY = "sk-MARKER-never-written-7f3a"

SOURCE_CELLS = [
    "%load_ext ci_magic",
    "import pandas as pd\nsales = pd.read_csv('sales.csv')",
    "%%ask\nTotal revenue by month",
    "%%ask --attempts 2\nPlot the monthly totals as a bar chart",
    "print('best month:', int(by_month.idxmax()))",
]
RULES = [
    (
        "Total revenue by month",
        fenced("by_month = sales.groupby('month').revenue.sum()\nprint(by_month.to_dict())"),
    ),
    ("bar chart", fenced("by_month.plot.bar()\nplt.show()\nby_month.max()")),
    # The answer in words, written from the outputs (the request carries them; the reply is plain text).
    (r"\{1: 30\.0, 2: 30\.0, 3: 5\.0\}", "Months 1 and 2 had revenue 30.0 each, month 3 had 5.0."),
    (r"one or two short sentences", "The highest month had revenue 30.0."),
]


def _notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in SOURCE_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _run(nb: nbformat.NotebookNode, folder: Path) -> nbformat.NotebookNode:
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return nb


@pytest.mark.slow
def test_export_verify_tamper_and_replay(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "sales.csv").write_text("month,revenue\n1,10.0\n1,20.0\n2,30.0\n3,5.0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("CI_MAGIC_MODEL", "fake-model")
    # ci_magic's own files live outside the notebook's folder (as under ~/.cache): that folder's files are part
    # of what the model is told, so a cache there would change the conversation it is keyed on.
    monkeypatch.setenv("CI_MAGIC_TRACE_DIR", str(tmp_path.parent / f"{tmp_path.name}-traces"))
    monkeypatch.setenv("CI_MAGIC_REPLY_CACHE_DIR", str(tmp_path.parent / f"{tmp_path.name}-replies"))
    with FakeModelServer(rules=RULES) as fake:  # type: ignore[arg-type]
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        built = _run(_notebook(), tmp_path)
        assert len(fake.requests) == 4  # each ask: its code, then its answer in words
        nbformat.write(built, tmp_path / "analysis.ipynb")

        # Run All again in a fresh kernel: the replay cache answers, the code runs, outputs are recomputed.
        again = _run(_notebook(), tmp_path)
        assert len(fake.requests) == 4
        assert any("{1: 30.0" in o.get("text", "") for o in again.cells[2].outputs)

    # The export runs without ci_magic's model: no endpoint, no key.
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "CI_MAGIC_MODEL"):
        monkeypatch.delenv(name)
    assert cli.main(["export", "analysis.ipynb", "-o", "export.ipynb"]) == 0
    exported = nbformat.read(tmp_path / "export.ipynb", as_version=4)
    sources = "\n".join(c.source for c in exported.cells)
    assert "%load_ext" not in sources and "%%ask" not in sources
    env = exported.cells[0].metadata[EXPORT_KEY]
    assert env["kind"] == "environment" and "pandas" in env["environment"]["packages"]
    assert list(env["data_files"]) == ["sales.csv"]
    kinds = [c.metadata.get(EXPORT_KEY, {}).get("kind") for c in exported.cells]
    assert kinds == ["environment", "user", "ask", "generated", "ask", "generated", "user"]
    asks = [c for c in exported.cells if c.cell_type == "markdown"]
    assert "Total revenue by month" in asks[0].source and "fake-model" in asks[0].source
    # The answer in words goes with each ask, as text.
    assert "**Answer:** Months 1 and 2 had revenue 30.0 each, month 3 had 5.0." in asks[0].source
    assert "**Answer:** The highest month had revenue 30.0." in asks[1].source
    chart = exported.cells[5]
    assert any("image/png" in o.get("data", {}) for o in chart.outputs)
    assert "by_month.plot.bar()" in chart.source

    assert cli.main(["verify", "export.ipynb"]) == 0

    # Tamper with the first generated cell's printed output: verify fails, naming that cell.
    generated = exported.cells[3]
    stream = next(o for o in generated.outputs if o.output_type == "stream")
    stream.text = stream.text.replace("30.0", "31.0")
    nbformat.write(exported, tmp_path / "tampered.ipynb")
    from ci_magic.reproduce.verify import verify

    mismatches, _ = verify(tmp_path / "tampered.ipynb")
    assert [(m.cell, m.kind) for m in mismatches] == [(3, "stream")]
    assert cli.main(["verify", "tampered.ipynb"]) == 1

    # The key never reached a notebook, a trace or the cache.
    places = (
        tmp_path,
        tmp_path.parent / f"{tmp_path.name}-traces",
        tmp_path.parent / f"{tmp_path.name}-replies",
    )
    written = [p for place in places for p in place.rglob("*") if p.is_file()]
    assert any(p.suffix == ".jsonl" for p in written) and any(
        p.parent.parent.name.endswith("replies") for p in written
    )
    for path in written:
        assert KEY not in path.read_text(errors="replace"), path


def test_live_session_export(
    shell: InteractiveShell, fake: FakeModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI_MAGIC_TRACE_DIR", str(tmp_path / "traces"))
    monkeypatch.setenv("CI_MAGIC_REPLY_CACHE_DIR", str(tmp_path / "replies"))
    fake.add(fenced("avg = sales.groupby('month').revenue.mean()\nprint(avg.to_dict())"))
    with capture_output() as cap:
        # A kernel stores every cell in its input history; run_cell in a test only when asked to.
        setup = (
            "import pandas as pd\nsales = pd.DataFrame({'month': [1, 1, 2], 'revenue': [10.0, 20.0, 30.0]})"
        )
        shell.run_cell(setup, store_history=True)
        shell.run_cell("%%ask\nAverage revenue by month", store_history=True)
        shell.run_cell("print(avg.sum())", store_history=True)
        shell.run_cell("%ask_export live.ipynb", store_history=True)
    assert "exported" in cap.stdout, cap.stderr
    exported = nbformat.read(tmp_path / "live.ipynb", as_version=4)
    kinds = [c.metadata.get(EXPORT_KEY, {}).get("kind") for c in exported.cells]
    assert kinds[0] == "environment" and kinds[-3:] == ["ask", "generated", "user"]
    generated = exported.cells[-2]
    assert generated.outputs[0]["text"] == "{1: 15.0, 2: 30.0}\n"
    # No saved notebook to take the user cells' outputs from: verify runs them without comparing.
    assert not exported.cells[-1].metadata[EXPORT_KEY]["outputs_recorded"]
    from ci_magic.reproduce.verify import verify

    mismatches, _ = verify(tmp_path / "live.ipynb")
    assert mismatches == []


def test_verify_runs_generated_code_in_the_sandbox(tmp_path: Path) -> None:
    # Code that behaves well when sandboxed and steals when not: verify must not be the way out.
    from ci_magic.reproduce.environment import environment_cell
    from ci_magic.reproduce.verify import verify

    outside = tmp_path / "left-the-sandbox.txt"
    code = (
        "import os\n"
        f"target = {str(outside)!r}\n"
        "try:\n    open(target, 'w').write(str(sorted(os.environ)))\n    print('outside')\n"
        "except OSError:\n    print('inside')"
    )
    generated = nbformat.v4.new_code_cell(
        code, outputs=[nbformat.v4.new_output("stream", name="stdout", text="inside\n")]
    )
    generated.metadata[EXPORT_KEY] = {"kind": "generated", "outputs_recorded": True}
    nb = nbformat.v4.new_notebook(cells=[environment_cell({"packages": {}}, {}), generated])
    nbformat.write(nb, tmp_path / "export.ipynb")

    assert verify(tmp_path / "export.ipynb", timeout=60)[0] == []
    assert not outside.exists()
    assert cli.main(["verify", str(tmp_path / "export.ipynb")]) == 0
    # Outside the sandbox only when asked for, and then it shows.
    mismatches, _ = verify(tmp_path / "export.ipynb", timeout=60, sandboxed=False)
    assert [m.kind for m in mismatches] == ["stream"] and outside.exists()
