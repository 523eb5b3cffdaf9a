"""The frozen settings object the core runs on.

Traitlets live only at the IPython edge (:mod:`ci_magic.notebook.magic`); the CLI and the Python API build the same
object from arguments and the environment, so every entry point resolves configuration one way.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import UsageError
from .hosts import Policy

#: The model name used when an OpenAI-compatible endpoint is configured but no model was chosen.
DEFAULT_REMOTE_MODEL = "gpt-4o-mini"

#: Substrings that mark an environment variable as secret: never passed to the child kernel.
SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE", "SESSION")


#: Which front end words the messages: errors say how to change a setting in the words of the one in use.
Frontend = Literal["python", "notebook", "cli"]

#: How a user changes a setting, per front end. ``{model}`` is filled in where a message names a model.
HOW_TO_SET: dict[str, dict[str, str]] = {
    "model": {
        "python": "Settings(model=...) or CI_MAGIC_MODEL",
        "notebook": "--model, %config Ask.model = '...' or CI_MAGIC_MODEL",
        "cli": "--model or CI_MAGIC_MODEL",
    },
    "base_url": {
        "python": "Settings(base_url=...) or OPENAI_BASE_URL",
        "notebook": "%config Ask.base_url = '...' or OPENAI_BASE_URL",
        "cli": "--base-url or OPENAI_BASE_URL",
    },
    "request_timeout": {
        "python": "Settings(request_timeout_s=...)",
        "notebook": "%config Ask.request_timeout = SECONDS",
        "cli": "--request-timeout SECONDS",
    },
    "prices": {
        "python": 'Settings(prices={{"{model}": [prompt_usd_per_1M, completion_usd_per_1M]}}) or CI_MAGIC_PRICES',
        "notebook": '%config Ask.prices = {{"{model}": [prompt_usd_per_1M, completion_usd_per_1M]}}',
        "cli": "--prices '{{\"{model}\": [prompt_usd_per_1M, completion_usd_per_1M]}}' or CI_MAGIC_PRICES",
    },
    "require_isolation": {
        "python": "Settings(require_isolation=False) or CI_MAGIC_REQUIRE_ISOLATION=0",
        "notebook": "%config Ask.require_isolation = False and unset CI_MAGIC_REQUIRE_ISOLATION",
        "cli": "leave out --require-isolation and unset CI_MAGIC_REQUIRE_ISOLATION",
    },
}

#: The gateway's token is read from the environment only, never from configuration files or settings shown.
GATEWAY_TOKEN_ENV = "CI_MAGIC_GATEWAY_TOKEN"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def how_to_set(name: str, frontend: Frontend = "python", **fill: str) -> str:
    """How to change setting ``name`` in ``frontend``'s words (see :data:`HOW_TO_SET`)."""
    return HOW_TO_SET[name][frontend].format(**{"model": "MODEL", **fill})


def check_prices(prices: Mapping[str, Any], source: str = "prices") -> dict[str, tuple[float, float]]:
    """``{model: (prompt, completion)}`` USD per 1M tokens, validated: a typo must not silently cost 0."""
    if not isinstance(prices, Mapping):
        raise UsageError(f'{source} must map model names to [prompt, completion], e.g. {{"m": [0.5, 1.5]}}.')
    table: dict[str, tuple[float, float]] = {}
    for model, value in prices.items():
        try:
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                raise TypeError
            prompt, completion = (float(v) for v in value)
        except (TypeError, ValueError):
            raise UsageError(
                f"{source}[{model!r}] must be [prompt, completion] USD per 1M tokens, got {value!r}."
            ) from None
        if prompt < 0 or completion < 0 or not math.isfinite(prompt + completion):
            raise UsageError(f"{source}[{model!r}] must be finite and not negative, got {value!r}.")
        table[str(model)] = (prompt, completion)
    return table


