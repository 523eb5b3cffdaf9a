"""What to add to an error before the model sees it again: the usual cause of each common failure of data code.

A small model given only a traceback tends to repeat its mistake. Most failures of pandas/scipy code fall into a
few kinds — a name that is not a column, a number that is text, a result object used as a number (or the other
way round), a parameter this library version does not have, code cut off before it ended — and each has one
plain fix. :func:`hints` names it, from the error alone and the names of the frames' columns; nothing here knows
any particular question. The loop sends the hints with the traceback (and redacts them like it at the privacy
levels that hide data values).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from ..context.columns import columns
from ..core.executor import Frame
from ..core.results import ExecutionResult
from . import imports

#: A failed number conversion of text: "could not convert string to float: '37,410'", "invalid literal for
#: int()", pyarrow's "Failed to parse string", pandas' reductions over a text column ("Cannot perform reduction
#: 'mean' with string dtype"; over an object column, "Could not convert '298[110-510]' to numeric").
_CONVERSION = re.compile(
    r"could not convert string to float|invalid literal for int\(\)|Unable to parse string|Failed to parse string"
    r"|with (?:string|object) dtype|unsupported operand type\(s\) for .*'str'|can only concatenate str"
    r"|Could not convert .{1,200} to numeric"
)
_KEY = re.compile(r"^\s*['\"](.+)['\"]\s*$")
_NUMBER_ATTRIBUTE = re.compile(
    r"'(?:numpy\.)?(?:float\d*|int\d*|float|int|bool_?)' object has no attribute '(\w+)'"
)
_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '(\w+)'")
_NO_ATTRIBUTE = re.compile(r"(?:object|module '[\w.]+') has no attribute '(\w+)'")
_UNPACK_NUMBER = re.compile(r"cannot unpack non-iterable (?:numpy\.)?(?:float|int)\w* object")
_UNDEFINED = re.compile(r"name '(\w+)' is not defined")
#: Methods of a pandas Series called on what turned out to be one number.
SERIES_METHODS = frozenset(
    {
        *(
            "idxmax",
            "idxmin",
            "sort_values",
            "nlargest",
            "nsmallest",
            "groupby",
            "apply",
            "agg",
            "iloc",
            "loc",
        ),
        *("index", "values", "items", "reset_index", "to_frame", "value_counts", "unique"),
    }
)
_NO_MODULE = re.compile(r"No module named '(\w+)")
#: The failing line of the user's cell in an IPython traceback: "----> 7 x = f(y)", or a SyntaxError's
#: "Cell In[1], line 7" followed by the line and its caret.
_ARROW = re.compile(r"^-+> *(\d+) (.+)$", re.M)
_SYNTAX_LINE = re.compile(r"(?:Cell In\[\d+\]|File \S+), line (\d+)\n {4}(.+)\n\s*\^", re.M)
#: pandas 2 refusing to average (sum, …) text: "Cannot perform reduction 'mean' with string dtype".
_REDUCTION = re.compile(r"Cannot perform reduction '(\w+)' with (?:string|object) dtype")
#: ``.str.replace('<pattern>', …)`` whose pattern holds regex syntax: pandas 2 takes it as plain text.
_LITERAL_REPLACE = re.compile(r"\.str\.replace\(\s*r?(['\"])((?:(?!\1).)*[\[\]()*+?{}|^$\\](?:(?!\1).)*)\1")
_INCOMPLETE = re.compile(r"was never closed|incomplete input|unterminated|unexpected EOF|EOL while scanning")

NUMBERS_FROM_TEXT = (
    "The column holds text, not numbers. Convert it first: pd.to_numeric(s, errors='coerce') when the text is a "
    "plain number; for text around the number ('15.17%', '37,410', '1095083[606000-1717000]', '$12') take the "
    "leading number with s.astype(str).str.replace(',', '').str.extract(r'([-+]?\\d*\\.?\\d+)')[0].astype(float); "
    "then drop the missing values. To compute over numeric columns only, use df.select_dtypes('number')."
)


def hints(execution: ExecutionResult, frames: Mapping[str, Frame]) -> list[str]:
    """Plain-language causes and fixes for this failure (empty when none applies)."""
    name, value = execution.error_name or "", execution.error_value or ""
    found: list[str] = []
    listing = columns(frames)
    if name in ("KeyError", "ColumnNotFoundError") or (name == "AttributeError" and "DataFrame" in value):
        found += _missing_column(name, value, listing)
    if name == "AttributeError" and (m := _NUMBER_ATTRIBUTE.search(value)) and m.group(1) in SERIES_METHODS:
        found.append(
            f"The object is one number, not a Series with .{m.group(1)}: the function gave one value for all the "
            "rows. For one value per group, compute them into a Series first, e.g. s = df.groupby('key')['col']"
            f".apply(func) (or .agg(func)), then s.{m.group(1)}()."
        )
    elif name == "AttributeError" and (m := _NUMBER_ATTRIBUTE.search(value)):
        found.append(
            f"The object is a plain number, not a result with .{m.group(1)}: the function you called returned the "
            "value itself. Use it directly (or call the function that returns the result object)."
            + (" Round a number with round(x, 2)." if m.group(1) == "round" else "")
            + (P_VALUE if m.group(1) in ("pvalue", "pvalues", "p_value") else "")
        )
    elif name == "AttributeError" and (m := _NO_ATTRIBUTE.search(value)):
        if m.group(1) in ("pvalues", "pvalue", "p_values"):
            found.append(
                "This object has no p-values (scikit-learn's models give none). For a regression with p-values "
                "use statsmodels: import statsmodels.api as sm; fit = sm.OLS(y, sm.add_constant(X)).fit(); "
                "fit.params, fit.pvalues."
            )
        elif test := _stats_function(m.group(1)):
            found.append(test)
    if name in ("TypeError", "ValueError") and _UNPACK_NUMBER.search(value):
        found.append("The function returned one number, not a pair." + P_VALUE)
    if _CONVERSION.search(value) and name in ("ValueError", "TypeError", "ArrowInvalid", "ArrowTypeError"):
        found.append(NUMBERS_FROM_TEXT)
    if name == "TypeError" and (m := _REDUCTION.search(value)):
        found.append(
            f"A whole-DataFrame {m.group(1)}() met its text columns: use df.{m.group(1)}(numeric_only=True) (e.g. "
            f"df.fillna(df.{m.group(1)}(numeric_only=True))) or work on the numeric columns you need."
        )
    line = failing_line(execution.traceback)
    if line is not None and "regex=True" not in line[1] and (m := _LITERAL_REPLACE.search(line[1])):
        found.append(
            f"str.replace takes the pattern `{m.group(2)}` as plain text, not as a regular expression, unless you pass "
            "regex=True: s.str.replace(pattern, '', regex=True)."
        )
    if name == "TypeError" and (m := _UNEXPECTED_KEYWORD.search(value)):
        found.append(
            f"This version of the library has no parameter '{m.group(1)}'. Leave it out, or compute what it "
            "would do yourself."
            + (
                " For an RMSE: np.sqrt(mean_squared_error(y_true, y_pred))."
                if m.group(1) == "squared"
                else ""
            )
        )
    if "Can only use .dt accessor with datetimelike values" in value:
        found.append(
            "The column holds text, not dates: convert it first, e.g. df['col'] = pd.to_datetime(df['col'], "
            "errors='coerce'), then use .dt (.dt.month, .dt.year…)."
        )
    if name == "KeyError" and re.fullmatch(r"-?\d+", value.strip()):
        found.append(
            f"{value.strip()} was used as a position, but this Series or DataFrame is indexed by labels (a "
            "regression's .params and .pvalues are indexed by the variables' names, e.g. 'const', 'Age'): use "
            f".iloc[{value.strip()}] for a position, or the label."
        )
    if name == "ImportError" and (m := imports.CANNOT_IMPORT.search(value)):
        where = imports.module_named(m.group(2).split(".")[0], m.group(1))
        found.append(
            f"'{m.group(1)}' is not in {m.group(2)} in the installed version: remove it from that import. "
            + (
                f"It is the module {where}: from {where.rpartition('.')[0]} import {m.group(1)}"
                if where
                else "Import it from the module that defines it, or do without it (numpy, pandas and scipy "
                "cover most needs)."
            )
        )
    if name == "AttributeError" and re.search(
        r"'DataFrame' object has no attribute 'sheet_?names|sheets'", value
    ):
        found.append(
            "pd.read_excel(path) returns one DataFrame: the first sheet. All sheets: pd.read_excel(path, "
            "sheet_name=None), a dict {sheet name: DataFrame}; the names alone: pd.ExcelFile(path).sheet_names."
        )
    if name in ("ModuleNotFoundError", "ImportError") and (m := _NO_MODULE.search(value)):
        found.append(imports.substitute(m.group(1)))
    if "pattern contains no capture groups" in value:
        found.append(
            "str.extract needs the part to keep in parentheses (a capture group): s.str.extract(r'(\\d+)')[0]."
        )
    if "Expected value of kwarg 'errors'" in value and "coerce" in value:
        found.append("astype cannot coerce bad values: use pd.to_numeric(s, errors='coerce') instead.")
    undefined = _UNDEFINED.search(value) if name == "NameError" else None
    if undefined and (where := imports.stats_name(undefined[1]) or imports.module_import(undefined[1], line)):
        found.append(f"{undefined[1]} is not imported: {where}")
    elif undefined:
        found.append(
            f"{undefined[1]} is used before this program makes it: define it first. Each reply runs as a "
            "complete program on its own; variables from earlier attempts are gone."
        )
    if name == "ValueError" and "Encountered all NA values" in value:
        found.append(
            "Every value of the Series is NaN, so idxmax()/idxmin() has nothing to choose from: the values it was "
            "computed from are missing, or each was computed from too few rows (a skewness or a standard "
            "deviation of a single value is NaN). Print that Series and compute it over the rows it needs."
        )
    if name == "IndexError" and "invalid index to scalar variable" in value:
        found.append(
            "The value indexed is one number, not an array or a pair: use it without [ ]. A scipy.stats test's "
            "result has .statistic and .pvalue (numbers); np.corrcoef(x, y)[0, 1] is a correlation."
        )
    if name == "TypeError" and "not supported between instances of 'str' and" in value:
        found.append(
            "Text was compared with or sorted among numbers: a column used as numbers holds text (convert it "
            "with pd.to_numeric(s, errors='coerce')), or a function that needs numbers got text columns (pass "
            "only the numeric ones; a table of counts of two categories is pd.crosstab(df['a'], df['b']))."
        )
    if name == "AttributeError" and (m := re.search(r"'list' object has no attribute '(\w+)'", value)):
        found.append(
            f"A list has no .{m.group(1)}: make it a pandas Series first (pd.Series(values).{m.group(1)}(...)) "
            "or a numpy array (np.array(values))."
        )
    if name == "SyntaxError" and "invalid decimal literal" in value:
        found.append("A name cannot start with a digit (like 25th_value): rename it (value_25th).")
    if name == "SyntaxError" and _INCOMPLETE.search(value):
        found.append(
            "The code is incomplete (a bracket, quote or block never closed), probably cut off: write shorter, "
            "simpler code and make sure it ends."
        )
    return found


def failing_line(traceback: str | None) -> tuple[int, str] | None:
    """The number and text of the line of the generated code that raised, from its traceback (None: not
    found). The traceback shows the user's cell first, so the first arrow is the line in the code."""
    if not traceback:
        return None
    found = _ARROW.search(traceback) or _SYNTAX_LINE.search(traceback)
    if found is None or not found.group(2).strip():
        return None
    return int(found.group(1)), found.group(2).strip()


