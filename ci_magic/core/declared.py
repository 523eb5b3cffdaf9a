"""Every setting a user can change, declared once: its name, the :class:`~ci_magic.core.settings.Settings` field
it sets, its type, its help text and its CLI flag. The ``%config Ask`` traits (notebook/config.py), the flags of
``ci-magic ask``/``eval`` (cli.py) and the settings options of ``%%ask`` (notebook/options.py) are made from this
table, so a setting's name, default and words are the same wherever it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .settings import Settings

__all__ = ["DECLARED", "HELP", "Declared", "declared", "described", "with_default"]

#: How the notebook's value meets the environment's: it replaces it, or (a safety switch) either one turns it
#: on ("any": CI_MAGIC_REQUIRE_ISOLATION=1 stays on) or either one turns it off ("all").
Combine = Literal["replace", "any", "all"]


@dataclass(frozen=True)
class Declared:
    """One user-facing setting (see the module docstring)."""

    name: str  # ``%config Ask.<name>``; the key of HELP
    path: str | None  # the Settings field it sets ("limits.timeout_s": a Limits field); None: notebook only
    kind: type  # int, float, bool, str, dict or list (of str; repeatable flags)
    help: str
    cli: str | None = None  # its flag on ``ci-magic ask``/``eval`` (a "--no-…" switch turns a default off)
    short: str | None = None  # the CLI's short flag
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    combine: Combine = "replace"
    notebook_default: Any = None  # the notebook's own default, where it differs from the core's

    @property
    def default(self) -> Any:
        """The core's default (:class:`~ci_magic.core.settings.Settings`), or the notebook's own."""
        if self.notebook_default is not None or self.path is None:
            return self.notebook_default
        value = Settings().get(self.path)
        return list(value) if self.kind is list else value  # a list setting is a list in every front end


def _d(name: str, path: str | None, kind: type, text: str, **more: Any) -> Declared:
    return Declared(name, path, kind, text, **more)


DECLARED: tuple[Declared, ...] = (
    _d(
        "model",
        "model",
        str,
        "Model name (default: CI_MAGIC_MODEL, or the server's).",
        cli="--model",
        short="-m",
    ),
    _d(
        "base_url",
        "base_url",
        str,
        "OpenAI-compatible base URL (default: OPENAI_BASE_URL).",
        cli="--base-url",
    ),
    _d("attempts", "attempts", int, "Attempts per ask, counting repairs.", cli="--attempts", short="-n"),
    _d(
        "samples",
        "samples",
        int,
        "Independent answers per ask; with more than one, the answer most of them agree on is kept (costs up to "
        "that many times the model time).",
        cli="--samples",
        short="-s",
    ),
    _d(
        "timeout", "limits.timeout_s", float, "Seconds one execution may run in the sandbox.", cli="--timeout"
    ),
    _d("time_budget", "time_budget_s", float, "Seconds after which an ask starts no new attempt (repair)."),
    _d(
        "request_timeout",
        "request_timeout_s",
        float,
        "Seconds to wait for the model.",
        cli="--request-timeout",
    ),
    _d("context_tokens", "context_tokens", int, "Token budget for the data description."),
    _d("memory_mb", "limits.memory_mb", int, "Address-space limit of the sandbox kernel, in MB."),
    _d("network", "limits.network", bool, "Let sandboxed code use the network (all of it)."),
    _d(
        "allow_hosts",
        "limits.allow_hosts",
        list,
        "Hosts sandboxed code may reach by name while the network is off, through ci_magic's proxy (HTTP and "
        "HTTPS): data.example.org, *.example.com (its subdomains), optionally :port; an address rule (10.0.0.5, "
        "10.0.0.0/8) lets an allowed name reach that private address. Default: CI_MAGIC_ALLOW_HOSTS.",
        cli="--allow",
        metavar="HOST",
    ),
    _d(
        "network_budget_mb",
        "limits.network_budget_mb",
        int,
        "Megabytes one run of code may move through the proxy to allowed hosts (both ways).",
    ),
    _d(
        "package_index",
        "limits.package_index",
        str,
        "The package index `pip install` uses in the sandbox, when the allowed hosts include its host (default: "
        "CI_MAGIC_PACKAGE_INDEX, PIP_INDEX_URL, else PyPI, whose files also need files.pythonhosted.org).",
    ),
    _d(
        "disk_mb",
        "limits.disk_mb",
        int,
        "Size of the sandbox's own disk (working folder and home), in MB; /tmp and /dev/shm get a quarter of it "
        "each.",
    ),
    _d(
        "overwrite_files",
        "overwrite_files",
        bool,
        "Files the code writes replace files of the same name in this folder (otherwise they get a free name, "
        "e.g. 'q2 (2).csv').",
        cli="--overwrite",
    ),
    _d("max_files_mb", "max_files_mb", int, "Files brought back by one ask, in MB at most."),
    _d(
        "idle_minutes",
        "idle_minutes",
        float,
        "A sandbox idle this long is shut down; the next ask starts a fresh one (and the model is told).",
    ),
    _d(
        "gateway_url",
        "gateway_url",
        str,
        "Run sandboxes on this Jupyter Enterprise Gateway (default: CI_MAGIC_GATEWAY_URL; the token is read from "
        "CI_MAGIC_GATEWAY_TOKEN only).",
        cli="--gateway-url",
        metavar="URL",
    ),
    _d(
        "gateway_kernel",
        "gateway_kernel",
        str,
        "Kernelspec name on the gateway (default: the gateway's).",
        cli="--gateway-kernel",
        metavar="NAME",
    ),
    _d(
        "require_isolation",
        "require_isolation",
        bool,
        "Refuse to run an ask when the sandbox is not isolated (no namespaces on this machine); otherwise every "
        "ask's summary says what is missing. CI_MAGIC_REQUIRE_ISOLATION=1 turns it on too.",
        cli="--require-isolation",
        combine="any",
    ),
    _d(
        "answer_in_words",
        "answer_in_words",
        bool,
        "End a working ask with one or two sentences the model writes from its outputs (one short extra "
        "request). CI_MAGIC_ANSWER_IN_WORDS=0 turns it off too.",
        cli="--no-words",
        combine="all",
    ),
    _d(
        "prestart",
        None,
        bool,
        "Start the sandbox kernel when the extension loads (first ask is faster).",
        notebook_default=True,
    ),
    _d(
        "context_detail",
        "context_detail",
        str,
        "What the data description sent to the model (and traces) may contain: names and types only, plus "
        "statistics, or plus example values.",
        choices=("schema", "stats", "samples"),
    ),
    # "Run All" after a kernel restart replays the same replies in a notebook; the CLI and the API ask anew.
    _d(
        "cache",
        "reply_cache",
        bool,
        "Replay identical model conversations from disk (see --fresh).",
        notebook_default=True,
    ),
    _d("cache_max_mb", "cache_max_mb", float, "Size bound of the reply cache, in MB."),
    _d(
        "prices",
        "prices",
        dict,
        'USD per 1M tokens per model, e.g. {"gpt-4o-mini": [0.15, 0.6]}; merged over CI_MAGIC_PRICES and '
        "ci_magic.observe.cost's defaults.",
        cli="--prices",
        metavar="JSON",
    ),
)

#: What each setting does, in the words every front end shows (``%config Ask``, ``--help``, ``%%ask?``).
HELP: dict[str, str] = {d.name: d.help for d in DECLARED}


def declared(name: str) -> Declared:
    return next(d for d in DECLARED if d.name == name)


def described(name: str, default: Any = None) -> str:
    """:data:`HELP`'s text for ``name`` with ``default`` appended, as ``--help`` and ``%%ask?`` show it."""
    return with_default(HELP[name], default)


def with_default(text: str, default: Any) -> str:
    """``text`` ending in "(default: …)" unless ``default`` is None."""
    if default is None:
        return text
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    return f"{text.rstrip('.')} (default: {shown})."
