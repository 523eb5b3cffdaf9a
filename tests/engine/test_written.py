"""A written file the question asks for, checked against its name and the question (ci_magic/engine/written.py):
bytes in, a reason out. No kernel, no model."""

from __future__ import annotations

import io

import pandas as pd

from ci_magic.engine.written import columns_named, problem

SUMMARY = "Write summary.xlsx with one row per region of sales.csv and two columns: region and total_revenue"


def xlsx(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_excel(out, index=False)
    return out.getvalue()


def test_a_copy_of_the_input_is_no_conversion() -> None:
    found = problem("report.txt", b"%PDF-1.4\n1 0 obj", "Extract the text of report.pdf to report.txt")
    assert found is not None and "it holds a PDF file's bytes, not text" in found and "pypdf" in found
    assert "not a valid .png file (its bytes are a GIF image" in (
        problem("logo.png", b"GIF89a\x01", "as logo.png") or ""
    )
    assert "binary data" in (problem("out.csv", b"a,b\x00\x01", "to out.csv") or "")
    assert problem("logo.png", b"\x89PNG\r\n\x1a\n", "as logo.png") is None
    assert problem("notes.txt", "plain text, ünïcode".encode(), "to notes.txt") is None


def test_a_json_file_holds_one_document() -> None:
    lines = problem("c.json", b'{"a": 1}\n{"a": 2}\n', "Convert c.csv to c.json")
    assert lines is not None and "JSON Lines" in lines and "Do not pass lines=True" in lines
    assert "does not parse" in (problem("c.json", b"{oops", "to c.json") or "")
    assert "nested deeper" in (problem("c.json", b"[" * 100_000, "to c.json") or "")  # measured, not parsed
    assert problem("c.json", b'[{"a": 1}, {"a": 2}]', "to c.json") is None
    assert problem("c.jsonl", b'{"a": 1}\n{"a": 2}\n', "to c.jsonl") is None


def test_columns_the_question_names_must_be_the_tables() -> None:
    assert columns_named(SUMMARY) == ["total_revenue"]
    assert columns_named("Save the rows to out.csv with the columns 'Region' and \"Total\"") == [
        "Region",
        "Total",
    ]
    # Plain words and file names are not taken for column names.
    assert columns_named("Save a chart of revenue by region in sales.csv as chart.png") == []
    assert columns_named("Split sales.csv into by_region/<region>.csv (e.g. by_region/North.csv)") == []
    quick = "save it as summary.xlsx (columns region and revenue) and a bar chart of it as q2_revenue.png"
    assert columns_named(quick) == []
    wrong = problem("summary.xlsx", xlsx(pd.DataFrame({"region": ["N"], "revenue": [1.0]})), SUMMARY)
    assert (
        wrong is not None
        and "has the columns 'region', 'revenue', but the question names 'total_revenue'" in wrong
    )
    assert (
        problem("summary.xlsx", xlsx(pd.DataFrame({"region": ["N"], "total_revenue": [1.0]})), SUMMARY)
        is None
    )
    assert problem("summary.csv", b"region,total_revenue\nN,1\n", SUMMARY) is None
    renamed = problem("summary.csv", b"region,revenue\nN,1\n", SUMMARY + " (the sum of revenue)") or ""
    assert "rename(columns={'revenue': 'total_revenue'})" in renamed


def test_a_file_that_cannot_be_read_back_raises_no_doubt() -> None:
    assert problem("summary.xlsx", None, SUMMARY) is None
    assert "not a valid .xlsx file" in (problem("summary.xlsx", b"region,revenue\n", SUMMARY) or "")
