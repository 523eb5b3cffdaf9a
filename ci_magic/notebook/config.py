"""``%config Ask.…``: the notebook's settings as traitlets, each made from its declaration in
:mod:`ci_magic.core.declared` (name, type, help, default: the core's :class:`~ci_magic.core.settings.Settings`
unless the notebook has its own). The traits are written out one per line so that tools and readers see them; what
each one is comes from the table, and a test checks that the two list the same settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from traitlets import Bool, Dict, Enum, Float, Int, List, TraitType, Unicode
from traitlets.config import Configurable

from ..core.declared import DECLARED, declared
from ..core.settings import Settings

_TRAITS: dict[type, type[TraitType[Any, Any]]] = {
    int: Int,
    float: Float,
    bool: Bool,
    str: Unicode,
    dict: Dict,
}


def _trait(name: str) -> Any:
    """The ``%config`` trait of setting ``name``, as :mod:`ci_magic.core.declared` declares it."""
    d = declared(name)
    if d.choices:
        return Enum(list(d.choices), d.default, help=d.help).tag(config=True)
    if d.kind is dict:
        return Dict(help=d.help).tag(config=True)
    if d.kind is list:
        return List(Unicode(), help=d.help).tag(config=True)
    return _TRAITS[d.kind](d.default, allow_none=d.default is None, help=d.help).tag(config=True)


class Ask(Configurable):
    """Settings for %%ask. Secrets are read from the environment only, never from config."""

    model = _trait("model")
    base_url = _trait("base_url")
    attempts = _trait("attempts")
    samples = _trait("samples")
    timeout = _trait("timeout")
    time_budget = _trait("time_budget")
    request_timeout = _trait("request_timeout")
    context_tokens = _trait("context_tokens")
    memory_mb = _trait("memory_mb")
    network = _trait("network")
    allow_hosts = _trait("allow_hosts")
    network_budget_mb = _trait("network_budget_mb")
    package_index = _trait("package_index")
    disk_mb = _trait("disk_mb")
    overwrite_files = _trait("overwrite_files")
    max_files_mb = _trait("max_files_mb")
    idle_minutes = _trait("idle_minutes")
    gateway_url = _trait("gateway_url")
    gateway_kernel = _trait("gateway_kernel")
    require_isolation = _trait("require_isolation")
    answer_in_words = _trait("answer_in_words")
    prestart = _trait("prestart")
    context_detail = _trait("context_detail")
    cache = _trait("cache")
    cache_max_mb = _trait("cache_max_mb")
    prices = _trait("prices")

    def settings(self, overrides: Mapping[str, Any] | None = None) -> Settings:
        """The settings of one ask: the environment, this configuration over it, and the ask's own options on
        top (``overrides``: Settings path → value; see :meth:`~ci_magic.notebook.options.AskRequest.overrides`)."""
        env = Settings.from_env(frontend="notebook")
        values: dict[str, Any] = {}
        for d in DECLARED:
            value = getattr(self, d.name)
            if d.path is None or value is None or value == "" or value == []:
                continue  # notebook-only (prestart), or not configured: the environment's or the default
            if d.combine == "any":  # a safety switch: either one turns it on
                value = bool(env.get(d.path)) or value
            elif d.combine == "all":  # either one turns it off
                value = bool(env.get(d.path)) and value
            values[d.path] = value
        return env.with_overrides(values).with_overrides(overrides or {})