def parse_prices(text: str, source: str) -> dict[str, tuple[float, float]]:
    """The JSON form of a price table (``--prices``, ``CI_MAGIC_PRICES``)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise UsageError(
            f'{source} must be JSON like {{"my-model": [0.5, 1.5]}} (USD per 1M prompt/completion tokens), '
            f"got {text!r}."
        ) from None
    return check_prices(value, source)


def parse_flag(text: str, source: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"{source} must be 1 or 0 (true/false), got {text!r}.")


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to the child kernel."""

    memory_mb: int = 4096  # RLIMIT_AS; below ~1 GiB `import pandas, pyarrow` fails
    timeout_s: float = 60.0  # wall time for one execution before interrupt
    interrupt_grace_s: float = 3.0  # after SIGINT, how long before the kernel is restarted
    max_output_bytes: int = 1_000_000  # per stream; the tail is kept
    max_display_bytes: int = 20_000_000  # all display outputs (tables, charts) of one execution together
    max_processes: int = 256  # pids cgroup (root) or RLIMIT_NPROC (per user, so generous)
    max_file_mb: int = 1024  # RLIMIT_FSIZE
    disk_mb: int = 1024  # the sandbox's own tmpfs: working folder, home, /tmp; /dev/shm gets a quarter more
    max_transfer_mb: int = 1024  # a value brought back: file size plus what converting it may allocate
    idle_cpu_s: float = 10.0  # CPU seconds the sandbox may use while no code runs before it is restarted
    network: bool = False  # allow the child to reach the network (all of it)
    # With the network off, hosts the code may still reach by name, through the egress proxy (core/hosts.py).
    allow_hosts: tuple[str, ...] = ()
    network_budget_mb: int = 200  # bytes through the egress proxy per run of code, both ways
    # Where `pip install` in the sandbox finds packages (when the list allows its host): sandbox/egress/packages.py
    package_index: str = "https://pypi.org/simple"
    isolation: bool = (
        True  # bubblewrap namespaces + minimal read-only view where the OS allows (sandbox/isolation.py)
    )

    def __post_init__(self) -> None:
        if self.memory_mb < 1024:
            raise UsageError(
                f"memory limit {self.memory_mb} MB is too small: pandas and pyarrow need about 1 GiB of "
                "address space to import. Use 1024 MB or more."
            )
        if self.timeout_s <= 0:
            raise UsageError(f"timeout must be positive, got {self.timeout_s}.")
        if self.disk_mb < 16:
            raise UsageError(f"the sandbox's disk must be at least 16 MB, got {self.disk_mb} MB.")
        if isinstance(self.allow_hosts, str):
            object.__setattr__(self, "allow_hosts", (self.allow_hosts,))
        hosts = tuple(h.strip() for h in self.allow_hosts if h.strip())
        Policy.parse(hosts)  # a malformed rule is refused here, before anything starts
        object.__setattr__(self, "allow_hosts", hosts)

    #: Limits the sandbox is started with; changing one of these needs a new sandbox, the others do not.
    AT_START = (
        "memory_mb",
        "max_processes",
        "max_file_mb",
        "disk_mb",
        "network",
        "isolation",
        "package_index",
    )

    def needs_restart(self, other: Limits) -> bool:
        """Whether going from these limits to ``other`` needs a new sandbox (its variables would be lost)."""
        return any(getattr(self, name) != getattr(other, name) for name in self.AT_START)


