"""A column filled in place through the column does nothing under copy-on-write: it is rewritten as it meant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ci_magic.engine.copy_on_write import unchained


def test_filling_a_column_in_place_becomes_the_assignment_it_meant() -> None:
    code = (
        "m = df['Age'].median()\n"
        "df['Age'].fillna(m, inplace=True)\n"
        "for c in ['Fare']:\n"
        "    df[c].replace(0, np.nan, inplace=True)  # zero means unknown\n"
        "df.Cabin.fillna(value='U', inplace=True); n = len(df)\n"
        "df.fillna(0, inplace=True)\n"  # the frame itself: works in place, left alone
        "df['Age'].dropna(inplace=True)\n"  # changes the length: not what an assignment would mean
        "print(df['Age'].fillna(0))\n"
    )
    assert unchained(code) == (
        "m = df['Age'].median()\n"
        "df['Age'] = df['Age'].fillna(m)\n"
        "for c in ['Fare']:\n"
        "    df[c] = df[c].replace(0, np.nan)  # zero means unknown\n"
        "df.Cabin = df.Cabin.fillna(value='U'); n = len(df)\n"
        "df.fillna(0, inplace=True)\n"
        "df['Age'].dropna(inplace=True)\n"
        "print(df['Age'].fillna(0))\n"
    )
    assert unchained("df.fillna(0, inplace=True)\n") is None and unchained("df['a'].fillna(\n") is None


PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3


def test_the_rewritten_code_fills_the_frame_where_the_original_does_not() -> None:
    code = "df['Age'].fillna(df['Age'].median(), inplace=True)\ndf.Cabin.fillna('U', inplace=True)\n"
    fixed = unchained(code)
    assert fixed is not None

    def run(source: str) -> pd.DataFrame:
        df = pd.DataFrame({"Age": [20.0, np.nan, 40.0], "Cabin": ["C1", None, "C3"]})
        exec(source, {"df": df, "np": np})
        return df

    filled = run(fixed)
    assert filled["Age"].tolist() == [20.0, 30.0, 40.0] and filled["Cabin"].tolist() == ["C1", "U", "C3"]
    if PANDAS_3:  # what the rewrite is for: copy-on-write leaves the frame as it was (with a warning)
        with pytest.warns(Warning, match="chained assignment"):
            assert run(code)["Age"].isna().sum() == 1
