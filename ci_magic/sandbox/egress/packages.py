"""Packages installed at run time: into a per-session layer on the sandbox's own disk (never the user's
environment), from the configured index, through the egress proxy — so only where the list allows the index's
host. Each install is pinned as name==version with the sha256 pip checked, read from pip's installation report
(``--report``, set through pip's environment) after the run, from outside the sandbox and never following a link.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ...core.errors import CIMagicError
from ...core.results import Installed
from ..isolation import HOME

#: The layer: pip's --prefix, on the sandbox's disk (lost with the session, like its variables).
LAYER = f"{HOME}/.packages"
SITE = f"{LAYER}/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
REPORT = ".packages/last-install.json"  # relative to HOME
MAX_REPORT = 4 * 1024 * 1024


def environment(index_url: str) -> dict[str, str]:
    """pip's settings inside the sandbox: the layer as prefix (packages already in the environment satisfy
    requirements and are never replaced: the environment is read-only), the index, the report."""
    env = {
        "PIP_PREFIX": LAYER,
        "PIP_REPORT": f"{HOME}/{REPORT}",
        "PIP_INDEX_URL": index_url,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_PROGRESS_BAR": "off",
        "PIP_ROOT_USER_ACTION": "ignore",
        "PYTHONPATH": SITE,  # the kernel and pip itself see what earlier installs put in the layer
    }
    url = urlsplit(index_url)
    if url.scheme == "http" and url.hostname:
        env["PIP_TRUSTED_HOST"] = url.hostname  # a plain-HTTP index (an internal mirror) is the user's choice
    return env


class Installs:
    """The pins of one session, read from pip's report after each run (a report already read adds nothing)."""

    def __init__(self) -> None:
        self.pins: dict[tuple[str, str], Installed] = {}
        self._last: bytes | None = None

    def collect(self, read: Callable[[str, int], bytes]) -> list[Installed]:
        """New pins since the last run; ``read(relative_to_home, limit)`` reads the sandbox's file."""
        try:
            raw = read(REPORT, MAX_REPORT)
        except CIMagicError:
            return []  # no install yet (no report), or the sandbox is gone
        if raw == self._last:
            return []
        self._last = raw
        new = []
        for pin in parse_report(raw):
            key = (pin.name.lower(), pin.version)
            if key not in self.pins:
                self.pins[key] = pin
                new.append(pin)
        return new


def parse_report(raw: bytes) -> list[Installed]:
    """The ``install`` entries of a pip installation report (version 1) that carry a sha256; anything else in
    the file (written by the sandbox, so untrusted) is ignored."""
    try:
        report = json.loads(raw)
    except ValueError:
        return []
    entries = report.get("install") if isinstance(report, dict) else None
    pins = []
    for entry in entries if isinstance(entries, list) else []:
        meta = _dict(_dict(entry).get("metadata"))
        info = _dict(_dict(entry).get("download_info"))
        hashes = _dict(_dict(info.get("archive_info")).get("hashes"))
        name, version, sha = meta.get("name"), meta.get("version"), hashes.get("sha256")
        if all(isinstance(v, str) and 0 < len(v) <= 200 for v in (name, version, sha)):
            url = info.get("url")
            pins.append(Installed(str(name), str(version), str(sha), url if isinstance(url, str) else ""))
    return pins


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
