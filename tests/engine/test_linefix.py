"""The repair of one statement (engine/linefix.py): which statement, and how the reply is spliced in."""

from __future__ import annotations

from ci_magic.core.results import Attempt, ExecutionResult, Usage
from ci_magic.engine.linefix import splice, target

PROGRAM = """\
import pandas as pd

cases = df['cases'].astype(int)
if cases.any():
    mean = cases.mean()
print(f"@mean[{mean}]")
"""


def failed(code: str, line: int, name: str = "ValueError") -> Attempt:
    text = code.splitlines()[line - 1]
    execution = ExecutionResult("error", [], name, "bad", f"Cell In[1], line {line}\n----> {line} {text}\n")
    return Attempt(1, f"```python\n{code}```", code, execution, Usage(), 0.0)


def test_the_statement_that_raised_is_the_target() -> None:
    spot = target(failed(PROGRAM, 3))
    assert spot is not None and (spot.first, spot.last, spot.text) == (
        3,
        3,
        "cases = df['cases'].astype(int)",
    )
    inner = target(failed(PROGRAM, 5))
    assert inner is not None and inner.text == "    mean = cases.mean()"  # inside the if: the statement only
    call = "x = f(\n    1,\n    2,\n)\nprint(x)\n"
    spanned = target(failed(call, 1))
    assert spanned is not None and (spanned.first, spanned.last) == (1, 4)  # the whole statement


def test_no_target_where_a_statement_cannot_be_pointed_at() -> None:
    assert target(failed(PROGRAM, 3, "SyntaxError")) is None
    other = failed(PROGRAM, 3)
    other.code = PROGRAM.replace("astype(int)", "astype(float)")
    assert target(other) is None  # the traceback quotes a line this code does not have there
    no_line = failed(PROGRAM, 3)
    assert no_line.execution is not None
    no_line.execution.traceback = "ValueError: bad"
    assert target(no_line) is None
    loop = "for i in range(3):\n    print(i)\n    if i:\n        pass\n        pass\n        pass\n        pass\n"
    assert target(failed(loop, 1)) is None  # a loop's header: the whole loop would be the statement
    rejected = failed(PROGRAM, 3)
    rejected.rejected = "printed None"
    assert target(rejected) is None


def test_the_reply_replaces_the_statement_with_its_indentation() -> None:
    spot = target(failed(PROGRAM, 3))
    assert spot is not None
    fixed = splice(spot, "cases = pd.to_numeric(df['cases'].str.extract(r'(\\d+)')[0], errors='coerce')\n")
    assert fixed.splitlines()[2].startswith("cases = pd.to_numeric(") and fixed.count("astype(int)") == 0
    assert fixed.splitlines()[:2] == PROGRAM.splitlines()[:2] and fixed.endswith('print(f"@mean[{mean}]")\n')
    inner = target(failed(PROGRAM, 5))
    assert inner is not None
    two = splice(inner, "import numpy as np\nmean = float(np.mean(cases))")
    assert "    import numpy as np\n    mean = float(np.mean(cases))\n" in two


def test_a_whole_program_or_quoted_context_is_not_doubled() -> None:
    spot = target(failed(PROGRAM, 3))
    assert spot is not None
    quoted = splice(spot, "import pandas as pd\ncases = df['cases'].str.len()\nif cases.any():")
    assert quoted.count("if cases.any():") == 1 and quoted.count("import pandas as pd") == 2
    whole = "import pandas as pd\nx = 1\ncases = df['cases']\nif cases.any():\n    mean = 2\nprint(f\"@mean[{mean}]\")\n"
    assert splice(spot, whole) == whole
    assert splice(spot, "if cases.any():") == PROGRAM  # nothing new: the program as it was
