"""Which address is the client: the peer, or ``X-Forwarded-For`` behind trusted proxies (pure).

Security model (the same as werkzeug's ``ProxyFix``): it is a security issue to trust values
that came from the client. ``X-Forwarded-For`` counts for nothing unless the connection's peer
is inside the configured ``trusted_proxies`` networks. Behind trusted proxies the client is
the right-most address that is not itself a trusted proxy; every address to its left was
written by a party we do not trust. Anything that does not parse gives ``None`` (an unknown
client, outside every non-empty allowlist), never an exception.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

__all__ = [
    "IPAddress",
    "IPNetwork",
    "ip_allowed",
    "parse_ip",
    "parse_networks",
    "resolve_client_ip",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAX_FORWARDED_ENTRIES = 64


def parse_ip(value: str | None) -> IPAddress | None:
    """An IP address from text, IPv4-mapped IPv6 folded to IPv4; ``None`` if not an address."""
    if not value or len(value) > 64:
        return None
    return _parse_ip_cached(value)


@functools.lru_cache(maxsize=8192)
def _parse_ip_cached(value: str) -> IPAddress | None:
    # Client addresses repeat; parsing with ipaddress costs more than the rest of a request.
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDRs (a bare address means a single host); ``ValueError`` naming a bad one."""
    if isinstance(cidrs, str):
        raise TypeError("expected a list of CIDR strings, not one string")
    networks = []
    for cidr in cidrs:
        if not isinstance(cidr, str):
            raise TypeError(f"CIDR must be a str, got {type(cidr).__name__}")
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"invalid CIDR {cidr!r}: {exc}") from None
    return tuple(networks)


def _in_any(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    # Integer masks instead of ipaddress' Python-level __contains__: this runs per request.
    version = address.version
    value = int(address)
    for version_, network, mask in _masks(tuple(networks)):
        if version_ == version and value & mask == network:
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _masks(networks: tuple[IPNetwork, ...]) -> tuple[tuple[int, int, int], ...]:
    return tuple((n.version, int(n.network_address), int(n.netmask)) for n in networks)


def ip_allowed(address: IPAddress | None, networks: Sequence[IPNetwork]) -> bool:
    """True when ``networks`` is empty (any address) or ``address`` is inside one of them."""
    if not networks:
        return True
    return address is not None and _in_any(address, networks)


def resolve_client_ip(
    peer: str | None,
    forwarded_for: Sequence[str] = (),
    trusted_proxies: Sequence[IPNetwork] = (),
) -> IPAddress | None:
    """The client address of a request.

    Parameters:
        peer: the connection's peer address (``None`` or a non-address gives ``None``).
        forwarded_for: every ``X-Forwarded-For`` field value, in order; read as one list.
        trusted_proxies: networks of proxies whose ``X-Forwarded-For`` entries are believed.
    """
    address = parse_ip(peer)
    if address is None or not trusted_proxies or not _in_any(address, trusted_proxies):
        return address
    entries = [item for value in forwarded_for for item in value.split(",")]
    if len(entries) > _MAX_FORWARDED_ENTRIES:
        return None
    for entry in reversed(entries):
        hop = parse_ip(entry)
        if hop is None:
            return None
        address = hop
        if not _in_any(hop, trusted_proxies):
            return hop
    # Every hop was a trusted proxy: the left-most one is the best we know.
    return address
