"""Export: a notebook built with ``%%ask`` → a plain notebook anyone can re-run without ci_magic or a model.

The export has, in order:

1. an environment cell: Python and package versions, the data files the notebook reads with their sha256 (it
   warns when run against different files), and the imports ci_magic's sandbox preloads (``pd``, ``np``,
   ``plt``), which generated code may use without importing;
2. the user's own cells, with their outputs, minus ``%load_ext ci_magic``, ``%config Ask.…`` and other
   ci_magic magics (a cell left empty is dropped);
3. for each ``%%ask`` cell: a markdown cell (the prompt, model, attempts, tokens) and the working code as a code
   cell with the outputs the sandbox produced. The sandbox held the same frames under the same names, so the code
   runs as-is, in order, in one fresh kernel.

Where an ask's code and outputs come from, in order of preference: cells the JupyterLab extension inserted
(``metadata.ci_magic`` role "code", matched by ``anchor_cell_id``); this session's record (``%ask_export``);
the fallback display in the ``%%ask`` cell's own outputs (its metadata carries the code; the next cell is taken
as the code when its hash matches). A code cell repeating an exported ask's code (the user ran the offered
cell) is dropped, so the code does not run twice.

Data files: every string literal in a code cell that names an existing file inside the notebook's folder (or
below it), other than notebooks. Files read through computed paths are not detected.

Nothing secret is written: provenance carries the model and the endpoint's host:port, never keys or settings.
"""

from __future__ import annotations

import os
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
from nbformat import NotebookNode

from ..core.errors import UsageError
from ..core.results import AskResult
from ..notebook.cells import METADATA_KEY, fenced_block, md_text, short_hash, without_header
from ..notebook.options import flags_with_values
from .environment import EXPORT_KEY, data_files, environment, environment_cell

if TYPE_CHECKING:
    from ..notebook.cells import Insertion
    from ..notebook.session import NotebookSession

#: Lines that only make sense with ci_magic loaded.
MAGIC_LINE = re.compile(
    r"^\s*%(?:(?:load_ext|reload_ext|unload_ext)\s+ci_magic\b|config\s+Ask\b|ask(?:_export|_history|_reset)?\b).*$"
)
ASK_CELL = re.compile(r"^\s*%%?ask\b")

Record = tuple[str, AskResult, "Insertion"]


# -- the pieces ------------------------------------------------------------------------------------------------


def strip_magics(source: str) -> str:
    """The cell without ci_magic's magics: the export re-runs anywhere (a generated cell loses its ``%%sandbox``
    header; verify runs it in a sandbox again)."""
    lines = without_header(source).splitlines()
    return "\n".join(line for line in lines if not MAGIC_LINE.match(line)).strip("\n")


def split_ask(source: str) -> tuple[str, str]:
    """(magic options, question) of a ``%%ask`` cell."""
    first, _, body = source.lstrip().partition("\n")
    options = first.strip().lstrip("%")[len("ask") :].strip()
    words = shlex.split(options) if options else []
    # Words after the options are part of the question (``%%ask --attempts 2 why``), as the magic reads them.
    flags, question_words, i = [], [], 0
    takes_value = flags_with_values()  # the magic's own declaration (notebook/options.py)
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            flags.append(word)
            if word in takes_value and i + 1 < len(words):
                flags.append(words[i + 1])
                i += 1
        else:
            question_words.append(word)
        i += 1
    question = (" ".join(question_words) + "\n" + body).strip()
    return " ".join(flags), question


#: ci_magic's own outputs on a generated cell (the files listing, saved images shown inline, notes): the
#: exported code does not print them when it runs again, so they are not part of its recorded outputs.
OWN_OUTPUT_ROLES = ("files", "file-image", "notes")


def clean_outputs(outputs: list[Any]) -> list[NotebookNode]:
    """The sandbox's outputs as valid nbformat outputs of a plain code cell."""
    cleaned = []
    for out in outputs:
        out = dict(out)
        if (out.get("metadata") or {}).get(METADATA_KEY, {}).get("role") in OWN_OUTPUT_ROLES:
            continue
        if out.get("output_type") == "execute_result":
            out["execution_count"] = None
        if out.get("output_type") in ("display_data", "execute_result"):
            out.setdefault("metadata", {})
        cleaned.append(nbformat.from_dict(out))
    return cleaned


