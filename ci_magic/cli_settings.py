"""The flags every ``ci-magic`` command that asks shares (``ask``, ``eval``, ``mcp``, ``acp``): the settings, made
from their one declaration (core/declared.py), and the settings a command's arguments give; ``--data``."""

from __future__ import annotations

import argparse
from typing import Any

from .core.declared import DECLARED, described
from .core.settings import Settings, parse_prices


def setting_options(parser: argparse.ArgumentParser) -> None:
    """The flags of the settings (shared by ``ask`` and ``eval``), made from their declarations
    (core/declared.py): the names, help and defaults ``%config Ask`` and ``%%ask?`` show. Not given: None, so
    the environment or the default applies."""
    for d in DECLARED:
        if d.cli is None:
            continue
        flags = (d.cli, d.short) if d.short else (d.cli,)
        if d.kind is bool:
            off = d.cli.startswith("--no-")
            action = "store_false" if off else "store_true"
            text = ("Turn off: " if off else "") + d.help
            parser.add_argument(*flags, dest=d.name, action=action, default=None, help=text)
        elif d.kind is list:
            parser.add_argument(
                *flags, dest=d.name, action="append", metavar=d.metavar, help=d.help + " Repeatable."
            )
        else:
            kind = str if d.kind is dict else d.kind  # a table comes as JSON text
            shown = d.default if d.kind in (int, float) else None
            parser.add_argument(
                *flags, dest=d.name, type=kind, metavar=d.metavar, help=described(d.name, shown)
            )


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings of a command: the environment, then the command's options (None: not given)."""
    values: dict[str, Any] = {}
    for d in DECLARED:
        value = getattr(args, d.name, None)
        if d.cli is None or d.path is None or value is None:
            continue
        values[d.path] = (
            parse_prices(value, d.cli) if d.kind is dict else tuple(value) if d.kind is list else value
        )
    return Settings.from_env(frontend="cli").with_overrides(values)


def data_option(parser: argparse.ArgumentParser) -> None:
    """``--data NAME=PATH``, repeatable (read by ``cli_io.load_table``)."""
    parser.add_argument(
        "--data",
        "-d",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="Load a table as DataFrame NAME (CSV, TSV, Parquet, JSON, Excel). Repeatable.",
    )
