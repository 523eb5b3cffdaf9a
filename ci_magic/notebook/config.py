"""``%config Ask.…``: the notebook's settings as traitlets, every default taken from the core's
:class:`~ci_magic.core.settings.Settings` / :class:`~ci_magic.core.settings.Limits` (the only place defaults live).
"""

from __future__ import annotations

from dataclasses import replace

from traitlets import Bool, Dict, Enum, Float, Int, Unicode
from traitlets.config import Configurable

from ..core.settings import NOTEBOOK_PRESTART, NOTEBOOK_REPLY_CACHE, Limits, Settings

_SETTINGS = Settings()
_LIMITS = Limits()


class Ask(Configurable):
    """Settings for %%ask. Secrets are read from the environment only, never from config."""

    model = Unicode(None, allow_none=True, help="Model name (default: CI_MAGIC_MODEL, or the server's).").tag(
        config=True
    )
    base_url = Unicode(
        None, allow_none=True, help="OpenAI-compatible base URL (default: OPENAI_BASE_URL)."
    ).tag(config=True)
    attempts = Int(_SETTINGS.attempts, help="Attempts per ask, counting repairs.").tag(config=True)
    samples = Int(
        _SETTINGS.samples,
        help="Independent answers per ask; with more than one, the answer most of them agree on is kept "
        "(costs up to that many times the model time).",
    ).tag(config=True)
    timeout = Float(_LIMITS.timeout_s, help="Seconds one execution may run in the sandbox.").tag(config=True)
    time_budget = Float(
        _SETTINGS.time_budget_s, help="Seconds after which an ask starts no new attempt (repair)."
    ).tag(config=True)
    request_timeout = Float(_SETTINGS.request_timeout_s, help="Seconds to wait for the model.").tag(
        config=True
    )
    context_tokens = Int(_SETTINGS.context_tokens, help="Token budget for the data description.").tag(
        config=True
    )
    memory_mb = Int(_LIMITS.memory_mb, help="Address-space limit of the sandbox kernel, in MB.").tag(
        config=True
    )
    network = Bool(_LIMITS.network, help="Let sandboxed code use the network.").tag(config=True)
    disk_mb = Int(
        _LIMITS.disk_mb,
        help="Size of the sandbox's own disk (working folder and home), in MB; /tmp and /dev/shm get a quarter "
        "of it each.",
    ).tag(config=True)
    overwrite_files = Bool(
        _SETTINGS.overwrite_files,
        help="Files the code writes replace files of the same name in the notebook's folder (otherwise they "
        "get a free name, e.g. 'q2 (2).csv').",
    ).tag(config=True)
    max_files_mb = Int(_SETTINGS.max_files_mb, help="Files brought back by one ask, in MB at most.").tag(
        config=True
    )
    idle_minutes = Float(
        _SETTINGS.idle_minutes,
        help="A sandbox idle this long is shut down; the next ask starts a fresh one (and the model is told).",
    ).tag(config=True)
    gateway_url = Unicode(
        None,
        allow_none=True,
        help="Run sandboxes on this Jupyter Enterprise Gateway (default: CI_MAGIC_GATEWAY_URL; the token is read "
        "from CI_MAGIC_GATEWAY_TOKEN only).",
    ).tag(config=True)
    gateway_kernel = Unicode(
        None, allow_none=True, help="Kernelspec name on the gateway (default: the gateway's)."
    ).tag(config=True)
    require_isolation = Bool(
        _SETTINGS.require_isolation,
        help="Refuse to run an ask when the sandbox is not isolated (no namespaces on this machine); "
        "otherwise every ask's summary says what is missing. CI_MAGIC_REQUIRE_ISOLATION=1 turns it on too.",
    ).tag(config=True)
    answer_in_words = Bool(
        _SETTINGS.answer_in_words,
        help="End a working ask with one or two sentences the model writes from its outputs (one short extra "
        "request). CI_MAGIC_ANSWER_IN_WORDS=0 turns it off too.",
    ).tag(config=True)
    prestart = Bool(
        NOTEBOOK_PRESTART, help="Start the sandbox kernel when the extension loads (first ask is faster)."
    ).tag(config=True)
    context_detail = Enum(
        ["schema", "stats", "samples"],
        _SETTINGS.context_detail,
        help="What the data description sent to the model (and traces) may contain: names and types only, "
        "plus statistics, or plus example values.",
    ).tag(config=True)
    cache = Bool(
        NOTEBOOK_REPLY_CACHE, help="Replay identical model conversations from disk (see --fresh)."
    ).tag(config=True)
    cache_max_mb = Float(_SETTINGS.cache_max_mb, help="Size bound of the reply cache, in MB.").tag(
        config=True
    )
    prices = Dict(
        help='USD per 1M tokens per model, e.g. {"gpt-4o-mini": [0.15, 0.6]}; merged over CI_MAGIC_PRICES '
        "and ci_magic.observe.cost's defaults."
    ).tag(config=True)

    def settings(
        self,
        *,
        model: str | None = None,
        attempts: int | None = None,
        samples: int | None = None,
        timeout: float | None = None,
        overwrite: bool | None = None,
    ) -> Settings:
        """The settings of one ask: this configuration, the environment, and the ask's own options on top."""
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
        settings = settings.with_(model=model, attempts=attempts, samples=samples, overwrite_files=overwrite)
        if timeout is not None:
            settings = settings.with_(limits=replace(settings.limits, timeout_s=timeout))
        return settings