def fallback_outputs(outputs: list[Any]) -> tuple[dict[str, Any] | None, list[Any]]:
    """From a ``%%ask`` cell's own outputs: the provenance display, and the results without ci_magic's own
    outputs (the live progress line, the notes, the summary), which carry ``metadata.ci_magic`` with their role.
    Everything else is what the sandbox produced."""
    meta: dict[str, Any] | None = None
    results: list[Any] = []
    for out in outputs:
        own = (out.get("metadata") or {}).get(METADATA_KEY)
        if isinstance(own, dict):
            if own.get("role") == "fallback":
                meta = dict(own)  # the summary: provenance, and the working code
            continue
        results.append(out)
    return meta, results


def ask_markdown(options: str, question: str, info: dict[str, Any]) -> NotebookNode:
    if info.get("model") is None:
        head = "**ci_magic ask** · not run when this notebook was saved: no code to export"
    else:
        tokens = int(info.get("prompt_tokens") or 0) + int(info.get("completion_tokens") or 0)
        verdict = (
            "" if info.get("ok", True) else " · **no working code** (the last attempt is shown, not run)"
        )
        head = (
            f"**ci_magic ask** · model {md_text(str(info['model']))} · {info.get('attempts', '?')} attempt(s) · "
            f"{tokens:,} tokens · {float(info.get('seconds') or 0):.1f} s{verdict}"
        )
    lines = [head, ""]
    if options:
        lines += [f"Options: `{options}`", ""]
    lines += ["> " + line if line else ">" for line in question.splitlines()]
    # The model's own words, as text: an answer in words, a doubt, a failed ask's best-effort lines.
    if isinstance(info.get("answer"), str):
        lines += ["", f"**Answer:** {md_text(info['answer'])}"]
    if isinstance(info.get("doubt"), str):
        lines += ["", f"⚠️ The answer may be wrong: the output {md_text(info['doubt'])}"]
    if isinstance(info.get("best_effort"), str):
        lines += [
            "",
            "No attempt worked. Best effort, not a success (check it):",
        ]
        lines += ["", fenced_block(info["best_effort"])]
    cell: NotebookNode = nbformat.v4.new_markdown_cell("\n".join(lines))
    keep = (
        "model",
        "endpoint",
        "attempts",
        "ok",
        "prompt_tokens",
        "completion_tokens",
        "prompt_hash",
        "answer",
    )
    cell.metadata[EXPORT_KEY] = {"kind": "ask", **{k: info.get(k) for k in keep if k in info}}
    return cell


def code_cell(
    code: str,
    outputs: list[Any],
    recorded: bool = True,
    kind: str = "user",
    files: list[Any] | None = None,
    installed: list[Any] | None = None,
) -> NotebookNode:
    """``files``: what the code wrote when it ran in the sandbox ({path, sha256, bytes}): verify re-creates
    and compares them. ``installed``: the packages its runs installed into the sandbox (pinned)."""
    cell: NotebookNode = nbformat.v4.new_code_cell(code, outputs=clean_outputs(outputs))
    cell.metadata[EXPORT_KEY] = {"kind": kind, "outputs_recorded": recorded}
    pins = [p for p in installed or [] if isinstance(p, dict) and p.get("sha256")]
    if pins:
        cell.metadata[EXPORT_KEY]["installed"] = pins
    if files:
        cell.metadata[EXPORT_KEY]["files"] = [
            {"path": f["path"], "sha256": f["sha256"], "bytes": f["bytes"]}
            for f in files
            if isinstance(f, dict) and f.get("sha256")
        ]
    return cell


# -- the walk -------------------------------------------------------------------------------------------------


