from __future__ import annotations

from ci_magic.engine.extract import extract_code


def test_fenced_python_block() -> None:
    assert extract_code("Sure!\n```python\nprint(1)\n```\nDone.") == "print(1)\n"


def test_several_blocks_are_joined_and_output_blocks_skipped() -> None:
    reply = "```python\nimport pandas as pd\n```\nthen\n```py\nprint(2)\n```\nOutput:\n```\n2 rows x 3\n```"
    assert extract_code(reply) == "import pandas as pd\n\nprint(2)\n"


def test_bare_code_reply() -> None:
    assert extract_code("x = df.mean()\nprint(x)") == "x = df.mean()\nprint(x)\n"


def test_prose_is_not_code() -> None:
    assert extract_code("I cannot answer that without more data.") is None
    assert extract_code("Sure") is None
    assert extract_code("") is None


def test_other_languages_are_ignored() -> None:
    assert extract_code("```bash\npip install x\n```") is None


def test_unclosed_fence_still_yields_code() -> None:
    assert extract_code("```python\nprint(3)\n") == "print(3)\n"


def test_console_prompts_are_removed() -> None:
    assert extract_code("```python\n>>> print(4)\n```") == "print(4)\n"


def test_huge_reply_is_bounded() -> None:
    reply = "```python\n" + "x = 1\n" * 10_000 + "```" + "blah " * 20_000
    code = extract_code(reply)
    assert code is not None and code.count("x = 1") == 10_000
