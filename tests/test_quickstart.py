"""The quickstart notebook executes headless, its %%ask cells producing real outputs (fake model)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient

from ci_magic.providers.fake import FakeModelServer


def test_quickstart_executes_with_outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    notebooks = ROOT / "notebooks"
    nb = nbformat.read(notebooks / "quickstart.ipynb", as_version=4)
    with FakeModelServer.from_json(notebooks / "quickstart_fake_model.json") as server:
        # The notebook's kernel inherits this environment, as it would a user's shell.
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        NotebookClient(
            nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(notebooks)}}
        ).execute()
        assert len(server.requests) == 3  # --context-only sent nothing
    ask_cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%ask\n")]
    assert len(ask_cells) == 3
    month, product, region = ask_cells
    assert any("image/png" in o.get("data", {}) for o in month.outputs)
    assert any("avg_revenue" in o.get("data", {}).get("text/html", "") for o in month.outputs)
    assert any("Gizmo:" in o.get("text", "") for o in product.outputs)
    assert any("units" in o.get("data", {}).get("text/plain", "") for o in region.outputs)
    nbformat.validate(nb)
    nbformat.write(nb, tmp_path / "quickstart.out.ipynb")
