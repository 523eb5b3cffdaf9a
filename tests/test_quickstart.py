"""The quickstart notebook executes headless, its %%ask cells producing real outputs (fake model).

It runs in a copy of notebooks/ (as scripts/run_notebook.py does), so the files its asks write never land in
the source tree."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import ROOT
from nbclient import NotebookClient

from ci_magic.providers.fake import FakeModelServer

NOTEBOOKS = ROOT / "notebooks"


def test_quickstart_executes_with_outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    work = tmp_path / "notebooks"
    work.mkdir()
    for name in ("quickstart.ipynb", "sales.csv", "sales.xlsx"):
        shutil.copy2(NOTEBOOKS / name, work / name)
    nb = nbformat.read(work / "quickstart.ipynb", as_version=4)
    with FakeModelServer.from_json(NOTEBOOKS / "quickstart_fake_model.json") as server:
        # The notebook's kernel inherits this environment, as it would a user's shell.
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        NotebookClient(
            nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(work)}}
        ).execute()
        # Each ask: its code, then its answer in words; --context-only sent nothing.
        assert len(server.requests) == 10
    ask_cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%ask\n")]
    assert len(ask_cells) == 5
    month, product, region, q2_sheet, files = ask_cells
    assert any("image/png" in o.get("data", {}) for o in month.outputs)
    assert any("avg_revenue" in o.get("data", {}).get("text/html", "") for o in month.outputs)
    assert any("Gizmo:" in o.get("text", "") for o in product.outputs)
    assert any("units" in o.get("data", {}).get("text/plain", "") for o in region.outputs)
    said = [o.get("data", {}).get("text/plain", "") for o in month.outputs]
    assert any("Answer: (The fake model of this demo" in text for text in said)

    # File in: the model was told about the workbook's sheets, and the code read one.
    sent = server.requests[6]["messages"][-1]["content"]
    assert "sales.xlsx" in sent and "'Q2'" in sent
    assert any("q2_revenue" in o.get("data", {}).get("text/html", "") for o in q2_sheet.outputs)

    # Files out: both arrived in the notebook's folder, listed with links, the chart shown inline.
    summary = pd.read_excel(work / "summary.xlsx")
    assert list(summary.columns) == ["region", "revenue"] and len(summary) == 4
    chart = (work / "q2_revenue.png").read_bytes()
    listing = next(o for o in files.outputs if "text/markdown" in o.get("data", {}))
    markdown = listing["data"]["text/markdown"]
    assert "[summary.xlsx](summary.xlsx)" in markdown and "[q2\\_revenue.png](q2_revenue.png)" in markdown
    inline = [o for o in files.outputs if "image/png" in o.get("data", {})]
    assert len(inline) == 1 and base64.b64decode(inline[0]["data"]["image/png"]) == chart
    assert not (NOTEBOOKS / "summary.xlsx").exists() or _ignored("notebooks/summary.xlsx")
    nbformat.validate(nb)
    nbformat.write(nb, tmp_path / "quickstart.out.ipynb")


def _ignored(path: str) -> bool:
    import subprocess

    return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0


def test_the_workbook_is_what_its_script_writes() -> None:
    """notebooks/sales.xlsx is generated (scripts/make_sales_xlsx.py), byte for byte."""
    pytest.importorskip("openpyxl")
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_sales_xlsx.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sheets = pd.read_excel(NOTEBOOKS / "sales.xlsx", sheet_name=None)
    assert list(sheets) == ["Q1", "Q2"] and all(len(s) > 50 for s in sheets.values())
    assert shutil.which("git") is None or not _ignored("notebooks/sales.xlsx")
