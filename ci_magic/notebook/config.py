"""``%config Ask.…``: the notebook's settings as traitlets, every default taken from the core's
:class:`~ci_magic.core.settings.Settings` / :class:`~ci_magic.core.settings.Limits` (the only place defaults live).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from traitlets import Bool, Dict, Enum, Float, Int, Unicode
from traitlets.config import Configurable

from ..core.settings import HELP, NOTEBOOK_PRESTART, NOTEBOOK_REPLY_CACHE, Limits, Settings

_SETTINGS = Settings()
_LIMITS = Limits()


class Ask(Configurable):
    """Settings for %%ask. Secrets are read from the environment only, never from config."""

    model = Unicode(None, allow_none=True, help=HELP["model"]).tag(config=True)
    base_url = Unicode(None, allow_none=True, help=HELP["base_url"]).tag(config=True)
    attempts = Int(_SETTINGS.attempts, help=HELP["attempts"]).tag(config=True)
    samples = Int(_SETTINGS.samples, help=HELP["samples"]).tag(config=True)
    timeout = Float(_LIMITS.timeout_s, help=HELP["timeout"]).tag(config=True)
    time_budget = Float(_SETTINGS.time_budget_s, help=HELP["time_budget"]).tag(config=True)
    request_timeout = Float(_SETTINGS.request_timeout_s, help=HELP["request_timeout"]).tag(config=True)
    context_tokens = Int(_SETTINGS.context_tokens, help=HELP["context_tokens"]).tag(config=True)
    memory_mb = Int(_LIMITS.memory_mb, help=HELP["memory_mb"]).tag(config=True)
    network = Bool(_LIMITS.network, help=HELP["network"]).tag(config=True)
    disk_mb = Int(_LIMITS.disk_mb, help=HELP["disk_mb"]).tag(config=True)
    overwrite_files = Bool(_SETTINGS.overwrite_files, help=HELP["overwrite_files"]).tag(config=True)
    max_files_mb = Int(_SETTINGS.max_files_mb, help=HELP["max_files_mb"]).tag(config=True)
    idle_minutes = Float(_SETTINGS.idle_minutes, help=HELP["idle_minutes"]).tag(config=True)
    gateway_url = Unicode(None, allow_none=True, help=HELP["gateway_url"]).tag(config=True)
    gateway_kernel = Unicode(None, allow_none=True, help=HELP["gateway_kernel"]).tag(config=True)
    require_isolation = Bool(_SETTINGS.require_isolation, help=HELP["require_isolation"]).tag(config=True)
    answer_in_words = Bool(_SETTINGS.answer_in_words, help=HELP["answer_in_words"]).tag(config=True)
    prestart = Bool(NOTEBOOK_PRESTART, help=HELP["prestart"]).tag(config=True)
    context_detail = Enum(
        ["schema", "stats", "samples"], _SETTINGS.context_detail, help=HELP["context_detail"]
    ).tag(config=True)
    cache = Bool(NOTEBOOK_REPLY_CACHE, help=HELP["cache"]).tag(config=True)
    cache_max_mb = Float(_SETTINGS.cache_max_mb, help=HELP["cache_max_mb"]).tag(config=True)
    prices = Dict(help=HELP["prices"]).tag(config=True)

    def settings(self, overrides: Mapping[str, Any] | None = None) -> Settings:
        """The settings of one ask: this configuration, the environment, and the ask's own options on top
        (``overrides``: Settings field → value, ``limits.<field>`` for a Limits field; see
        :meth:`~ci_magic.notebook.options.AskRequest.overrides`)."""
        limits = Limits(
            memory_mb=self.memory_mb, timeout_s=self.timeout, network=self.network, disk_mb=self.disk_mb
        )
        base = Settings.from_env(
            attempts=self.attempts,
            samples=self.samples,
            context_tokens=self.context_tokens,
            request_timeout_s=self.request_timeout,
            time_budget_s=self.time_budget,
            limits=limits,
            context_detail=self.context_detail,
            reply_cache=self.cache,
            cache_max_mb=self.cache_max_mb,
            prices=dict(self.prices),
            frontend="notebook",
            overwrite_files=self.overwrite_files,
            max_files_mb=self.max_files_mb,
            idle_minutes=self.idle_minutes,
            gateway_kernel=self.gateway_kernel,
        )
        if self.gateway_url:  # %config wins over CI_MAGIC_GATEWAY_URL
            base = base.with_(gateway_url=self.gateway_url)
        # Off here does not turn off CI_MAGIC_REQUIRE_ISOLATION=1: either one requires isolation.
        settings = base.with_(require_isolation=base.require_isolation or self.require_isolation or None)
        settings = settings.with_(answer_in_words=base.answer_in_words and self.answer_in_words)
        settings = settings.with_(model=self.model, base_url=self.base_url)
        for path, value in (overrides or {}).items():
            holder, _, name = path.rpartition(".")
            if holder == "limits":
                settings = settings.with_(limits=replace(settings.limits, **{name: value}))
            else:
                settings = settings.with_(**{name: value})
        return settings