def _missing_column(name: str, value: str, listing: dict[str, list[str]]) -> list[str]:
    if not listing:
        return []
    attribute = re.search(r"has no attribute '(\w+)'", value)
    key_match = _KEY.match(value.split("\n")[0])
    key = attribute.group(1) if attribute else key_match.group(1) if key_match else None
    every = [c for cols in listing.values() for c in cols]
    table = "\n".join(f"{frame}: {cols[:80]!r}" for frame, cols in listing.items())
    if name == "AttributeError" and (key is None or not _close(key, every)):
        return []  # a DataFrame method that does not exist: the traceback says enough
    if key is not None and (close := _close(key, every)):
        spaces = (
            " The names have spaces around them: df.columns = df.columns.str.strip() removes them."
            if close.strip() == key and close != key
            else ""
        )
        return [
            f"There is no column {key!r}; the closest is {close!r}.{spaces} The columns are exactly:\n{table}"
        ]
    if key is not None and name == "KeyError":
        return [
            f"{key!r} is not a column of the data. If it is meant to be a column, the columns are exactly:\n{table}"
            f"\nIf it is a key of a result (a test's output, a dict, a Series), print that object to see what it "
            "holds: scipy's results have attributes such as .statistic and .pvalue, not keys."
        ]
    return [f"The columns are exactly:\n{table}"]


