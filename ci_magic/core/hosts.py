"""Which hosts the sandbox may reach through the egress proxy: the allow-list, parsed once and checked per
connection.

A rule is a host name (``data.example.org``), a wildcard for its subdomains (``*.example.com``, not the bare
name), or an address (``10.1.2.3``, ``10.0.0.0/8``, ``[::1]``); any of them may end with ``:port``. A request
names its host: a name is admitted by a name rule, never an IP literal (an address typed into code is refused
whatever the rules). The name is then resolved by the proxy, and each address it resolves to must be a public
one — or be named by an address rule: loopback, private, link-local and reserved addresses (the host's own
services, the local network, cloud metadata) are reached only where a rule names them, so an allowed name that
resolves to 127.0.0.1 (DNS rebinding) reaches nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import UsageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def normal_host(host: str) -> str:
    """A host name as compared: lower case, no trailing dot, IDNA (ASCII) for international names."""
    name = host.strip().rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        return name


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class NameRule:
    name: str  # "data.example.org", or the suffix ".example.com" of a wildcard
    wildcard: bool
    port: int | None

    def admits(self, host: str, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        return (
            host.endswith(self.name) and host != self.name.lstrip(".") if self.wildcard else host == self.name
        )

    def __str__(self) -> str:
        name = f"*{self.name}" if self.wildcard else self.name
        return f"{name}:{self.port}" if self.port is not None else name


@dataclass(frozen=True)
class AddressRule:
    network: IPNetwork
    port: int | None

    def admits(self, address: IPAddress, port: int) -> bool:
        return address in self.network and (self.port is None or port == self.port)

    def __str__(self) -> str:
        return f"{self.network}:{self.port}" if self.port is not None else str(self.network)


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [v6] or [v6]:port
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError
        return host, int(rest[1:]) if rest else None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, None


def parse_rule(text: str) -> NameRule | AddressRule:
    """One rule; UsageError with the rule and the accepted forms when it is none of them."""
    raw = text.strip()
    try:
        host, port = _split_port(raw)
        if port is not None and not 0 < port < 65536:
            raise ValueError
        try:
            return AddressRule(ipaddress.ip_network(host, strict=False), port)
        except ValueError:
            pass
        wildcard = host.startswith("*.")
        name = normal_host(host[2:] if wildcard else host)
        if not name or not all(_LABEL.match(label) for label in name.split(".")):
            raise ValueError
        return NameRule(f".{name}" if wildcard else name, wildcard, port)
    except ValueError:
        raise UsageError(
            f"{raw!r} is not a host rule: allowed hosts are names (data.example.org), wildcards for subdomains "
            "(*.example.com) or addresses (10.1.2.3, 10.0.0.0/8), each optionally with :port."
        ) from None


@dataclass(frozen=True)
class Policy:
    """The allow-list of one run (see the module docstring)."""

    names: tuple[NameRule, ...] = ()
    addresses: tuple[AddressRule, ...] = ()

    @classmethod
    def parse(cls, rules: Sequence[str]) -> Policy:
        parsed = [parse_rule(r) for r in rules if r.strip()]
        return cls(
            tuple(r for r in parsed if isinstance(r, NameRule)),
            tuple(r for r in parsed if isinstance(r, AddressRule)),
        )

    def describe(self) -> str:
        """The list as a model or a user reads it."""
        return ", ".join(str(r) for r in self.names) or "no host"

    def allows_text(self) -> str:
        """What the network allows, as a sentence."""
        if not self.names:
            return "The network is off: no host is allowed (the user can allow hosts by name)."
        return f"The network allows only {self.describe()}."

    def refuse_name(self, host: str, port: int) -> str | None:
        """Why ``host:port`` is refused before any lookup, or None when a name rule admits it."""
        if ip_literal(host) is not None:
            return "an IP address: hosts are reached by name only"
        if not any(rule.admits(normal_host(host), port) for rule in self.names):
            return "not in the allowed hosts" if self.names else "no host is allowed"
        return None

    def admits_url(self, url: str) -> bool:
        """Whether a name rule admits the host of ``url`` (e.g. the package index's)."""
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return bool(parts.hostname) and self.refuse_name(parts.hostname or "", port) is None

    def admits_address(self, address: IPAddress, port: int) -> bool:
        """A resolved address: public ones are, others only where an address rule names them."""
        if any(rule.admits(address, port) for rule in self.addresses):
            return True
        mapped = getattr(address, "ipv4_mapped", None)
        return bool((mapped or address).is_global) and not address.is_multicast
