"""From an ask's result to notebook cells, and the seam that puts them into the notebook.

:func:`cells_for` builds the nbformat cells (working code with its outputs, a collapsed record of the attempts),
with provenance metadata. An :class:`Inserter` delivers them: the JupyterLab bridge inserts real cells below
the ``%%ask`` cell; :class:`FallbackInserter` (any frontend: VS Code, classic, terminal) shows the outputs as the
magic's own output and offers the code as the next cell through ``set_next_input``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import re
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import nbformat
from nbformat import NotebookNode

from ..core.results import AskResult, DeliveredFile

METADATA_KEY = "ci_magic"
#: The first line of every code cell ci_magic puts into a notebook: run again, the cell goes through this
#: notebook's sandbox (``%%sandbox``), never the user's kernel; without ci_magic loaded it does not run at all.
SANDBOX_HEADER = "%%sandbox  # written by the model: runs in ci_magic's sandbox, not in this kernel"
_HEADER = re.compile(r"\A\s*%%sandbox\b[^\n]*(?:\n|\Z)")


def runnable(code: str) -> str:
    """A generated cell's source: the code under the sandbox header."""
    return f"{SANDBOX_HEADER}\n{code.rstrip()}"


def without_header(source: str) -> str:
    """The code of a cell, without the sandbox header if it has one."""
    return _HEADER.sub("", source, count=1)


@dataclass
class Insertion:
    """What one ask puts into the notebook."""

    insertion_id: str
    anchor_cell_id: str | None
    code_cell: NotebookNode
    record_cell: NotebookNode
    result: AskResult
    notes: list[str] = field(default_factory=list)


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def provenance(result: AskResult, insertion_id: str) -> dict[str, Any]:
    usage = result.usage
    return {
        "insertion_id": insertion_id,
        "model": result.model,
        "endpoint": result.endpoint,
        "prompt_hash": short_hash(result.question),
        "context_hash": short_hash(result.context),
        "attempts": len(result.attempts),
        "ok": result.ok,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "seconds": round(result.seconds, 2),
        # Model text: kept as data, shown escaped (the record, the summary, the export).
        "answer": result.words.text if result.words is not None else None,
        "doubt": result.doubt,
        "best_effort": result.best_effort.text if result.best_effort is not None else None,
        "files": [
            {"path": f.path, "sha256": f.sha256, "bytes": f.bytes, "saved_as": f.saved_as}
            for f in result.files
        ],
        "network": [asdict(u) for u in result.network],
        "installed": [asdict(p) for p in result.installed],
    }


def attempt_label(result: AskResult, index: int) -> str:
    """ "Attempt 2", or "Sample 4" for an extra answer drawn for a vote; the vote's pick is marked."""
    a = result.attempts[index]
    label = f"{'Sample' if a.sample else 'Attempt'} {a.number}"
    if result.chosen == index:
        label += " (chosen by the vote)"
    return label


def vote_line(result: AskResult) -> str:
    if not result.votes:
        return ""
    return (
        f"Vote: {max(result.votes.values())} of {sum(result.votes.values())} working answers agreed on the "
        "result shown."
    )


def best_effort_line(result: AskResult) -> str:
    """What a failed ask still gives, and how much to trust it."""
    best = result.best_effort
    assert best is not None
    if not best.computed:
        return (
            f"No attempt worked. Best effort: the answer the model stated in attempt {best.from_attempt} without "
            "code — nothing computed it (check it):"
        )
    return (
        f"No attempt worked. Best effort: the values attempt {best.from_attempt} printed, put into the asked form "
        "by the model without new code (check them):"
    )


def answer_lines(result: AskResult) -> list[str]:
    """The answer in words and any doubt about it, as plain text lines (each front end escapes them)."""
    lines = [f"Answer: {result.words.text}"] if result.words is not None else []
    if result.doubt is not None:
        lines.append(f"The answer may be wrong: the output {result.doubt}")
    return lines


