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
from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "IPAddress",
    "IPNetwork",
    "NetworkSet",
    "client_block",
    "ip_allowed",
    "ip_text",
    "parse_ip",
    "parse_networks",
    "resolve_client_ip",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_ADDRESS_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)  # a tuple: faster isinstance

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


_TEXTS: dict[int, tuple[IPAddress, str]] = {}


def ip_text(address: IPAddress | str | None) -> str | None:
    """An address as text (for audit events); cached per address object, as ``str()`` of an
    ``ipaddress`` object is slow and the same objects repeat (see :func:`parse_ip`)."""
    if address is None or isinstance(address, str):
        return address
    cached = _TEXTS.get(id(address))
    if cached is not None and cached[0] is address:
        return cached[1]
    text = str(address)
    if len(_TEXTS) >= 8192:
        _TEXTS.clear()
    _TEXTS[id(address)] = (address, text)
    return text


class NetworkSet:
    """Parsed networks with precomputed integer masks: membership without ipaddress' slow,
    Python-level ``__contains__``/``__hash__`` (this runs on every request)."""

    __slots__ = ("masks", "networks")

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self.networks = tuple(networks)
        self.masks = tuple(
            (n.version, int(n.network_address), int(n.netmask)) for n in self.networks
        )

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, _ADDRESS_TYPES):
            return False
        version = address.version
        value = int(address)
        for version_, network, mask in self.masks:
            if version_ == version and value & mask == network:
                return True
        return False

    def __iter__(self) -> Iterator[IPNetwork]:
        return iter(self.networks)

    def __len__(self) -> int:
        return len(self.networks)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NetworkSet) and other.networks == self.networks

    def __hash__(self) -> int:
        return hash(self.networks)

    def __repr__(self) -> str:
        return f"NetworkSet({[str(n) for n in self.networks]})"


def parse_networks(cidrs: Iterable[str]) -> NetworkSet:
    """Parse CIDRs (a bare address means a single host); ``ValueError`` naming a bad one.

    An IPv4-mapped IPv6 network (``::ffff:192.0.2.0/120``) becomes its IPv4 network
    (``192.0.2.0/24``): mapped client addresses are compared as IPv4, so it would otherwise
    never match."""
    if isinstance(cidrs, str):
        raise TypeError("expected a list of CIDR strings, not one string")
    networks = []
    for cidr in cidrs:
        if not isinstance(cidr, str):
            raise TypeError(f"CIDR must be a str, got {type(cidr).__name__}")
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=True)
        except ValueError as exc:
            raise ValueError(f"invalid CIDR {cidr!r}: {exc}") from None
        networks.append(_unmapped(network))
    return NetworkSet(networks)


def _unmapped(network: IPNetwork) -> IPNetwork:
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _as_set(networks: NetworkSet | Iterable[IPNetwork]) -> NetworkSet:
    return networks if isinstance(networks, NetworkSet) else NetworkSet(networks)


def ip_allowed(address: IPAddress | None, networks: NetworkSet | Iterable[IPNetwork]) -> bool:
    """True when ``networks`` is empty (any address) or ``address`` is inside one of them."""
    networks = _as_set(networks)
    return not networks.masks or address in networks


def resolve_client_ip(
    peer: str | None,
    forwarded_for: Sequence[str] = (),
    trusted_proxies: NetworkSet | Iterable[IPNetwork] = (),
) -> IPAddress | None:
    """The client address of a request.

    Parameters:
        peer: the connection's peer address (``None`` or a non-address gives ``None``).
        forwarded_for: every ``X-Forwarded-For`` field value, in order; read as one list.
        trusted_proxies: networks of proxies whose ``X-Forwarded-For`` entries are believed.
    """
    address = parse_ip(peer)
    trusted_proxies = _as_set(trusted_proxies)
    if address is None or not trusted_proxies.masks or address not in trusted_proxies:
        return address
    entries = [item for value in forwarded_for for item in value.split(",")]
    if len(entries) > _MAX_FORWARDED_ENTRIES:
        return None
    for entry in reversed(entries):
        hop = parse_ip(entry)
        if hop is None:
            return None
        address = hop
        if hop not in trusted_proxies:
            return hop
    # Every hop was a trusted proxy: the left-most one is the best we know.
    return address


def client_block(address: IPAddress | None) -> str:
    """The block a client is counted in by per-client throttles: its IPv4 address, or its
    IPv6 /64 (the smallest block a client is usually given); ``"unknown"`` for none."""
    if address is None:
        return "unknown"
    if address.version == 6:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
