"""Fuzzing every adapter (Starlette, WSGI, Litestar, Quart) with hypothesis: hostile headers,
paths, methods and widget bodies.

Invariants: never a 500, never a success without a valid credential (public paths aside),
every refusal is the standard error JSON, and no presented value is echoed back.
Examples per test: ``NOWRAMP_FUZZ_EXAMPLES`` (default 300; the slow profile uses 10,000).
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nowramp_auth._errors import CATALOGUE
from nowramp_auth.testing import auth_kit
from tests.harness import FUZZ_CALLERS

EXAMPLES = int(os.environ.get("NOWRAMP_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
pytestmark = pytest.mark.slow

# What a server passes on: latin-1 text without CR/LF/NUL (servers strip or refuse those).
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=300,
).map(str.strip)
long_header = st.builds(lambda c, n: c * n, st.sampled_from("aZ9_,. "), st.integers(500, 8000))
header_value = st.one_of(header_text, long_header)
path_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_./%~*", max_size=40)
methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
PUBLIC = ("/health", "/docs")

_kits: dict[str, object] = {}
# Everything the package itself writes into error bodies (an input equal to a piece of it is
# not an echo).
_BODY_TEXT = (
    json.dumps([(c.value, i.message, i.solution) for c, i in CATALOGUE.items()])
    + "required_scopes quotes:read retry_after detail"
)


def caller(adapter: str):
    """One app per adapter for the whole run (building apps per example would dominate)."""
    if adapter not in _kits:
        kit = auth_kit(trusted_proxies=["10.0.0.0/8"])
        key = kit.key("quotes:read", project_id="p1", allowed_ips=["198.51.100.0/24"])
        _kits[adapter] = (FUZZ_CALLERS[adapter](kit.authenticator), key)
    return _kits[adapter]


def check(
    answer, presented: list[str], path: str, *, allow_success: bool = False, method: str = "GET"
) -> None:
    assert answer.status < 500, answer.body
    if answer.status < 400:
        assert allow_success or path.split("?")[0].startswith(PUBLIC), (answer.status, path)
        return
    if method == "HEAD":  # no body to look at
        assert answer.headers["content-type"].startswith(("application/json", "text/"))
        return
    if answer.status in (404, 405) and not answer.body.startswith(b'{"error"'):
        return  # the app's own routing, after authentication passed
    body = json.loads(answer.body)
    assert set(body) == {"error"} and {"code", "message", "solution"} <= set(body["error"])
    for value in presented:
        if len(value) >= 8 and value not in _BODY_TEXT:
            assert value.encode("latin-1", "replace") not in answer.body


@pytest.mark.parametrize("adapter", sorted(FUZZ_CALLERS))
@FUZZ
@given(
    api_keys=st.lists(header_value, max_size=3),
    authorizations=st.lists(
        st.one_of(header_value, header_value.map("Bearer ".__add__)), max_size=2
    ),
    forwarded=st.lists(header_value, max_size=3),
    path=path_text,
    method=methods,
)
def test_hostile_headers_never_succeed(adapter, api_keys, authorizations, forwarded, path, method):
    call, _ = caller(adapter)
    headers = [("X-API-Key", v) for v in api_keys]
    headers += [("Authorization", v) for v in authorizations]
    headers += [("X-Forwarded-For", v) for v in forwarded]
    answer = call(method, "/" + path, headers, client_ip="10.1.2.3")
    check(answer, api_keys + authorizations, "/" + path, method=method)


@pytest.mark.parametrize("adapter", sorted(FUZZ_CALLERS))
@FUZZ
@given(
    forwarded=st.lists(header_value, max_size=4),
    peer=st.sampled_from(["10.1.2.3", "198.51.100.7", "203.0.113.1", "::1", "testclient"]),
)
def test_valid_key_with_hostile_forwarding_headers(adapter, forwarded, peer):
    """A valid key is accepted only from inside its allowlist, whatever X-Forwarded-For says."""
    call, key = caller(adapter)
    headers = [("X-API-Key", key.secret)] + [("X-Forwarded-For", v) for v in forwarded]
    answer = call("GET", "/quotes", headers, client_ip=peer)
    check(answer, [], "/quotes", allow_success=True)
    if answer.status == 200:
        # Only a trusted proxy's forwarding can move the client into the allowlist.
        assert peer == "198.51.100.7" or peer == "10.1.2.3"
    else:
        assert json.loads(answer.body)["error"]["code"] == "IP_NOT_ALLOWED"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
widget_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {}, optional={"project_id": json_values, "customer_id": json_values, "scopes": json_values}
    ).map(lambda v: json.dumps(v).encode()),
)


@pytest.mark.parametrize("adapter", sorted(FUZZ_CALLERS))
@FUZZ
@given(body=widget_bodies, with_key=st.booleans())
def test_widget_bodies(adapter, body, with_key):
    call, key = caller(adapter)
    headers = [("X-API-Key", key.secret)] if with_key else []
    answer = call("POST", "/widget/sessions", headers, body=body, client_ip="198.51.100.7")
    assert answer.status != 500
    if answer.status == 201:
        data = json.loads(body)
        assert with_key and data.get("project_id") == "p1"
        assert set(json.loads(answer.body)["scopes"]) <= {"quotes:read"}
    else:
        check(answer, [key.secret], "/widget/sessions")
        if not with_key:
            assert answer.status == 401


@pytest.mark.parametrize("adapter", sorted(FUZZ_CALLERS))
@pytest.mark.parametrize("path", ["//.", "//example.com/quotes", "///quotes?x=1"])
def test_paths_that_look_like_urls_are_refused_as_paths(adapter, path: str):
    call, _ = caller(adapter)
    answer = call("GET", path, [], client_ip="10.1.2.3")
    check(answer, [], path, method="GET")
    # Litestar answers a path it cannot route (404, its own body) before any middleware runs.
    assert answer.status == 401 or (adapter == "litestar" and answer.status == 404)