def export_cells(cells: list[Any], records: list[Record] | None = None) -> list[NotebookNode]:
    """The exported cells (without the environment cell) for ``cells`` of a saved or reconstructed notebook."""
    unused = list(records or [])
    out: list[NotebookNode] = []
    exported_code: set[str] = set()
    skip: set[int] = set()
    for i, cell in enumerate(cells):
        if i in skip:
            continue
        meta = cell.get("metadata", {}).get(METADATA_KEY)
        if meta is not None and meta.get("role") in ("code", "record"):
            continue  # generated cells are emitted with their %%ask cell (or dropped when orphaned)
        if cell.get("cell_type") == "markdown":
            md = nbformat.v4.new_markdown_cell(cell.get("source", ""))
            if cell.get("attachments"):
                md.attachments = cell["attachments"]  # pasted images live here
            out.append(md)
            continue
        if cell.get("cell_type") != "code":
            out.append(nbformat.v4.new_raw_cell(cell.get("source", "")))
            continue
        source = str(cell.get("source", ""))
        recorded = bool(cell.get("metadata", {}).get(EXPORT_KEY, {}).get("outputs_recorded", True))
        if ASK_CELL.match(source):
            options, question = split_ask(source)
            if "--context-only" in options.split():
                continue  # sent nothing, produced nothing to keep
            code, outputs, info = _ask_parts(cells, i, cell, question, unused, skip)
            out.append(ask_markdown(options, question, info))
            if code and info.get("ok", True):
                out.append(
                    code_cell(
                        code,
                        outputs,
                        kind="generated",
                        files=info.get("files"),
                        installed=info.get("installed"),
                    )
                )
                exported_code.add(code.strip())
            elif code:
                out[-1].source += "\n\nLast code tried:\n\n" + fenced_block(code, "python")
            continue
        stripped = strip_magics(source)
        if not stripped.strip() or stripped.strip() in exported_code:
            continue  # only ci_magic magics, or the offered copy of an ask's code
        out.append(code_cell(stripped, list(cell.get("outputs", [])), recorded))
    return out


def _ask_parts(
    cells: list[Any], i: int, cell: Any, question: str, unused: list[Record], skip: set[int]
) -> tuple[str | None, list[Any], dict[str, Any]]:
    cell_id = cell.get("id")
    # 1. Cells the JupyterLab extension inserted below this one.
    for j in range(i + 1, len(cells)):
        meta = cells[j].get("metadata", {}).get(METADATA_KEY)
        if meta is None or (cell_id and meta.get("anchor_cell_id") not in (cell_id, None)):
            break
        skip.add(j)
        if meta.get("role") == "code":
            _take_record(unused, question)
            source = without_header(str(cells[j].get("source", "")))
            return source, list(cells[j].get("outputs", [])), dict(meta)
    # 2. This session's record of the ask.
    record = _take_record(unused, question, cell_id)
    fallback_meta, fallback_results = fallback_outputs(list(cell.get("outputs", [])))
    if record is not None:
        _, result, insertion = record
        info = dict(insertion.code_cell.metadata.get(METADATA_KEY, {}))
        code = (result.code or "").rstrip() or None
        _skip_offered_copy(cells, i, code, skip)
        return code, list(result.outputs) if result.ok else [], info
    # 3. The fallback display in the cell's own outputs (the code in its metadata, or in the next cell).
    if fallback_meta is not None:
        code = fallback_meta.get("code")
        nxt = cells[i + 1] if i + 1 < len(cells) else None
        if (
            nxt is not None
            and nxt.get("cell_type") == "code"
            and not ASK_CELL.match(str(nxt.get("source", "")))
        ):
            nxt_source = without_header(str(nxt.get("source", ""))).strip()
            hash_ok = fallback_meta.get("code_hash") == short_hash(nxt_source)
            if hash_ok or (code is None and fallback_meta.get("ok") and nxt_source):
                code = nxt_source
                skip.add(i + 1)
        return code, fallback_results, fallback_meta
    return None, [], {}


def _take_record(unused: list[Record], question: str, cell_id: str | None = None) -> Record | None:
    for k, record in enumerate(unused):
        if (cell_id and record[2].anchor_cell_id == cell_id) or record[0].strip() == question.strip():
            return unused.pop(k)
    return None


