"""What the repair loop adds to an error (ci_magic/engine/hints.py): the usual cause of each common failure of data
code, from the error and the column names alone. No kernel, no model."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa

from ci_magic.context.columns import columns
from ci_magic.core.results import ExecutionResult
from ci_magic.engine import imports
from ci_magic.engine.hints import hints
from ci_magic.sandbox.fake import error

FRAMES = {"df": pd.DataFrame({"No. of cases": [1], "WINDSPEED": [2.0], "Country": ["a"]})}


def joined(name: str, value: str) -> str:
    return "\n".join(hints(error(name, value), FRAMES))


def test_a_misspelt_column_gets_its_closest_real_name() -> None:
    assert "the closest is 'WINDSPEED'" in joined("KeyError", "'windspeed'")
    assert "the closest is 'No. of cases'" in joined("KeyError", "'No of cases'")
    assert "the closest is 'Country'" in joined(
        "AttributeError", "'DataFrame' object has no attribute 'country'"
    )
    assert joined("AttributeError", "'DataFrame' object has no attribute 'fit_intercept'") == ""


def test_a_key_that_is_no_column_may_be_a_results_attribute() -> None:
    text = joined("KeyError", "'p-value'")
    assert "not a column" in text and ".pvalue" in text and "'WINDSPEED'" in text


def test_numbers_held_as_text_and_result_objects_used_as_numbers() -> None:
    for name, value in [
        ("TypeError", "Cannot perform reduction 'mean' with string dtype"),
        ("ValueError", "could not convert string to float: '15.17%'"),
        ("TypeError", "Could not convert '298[110-510]' to numeric"),  # a reduction over an object column
        ("ArrowInvalid", "Failed to parse string: '1095083[606000-1717000]' as a scalar of type int64"),
    ]:
        assert "pd.to_numeric" in joined(name, value), value
    pvalue = joined("AttributeError", "'numpy.float64' object has no attribute 'pvalue'")
    assert "plain number" in pvalue and "stats.pearsonr" in pvalue
    assert "round(x, 2)" in joined("AttributeError", "'float' object has no attribute 'round'")
    assert "stats.pearsonr" in joined("TypeError", "cannot unpack non-iterable numpy.float64 object")


def test_statistics_asked_of_pandas_point_to_scipy_and_statsmodels() -> None:
    assert "stats.shapiro(" in joined("AttributeError", "'Series' object has no attribute 'shapiro'")
    assert "stats.ttest_ind(" in joined("AttributeError", "'DataFrame' object has no attribute 'ttest_ind'")
    assert "from scipy import stats" in joined("AttributeError", "module 'polars' has no attribute 'stats'")
    assert "statsmodels" in joined("AttributeError", "'LinearRegression' object has no attribute 'pvalues'")
    assert joined("AttributeError", "'Series' object has no attribute 'to_listt'") == ""


def test_common_pandas_slips_get_their_fix() -> None:
    assert "r'(\\d+)'" in joined("ValueError", "pattern contains no capture groups")
    coerce = "Expected value of kwarg 'errors' to be one of ['raise', 'ignore']. Supplied value is 'coerce'"
    assert "pd.to_numeric(s, errors='coerce')" in joined("ValueError", coerce)
    assert "single value is NaN" in joined("ValueError", "Encountered all NA values")  # idxmax, pandas 3
    assert "from scipy.stats import pearsonr" in joined("NameError", "name 'pearsonr' is not defined")
    assert "from scipy import stats" in joined("NameError", "name 'stats' is not defined")
    # A variable, not a module: made before use, in this program (an earlier attempt's are gone).
    assert joined("NameError", "name 'total' is not defined").startswith(
        "total is used before this program makes"
    )


def test_column_names_with_spaces_around_them_get_the_strip() -> None:
    frames = {"df": pd.DataFrame({"DATE TIME": [1], " WINDSPEED": [2.0]})}
    text = "\n".join(hints(error("KeyError", "'WINDSPEED'"), frames))
    assert "the closest is ' WINDSPEED'" in text and "df.columns.str.strip()" in text


def test_versions_imports_and_cut_off_code() -> None:
    assert "no parameter 'squared'" in joined("TypeError", "f() got an unexpected keyword argument 'squared'")
    moved = joined("ImportError", "cannot import name 'class_weight' from 'sklearn.model_selection' (/x.py)")
    # Found among the installed package's files, nothing imported: where the name really is.
    assert "'class_weight' is not in sklearn.model_selection" in moved
    assert "from sklearn.utils import class_weight" in moved
    assert "from the module that defines it" in joined(
        "ImportError", "cannot import name 'nothing_like_it' from 'sklearn.metrics' (/x.py)"
    )
    assert "rename it" in joined("SyntaxError", "invalid decimal literal (1.py, line 7)")
    assert "incomplete" in joined("SyntaxError", "'(' was never closed (1.py, line 7)")
    assert joined("ZeroDivisionError", "division by zero") == ""


def test_column_names_of_every_kind_of_frame() -> None:
    frames = {
        "p": pd.DataFrame({"a": [1]}),
        "q": pl.DataFrame({"b": [1]}),
        "lazy": pl.LazyFrame({"d": [1]}),
        "t": pa.table({"c": [1]}),
    }
    assert columns(frames) == {"p": ["a"], "q": ["b"], "lazy": ["d"], "t": ["c"]}


def test_the_failing_line_is_found_in_the_traceback() -> None:
    from ci_magic.engine.hints import failing_line

    raised = (
        "Cell In[1], line 4\n      2 \n      3 x = 1\n----> 4 y = df['b'].astype(int)\n      5 print(y)\n"
    )
    assert failing_line(raised) == (4, "y = df['b'].astype(int)")
    syntax = "Cell In[1], line 7\n    bins = [0, 25th_percentile]\n               ^\n"
    assert failing_line(syntax) == (7, "bins = [0, 25th_percentile]")
    assert failing_line("ZeroDivisionError: division by zero") is None and failing_line(None) is None


def test_a_regex_given_to_str_replace_as_plain_text() -> None:
    from ci_magic.core.results import ExecutionResult

    line = "df['n'] = df['n'].str.replace(r'\\[.*\\]', '').astype(int)"
    value = "invalid literal for int() with base 10: '630[495-801]'"
    raised = ExecutionResult("error", [], "ValueError", value, f"Cell In[1], line 2\n----> 2 {line}\n")
    assert any("regex=True" in h and "`\\[.*\\]`" in h for h in hints(raised, {}))
    plain = ExecutionResult("error", [], "ValueError", value, "----> 2 s.str.replace(',', '').astype(int)\n")
    told = ExecutionResult(
        "error", [], "ValueError", value, f"----> 2 {line[:-13]}, regex=True).astype(int)\n"
    )
    assert not any("regex=True:" in h for h in hints(plain, {}) + hints(told, {}))


def test_a_whole_frame_reduction_over_text_columns_gets_numeric_only() -> None:
    said = joined("TypeError", "Cannot perform reduction 'mean' with string dtype")
    assert "df.mean(numeric_only=True)" in said and "df.fillna(df.mean(numeric_only=True))" in said
    assert "numeric_only" not in joined("TypeError", "unsupported operand type(s) for +: 'int' and 'str'")


def test_a_missing_library_points_to_the_installed_one_that_does_the_job() -> None:
    pdf = joined("ModuleNotFoundError", "No module named 'PyPDF2'")
    assert "PyPDF2 is not installed here, and pypdf is: from pypdf import PdfReader" in pdf
    assert "from PIL import Image" in joined("ModuleNotFoundError", "No module named 'cv2'")
    other = joined("ModuleNotFoundError", "No module named 'somethingelse.sub'")
    assert other.startswith("somethingelse is not installed here and cannot be installed")


def test_a_workbook_read_as_one_frame_gets_the_all_sheets_form() -> None:
    found = joined("AttributeError", "'DataFrame' object has no attribute 'sheet_names'")
    assert "pd.read_excel(path, sheet_name=None), a dict {sheet name: DataFrame}" in found


def test_an_undefined_module_name_gets_its_import() -> None:
    line = "Cell In[1], line 3\n----> 3 p = statsmodels.stats.diagnostic.lilliefors(x)[1]\n"
    undefined = ExecutionResult("error", [], "NameError", "name 'statsmodels' is not defined", line)
    assert hints(undefined, FRAMES) == ["statsmodels is not imported: import statsmodels.stats.diagnostic"]
    assert (
        joined("NameError", "name 'sm' is not defined") == "sm is not imported: import statsmodels.api as sm"
    )
    assert joined("NameError", "name 'scipy' is not defined") == "scipy is not imported: import scipy"
    # A variable that was never assigned is not a module (some standard modules have such names).
    assert "import" not in joined("NameError", "name 'total_2' is not defined")
    assert "import" not in joined("NameError", "name 'test' is not defined")


def test_a_scipy_stats_function_reached_through_another_module_is_named_as_such() -> None:
    line = "Cell In[1], line 7\n----> 7 result = statsmodels.stats.shapiro(df['x'])\n"
    undefined = ExecutionResult("error", [], "NameError", "name 'statsmodels' is not defined", line)
    assert hints(undefined, FRAMES) == [
        "statsmodels is not imported: import statsmodels.stats (shapiro itself is a function of scipy.stats: "
        "from scipy import stats; stats.shapiro(...))"
    ]


def test_a_number_indexed_text_among_numbers_and_a_list_used_as_a_series() -> None:
    assert "use it without [ ]" in joined("IndexError", "invalid index to scalar variable.")
    mixed = joined("TypeError", "'<' not supported between instances of 'str' and 'int'")
    assert "pd.to_numeric(s, errors='coerce')" in mixed and "pd.crosstab" in mixed
    assert "pd.Series(values).astype(...)" in joined(
        "AttributeError", "'list' object has no attribute 'astype'"
    )


def test_positions_dates_and_per_group_values() -> None:
    assert "use .iloc[1] for a position" in joined("KeyError", "1")
    assert "pd.to_datetime(df['col'], errors='coerce')" in joined(
        "AttributeError", "Can only use .dt accessor with datetimelike values"
    )
    per_group = joined("AttributeError", "'numpy.float64' object has no attribute 'idxmax'")
    assert "one number, not a Series with .idxmax" in per_group and "groupby('key')" in per_group
    assert "np.sqrt(mean_squared_error" in joined("TypeError", "got an unexpected keyword argument 'squared'")


def test_code_that_ran_and_missed_gets_the_fix_its_code_shows() -> None:
    from ci_magic.engine.hints import for_code

    missed = "the question asks for the file(s) 'Q1.csv', and the code did not write them"
    one_sheet = (
        "sheets = pd.read_excel('sales.xlsx')\nfor name in sheets.keys():\n    sheets[name].to_csv(name)"
    )
    assert "sheet_name=None" in for_code(one_sheet, missed)[0]
    assert for_code(one_sheet.replace("'sales.xlsx'", "'sales.xlsx', sheet_name=None"), missed) == []
    assert for_code("df.to_json('c.json', orient='records', lines=True)", "JSON Lines, not one")[
        0
    ].startswith("Remove lines=True")
    assert for_code(None, missed) == [] and for_code("print(1)", missed) == []


def test_a_failed_import_is_taken_out_of_its_line_and_imported_from_where_it_is() -> None:
    missing = {("class_weight", "sklearn.model_selection"), ("ttest_indx", "scipy.stats")}
    code = (
        "from sklearn.model_selection import class_weight as cw, train_test_split  # split\n"
        "if True:\n"
        "    from scipy.stats import ttest_indx\n"
        "from scipy.stats import pearsonr\n"
    )
    assert imports.mend(code, missing) == (
        "from sklearn.model_selection import train_test_split  # split\n"
        "from sklearn.utils import class_weight as cw\n"
        "if True:\n"
        "    pass\n"  # found nowhere: taken out, the block kept valid
        "from scipy.stats import pearsonr\n"
    )
    assert imports.mend(code, {("pearsonr", "scipy")}) is None  # another module's name: untouched


def test_modules_and_stats_functions_used_and_never_imported_are_found_before_the_run() -> None:
    code = (
        "cleaned = df.x.map(lambda v: re.sub(',', '', v))\n"
        "r, p = pearsonr(cleaned, df.y)\n"
        "fit = sm.OLS(df.y, df.x).fit()\n"
        "def f(math):\n"
        "    return math + later + np.pi\n"  # a parameter, a name assigned below, a preloaded module
        "later = datetime.now()\n"  # the class or the module: left to the run
        "print(sales, undefined_variable)\n"
    )
    assert imports.lacking(code, ["df", "sales"]) == [
        "import re",
        "from scipy.stats import pearsonr",
        "import statsmodels.api as sm",
    ]
    assert imports.lacking("import re\nprint(re.sub('a', 'b', 'c'))") == []
    assert imports.lacking("print(") == []  # not Python: the run reports it
