"""What to import for a name or module the generated code lacks: its usual import, the submodule the failing line
reaches, where a misplaced name really lives, and what installed library does the job of a missing one.

Used by engine/hints.py. Nothing is imported to answer except scipy.stats (when a name may be one of its
functions); packages are searched as files.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import os
import re
from collections.abc import Iterable

from pyflakes import checker, messages

#: The usual short names of modules, as their documentation imports them.
ALIASES = {
    "sm": "import statsmodels.api as sm",
    "smf": "import statsmodels.formula.api as smf",
    "sns": "import seaborn as sns",
    "np": "import numpy as np",
    "pd": "import pandas as pd",
    "plt": "import matplotlib.pyplot as plt",
}
#: Standard-library modules whose names are also common variable names: an undefined one is a variable.
_NOT_MODULES = frozenset(
    {"test", "this", "code", "site", "token", "keyword", "symbol", "parser", "antigravity"}
)

#: Libraries models reach for that are often missing, and what does the same job when it is installed:
#: {missing top-level module: (the one to use, how)}.
SUBSTITUTES = {
    **dict.fromkeys(
        ("PyPDF2", "fitz", "pymupdf", "pdfplumber", "pdfminer", "PyPDF4", "tabula", "camelot"),
        (
            "pypdf",
            "from pypdf import PdfReader; text = '\\n'.join(p.extract_text() or '' for p in "
            "PdfReader('file.pdf').pages)",
        ),
    ),
    **dict.fromkeys(
        ("xlrd", "xlsxwriter", "xlwt", "pyxlsb"),
        (
            "openpyxl",
            "pandas uses it by itself: pd.read_excel(path, sheet_name=...) and df.to_excel(path, "
            "index=False)",
        ),
    ),
    **dict.fromkeys(
        ("cv2", "skimage", "imageio", "wand"),
        ("PIL", "from PIL import Image; img = Image.open('in.png'); img.resize((w, h)).save('out.png')"),
    ),
    **dict.fromkeys(
        ("fastparquet",), ("pyarrow", "pandas uses it by itself: pd.read_parquet / df.to_parquet")
    ),
    **dict.fromkeys(("plotly", "bokeh", "altair"), ("matplotlib", "import matplotlib.pyplot as plt")),
}


_AMBIGUOUS = frozenset({"datetime"})
#: Names every sandbox has before generated code runs: its usual imports (sandbox/startup.py) and IPython's own.
PRELOADED = frozenset({"pd", "np", "plt", "display", "get_ipython", "In", "Out", "exit", "quit"})


def undefined(code: str, defined: Iterable[str] = ()) -> list[str]:
    """The names ``code`` uses and never binds or imports, in the order it uses them (pyflakes: scopes,
    comprehensions and all); ``defined``: names the sandbox holds before the code runs. [] for what is not
    Python (the run reports it)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found = checker.Checker(tree, builtins=set(defined) | PRELOADED)
    names = sorted(
        (m for m in found.messages if isinstance(m, messages.UndefinedName)), key=lambda m: (m.lineno, m.col)
    )
    return list(dict.fromkeys(str(m.message_args[0]) for m in names))


def lacking(code: str, defined: Iterable[str] = ()) -> list[str]:
    """Import lines for the modules, usual aliases and scipy.stats functions ``code`` uses and never imports:
    ``re.sub(...)`` without ``import re``, ``pearsonr(x, y)`` without its import — a NameError on the first run,
    and a whole repair for the model. ``defined``: names the sandbox holds before the code runs (the frames).
    Other undefined names are left for the run to report."""
    # datetime.now() wants the class, datetime.date.today() the module: the repair sees which.
    names = (n for n in undefined(code, defined) if n not in _AMBIGUOUS)
    lines = (module_import(n, None) or stats_name(n) for n in names)
    return [line for line in lines if line is not None]


def stats_name(name: str) -> str | None:
    """How to import a name that scipy.stats defines (``stats`` itself, ``pearsonr``, ``zscore``…)."""
    if name == "stats":
        return "from scipy import stats"
    return f"from scipy.stats import {name}" if in_scipy_stats(name) else None


def in_scipy_stats(name: str) -> bool:
    """Whether scipy.stats has a function ``name`` (short names like ``t`` or ``f`` are too common to count, and
    its ``test`` runs scipy's own tests)."""
    if len(name) < 4 or name in _NOT_MODULES or importlib.util.find_spec("scipy") is None:
        return False
    stats = importlib.import_module("scipy.stats")  # loaded only when a failure may be one of its functions
    return callable(getattr(stats, name, None))


