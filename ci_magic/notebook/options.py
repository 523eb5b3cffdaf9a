"""The ``%%ask`` options, declared once, as data.

Everything that needs to know the options reads :data:`OPTIONS`: the magic's parser and its usage line
(:func:`parse_line`, :func:`usage_line`, :func:`help_text`), the export (which options take a value, to tell
options from the words of a question: :func:`flags_with_values`) and the panel bridge (which fields a panel
request may carry, and how they are checked: :func:`from_panel`). A default is never written here: it is the
:class:`~ci_magic.core.settings.Settings` / :class:`~ci_magic.core.settings.Limits` field the option overrides
(``None`` in a request means "as configured", i.e. ``%config Ask.…``, whose defaults are those fields too).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from ..core.declared import declared, with_default
from ..core.errors import UsageError
from ..core.settings import Settings


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


@dataclass(frozen=True)
class Option:
    """One ``%%ask`` option: ``--name`` (and a short flag), and the :class:`AskRequest` field it fills."""

    name: str  # the AskRequest field, and the key of a panel request
    short: str | None
    help: str
    read: Callable[[str], Any] | None = None  # reads the value from the line; None: a switch with no value
    metavar: str = ""
    setting: str | None = None  # the Settings field it overrides ("limits.timeout_s": a Limits field)
    repeatable: bool = False
    panel: bool = False  # a panel ask request may carry it

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag, self.short) if self.short else (self.flag,)

    @property
    def takes_value(self) -> bool:
        return self.read is not None

    @property
    def default(self) -> Any:
        """What applies when the option is not given and nothing is configured: the core's default."""
        return None if self.setting is None else Settings().get(self.setting)

    def usage(self) -> str:
        return f"[{self.flag} {self.metavar}]" if self.takes_value else f"[{self.flag}]"

    def describe(self) -> str:
        """The help text, with the default where one applies (``%config Ask.…`` may change it)."""
        return with_default(self.help, self.default)

    def from_panel(self, value: Any) -> Any:
        """A panel request's JSON value, checked like the magic's parser checks the line."""
        if self.read is None:
            if not isinstance(value, bool):
                raise UsageError(f"{self.name} must be true or false, got {value!r}.")
            return value
        if self.repeatable:
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{self.name} must be a list of text values, got {value!r}.")
            return tuple(value)
        if self.read is _names:
            if isinstance(value, str):
                return _names(value)
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{self.name} must be a list of names, got {value!r}.")
            return tuple(value)
        if isinstance(value, bool) or (self.read in (int, float) and not isinstance(value, int | float)):
            raise UsageError(f"{self.name} must be a number, got {value!r}.")
        if self.read is int and value != int(value):
            raise UsageError(f"{self.name} must be a whole number, got {value!r}.")
        return self.read(value)


def _setting(name: str, short: str | None, metavar: str = "", *, option: str | None = None) -> Option:
    """The option of a declared setting (core/declared.py): its help and the Settings path come from there.
    ``option``: the option's own name where it differs (``--overwrite`` sets ``overwrite_files``)."""
    d = declared(name)
    listed = d.kind is list  # repeated: one value per use (--allow a --allow b)
    read = None if d.kind is bool else str if listed else d.kind
    return Option(option or name, short, d.help, read, metavar, setting=d.path, panel=True, repeatable=listed)


OPTIONS: tuple[Option, ...] = (
    Option(
        "frames",
        "-f",
        "Comma-separated DataFrame names to describe (and copy to the sandbox); default: every DataFrame/Series.",
        _names,
        "a,b",
        panel=True,
    ),
    _setting("attempts", "-n", "N"),
    _setting("samples", "-s", "K"),
    _setting("model", "-m", "M"),
    Option(
        "keep",
        "-k",
        "Bring this variable back, overwriting a notebook variable (repeatable).",
        str,
        "NAME",
        repeatable=True,
    ),
    Option("no_keep", None, "Bring nothing back into this notebook."),
    _setting("timeout", "-t", "S"),
    Option("context_only", None, "Show exactly what would be sent; send nothing."),
    Option("budget", "-b", "Stop at this many tokens (5000) or dollars ($0.05).", str, "N|$X", panel=True),
    Option("fresh", None, "Ask the model even if the reply cache has an answer.", panel=True),
    _setting("overwrite_files", None, option="overwrite"),
    _setting("allow_hosts", None, "HOST", option="allow"),
)