def attempts_markdown(result: AskResult) -> str:
    usage = result.usage
    head = (
        f"**ci_magic** · {md_text(result.model)} @ {md_text(result.endpoint)} · {len(result.attempts)} "
        f"attempt(s) · {usage.total_tokens:,} tokens{' (estimated)' if usage.estimated else ''} · "
        f"{result.seconds:.1f} s"
    )
    # Everything here but our own words came from the user, the model or the sandbox: as text (escaped) or in
    # a code fence it cannot close, never as markup a renderer would act on (a remote image fetched on every
    # opening of the notebook would carry data out of a sandbox that has no network).
    lines = [head, ""]
    lines += [f"> {md_text(line)}" for line in result.question.strip().splitlines()] + [""]
    if result.words is not None:
        lines += [f"**Answer:** {md_text(result.words.text)}", ""]
    if result.doubt is not None:
        lines += [f"⚠️ The answer may be wrong: the output {md_text(result.doubt)}", ""]
    for warning in result.warnings:  # e.g. the sandbox ran without isolation: never silent
        lines += [f"⚠️ {md_text(warning)}", ""]
    if result.votes:
        lines += [vote_line(result), ""]
    if result.best_effort is not None:
        lines += [best_effort_line(result), fenced_block(result.best_effort.text), ""]
    for i, a in enumerate(result.attempts):
        status = "✅ worked" if a.ok else f"❌ {md_text(a.outcome)}"
        lines.append(f"<details><summary>{attempt_label(result, i)}: {status}</summary>\n")
        if a.code is not None:
            lines.append(fenced_block(a.code.rstrip(), "python") + "\n")
        if a.execution is not None and not a.ok:
            err = a.execution.traceback or f"{a.execution.error_name}: {a.execution.error_value}"
            lines.append(fenced_block(err[-1500:]) + "\n")
        elif a.code is None:
            lines.append("The reply contained no code.\n")
        lines.append("</details>")
    return "\n".join(lines)


#: Images the code saved are shown inline up to this size.
INLINE_IMAGE_BYTES = 5_000_000
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}


def files_outputs(files: list[DeliveredFile], folder: Path | None) -> list[NotebookNode]:
    """The files the working code wrote: one display listing them as links (JupyterLab opens a link to a file
    of the notebook's folder when clicked), then each saved image inline. Marked as ci_magic's own output."""
    if not files:
        return []
    rows, images = [], []
    for f in files:
        name = f.saved_as or f.path
        link = f"[{md_text(name)}]({quote(name)})" if f.saved_as else f"`{md_text(f.path)}`"
        note = f" — {md_text(f.note)}" if f.note else ""
        rows.append(f"- {link} · {_size(f.bytes)}{note}")
        mime = _IMAGE_TYPES.get(Path(name).suffix.lower())
        if mime and f.saved_as and folder is not None and 0 < f.bytes <= INLINE_IMAGE_BYTES:
            with contextlib.suppress(OSError):
                data = base64.b64encode((folder / f.saved_as).read_bytes()).decode()
                images.append(
                    nbformat.v4.new_output(
                        "display_data",
                        data={mime: data, "text/plain": name},
                        metadata={METADATA_KEY: {"role": "file-image"}},
                    )
                )
    plain = "Files the code wrote:\n" + "\n".join(
        f"  {f.saved_as or f.path} ({_size(f.bytes)}){f' — {f.note}' if f.note else ''}" for f in files
    )
    listing = nbformat.v4.new_output(
        "display_data",
        data={
            "text/markdown": "**Files the code wrote** (in this folder):\n\n" + "\n".join(rows),
            "text/plain": plain,
        },
        metadata={METADATA_KEY: {"role": "files", "files": [asdict(f) for f in files]}},
    )
    return [listing, *images]


def md_text(text: str) -> str:
    """Text from the sandbox or the model shown as text in markdown, on one line: no markup, no HTML."""
    one_line = " ".join(text.split())
    return html.escape(re.sub(r"([\\`*_\[\]()#!|:~])", r"\\\1", one_line))


