"""The IPython edge: ``%%ask`` / ``%ask``, ``%ask_history``, ``%ask_export``.

The magic only reads its arguments (:mod:`.options`) and renders: the live view (:mod:`.liveview`), notes and
warnings, the context preview. Everything else — settings (``%config Ask.…``, :mod:`.config`), the interpreter, the record
of asks, the keep policy, delivering cells — belongs to the :class:`~ci_magic.notebook.session.NotebookSession`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from IPython.core.magic import (
    Magics,
    cell_magic,
    line_cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)
from IPython.display import publish_display_data

from ..core.errors import CodeFailed, UsageError
from .cells import METADATA_KEY, Insertion, files_outputs, show_outputs
from .liveview import LiveView
from .options import help_text, parse_line
from .session import NotebookSession, Preview


@magics_class
class AskMagics(Magics):
    def __init__(
        self,
        shell: Any,
        session: NotebookSession,
        export: Callable[[NotebookSession, str], None] | None = None,
        serve: Callable[[NotebookSession, str], str] | None = None,
    ) -> None:
        super().__init__(shell)
        self.session = session
        self._export = (
            export  # reproduce/export.py, handed in by the composition root (ci_magic/extension.py)
        )
        self._serve = serve  # agents/live.py, likewise

    @no_var_expand  # "$0.05" must reach --budget as written, not as IPython's $-variable expansion
    @line_cell_magic
    def ask(self, line: str, cell: str | None = None) -> None:
        # CIMagicError renders as one clear paragraph (no traceback) and marks the cell as failed, so "Run All"
        # stops here instead of running later cells on missing results.
        request = parse_line(line, cell)
        if request.context_only:
            show_preview(self.session.preview(request.question, request.frames))
            return
        view = LiveView(request.attempts or self.session.config.attempts, self.shell)
        try:
            insertion = self.session.ask(request, on_event=view, anchor_cell_id=self.session.current_cell_id)
        finally:
            view.close()
        show_notes(insertion)
        self.session.deliver(insertion)

    ask.__doc__ = help_text()

    @no_var_expand
    @cell_magic
    def sandbox(self, line: str, cell: str) -> None:
        """%%sandbox: run the cell in this notebook's sandbox, not in this kernel (the header of every cell
        ci_magic inserts: running it again never runs model-written code in your kernel). The DataFrames it
        names are sent, what it assigns and the files it writes come back as an ask's do."""
        run, notes = self.session.run_code(cell)
        show_outputs(run.execution.outputs)
        show_outputs(files_outputs(run.files, self.session.files_dir()))
        lines = [f"ci_magic: {n}" for n in notes] + [f"ci_magic: warning: {w}" for w in run.warnings]
        if lines:
            publish_display_data({"text/plain": "\n".join(lines)}, metadata={METADATA_KEY: {"role": "notes"}})
        if not run.execution.ok:
            raise CodeFailed(
                f"the cell failed in the sandbox ({run.execution.error_name}: "
                f"{(run.execution.error_value or '')[:300]})."
            )

    @line_magic
    def ask_history(self, line: str = "") -> None:
        """This session's asks, failed ones included: tokens, cost, attempts and time (prices: %config Ask.prices)."""
        print(self.session.history_table())

    @line_magic
    def ask_reset(self, line: str = "") -> None:
        """Start over: the sandbox is shut down (the next ask starts a fresh one) and follow-ups forget earlier
        asks. Your notebook's variables and files are not touched."""
        self.session.reset()
        print("ci_magic: the sandbox was reset; the next ask starts a fresh one.")

    @line_magic
    def ask_export(self, line: str = "") -> None:
        """%ask_export OUT.ipynb [--notebook SAVED.ipynb]: a plain, re-runnable notebook of this session."""
        if self._export is None:
            raise UsageError(
                "%ask_export is not available in this session: load ci_magic with %load_ext ci_magic."
            )
        self._export(self.session, line)

    @line_magic
    def ask_serve(self, line: str = "") -> None:
        """%ask_serve [start|stop|status] [--port N]: serve this notebook's session (its DataFrames, its
        sandbox) to other agents over MCP on loopback, with a bearer token; what they run appears as cells
        below this one, marked with the agent's name. %ask_serve stop, or the kernel stopping, ends access."""
        if self._serve is None:
            raise UsageError(
                "%ask_serve is not available in this session: load ci_magic with %load_ext ci_magic."
            )
        print(self._serve(self.session, line))


def show_notes(insertion: Insertion) -> None:
    """What came back, what was not overwritten, and warnings (the sandbox's missing protections first), as one
    output marked as ci_magic's own (export leaves it out by that mark)."""
    lines = [f"ci_magic: {note}" for note in insertion.notes]
    lines += [f"ci_magic: warning: {warning}" for warning in insertion.result.warnings]
    if lines:
        publish_display_data(
            {"text/plain": "\n".join(lines)},
            metadata={METADATA_KEY: {"role": "notes", "insertion_id": insertion.insertion_id}},
        )


def show_preview(preview: Preview) -> None:
    print(
        f"ci_magic would send these {len(preview.messages)} messages, about {preview.tokens:,} tokens (the data "
        f"description fitted to {preview.context_budget:,}); nothing was sent.\n"
    )
    print(preview.text())
