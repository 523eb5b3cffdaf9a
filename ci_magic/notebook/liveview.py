"""What a ``%%ask`` cell shows while the ask runs: one progress line (attempt, state, elapsed time, tokens and, while
the model writes, tokens per second) and, under it, the outputs of the code as it runs — printed lines, a tqdm bar,
charts as they are shown — each in a display that is updated in place.

The outputs come as the sandbox's live ops (``output`` events, ci_magic/sandbox/live.py), already sanitised. A new
run (a repair) starts with an empty area, so a failed attempt's output is replaced by the repair's; at the end the
area is emptied: the working run's outputs arrive with its cells, as they always did. Only a kernel can update a
display in place: in a terminal IPython the view stays silent.
"""

from __future__ import annotations

import time
from typing import Any

from IPython.display import display

from ..core.events import Code, Event, ExecDone, ModelDone, ModelStart, Output, Token
from ..core.results import estimate_tokens
from .cells import METADATA_KEY

#: Marks the live lines as ci_magic's own output (export leaves them out by this mark).
PROGRESS = {METADATA_KEY: {"role": "progress"}}
#: Lines of one stream shown while it runs (its end, as a terminal would).
STREAM_LINES = 40
#: How often the progress line is redrawn while tokens stream in.
REDRAW_S = 0.25


class LiveView:
    """See the module docstring; an :data:`~ci_magic.core.events.EventSink`."""

    def __init__(self, attempts: int, shell: Any) -> None:
        self.attempts = attempts
        self.tokens = 0
        self.total = 0
        self.state = "starting"
        self.attempt = 1
        self.sample: int | None = None  # set while an extra answer for a vote is being drawn
        self.outputs: list[dict[str, Any]] = []  # the running code's outputs so far
        self._started = time.monotonic()
        self._phase_started = self._started  # when the model started writing, or the code running
        self._last = 0.0
        self._in_kernel = getattr(shell, "kernel", None) is not None
        self._handle = self._show({"text/plain": "ci_magic: starting…"})
        self._shown: list[Any] = []  # one display per live output, reused run after run
        self._bundles: list[dict[str, Any]] = []  # what each shows now

    def __call__(self, event: Event) -> None:
        data = event.data
        if isinstance(data, Token):
            self.tokens += estimate_tokens(data.text)
            self.state = "model is writing"
        elif isinstance(data, ModelStart):
            self.attempt, self.tokens, self.state = event.attempt, 0, "waiting for the model"
            self.sample = data.sample
            self._phase_started = time.monotonic()
        elif isinstance(data, ModelDone):
            self.total += data.prompt_tokens + data.completion_tokens
            self.state = "model done"
        elif isinstance(data, Code):
            # A run without a model request first (a misspelt column put right) is an attempt of its own too.
            self.attempt = event.attempt
            self.state, self._phase_started = "running in the sandbox", time.monotonic()
            self.outputs = []  # a new run: the last one's output (a failed attempt's) is replaced
            self._sync()
        elif isinstance(data, Output):
            data.apply(self.outputs)
            self._sync()
        elif (isinstance(data, ExecDone) and data.error) or event.kind == "no_code":
            self.state = "failed, asking for a fix"
        elif event.kind == "done":
            self.state = "done"
        now = time.monotonic()
        if event.kind not in ("token", "output") or now - self._last > REDRAW_S:
            self._last = now
            self._update()

    def line(self) -> str:
        """The progress line as it reads now."""
        step = (
            f"sample {self.sample} for the vote" if self.sample else f"attempt {self.attempt}/{self.attempts}"
        )
        now = time.monotonic()
        state = self.state
        if state in ("model is writing", "running in the sandbox"):
            phase = now - self._phase_started
            state += f" for {phase:.0f} s"
            if state.startswith("model") and phase > 0.5:
                state += f" ({self.tokens / phase:.0f} tokens/s)"
        return (
            f"ci_magic: {step} · {state} · {self.tokens} tokens this reply · {self.total:,} tokens so far · "
            f"{now - self._started:.0f} s"
        )

    def _update(self) -> None:
        if self._handle is not None:
            self._handle.update({"text/plain": self.line()}, raw=True, metadata=PROGRESS)

    def _sync(self) -> None:
        """Make the displays under the progress line show :attr:`outputs` (changed ones only)."""
        if not self._in_kernel:
            return
        wanted = [_bundle(o) for o in self.outputs]
        wanted += [{"text/plain": ""}] * (len(self._shown) - len(wanted))  # outputs cleared: empty displays
        for i, bundle in enumerate(wanted):
            if i < len(self._shown):
                if self._bundles[i] != bundle:
                    self._shown[i].update(bundle, raw=True, metadata=PROGRESS)
                    self._bundles[i] = bundle
            else:
                self._shown.append(self._show(bundle))
                self._bundles.append(bundle)

    def _show(self, bundle: dict[str, Any]) -> Any:
        return display(bundle, raw=True, metadata=PROGRESS, display_id=True) if self._in_kernel else None

    def close(self) -> None:
        self.outputs = []
        self._sync()
        if self._handle is not None:
            self._handle.update({"text/plain": ""}, raw=True, metadata=PROGRESS)


def _bundle(output: dict[str, Any]) -> dict[str, Any]:
    """What one live output shows: a stream's last lines (carriage returns applied, as a terminal does), an
    error's one line, a display's data as the sandbox sanitised it."""
    kind = output.get("output_type")
    if kind == "stream":
        return {"text/plain": terminal_tail(str(output.get("text", "")), STREAM_LINES)}
    if kind == "error":
        return {"text/plain": f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"}
    data = output.get("data")
    return dict(data) if isinstance(data, dict) and data else {"text/plain": ""}


def terminal_tail(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text`` as a terminal shows them: a carriage return starts its line over."""
    ended = text.endswith("\n")
    rows = text.removesuffix("\n").split("\n")[-lines:]
    return "\n".join(row.rstrip("\r").rsplit("\r", 1)[-1] for row in rows) + ("\n" if ended else "")
