"""Mechanical mistakes put right after the error they raised: column names spelt differently, results unpacked short."""

from __future__ import annotations

from ci_magic.engine.mends import numbers_kept, put_right, respell

BARO = ["DATE TIME", " WINDSPEED", " DIR"]


def test_the_name_the_error_quotes_becomes_the_one_column_it_differs_from_only_in_case_spaces_and_punctuation() -> (
    None
):
    code = (
        "df['DATE_TIME'] = pd.to_datetime(df['DATE_TIME'], errors='coerce')\n"
        "m = df.groupby(df['DATE_TIME'].dt.month)['WINDSPEED'].mean()\n"
        "print(f\"@m[{m['DATE_TIME']}]\")  # an f-string is left as it is\n"
    )
    # Made from itself, the name was read before it was made: every literal of it is the column's name.
    assert respell(code, "'DATE_TIME'", BARO) == (
        "df['DATE TIME'] = pd.to_datetime(df['DATE TIME'], errors='coerce')\n"
        "m = df.groupby(df['DATE TIME'].dt.month)['WINDSPEED'].mean()\n"
        "print(f\"@m[{m['DATE_TIME']}]\")  # an f-string is left as it is\n"
    )
    # Only what the error names: the next name is put right when it fails in turn.
    assert respell('x = df["windspeed"]\n', "'windspeed'", BARO) == "x = df[' WINDSPEED']\n"
    # A groupby names the column it lacks without quotes.
    code = "m = df.groupby('DATE TIME')['WINDSPEED'].mean()\n"
    assert respell(code, "'Column not found: WINDSPEED'", BARO) == code.replace("'WINDSPEED'", "' WINDSPEED'")


def test_columns_the_code_makes_count_and_a_list_of_missing_names_is_read() -> None:
    code = "df['Month'] = df['DATE TIME'].str[3:5]\nprint(df.groupby('month')[['windspeed', 'dir']].mean())\n"
    assert respell(code, "'month'", BARO) == code.replace("'month'", "'Month'")
    error = "\"['windspeed', 'dir'] not in index\""
    assert respell(code, error, BARO) == code.replace("'windspeed', 'dir'", "' WINDSPEED', ' DIR'")


def test_nothing_is_guessed() -> None:
    # A near spelling is the model's to fix (the repair hint names it); two candidates, or a key the error does
    # not quote, or code that renames the columns itself, leave the code as it is.
    assert respell("df['WINDSPED']\n", "'WINDSPED'", BARO) is None
    assert respell("df['a_b']\n", "'a_b'", ["a b", "A-B"]) is None
    assert respell("df['date_time']\nx['q']\n", "'q'", BARO) is None
    assert respell("df.columns = df.columns.str.lower()\ndf['date_time']\n", "'date_time'", BARO) is None
    assert respell("df.rename(columns=str.strip)['date_time']\n", "'date_time'", BARO) is None
    assert respell("df['DATE TIME']\n", "'DATE TIME'", BARO) is None  # a column already: not a spelling
    assert respell("df['date_time'\n", "'date_time'", BARO) is None  # does not parse


CHI2 = (
    "from scipy.stats import chi2_contingency\n"
    "table = pd.crosstab(df['Title'], df['Pclass'])\n"
    "chi2, p = chi2_contingency(table)\n"
    "print(p)\n"
)
TRACEBACK = (
    "---------------------------------------------------------------------------\n"
    "ValueError                                Traceback (most recent call last)\n"
    "Cell In[3], line 3\n"
    "      1 from scipy.stats import chi2_contingency\n"
    "      2 table = pd.crosstab(df['Title'], df['Pclass'])\n"
    "----> 3 chi2, p = chi2_contingency(table)\n"
    "      4 print(p)\n\n"
    "ValueError: too many values to unpack (expected 2)"
)


def test_a_tests_result_unpacked_into_too_few_names_keeps_the_first_ones() -> None:
    error = "too many values to unpack (expected 2)"
    assert put_right(CHI2, "ValueError", error, TRACEBACK, []) == CHI2.replace("chi2, p =", "chi2, p, *_ =")
    line = "slope, intercept = stats.linregress(x, y)"
    slope, shown = (t.replace("chi2, p = chi2_contingency(table)", line) for t in (CHI2, TRACEBACK))
    assert put_right(slope, "ValueError", error, shown, []) == slope.replace("intercept =", "intercept, *_ =")
    # Anything else unpacked short is the model's to fix: which values it meant is not known.
    split = CHI2.replace("chi2_contingency(table)", "line.split(',')")
    assert put_right(split, "ValueError", error, TRACEBACK, []) is None
    assert put_right(CHI2, "ValueError", "too many values to unpack (expected 3)", TRACEBACK, []) is None
    assert put_right(CHI2, "ValueError", error, None, []) is None
    assert put_right(CHI2, "TypeError", error, TRACEBACK, []) is None