def _close(key: str, names: list[str]) -> str | None:
    """A column the key most likely meant: the same name up to case, spaces and punctuation, or a near spelling."""
    squash = re.compile(r"[\W_]+")
    wanted = squash.sub("", key).lower()
    for n in names:
        if squash.sub("", n).lower() == wanted:
            return n
    near = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
    return near[0] if near else None


P_VALUE = (
    " A correlation with its p-value comes from scipy.stats: r, p = stats.pearsonr(x, y) (spearmanr, kendalltau "
    "alike; pandas' .corr() gives only the coefficient); a test's result has .statistic and .pvalue."
)


def _stats_function(attribute: str) -> str | None:
    """A hint when code calls a scipy.stats function (a test, a distribution) as a method of pandas or numpy."""
    if attribute == "stats":
        return (
            "Statistical tests are in scipy: from scipy import stats; stats.shapiro(s.dropna()) and the like."
        )
    if not imports.in_scipy_stats(attribute):
        return None
    return (
        f"{attribute} is a function of scipy.stats, not a method of this object: from scipy import stats; "
        f"result = stats.{attribute}(...) on the values (drop missing ones first); a test's result has "
        ".statistic and .pvalue."
    )


#: Code that runs and quietly does the wrong thing: (a word of the doubt it led to, the code's pattern, the fix).
_QUIET_MISTAKES = (
    (
        "did not write",
        re.compile(r"read_excel\((?![^)]*sheet_name)"),
        "pd.read_excel(path) without sheet_name gives one DataFrame, the first sheet (its .keys() are column "
        "names). Every sheet: sheets = pd.read_excel(path, sheet_name=None), a dict {sheet name: DataFrame}; "
        "then for name, frame in sheets.items(): ...",
    ),
    (
        "JSON Lines",
        re.compile(r"lines\s*=\s*True"),
        "Remove lines=True: it is what writes one JSON value per line.",
    ),
)


def for_code(code: str | None, problem: str) -> list[str]:
    """Fixes for code that ran but whose output was rejected (``problem``): the mistakes such code usually holds,
    found in the code itself."""
    if not code:
        return []
    return [fix for word, pattern, fix in _QUIET_MISTAKES if word in problem and pattern.search(code)]