@dataclass(frozen=True)
class Settings:
    """Everything one ask needs to know, resolved and validated once."""

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    # Three independent tries, each repaired once (engine/loop.py); asks that work at once never use the rest.
    attempts: int = 6
    samples: int = 1  # independent answers per ask; more than one votes (ci_magic/engine/vote.py)
    # No new attempt starts once an ask has run this long (seconds): a slow model or code that keeps timing out
    # cannot hold the notebook for attempts × (model + timeout).
    time_budget_s: float = 180.0
    # A working ask ends with one or two sentences the model writes from its outputs (engine/answer.py).
    answer_in_words: bool = True
    context_tokens: int = 2000
    request_timeout_s: float = 120.0
    temperature: float = 0.0
    max_tokens: int = 2048
    limits: Limits = field(default_factory=Limits)
    # What the data description may contain: "schema" | "stats" | "samples" (see context.DETAIL_LEVELS).
    context_detail: str = "samples"
    reply_cache: bool = False  # replay identical conversations from disk (ci_magic/providers/cache.py)
    cache_max_mb: float = 200.0
    # USD per 1M (prompt, completion) tokens per model, merged over ci_magic.observe.cost.DEFAULT_PRICES.
    prices: Mapping[str, Sequence[float]] = field(default_factory=dict, hash=False)
    # Refuse to run an ask (before the model is called) when the sandbox reports it is not isolated.
    require_isolation: bool = False
    frontend: Frontend = "python"  # whose words error messages use (see HOW_TO_SET)
    # Run sandboxes on a Jupyter Enterprise Gateway instead of this machine (ci_magic/sandbox/gateway/).
    gateway_url: str | None = None
    gateway_kernel: str | None = None  # kernelspec name on the gateway (its default when None)
    gateway_token: str | None = field(default=None, repr=False)  # CI_MAGIC_GATEWAY_TOKEN only, never config
    # A sandbox idle this long is shut down; the next ask starts a fresh one (the model is told).
    idle_minutes: float = 60.0
    # Files the working code writes come back into the user's folder under free names; these change that.
    overwrite_files: bool = False
    max_files_mb: int = 500  # all files of one ask together

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= 20:
            raise UsageError(f"attempts must be between 1 and 20, got {self.attempts}.")
        if not 1 <= self.samples <= 15:
            raise UsageError(f"samples must be between 1 and 15, got {self.samples}.")
        if self.context_tokens < 100:
            raise UsageError(f"the context budget must be at least 100 tokens, got {self.context_tokens}.")
        if self.time_budget_s <= 0:
            raise UsageError(f"time_budget_s must be positive, got {self.time_budget_s}.")
        if self.max_tokens < 16:
            raise UsageError(f"max_tokens must be at least 16, got {self.max_tokens}.")
        if self.context_detail not in ("schema", "stats", "samples"):
            raise UsageError(
                f'context_detail must be "schema", "stats" or "samples", got {self.context_detail!r}.'
            )
        if self.idle_minutes <= 0:
            raise UsageError(f"idle_minutes must be positive, got {self.idle_minutes}.")
        if self.max_files_mb < 0:
            raise UsageError(f"max_files_mb must be 0 or more, got {self.max_files_mb}.")
        if self.gateway_url is not None and not self.gateway_url.startswith(("http://", "https://")):
            raise UsageError(f"gateway_url must be an http(s) URL, got {self.gateway_url!r}.")
        if self.frontend not in HOW_TO_SET["model"]:
            raise UsageError(f"frontend must be one of {sorted(HOW_TO_SET['model'])}, got {self.frontend!r}.")
        source = {"notebook": "Ask.prices", "cli": "--prices"}.get(self.frontend, "prices")
        object.__setattr__(self, "prices", check_prices(self.prices, source))

    def how_to_set(self, name: str, **fill: str) -> str:
        """How the user of this front end changes setting ``name`` (for error messages)."""
        return how_to_set(name, self.frontend, **fill)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed; ``None`` values are ignored so callers can pass options through."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def get(self, path: str) -> Any:
        """The value at ``path``: a field ("attempts") or a Limits field ("limits.timeout_s")."""
        holder: Any = self
        for part in path.split("."):
            holder = getattr(holder, part)
        return holder

    def with_overrides(self, values: Mapping[str, Any]) -> Settings:
        """A copy with the fields at these paths (see :meth:`get`) changed; ``None`` values are ignored and a
        price table is merged over the current one."""
        settings = self
        for path, value in values.items():
            holder, _, name = path.rpartition(".")
            if value is None:
                continue
            if holder == "limits":
                settings = settings.with_(limits=replace(settings.limits, **{name: value}))
            elif name == "prices":
                settings = settings.with_(prices={**settings.prices, **value})
            else:
                settings = settings.with_(**{name: value})
        return settings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Resolve from ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``CI_MAGIC_MODEL``, ``CI_MAGIC_PRICES`` (JSON),
        ``CI_MAGIC_REQUIRE_ISOLATION`` (1/0), ``CI_MAGIC_ANSWER_IN_WORDS`` (1/0), ``CI_MAGIC_GATEWAY_URL`` and
        ``CI_MAGIC_GATEWAY_TOKEN``, ``CI_MAGIC_ALLOW_HOSTS`` (names separated by commas or spaces), ``CI_MAGIC_PACKAGE_INDEX`` (else
        ``PIP_INDEX_URL``); explicit overrides win (``prices`` are merged over the environment's)."""
        env = os.environ if environ is None else environ
        prices = parse_prices(env["CI_MAGIC_PRICES"], "CI_MAGIC_PRICES") if env.get("CI_MAGIC_PRICES") else {}
        require = env.get("CI_MAGIC_REQUIRE_ISOLATION")
        words = env.get("CI_MAGIC_ANSWER_IN_WORDS")
        hosts = tuple(env.get("CI_MAGIC_ALLOW_HOSTS", "").replace(",", " ").split())
        index = env.get("CI_MAGIC_PACKAGE_INDEX") or env.get("PIP_INDEX_URL") or Limits.package_index
        base = cls(
            limits=Limits(allow_hosts=hosts, package_index=index),
            model=env.get("CI_MAGIC_MODEL") or None,
            base_url=env.get("OPENAI_BASE_URL") or None,
            api_key=env.get("OPENAI_API_KEY") or None,
            prices=prices,
            require_isolation=parse_flag(require, "CI_MAGIC_REQUIRE_ISOLATION") if require else False,
            answer_in_words=parse_flag(words, "CI_MAGIC_ANSWER_IN_WORDS") if words else True,
            gateway_url=env.get("CI_MAGIC_GATEWAY_URL") or None,
            gateway_token=env.get(GATEWAY_TOKEN_ENV) or None,
        )
        if overrides.get("prices") is not None:
            overrides = {**overrides, "prices": {**prices, **overrides["prices"]}}
        return base.with_(**overrides)


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper.startswith("OPENAI") or any(marker in upper for marker in SECRET_MARKERS)
