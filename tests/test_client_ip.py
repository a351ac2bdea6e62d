"""Client address resolution: peer, X-Forwarded-For, trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nowramp_auth._client_ip import ip_allowed, parse_ip, parse_networks, resolve_client_ip

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        pytest.param("203.0.113.7", [], (), "203.0.113.7", id="peer-only"),
        pytest.param(
            "203.0.113.7", ["198.51.100.1"], (), "203.0.113.7", id="xff-ignored-by-default"
        ),
        pytest.param(
            "203.0.113.7", ["198.51.100.1"], PROXIES, "203.0.113.7", id="xff-from-untrusted-peer"
        ),
        pytest.param("10.0.0.1", ["198.51.100.1"], PROXIES, "198.51.100.1", id="one-trusted-hop"),
        pytest.param(
            "10.0.0.1",
            ["1.1.1.1, 198.51.100.1, 10.0.0.2"],
            PROXIES,
            "198.51.100.1",
            id="rightmost-untrusted",
        ),
        pytest.param(
            "10.0.0.1",
            ["1.1.1.1", "198.51.100.1"],
            PROXIES,
            "198.51.100.1",
            id="several-fields-one-list",
        ),
        pytest.param("10.0.0.1", [], PROXIES, "10.0.0.1", id="trusted-peer-no-xff"),
        pytest.param(
            "10.0.0.1", ["10.0.0.3, 10.0.0.2"], PROXIES, "10.0.0.3", id="all-trusted-leftmost"
        ),
        pytest.param("10.0.0.1", ["garbage"], PROXIES, None, id="unparsable-hop"),
        pytest.param("10.0.0.1", ["1.1.1.1, "], PROXIES, None, id="empty-hop"),
        pytest.param("10.0.0.1", ["1.1.1.1:8080"], PROXIES, None, id="hop-with-port"),
        pytest.param("testclient", [], (), None, id="not-an-address"),
        pytest.param(None, [], (), None, id="no-peer"),
        pytest.param("::ffff:203.0.113.7", [], (), "203.0.113.7", id="ipv4-mapped"),
        pytest.param("fd00::1", ["2001:db8::5"], PROXIES, "2001:db8::5", id="ipv6-proxy"),
    ],
)
def test_resolve_client_ip(peer, forwarded, trusted, expected):
    result = resolve_client_ip(peer, forwarded, trusted)
    assert (str(result) if result is not None else None) == expected


@given(
    peer=st.ip_addresses().map(str).filter(lambda a: not ipaddress.ip_address(a).is_private),
    forwarded=st.lists(st.text(max_size=60), max_size=5),
)
def test_untrusted_peer_is_never_overridden(peer: str, forwarded: list[str]):
    result = resolve_client_ip(peer, forwarded, PROXIES)
    assert result == parse_ip(peer)


@given(forwarded=st.lists(st.text(max_size=80), max_size=8), peer=st.text(max_size=40))
def test_any_input_gives_an_address_or_none(forwarded: list[str], peer: str):
    result = resolve_client_ip(peer, forwarded, PROXIES)
    assert result is None or isinstance(result, ipaddress.IPv4Address | ipaddress.IPv6Address)


@pytest.mark.parametrize(
    ("address", "cidrs", "allowed"),
    [
        pytest.param("203.0.113.7", [], True, id="empty-allowlist-any"),
        pytest.param(None, [], True, id="empty-allowlist-unknown-client"),
        pytest.param("203.0.113.7", ["203.0.113.0/24"], True, id="inside-v4"),
        pytest.param("203.0.114.7", ["203.0.113.0/24"], False, id="outside-v4"),
        pytest.param("2001:db8::1", ["2001:db8::/32"], True, id="inside-v6"),
        pytest.param("2001:db9::1", ["2001:db8::/32"], False, id="outside-v6"),
        pytest.param("203.0.113.7", ["2001:db8::/32"], False, id="v4-vs-v6-list"),
        pytest.param(None, ["0.0.0.0/0"], False, id="unknown-client-nonempty-list"),
        pytest.param("203.0.113.7", ["203.0.113.7"], True, id="bare-address-is-host"),
        pytest.param("192.0.2.7", ["::ffff:192.0.2.0/120"], True, id="mapped-entry-v4-client"),
        pytest.param(
            "::ffff:192.0.2.7", ["::ffff:192.0.2.0/120"], True, id="mapped-entry-mapped-client"
        ),
        pytest.param("192.0.3.7", ["::ffff:192.0.2.0/120"], False, id="mapped-entry-outside"),
        pytest.param("192.0.2.7", ["::ffff:192.0.2.7"], True, id="mapped-host-entry"),
    ],
)
def test_ip_allowed(address, cidrs, allowed):
    assert ip_allowed(parse_ip(address), parse_networks(cidrs)) is allowed


@pytest.mark.parametrize("bad", ["203.0.113.0/33", "nonsense", "203.0.113.7/24", "::/129"])
def test_bad_cidr_is_a_value_error_naming_it(bad: str):
    with pytest.raises(ValueError, match="invalid CIDR"):
        parse_networks([bad])


@given(st.ip_addresses(v=4), st.integers(min_value=0, max_value=32))
def test_mapped_entries_are_stored_as_their_ipv4_network(address, prefix: int):
    v4 = ipaddress.IPv4Network((address, prefix), strict=False)
    mapped = f"::ffff:{v4.network_address}/{prefix + 96}"
    assert [str(n) for n in parse_networks([mapped])] == [str(v4)]


def test_a_key_with_a_mapped_entry_stores_ipv4():
    from nowramp_auth import KeyManager, MemoryKeyStore

    issued = KeyManager(MemoryKeyStore()).create(
        scopes=["quotes:read"], allowed_ips=["::ffff:192.0.2.0/120", "2001:db8::/32"]
    )
    assert issued.key.allowed_ips == ("192.0.2.0/24", "2001:db8::/32")


def test_one_string_is_not_a_list_of_cidrs():
    with pytest.raises(TypeError):
        parse_networks("10.0.0.0/8")
