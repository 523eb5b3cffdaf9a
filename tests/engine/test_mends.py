"""Mechanical mistakes put right after the error they raised: column names spelt differently, results unpacked short."""

from __future__ import annotations

from ci_magic.engine.mends import put_right, respell

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
