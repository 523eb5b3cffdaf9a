"""Write notebooks/sales.xlsx from notebooks/sales.csv: the first two quarters as sheets Q1 and Q2.

    python scripts/make_sales_xlsx.py [--check]

The quickstart notebook reads it ("file in"). The workbook is the same bytes every time (fixed zip and
document dates), so re-running this script leaves git clean; ``--check`` exits 1 when the committed workbook
differs from what this script writes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

from ci_magic.evaluation.file_fixtures import write_xlsx

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def sheets() -> dict[str, pd.DataFrame]:
    sales = pd.read_csv(NOTEBOOKS / "sales.csv", parse_dates=["date"])
    sales["date"] = sales["date"].dt.date  # Excel dates, read back by pandas as datetimes
    quarter = pd.to_datetime(sales["date"]).dt.quarter
    return {f"Q{q}": sales[quarter == q].reset_index(drop=True) for q in (1, 2)}


def main(argv: list[str]) -> int:
    target = NOTEBOOKS / "sales.xlsx"
    if "--check" in argv:
        with tempfile.TemporaryDirectory() as d:
            fresh = Path(d) / "sales.xlsx"
            write_xlsx(fresh, sheets())
            same = target.exists() and fresh.read_bytes() == target.read_bytes()
        print(f"{target}: {'up to date' if same else 'differs from what scripts/make_sales_xlsx.py writes'}")
        return 0 if same else 1
    write_xlsx(target, sheets())
    print(
        f"wrote {target} ({target.stat().st_size:,} bytes): "
        + ", ".join(f"{name} {len(frame)} rows" for name, frame in sheets().items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