def fenced_block(text: str, info: str = "") -> str:
    """``text`` as a CommonMark code block it cannot end: the fence is longer than any run of backticks in it
    (a line of three backticks in a traceback would otherwise close the block and start markup)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    # Control characters (terminal colours in tracebacks) and NULs mean nothing in a notebook.
    clean = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text)
    return f"{fence}{info}\n{clean}\n{fence}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    value = float(n)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def cells_for(result: AskResult, anchor_cell_id: str | None = None, folder: Path | None = None) -> Insertion:
    insertion_id = uuid.uuid4().hex
    meta = {**provenance(result, insertion_id), "anchor_cell_id": anchor_cell_id}
    outputs = [*result.outputs, *files_outputs(result.files, folder)] if result.ok else list(result.outputs)
    code = nbformat.v4.new_code_cell(source=runnable(result.code or ""), outputs=outputs)
    code.metadata[METADATA_KEY] = {**meta, "role": "code"}
    record = nbformat.v4.new_markdown_cell(source=attempts_markdown(result))
    record.metadata[METADATA_KEY] = {**meta, "role": "record"}
    record.metadata["jupyter"] = {"source_hidden": False}
    notes = [f"network: {u.line()}" for u in result.network]  # every host reached for, allowed or refused
    notes += [f"installed into the sandbox: {p.name}=={p.version}" for p in result.installed]
    return Insertion(insertion_id, anchor_cell_id, code, record, result, notes)


class Inserter(Protocol):
    def insert(self, insertion: Insertion) -> bool:
        """Deliver the cells; return False when this frontend cannot take them (the caller falls back)."""

    def append(self, insertion_id: str, anchor_cell_id: str, cells: list[NotebookNode]) -> bool:
        """Add ``cells`` after the anchor and the cells already added below it for the same anchor (an
        agent's calls, in order), replacing nothing; False when this frontend cannot."""


class FallbackInserter:
    """Show outputs as the magic's output; offer the working code as the next cell."""

    def __init__(self, shell: Any | None = None) -> None:
        self.shell = shell

    def insert(self, insertion: Insertion) -> bool:
        from IPython.display import publish_display_data

        result = insertion.result
        show_outputs(insertion.code_cell.outputs)  # the sandbox's outputs, then the files the code wrote
        publish_display_data(
            {"text/plain": summary_text(result), "text/html": _summary_html(result)},
            # The code travels with the outputs: a headless run (nbclient) drops set_next_input, and
            # `ci-magic export` rebuilds the code cell from here (or from the next cell, matched by code_hash).
            metadata={
                METADATA_KEY: {
                    **provenance(result, insertion.insertion_id),
                    "role": "fallback",
                    "anchor_cell_id": insertion.anchor_cell_id,
                    "code": result.code.rstrip() if result.ok and result.code else None,
                    "code_hash": short_hash(result.code.rstrip()) if result.ok and result.code else None,
                }
            },
        )
        if result.ok and result.code and self.shell is not None:
            self.shell.set_next_input(runnable(result.code), replace=False)
        return True

    def append(self, insertion_id: str, anchor_cell_id: str, cells: list[NotebookNode]) -> bool:
        return False  # called outside any running cell (an agent's call): there is no output to show them in


def show_outputs(outputs: list[Any]) -> None:
    """Outputs of the sandbox (already sanitised) as the running cell's own: streams, displays, errors."""
    from IPython.display import publish_display_data

    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            stream = sys.stderr if out.get("name") == "stderr" else sys.stdout
            stream.write(str(out.get("text", "")))
            stream.flush()
        elif kind in ("display_data", "execute_result"):
            publish_display_data(dict(out.get("data", {})), dict(out.get("metadata", {})))
        elif kind == "error":
            sys.stderr.write("\n".join(out.get("traceback", [])) + "\n")


def summary_text(result: AskResult) -> str:
    usage = result.usage
    verdict = "worked" if result.ok else "found no working code"
    lines = [
        f"ci_magic {verdict}: {len(result.attempts)} attempt(s), {usage.total_tokens:,} tokens, "
        f"{result.seconds:.1f} s, {result.model}"
    ]
    lines += ["  " + line for line in answer_lines(result)]
    if result.votes:
        lines.append("  " + vote_line(result))
    if result.best_effort is not None:
        lines.append("  " + best_effort_line(result))
        lines += [f"    {line}" for line in result.best_effort.text.splitlines()[:20]]
    lines += [f"  network: {u.line()}" for u in result.network]
    for i, a in enumerate(result.attempts):
        lines.append(f"  {attempt_label(result, i).lower()}: {'ok' if a.ok else a.outcome}")
        if a.execution is not None and not a.ok:
            lines.append(f"    {a.execution.error_name}: {a.execution.error_value}"[:300])
    return "\n".join(lines)


def _summary_html(result: AskResult) -> str:
    usage = result.usage
    verdict = "worked" if result.ok else "found no working code"
    rows = []
    for i, a in enumerate(result.attempts):
        status = "ok" if a.ok else a.outcome
        detail = ""
        if a.code is not None:
            detail += f"<pre>{html.escape(a.code.rstrip())}</pre>"
        if a.execution is not None and not a.ok:
            err = a.execution.traceback or f"{a.execution.error_name}: {a.execution.error_value}"
            detail += f"<pre style='color:#b00'>{html.escape(err[-1500:])}</pre>"
        if a.code is None:
            detail += "<p>The reply contained no code.</p>"
        rows.append(
            f"<details><summary>{html.escape(attempt_label(result, i))}: {status} · "
            f"{a.usage.total_tokens:,} tokens · "
            f"{a.model_seconds:.1f} s model"
            + (f" · {a.execution.seconds:.2f} s run" if a.execution else "")
            + f"</summary>{detail}</details>"
        )
    said = "".join(f"<p>{html.escape(line)}</p>" for line in answer_lines(result))
    return (
        said + f"<details><summary><b>ci_magic</b> {verdict} · {len(result.attempts)} attempt(s) · "
        f"{usage.total_tokens:,} tokens · {result.seconds:.1f} s · {html.escape(result.model)}</summary>"
        + (f"<p>{html.escape(vote_line(result))}</p>" if result.votes else "")
        + (
            f"<p>{html.escape(best_effort_line(result))}</p><pre>{html.escape(result.best_effort.text)}</pre>"
            if result.best_effort is not None
            else ""
        )
        + "".join(rows)
        + "</details>"
    )