def test_a_correlation_unpacked_as_coefficient_and_p_value_becomes_the_test_of_its_method() -> None:
    code = "x = 1\nif x:\n    r, p = df['a'].corr(df['b'], method='spearman')\nprint(r, p)\n"
    shown = "----> 3     r, p = df['a'].corr(df['b'], method='spearman')\n"
    error = "cannot unpack non-iterable numpy.float64 object"
    fixed = put_right(code, "TypeError", error, shown, [])
    assert fixed is not None and fixed.startswith("import pandas\nimport scipy.stats\nx = 1\nif x:\n")
    assert "    r, p = scipy.stats.spearmanr(_pairs.iloc[:, 0], _pairs.iloc[:, 1])\nprint(r, p)\n" in fixed
    import numpy as np
    import pandas as pd

    df = pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0, 5.0], "b": [2.0, 1.0, 3.0, 5.0, 4.0]})
    space: dict[str, object] = {"df": df}
    exec(fixed, space)  # the pairs with both values, as .corr() uses them
    assert space["r"] == df["a"].corr(df["b"], method="spearman") and 0 < float(space["p"]) < 1  # type: ignore[arg-type]
    # Another unpacking of one number, or a method scipy has no test of, is the model's to fix.
    assert (
        put_right(code.replace(".corr(", ".cov("), "TypeError", error, shown.replace(".corr(", ".cov("), [])
        is None
    )
    callable_method = code.replace("'spearman'", "my_corr")
    assert put_right(callable_method, "TypeError", error, shown.replace("'spearman'", "my_corr"), []) is None


def _lost(column: str, examples: str) -> str:
    return f"pd.to_numeric(errors='coerce') turned 3 of 3 values of '{column}' that hold a number into NaN, e.g. {examples}"


def test_a_conversion_that_lost_numbers_takes_the_number_each_value_holds() -> None:
    import pandas as pd

    code = (
        "df['é'] = 1\n"  # not ASCII: ast counts bytes, the edit counts characters
        "df['votes'] = pd.to_numeric(df['votes'], errors='coerce')\n"
        "share = pd.to_numeric(df.share, errors='coerce').mean()\n"
        "other = pd.to_numeric(df['other'], errors='coerce')\n"  # no note names it: left as it is
        "print(f\"@total[{df['votes'].sum()}] @share[{share}]\")\n"
    )
    notes = [_lost("votes", "'37,410', '12,202'"), _lost("share", "'15.17%', '49.48%'")]
    fixed = numbers_kept(code, notes)
    assert fixed is not None and "pd.to_numeric(df['other'], errors='coerce')" in fixed
    df = pd.DataFrame({"votes": ["37,410", "12,202", "n/a"], "share": ["15.17%", "49.48%", "5%"], "other": 1})
    ran: dict[str, object] = {"pd": pd, "df": df}
    exec(fixed.replace("print(", "str("), ran)
    assert df["votes"].tolist()[:2] == [37410.0, 12202.0] and pd.isna(df["votes"].iloc[2])
    assert round(float(ran["share"]), 2) == round((15.17 + 49.48 + 5) / 3, 2)  # type: ignore[arg-type]
    # An expression is converted as a whole.
    assert numbers_kept("x = pd.to_numeric(df['votes'] + '', errors='coerce')\n", notes) == (
        "x = pd.to_numeric((df['votes'] + '').astype(str).str.replace(',', '').str.extract(r'(-?\\d+\\.?\\d*)')[0], "
        "errors='coerce')\n"
    )


def test_a_lossy_conversion_is_left_alone_where_taking_the_number_would_change_it() -> None:
    code = "df['x'] = pd.to_numeric(df['x'], errors='coerce')\n"
    assert numbers_kept(code, [_lost("x", "'3,5', '2,25'")]) is None  # a decimal comma
    assert numbers_kept(code, [_lost("x", "'1.5e3'")]) is None  # an exponent
    assert numbers_kept(code, [_lost("y", "'37,410'")]) is None  # another column
    one_by_one = (
        "pd.to_numeric(errors='coerce') turned 2 of 5 values that hold a number into NaN, one value at a time"
    )
    assert numbers_kept(code, [one_by_one]) is None
    taken = "df['x'] = pd.to_numeric(df['x'].str.extract(r'(\\d+)')[0], errors='coerce')\n"
    assert numbers_kept(taken, [_lost("x", "'37,410'")]) is None  # takes numbers out of text already
    assert (
        numbers_kept("df['x'] = pd.to_numeric(df['x'])\n", [_lost("x", "'37,410'")]) is None
    )  # raises: no loss
    assert numbers_kept("df['x'] = (\n", [_lost("x", "'37,410'")]) is None


def test_a_frame_of_rows_used_where_its_index_was_meant_gets_its_index() -> None:
    import pandas as pd

    code = (
        "outliers = df[(df['x'] < 0) | (df['x'] > 10)]\n"
        "kept = df.drop(outliers).reset_index(drop=True)\n"
        "other = df.loc[~outliers.index, 'x']\n"
    )
    error = "\"['x', 'y'] not found in axis\""
    fixed = put_right(
        code, "KeyError", error, "----> 2 kept = df.drop(outliers).reset_index(drop=True)", ["x", "y"]
    )
    assert fixed == code.replace("df.drop(outliers)", "df.drop(outliers.index)")
    negated = "'None of [Index([-28, -48])] are in the [index]'"
    fixed = put_right(fixed, "KeyError", negated, "----> 3 other = df.loc[~outliers.index, 'x']", ["x", "y"])
    assert fixed is not None and "other = df.loc[~df.index.isin(outliers.index), 'x']" in fixed
    df = pd.DataFrame({"x": [5, 20, -1, 7], "y": 1}, index=[10, 11, 12, 13])
    ran: dict[str, object] = {"df": df}
    exec(fixed, ran)
    assert ran["kept"]["x"].tolist() == [5, 7] and ran["other"].tolist() == [5, 7]  # type: ignore[index]
    # Column names dropped without axis=1 are not rows of a frame: left to the model.
    listed = "cols = ['x', 'y']\ndf = df.drop(cols)\n"
    assert put_right(listed, "KeyError", error, "----> 2 df = df.drop(cols)", ["x", "y"]) is None