@dataclass(frozen=True)
class AskRequest:
    """One ask as a front end requests it: the question and the options (None: as configured)."""

    question: str = ""
    frames: tuple[str, ...] | None = None
    attempts: int | None = None
    samples: int | None = None
    model: str | None = None
    keep: tuple[str, ...] | None = None
    no_keep: bool = False
    timeout: float | None = None
    context_only: bool = False
    budget: str | None = None
    fresh: bool = False
    overwrite: bool = False
    allow: tuple[str, ...] | None = None

    @property
    def keep_policy(self) -> Sequence[str] | Literal["auto"] | None:
        """What comes back into the notebook: nothing, the named variables, or what the code created."""
        if self.no_keep:
            return None
        return list(self.keep) if self.keep else "auto"

    def overrides(self) -> dict[str, Any]:
        """The settings this ask's options change (Settings field, or ``limits.<field>``, → value; see
        ``Ask.settings``): every option that names a setting and was given (a switch: when on)."""
        found = {}
        for o in OPTIONS:
            value = getattr(self, o.name)
            if o.setting is not None and value is not None and value is not False:
                found[o.setting] = value
        return found


def usage_line() -> str:
    return "%%ask " + " ".join(o.usage() for o in OPTIONS) + ", then the question."


def help_text() -> str:
    """The magic's docstring (``%%ask?``)."""
    width = max(len(", ".join(o.flags) + (f" {o.metavar}" if o.takes_value else "")) for o in OPTIONS)
    lines = [
        "Ask a question about the DataFrames in this notebook; the code runs in a sandbox kernel.",
        "",
        usage_line(),
        "",
    ]
    for o in OPTIONS:
        flags = ", ".join(o.flags) + (f" {o.metavar}" if o.takes_value else "")
        lines.append(f"  {flags.ljust(width)}  {o.describe()}")
    return "\n".join(lines)


def flags_with_values() -> set[str]:
    """Every flag (long and short) that takes a value: the word after it is not part of the question."""
    return {flag for o in OPTIONS if o.takes_value for flag in o.flags}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}. Usage: {usage_line()}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%%ask", add_help=False, allow_abbrev=False)
    for o in OPTIONS:
        if o.read is None:
            parser.add_argument(*o.flags, dest=o.name, action="store_true", help=o.help)
        else:
            action = "append" if o.repeatable else "store"
            parser.add_argument(
                *o.flags, dest=o.name, type=o.read, action=action, metavar=o.metavar, help=o.help
            )
    parser.add_argument("question", nargs="*")
    return parser


def parse_line(line: str, cell: str | None = None) -> AskRequest:
    """``%%ask OPTIONS [words]`` and the cell body → an :class:`AskRequest` (UsageError with the usage line)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"{exc}. Usage: {usage_line()}") from None
    args = _parser().parse_args(words)
    parts = [" ".join(args.question), cell or ""]
    values = {o.name: getattr(args, o.name) for o in OPTIONS}
    for o in OPTIONS:
        if o.repeatable and values[o.name] is not None:
            values[o.name] = tuple(values[o.name])
    return AskRequest(question="\n".join(p.strip() for p in parts if p.strip()), **values)


def from_panel(data: Mapping[str, Any]) -> AskRequest:
    """A panel ``ask`` request → an :class:`AskRequest`: ``prompt`` is the question; the options the panel may
    send (``panel=True``) are read and checked; absent or null means "as configured"; other keys are ignored."""
    values: dict[str, Any] = {}
    for o in OPTIONS:
        if o.panel and data.get(o.name) is not None:
            values[o.name] = o.from_panel(data[o.name])
    return AskRequest(question=str(data.get("prompt") or ""), **values)


def panel_fields() -> list[str]:
    """The fields of a panel ask request, for the protocol's description."""
    return ["ask_id", "prompt", *(o.name for o in OPTIONS if o.panel)]
