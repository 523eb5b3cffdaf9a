"""Input files of the file-conversion tasks (ci_magic/evaluation/file_tasks.py), byte for byte the same every
time and made without downloads: a sales workbook with a sheet per quarter, a two-page PDF report, a logo PNG,
orders and events as JSON/JSONL, customers and inventory tables."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

#: Every zip entry (and the workbook's own dates) gets this time, so a workbook is the same bytes every time.
FIXED_TIME = (2024, 1, 1, 0, 0, 0)
REGIONS = ("North", "South", "East", "West")
PRODUCTS = ("Widget", "Gadget", "Gizmo")


def sales_rows() -> pd.DataFrame:
    """24 sales: month (text), region, product, units, revenue; fixed numbers, no randomness."""
    rows = []
    for i in range(24):
        units = 3 + (i * 7) % 19
        rows.append(
            {
                "month": f"2024-{i // 4 + 1:02d}",
                "region": REGIONS[i % 4],
                "product": PRODUCTS[(i * 5) % 3],
                "units": units,
                "revenue": round(units * (12.5 + (i % 5) * 3.25), 2),
            }
        )
    return pd.DataFrame(rows)


def quarter_sheets() -> dict[str, pd.DataFrame]:
    """Q1, Q2, Q3: different rows (and lengths) per quarter, so a wrong sheet is caught."""
    sales = sales_rows()
    return {
        f"Q{q}": sales.iloc[(q - 1) * 8 : q * 8 - (q - 1)].reset_index(drop=True)[
            ["region", "product", "units", "revenue"]
        ]
        for q in (1, 2, 3)
    }


def write_xlsx(path: Path, sheets: dict[str, pd.DataFrame]) -> None:
    """A workbook of these sheets (header row, then values), the same bytes every time."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, frame in sheets.items():
        sheet = book.create_sheet(title)
        sheet.append([str(c) for c in frame.columns])
        for row in frame.itertuples(index=False):
            sheet.append([v.item() if hasattr(v, "item") else v for v in row])
    buffer = io.BytesIO()
    book.save(buffer)
    path.write_bytes(deterministic_zip(buffer.getvalue()))


def deterministic_zip(data: bytes) -> bytes:
    """The same zip with fixed entry times and the document's created/modified dates fixed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                body = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"2024-01-01T00:00:00Z", body)
            entry = zipfile.ZipInfo(info.filename, FIXED_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            dst.writestr(entry, body)
    return out.getvalue()


REPORT_PAGES = (
    (
        "Quarterly Report",
        "Revenue grew 12 percent in the second quarter.",
        "The North region led with 41200 in sales.",
    ),
    ("Outlook", "We expect steady demand in the third quarter.", "Prices stay the same until October."),
)


def write_pdf(path: Path, pages: tuple[tuple[str, ...], ...] = REPORT_PAGES) -> None:
    """A minimal PDF written by hand: one Helvetica line per text, one page per tuple."""
    objects: list[bytes] = []
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{p} 0 R" for p in page_ids).encode()
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count " + str(len(pages)).encode() + b" >>")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for page_id, lines in zip(page_ids, pages, strict=True):
        text = "".join(
            f"BT /F1 12 Tf 72 {720 - 20 * n} Td ({line.replace(chr(92), '').replace('(', '').replace(')', '')}) Tj ET\n"
            for n, line in enumerate(lines)
        ).encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {page_id + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length " + str(len(text)).encode() + b" >>\nstream\n" + text + b"endstream")
    body = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(body))
        body += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(body)
    body += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    body += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    body += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(body))


LOGO_COLORS = ((220, 30, 30), (30, 160, 60), (30, 60, 200), (240, 200, 20))  # quadrants: TL, TR, BL, BR


def write_logo(path: Path) -> None:
    """A 200x200 PNG in four solid quadrants (so a resized copy can be checked by its colors)."""
    from PIL import Image

    image = Image.new("RGB", (200, 200))
    for n, color in enumerate(LOGO_COLORS):
        x, y = (n % 2) * 100, (n // 2) * 100
        image.paste(color, (x, y, x + 100, y + 100))
    image.save(path, format="PNG")


def orders() -> list[dict[str, Any]]:
    statuses = ("paid", "shipped", "refunded")
    return [
        {
            "order_id": 1000 + i,
            "customer": f"c{i % 5:02d}",
            "amount": round(9.99 * (i + 1), 2),
            "status": statuses[i % 3],
        }
        for i in range(12)
    ]


def events() -> list[dict[str, Any]]:
    actions = ("view", "click", "buy")
    return [
        {"id": i + 1, "user": f"u{i % 4}", "action": actions[i % 3], "value": (i * 13) % 7} for i in range(15)
    ]


def customers() -> pd.DataFrame:
    cities = ("Lyon", "Porto", "Graz", "Turku")
    return pd.DataFrame(
        {
            "id": range(1, 9),
            "name": ["Ana", "Ben", "Chloe", "Dario", "Eva", "Femi", "Gus", "Hana"],
            "city": [cities[i % 4] for i in range(8)],
            "orders": [(i * 3) % 5 + 1 for i in range(8)],
        }
    )


def inventory() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sku": [f"SKU-{i:03d}" for i in range(1, 11)],
            "item": ["bolt", "nut", "washer", "screw", "hinge", "bracket", "spring", "clip", "pin", "rivet"],
            "qty": [(i * 17) % 40 for i in range(10)],
            "price": [round(0.15 + i * 0.35, 2) for i in range(10)],
        }
    )


def _sales_xlsx(folder: Path) -> None:
    write_xlsx(folder / "sales.xlsx", quarter_sheets())


def _sales_csv(folder: Path) -> None:
    sales_rows().to_csv(folder / "sales.csv", index=False)