def module_named(package: str, name: str) -> str | None:
    """The dotted path of a module ``name`` inside ``package`` (files only: nothing is imported), if one exists."""
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = [d for d in subfolders if d.isidentifier() and d != "tests"]
            if f"{name}.py" in files or (
                name in subfolders and "__init__.py" in os.listdir(f"{folder}/{name}")
            ):
                inner = os.path.relpath(folder, root).replace(os.sep, ".")
                return ".".join(p for p in (package, "" if inner == "." else inner, name) if p)
    return None


def substitute(module: str) -> str:
    """What to use instead of a module that is not installed (nothing can be installed in the sandbox)."""
    use = SUBSTITUTES.get(module)
    if use is not None and importlib.util.find_spec(use[0]) is not None:
        return f"{module} is not installed here, and {use[0]} is: {use[1]}."
    return (
        f"{module} is not installed here and cannot be installed: do without it, with the libraries the system "
        "message lists (pandas, numpy, scipy and the standard library cover most needs)."
    )


def module_import(name: str, line: tuple[int, str] | None) -> str | None:
    """The import for an undefined name that is an installed module (``scipy`` in ``scipy.stats.skew(x)``: the
    deepest module the failing line reaches through it) or its usual alias (``sm``); None for any other name."""
    if name in ALIASES:
        return ALIASES[name]
    if name in _NOT_MODULES or not name.isidentifier() or importlib.util.find_spec(name) is None:
        return None
    chain = re.search(rf"\b{re.escape(name)}((?:\.\w+)+)", line[1]) if line is not None else None
    parts = chain.group(1).strip(".").split(".") if chain is not None else []
    called = re.search(rf"\b{re.escape(name)}(?:\.\w+)*\.(\w+)\(", line[1]) if line is not None else None
    # statsmodels.stats.shapiro(x): the import alone would lead to "no attribute 'shapiro'" next.
    elsewhere = (
        f" ({called[1]} itself is a function of scipy.stats: from scipy import stats; stats.{called[1]}(...))"
        if called is not None and name != "scipy" and in_scipy_stats(called[1])
        else ""
    )
    for depth in range(len(parts), 0, -1):
        module = ".".join([name, *parts[:depth]])
        with contextlib.suppress(ImportError, ValueError):  # find_spec imports the parents
            if importlib.util.find_spec(module) is not None:
                return f"import {module}{elsewhere}"
    return f"import {name}{elsewhere}"


#: "cannot import name 'class_weight' from 'sklearn.model_selection'": (name, module).
CANNOT_IMPORT = re.compile(r"cannot import name '(\w+)' from '([\w.]+)'")
_FROM_IMPORT = re.compile(r"^([ \t]*)from[ \t]+([\w.]+)[ \t]+import[ \t]+([^\n#()\\;]+?)[ \t]*(#.*)?$", re.M)


def mend(code: str, missing: set[tuple[str, str]]) -> str | None:
    """``code`` with the imports that already failed in this ask put right, or None when none is in it.

    A small model told that ``from sklearn.model_selection import train_test_split, class_weight`` fails keeps
    writing that line (dev q137: six attempts, one line). ``missing`` holds the (name, module) pairs an earlier
    run's ImportError named; each is taken out of its ``from … import`` line, and imported from the module that
    holds it when the installed package has one of that name (:func:`module_named`). Nothing else changes: a
    name still used and found nowhere fails as a NameError next, which the repair names."""

    def fix(m: re.Match[str]) -> str:
        indent, module, names, comment = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        items = [n.strip() for n in names.split(",") if n.strip()]
        gone = [i for i in items if (i.split()[0], module) in missing]
        if not gone:
            return m.group(0)
        kept = [i for i in items if i not in gone]
        lines = (
            [f"{indent}from {module} import {', '.join(kept)}{'  ' + comment if comment else ''}"]
            if kept
            else []
        )
        for item in gone:
            where = module_named(module.split(".")[0], item.split()[0])
            if where is not None:
                lines.append(f"{indent}from {where.rpartition('.')[0]} import {item}")
        return "\n".join(lines) if lines else f"{indent}pass"

    mended = _FROM_IMPORT.sub(fix, code) if missing else code
    return None if mended == code else mended