def _skip_offered_copy(cells: list[Any], i: int, code: str | None, skip: set[int]) -> None:
    nxt = without_header(str(cells[i + 1].get("source", ""))) if i + 1 < len(cells) else None
    if code and nxt is not None and nxt.strip() == code.strip():
        skip.add(i + 1)


def export_notebook(
    nb: NotebookNode, folder: Path, records: list[Record] | None = None, source_name: str | None = None
) -> NotebookNode:
    cells = export_cells(list(nb.cells), records)
    sources = [str(c.source) for c in cells if c.cell_type == "code"]
    written = {f["path"] for c in cells for f in c.metadata.get(EXPORT_KEY, {}).get("files", [])}
    installed = [p for c in cells for p in c.metadata.get(EXPORT_KEY, {}).get("installed", [])]
    env_cell = environment_cell(environment(), data_files(sources, folder, written), installed)
    out: NotebookNode = nbformat.v4.new_notebook(cells=[env_cell, *cells])
    for key in ("kernelspec", "language_info"):
        if key in nb.metadata:
            out.metadata[key] = nb.metadata[key]
    out.metadata.setdefault(
        "kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"}
    )
    out.metadata[EXPORT_KEY] = {
        "version": 1,
        "source": source_name,
        "exported": datetime.now(UTC).isoformat(),
    }
    nbformat.validate(out)
    return out


def export_file(notebook: str | Path, out: str | Path, records: list[Record] | None = None) -> NotebookNode:
    path = Path(notebook)
    if not path.is_file():
        raise UsageError(f"no such notebook: {str(notebook)!r}.")
    nb = nbformat.read(path, as_version=4)
    exported: NotebookNode = export_notebook(nb, path.resolve().parent, records, path.name)
    nbformat.write(exported, Path(out))
    return exported


# -- the live session (%ask_export) ----------------------------------------------------------------------------


def export_session(session: NotebookSession, line: str) -> None:
    """``%ask_export OUT.ipynb [--notebook SAVED.ipynb]``.

    With a saved notebook (given, or found through ``JPY_SESSION_NAME`` / VS Code's ``__vsc_ipynb_file__``), its
    cells and outputs are used, and this session's asks fill in code and outputs the file lacks. Without one,
    the cells come from this session's input history: user cells then have no recorded outputs (``verify``
    skips them)."""
    words = shlex.split(line)
    notebook: str | None = None
    if "--notebook" in words:
        k = words.index("--notebook")
        if k + 1 >= len(words):
            raise UsageError("--notebook needs a path.")
        notebook = words[k + 1]
        del words[k : k + 2]
    if len(words) != 1 or not words[0].endswith(".ipynb"):
        raise UsageError("Usage: %ask_export OUT.ipynb [--notebook SAVED.ipynb]")
    out = Path(words[0])
    shell = session.shell
    if notebook is None:
        for candidate in (os.environ.get("JPY_SESSION_NAME"), shell.user_ns.get("__vsc_ipynb_file__")):
            if candidate and str(candidate).endswith(".ipynb") and Path(candidate).is_file():
                notebook = str(candidate)
                break
    records: list[Record] = session.finished()
    if notebook is not None:
        exported = export_file(notebook, out, records)
        where = f"the saved notebook {notebook} and this session's {len(records)} ask(s)"
    else:
        raw = list(shell.history_manager.input_hist_raw[1:])
        cells = [
            nbformat.v4.new_code_cell(src, metadata={EXPORT_KEY: {"outputs_recorded": False}})
            for src in raw
            if src.strip() and not src.lstrip().startswith("%ask_export")
        ]
        for cell in cells:
            if ASK_CELL.match(cell.source):
                cell.metadata = {}
        exported = export_notebook(nbformat.v4.new_notebook(cells=cells), Path.cwd(), records, None)
        nbformat.write(exported, out)
        where = f"this session's input history and {len(records)} ask(s) (no saved notebook: outputs of your own cells are not included)"
    print(
        f"ci_magic: exported {len(exported.cells)} cells from {where} to {out}; check it with `ci-magic verify {out}`."
    )
