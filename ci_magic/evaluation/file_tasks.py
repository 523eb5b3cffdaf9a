"""File-conversion tasks: a file (or two) in, a file (or a few) out, checked exactly.

Each :class:`FileTask` has a fixture generator (writes its input files into an empty folder, byte for byte
the same every time, with no downloads), the question as a user would type it, and a checker that reads the
output file(s) and compares them with what the inputs say they must hold. ``reference`` writes a correct
output and ``wrong`` a plausible wrong one, so the checkers themselves are tested without a model
(tests/test_file_tasks.py).

The inputs are made by :mod:`.file_fixtures`; :mod:`.file_task_runs` runs a task through the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .file_fixtures import (
    LOGO_COLORS,
    REGIONS,
    REPORT_PAGES,
    _sales_csv,
    _sales_xlsx,
    customers,
    events,
    inventory,
    orders,
    quarter_sheets,
    sales_rows,
    write_logo,
    write_pdf,
)


class CheckFailed(Exception):
    """The output is missing or differs from what the task asks; the message says how."""


@dataclass(frozen=True)
class FileTask:
    name: str
    question: str
    inputs: Callable[[Path], None]  # writes the input files into an empty folder
    outputs: tuple[str, ...]  # the files the answer must write (relative paths)
    check: Callable[[Path], None]  # raises CheckFailed unless the folder holds a correct answer
    reference: Callable[[Path], None]  # writes a correct answer (the inputs are there)
    wrong: Callable[[Path], None]  # writes a plausible wrong answer


# ---- checking ------------------------------------------------------------------------------------------------


def _need(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        there = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        raise CheckFailed(f"{name} was not written (the folder holds: {', '.join(there) or 'nothing'})")
    return path


def same_frame(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    """Same column names in the same order, same rows in the same order, same values (numbers to 1e-9)."""
    if list(map(str, got.columns)) != list(map(str, want.columns)):
        raise CheckFailed(f"{what}: columns {list(got.columns)}, expected {list(want.columns)}")
    if len(got) != len(want):
        raise CheckFailed(f"{what}: {len(got)} rows, expected {len(want)}")
    try:
        pd.testing.assert_frame_equal(
            got.reset_index(drop=True),
            want.reset_index(drop=True),
            check_dtype=False,
            check_column_type=False,
            check_exact=False,
            rtol=1e-9,
            atol=1e-9,
        )
    except AssertionError as exc:
        raise CheckFailed(f"{what}: values differ ({' '.join(str(exc).split())[:300]})") from None


def _read(reader: Callable[[Path], pd.DataFrame], path: Path) -> pd.DataFrame:
    try:
        return reader(path)
    except Exception as exc:
        raise CheckFailed(f"{path.name} cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from None


def _csv_equals(folder: Path, name: str, want: pd.DataFrame) -> None:
    same_frame(_read(pd.read_csv, _need(folder, name)), want, name)


# ---- the tasks -----------------------------------------------------------------------------------------------


def _q2_csv_check(folder: Path) -> None:
    _csv_equals(folder, "q2.csv", quarter_sheets()["Q2"])


def _all_sheets_check(folder: Path) -> None:
    for title, frame in quarter_sheets().items():
        _csv_equals(folder, f"{title}.csv", frame)


def _parquet_check(folder: Path) -> None:
    got = _read(pd.read_parquet, _need(folder, "orders.parquet"))
    same_frame(got, pd.DataFrame(orders()), "orders.parquet")


def report_text() -> str:
    return " ".join(line for page in REPORT_PAGES for line in page)


def _pdf_check(folder: Path) -> None:
    text = _need(folder, "report.txt").read_text(encoding="utf-8", errors="replace")
    got = " ".join(text.split())
    if got != report_text():
        raise CheckFailed(
            f"report.txt holds {got[:200]!r}, expected the two pages' text {report_text()[:80]!r}…"
        )


def _logo_check(folder: Path) -> None:
    from PIL import Image

    path = _need(folder, "logo_small.png")
    try:
        image = Image.open(path)
        image.load()
    except Exception as exc:
        raise CheckFailed(f"logo_small.png is not an image ({exc})") from None
    if image.format != "PNG":
        raise CheckFailed(f"logo_small.png is a {image.format} file, not a PNG")
    if image.size != (64, 64):
        raise CheckFailed(f"logo_small.png is {image.size[0]}x{image.size[1]}, expected 64x64")
    rgb = image.convert("RGB")
    for n, color in enumerate(LOGO_COLORS):
        pixel = rgb.getpixel((16 + (n % 2) * 32, 16 + (n // 2) * 32))
        assert isinstance(pixel, tuple)
        if max(abs(int(a) - b) for a, b in zip(pixel, color, strict=False)) > 40:
            raise CheckFailed(f"logo_small.png quadrant {n} is {pixel}, expected about {color}: not the logo")


def _chart_check(folder: Path) -> None:
    from PIL import Image

    path = _need(folder, "chart.png")
    try:
        image = Image.open(path)
        image.load()
    except Exception as exc:
        raise CheckFailed(f"chart.png is not an image ({exc})") from None
    if image.format != "PNG":
        raise CheckFailed(f"chart.png is a {image.format} file, not a PNG")
    if min(image.size) < 200:
        raise CheckFailed(f"chart.png is only {image.size[0]}x{image.size[1]} pixels")
    colors = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
    if len(colors) < 3:
        raise CheckFailed(f"chart.png has {len(colors)} colors: it is blank")


def region_totals() -> pd.DataFrame:
    sales = sales_rows()
    totals = sales.groupby("region", sort=True)["revenue"].sum().round(2)
    return pd.DataFrame({"region": totals.index, "total_revenue": totals.to_numpy()})


def _summary_check(folder: Path) -> None:
    got = _read(pd.read_excel, _need(folder, "summary.xlsx"))
    if list(map(str, got.columns)) == ["region", "total_revenue"]:
        got = got.sort_values("region", kind="stable")
    same_frame(got, region_totals(), "summary.xlsx")


def _jsonl_check(folder: Path) -> None:
    _csv_equals(folder, "events.csv", pd.DataFrame(events()))


def _records_check(folder: Path) -> None:
    path = _need(folder, "customers.json")
    try:
        got = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckFailed(f"customers.json is not JSON ({exc})") from None
    if not isinstance(got, list) or not all(isinstance(r, dict) for r in got):
        raise CheckFailed(f"customers.json holds a {type(got).__name__}, not a list of records")
    want = customers().to_dict(orient="records")
    if got != want:
        raise CheckFailed(f"customers.json: {got[:2]}…, expected {want[:2]}…")


def _tsv_check(folder: Path) -> None:
    got = _read(pd.read_excel, _need(folder, "inventory.xlsx"))
    same_frame(got, inventory(), "inventory.xlsx")


def _split_check(folder: Path) -> None:
    sales = sales_rows()
    for region in REGIONS:
        want = sales[sales.region == region].reset_index(drop=True)
        _csv_equals(folder, f"by_region/{region}.csv", want)


def _sheets_to_csv(folder: Path, *, index: bool) -> None:
    for title, frame in pd.read_excel(folder / "sales.xlsx", sheet_name=None).items():
        frame.to_csv(folder / f"{title}.csv", index=index)


def _chart_reference(folder: Path) -> None:
    from matplotlib.figure import Figure  # not pyplot: no backend, no global state

    totals = pd.read_csv(folder / "sales.csv").groupby("region")["revenue"].sum()
    figure = Figure()
    axes = figure.subplots()
    axes.bar(list(totals.index), list(totals.to_numpy()))
    figure.savefig(folder / "chart.png")


def _blank_png(path: Path, size: tuple[int, int]) -> None:
    from PIL import Image

    Image.new("RGB", size, "white").save(path, format="PNG")


def _resize(folder: Path, size: tuple[int, int], name: str = "logo_small.png") -> None:
    from PIL import Image

    Image.open(folder / "logo.png").resize(size).save(folder / name, format="PNG")


def _split_reference(folder: Path, regions: tuple[str, ...] = REGIONS) -> None:
    (folder / "by_region").mkdir(exist_ok=True)
    sales = pd.read_csv(folder / "sales.csv")
    for region in regions:
        sales[sales.region == region].to_csv(folder / "by_region" / f"{region}.csv", index=False)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _pdf_reference(folder: Path, pages: int | None = None) -> None:
    from pypdf import PdfReader

    reader = PdfReader(folder / "report.pdf")
    chosen = reader.pages[:pages] if pages else reader.pages
    _write_text(folder / "report.txt", "\n".join(page.extract_text() for page in chosen))


def _summary_frame(folder: Path, how: str) -> pd.DataFrame:
    grouped = pd.read_csv(folder / "sales.csv").groupby("region")["revenue"].agg(how).round(2)
    return grouped.rename("total_revenue").reset_index()


TASKS: tuple[FileTask, ...] = (
    FileTask(
        "xlsx_sheet_to_csv",
        "Convert the Q2 sheet of sales.xlsx to q2.csv",
        _sales_xlsx,
        ("q2.csv",),
        _q2_csv_check,
        lambda f: pd.read_excel(f / "sales.xlsx", sheet_name="Q2").to_csv(f / "q2.csv", index=False),
        lambda f: pd.read_excel(f / "sales.xlsx", sheet_name="Q1").to_csv(f / "q2.csv", index=False),
    ),
    FileTask(
        "xlsx_sheets_to_csvs",
        "Save every sheet of sales.xlsx as its own CSV file named after the sheet, e.g. Q1.csv",
        _sales_xlsx,
        ("Q1.csv", "Q2.csv", "Q3.csv"),
        _all_sheets_check,
        lambda f: _sheets_to_csv(f, index=False),
        lambda f: _sheets_to_csv(f, index=True),
    ),
    FileTask(
        "json_to_parquet",
        "Convert orders.json to orders.parquet",
        lambda f: _write_text(f / "orders.json", json.dumps(orders(), indent=1)),
        ("orders.parquet",),
        _parquet_check,
        lambda f: pd.read_json(f / "orders.json").to_parquet(f / "orders.parquet"),
        lambda f: pd.read_json(f / "orders.json").drop(columns="status").to_parquet(f / "orders.parquet"),
    ),
    FileTask(
        "pdf_to_text",
        "Extract the text of report.pdf to report.txt",
        lambda f: write_pdf(f / "report.pdf"),
        ("report.txt",),
        _pdf_check,
        _pdf_reference,
        lambda f: _pdf_reference(f, pages=1),
    ),
    FileTask(
        "png_resize",
        "Resize logo.png to 64x64 pixels and save it as logo_small.png",
        lambda f: write_logo(f / "logo.png"),
        ("logo_small.png",),
        _logo_check,
        lambda f: _resize(f, (64, 64)),
        lambda f: _resize(f, (64, 32)),
    ),
    FileTask(
        "bar_chart",
        "Save a bar chart of the total revenue by region in sales.csv as chart.png",
        _sales_csv,
        ("chart.png",),
        _chart_check,
        _chart_reference,
        lambda f: _blank_png(f / "chart.png", (640, 480)),
    ),
    FileTask(
        "summary_xlsx",
        "Write summary.xlsx with one row per region of sales.csv and two columns: region and total_revenue "
        "(the sum of revenue)",
        _sales_csv,
        ("summary.xlsx",),
        _summary_check,
        lambda f: _summary_frame(f, "sum").to_excel(f / "summary.xlsx", index=False),
        lambda f: _summary_frame(f, "mean").to_excel(f / "summary.xlsx", index=False),
    ),
    FileTask(
        "jsonl_to_csv",
        "Convert events.jsonl to events.csv",
        lambda f: _write_text(f / "events.jsonl", "".join(json.dumps(e) + "\n" for e in events())),
        ("events.csv",),
        _jsonl_check,
        lambda f: pd.read_json(f / "events.jsonl", lines=True).to_csv(f / "events.csv", index=False),
        lambda f: pd.read_json(f / "events.jsonl", lines=True).iloc[1:].to_csv(f / "events.csv", index=False),
    ),
    FileTask(
        "csv_to_json_records",
        "Convert customers.csv to customers.json as a JSON list with one object per row",
        lambda f: customers().to_csv(f / "customers.csv", index=False),
        ("customers.json",),
        _records_check,
        lambda f: pd.read_csv(f / "customers.csv").to_json(f / "customers.json", orient="records"),
        lambda f: pd.read_csv(f / "customers.csv").to_json(f / "customers.json"),
    ),
    FileTask(
        "tsv_to_xlsx",
        "Convert inventory.tsv to an Excel file inventory.xlsx",
        lambda f: inventory().to_csv(f / "inventory.tsv", sep="\t", index=False),
        ("inventory.xlsx",),
        _tsv_check,
        lambda f: pd.read_csv(f / "inventory.tsv", sep="\t").to_excel(f / "inventory.xlsx", index=False),
        lambda f: pd.read_csv(f / "inventory.tsv", sep="\t").to_excel(f / "inventory.xlsx"),
    ),
    FileTask(
        "split_by_region",
        "Split sales.csv into one CSV per region, saved as by_region/<region>.csv (e.g. by_region/North.csv)",
        _sales_csv,
        tuple(f"by_region/{r}.csv" for r in REGIONS),
        _split_check,
        _split_reference,
        lambda f: _split_reference(f, REGIONS[:3]),
    ),
)


def task(name: str) -> FileTask:
    for t in TASKS:
        if t.name == name:
            return t
    raise KeyError(name)


def check(t: FileTask, folder: Path) -> str | None:
    """None when the folder holds a correct answer to ``t``, else why not."""
    try:
        t.check(folder)
    except CheckFailed as exc:
        return str(exc)
    except Exception as exc:  # a checker must never take the run down; say what broke
        return f"checker error: {type(exc).__name__}: {exc}"
    return None
