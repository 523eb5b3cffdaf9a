"""The file-conversion task set (ci_magic/evaluation/file_tasks.py): fixtures are deterministic, and each
checker accepts a correct answer and rejects a missing or wrong one. No model, no sandbox."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ci_magic.evaluation import file_task_runs, file_tasks
from ci_magic.evaluation.file_tasks import TASKS, FileTask, check

pytest.importorskip("openpyxl")
pytest.importorskip("pypdf")
pytest.importorskip("PIL")


def fixture(t: FileTask, folder: Path) -> Path:
    folder.mkdir()
    t.inputs(folder)
    return folder


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_the_set_is_small_and_named_uniquely() -> None:
    names = [t.name for t in TASKS]
    assert 8 <= len(names) <= 12 and len(set(names)) == len(names)
    assert all(t.outputs and t.question for t in TASKS)


@pytest.mark.parametrize("t", TASKS, ids=lambda t: t.name)
def test_fixtures_are_the_same_bytes_every_time(t: FileTask, tmp_path: Path) -> None:
    first, second = fixture(t, tmp_path / "a"), fixture(t, tmp_path / "b")
    assert digests(first) == digests(second) and digests(first)


@pytest.mark.parametrize("t", TASKS, ids=lambda t: t.name)
def test_the_checker_accepts_the_reference_answer(t: FileTask, tmp_path: Path) -> None:
    folder = fixture(t, tmp_path / "work")
    t.reference(folder)
    assert check(t, folder) is None
    assert all((folder / name).is_file() for name in t.outputs)


@pytest.mark.parametrize("t", TASKS, ids=lambda t: t.name)
def test_the_checker_rejects_a_wrong_answer(t: FileTask, tmp_path: Path) -> None:
    folder = fixture(t, tmp_path / "work")
    t.wrong(folder)
    problem = check(t, folder)
    assert problem is not None and not problem.startswith("checker error"), problem


@pytest.mark.parametrize("t", TASKS, ids=lambda t: t.name)
def test_the_checker_rejects_no_answer(t: FileTask, tmp_path: Path) -> None:
    folder = fixture(t, tmp_path / "work")
    problem = check(t, folder)
    assert problem is not None and "was not written" in problem


def test_the_pdf_is_readable_and_holds_the_report(tmp_path: Path) -> None:
    from pypdf import PdfReader

    file_tasks.write_pdf(tmp_path / "r.pdf")
    reader = PdfReader(tmp_path / "r.pdf", strict=True)
    assert len(reader.pages) == 2
    text = " ".join(" ".join(page.extract_text() for page in reader.pages).split())
    assert text == file_tasks.report_text()


def test_an_index_column_or_a_wrong_sheet_is_a_failure(tmp_path: Path) -> None:
    import pandas as pd

    t = file_tasks.task("xlsx_sheet_to_csv")
    folder = fixture(t, tmp_path / "work")
    pd.read_excel(folder / "sales.xlsx", sheet_name="Q2").to_csv(folder / "q2.csv")  # index written
    assert "columns" in (check(t, folder) or "")
    pd.read_excel(folder / "sales.xlsx", sheet_name="Q3").to_csv(folder / "q2.csv", index=False)
    assert "rows" in (check(t, folder) or "")


def test_a_run_records_what_the_cli_said(tmp_path: Path) -> None:
    # The summary of the CLI's JSON, and of a CLI that printed no JSON at all.
    summary = file_task_runs._summary_of(
        '{"ok": true, "attempts": [{"outcome": "ok", "code": "x = 1", "problem": null}], '
        '"usage": {"total_tokens": 12}, "files": [{"path": "a.csv", "saved_as": "a.csv"}], "code": "x = 1"}',
        "",
    )
    assert summary["ask_ok"] is True and summary["attempts"] == 1 and summary["files_reported"] == ["a.csv"]
    assert file_task_runs._summary_of("", "Traceback: boom")["cli_error"] == "Traceback: boom"
