"""Both adapters, one table: every error code over HTTP, body shape, headers, public paths,
duplicate and hostile headers, client address, the widget endpoint and rate-limit headers.
Each case runs through the Starlette middleware and the WSGI middleware (parity)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nowramp_auth import RateLimit
from nowramp_auth.testing import AuthKit, auth_kit
from tests.harness import CALLERS, Answer

pytestmark = pytest.mark.smoke  # also run against the installed wheel

STANDARD_KEYS = {"code", "message", "solution"}


@pytest.fixture(params=sorted(CALLERS))
def adapter(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def kit() -> AuthKit:
    return auth_kit(trusted_proxies=["10.0.0.0/8"])


@pytest.fixture
def call(adapter: str, kit: AuthKit):
    return CALLERS[adapter](kit.authenticator)


def assert_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer.body
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json
    assert set(body) == {"error"}
    assert set(body["error"]) >= STANDARD_KEYS
    assert body["error"]["code"] == code
    assert ("www-authenticate" in answer.headers) == (status == 401)


def keys_for(kit: AuthKit) -> dict[str, str]:
    reader = kit.key("quotes:read", "customers:read", "wallets:read", project_id="p1")
    allowlisted = kit.key("quotes:read", allowed_ips=["198.51.100.0/24"])
    expiring = kit.key("quotes:read", expires_at=kit.clock.now + timedelta(minutes=1))
    revoked = kit.key("quotes:read")
    kit.manager.revoke(revoked.key.id)
    return {
        "reader": reader.secret,
        "allowlisted": allowlisted.secret,
        "expiring": expiring.secret,
        "revoked": revoked.secret,
    }


CASES = [
    # (id, method, path, headers, client_ip, advance_minutes, status, code)
    ("success", "GET", "/quotes", [("X-API-Key", "{reader}")], "203.0.113.7", 0, 200, None),
    ("missing", "GET", "/quotes", [], "203.0.113.7", 0, 401, "MISSING_API_KEY"),
    (
        "empty-header",
        "GET",
        "/quotes",
        [("X-API-Key", "")],
        "203.0.113.7",
        0,
        401,
        "MISSING_API_KEY",
    ),
    (
        "malformed",
        "GET",
        "/quotes",
        [("X-API-Key", "ramp_live_123")],
        "203.0.113.7",
        0,
        401,
        "INVALID_API_KEY",
    ),
    (
        "bad-checksum",
        "GET",
        "/quotes",
        [("X-API-Key", "{reader_typo}")],
        "203.0.113.7",
        0,
        401,
        "INVALID_API_KEY",
    ),
    (
        "revoked",
        "GET",
        "/quotes",
        [("X-API-Key", "{revoked}")],
        "203.0.113.7",
        0,
        401,
        "INVALID_API_KEY",
    ),
    (
        "expired",
        "GET",
        "/quotes",
        [("X-API-Key", "{expiring}")],
        "203.0.113.7",
        2,
        401,
        "API_KEY_EXPIRED",
    ),
    (
        "missing-scope",
        "POST",
        "/orders",
        [("X-API-Key", "{reader}")],
        "203.0.113.7",
        0,
        403,
        "INSUFFICIENT_PERMISSIONS",
    ),
    (
        "ip-outside",
        "GET",
        "/quotes",
        [("X-API-Key", "{allowlisted}")],
        "203.0.113.7",
        0,
        403,
        "IP_NOT_ALLOWED",
    ),
    ("ip-inside", "GET", "/quotes", [("X-API-Key", "{allowlisted}")], "198.51.100.4", 0, 200, None),
    (
        "xff-from-untrusted-peer",
        "GET",
        "/quotes",
        [("X-API-Key", "{allowlisted}"), ("X-Forwarded-For", "198.51.100.4")],
        "203.0.113.7",
        0,
        403,
        "IP_NOT_ALLOWED",
    ),
    (
        "xff-from-trusted-proxy",
        "GET",
        "/quotes",
        [("X-API-Key", "{allowlisted}"), ("X-Forwarded-For", "198.51.100.4")],
        "10.1.2.3",
        0,
        200,
        None,
    ),
    (
        "xff-spoofed-left",
        "GET",
        "/quotes",
        [("X-API-Key", "{allowlisted}"), ("X-Forwarded-For", "198.51.100.4, 203.0.113.9")],
        "10.1.2.3",
        0,
        403,
        "IP_NOT_ALLOWED",
    ),
    (
        "duplicate-key-headers",
        "GET",
        "/quotes",
        [("X-API-Key", "{reader}"), ("X-API-Key", "{reader}")],
        "203.0.113.7",
        0,
        401,
        "INVALID_API_KEY",
    ),
    (
        "non-ascii-key",
        "GET",
        "/quotes",
        [("X-API-Key", "ramp_live_é\xff")],
        "203.0.113.7",
        0,
        401,
        "INVALID_API_KEY",
    ),
    (
        "oversized-key",
        "GET",
        "/quotes",
        [("X-API-Key", "ramp_live_" + "a" * 6000)],
        "203.0.113.7",
        0,
        401,
        "INVALID_API_KEY",
    ),
    (
        "whitespace-key",
        "GET",
        "/quotes",
        [("X-API-Key", " {reader}")],
        "203.0.113.7",
        0,
        401,
        "INVALID_API_KEY",
    ),
    (
        "bearer-bogus",
        "GET",
        "/quotes",
        [("Authorization", "Bearer ramp_sess_nope")],
        "203.0.113.7",
        0,
        401,
        "INVALID_SESSION_TOKEN",
    ),
    (
        "key-as-bearer",
        "GET",
        "/quotes",
        [("Authorization", "Bearer {reader}")],
        "203.0.113.7",
        0,
        401,
        "INVALID_SESSION_TOKEN",
    ),
    (
        "basic-auth-only",
        "GET",
        "/quotes",
        [("Authorization", "Basic dTpw")],
        "203.0.113.7",
        0,
        401,
        "MISSING_API_KEY",
    ),
    (
        "query-string-ignored",
        "GET",
        "/quotes?api_key={reader}",
        [],
        "203.0.113.7",
        0,
        401,
        "MISSING_API_KEY",
    ),
    ("public-exact", "GET", "/health", [], "203.0.113.7", 0, 200, None),
    ("public-prefix", "GET", "/docs/page", [], "203.0.113.7", 0, 200, None),
    ("not-public-lookalike", "GET", "/healthz", [], "203.0.113.7", 0, 401, "MISSING_API_KEY"),
    (
        "async-view-scope",
        "GET",
        "/customers",
        [("X-API-Key", "{reader}")],
        "203.0.113.7",
        0,
        200,
        None,
    ),
    (
        "class-view-scope",
        "GET",
        "/wallets",
        [("X-API-Key", "{reader}")],
        "203.0.113.7",
        0,
        200,
        None,
    ),
    (
        "unknown-route-still-authenticated",
        "GET",
        "/nope",
        [],
        "203.0.113.7",
        0,
        401,
        "MISSING_API_KEY",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "client_ip", "advance", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_case_table(call, kit: AuthKit, method, path, headers, client_ip, advance, status, code):
    secrets = keys_for(kit)
    secrets["reader_typo"] = secrets["reader"][:-1] + ("A" if secrets["reader"][-1] != "A" else "B")
    headers = [(k, v.format(**secrets)) for k, v in headers]
    path = path.format(**secrets)
    kit.clock.advance(minutes=advance)
    answer = call(method, path, headers, client_ip=client_ip)
    if code is None:
        assert answer.status == status, answer.body
    else:
        assert_error(answer, status, code)
        for secret in secrets.values():
            assert secret.encode() not in answer.body


def test_principal_reaches_the_view(call, kit: AuthKit, adapter: str):
    secret = kit.key("quotes:read", project_id="p1").secret
    answer = call("GET", "/whoami", [("X-API-Key", secret)])
    assert answer.status == 200
    body = answer.json
    assert body["kind"] == "api_key" and body["project_id"] == "p1"
    if adapter == "starlette":
        assert body["auth_scopes"] == ["quotes:read"] and body["user"] == body["key_id"]
    else:
        assert body["environ_key_id"] == body["key_id"]


def test_scope_refusals_are_audited(call, kit: AuthKit):
    issued = kit.key("quotes:read")
    call("POST", "/orders", [("X-API-Key", issued.secret)])
    failed = [e for e in kit.audit.events if e.type == "auth.failed"]
    assert [(e.code, e.key_id, e.method, e.path) for e in failed] == [
        ("INSUFFICIENT_PERMISSIONS", issued.key.id, "POST", "/orders")
    ]


def test_widget_session_flow(call, kit: AuthKit):
    issued = kit.key(
        "quotes:read",
        "orders:write",
        "webhooks:read",
        project_id="p1",
        allowed_ips=["203.0.113.0/24"],
    )
    answer = call(
        "POST",
        "/widget/sessions",
        [("X-API-Key", issued.secret), ("Content-Type", "application/json")],
        body=b'{"project_id": "p1", "customer_id": "c1"}',
    )
    assert answer.status == 201, answer.body
    session = answer.json
    assert session["project_id"] == "p1"
    assert session["scopes"] == ["orders:write", "quotes:read"]
    assert session["session_token"].startswith("ramp_sess_")
    assert "expires_at" in session
    bearer = [("Authorization", f"Bearer {session['session_token']}")]
    # The session works from a browser anywhere: the key's allowlist does not apply.
    ok = call("GET", "/quotes", bearer, client_ip="192.0.2.55")
    assert ok.status == 200 and ok.json["kind"] == "session"
    assert_error(call("GET", "/wallets", bearer), 403, "INSUFFICIENT_PERMISSIONS")
    assert_error(
        call("GET", "/quotes", [("X-API-Key", session["session_token"])]), 401, "INVALID_API_KEY"
    )
    kit.clock.advance(minutes=31)
    assert_error(call("GET", "/quotes", bearer), 401, "SESSION_EXPIRED")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(b"not json", 400, "INVALID_REQUEST", id="not-json"),
        pytest.param(b"[1, 2]", 400, "INVALID_REQUEST", id="array"),
        pytest.param(b"{}", 400, "INVALID_REQUEST", id="no-project"),
        pytest.param(b'{"project_id": 7}', 400, "INVALID_REQUEST", id="project-not-string"),
        pytest.param(
            b'{"project_id": "p1", "scopes": "quotes:read"}',
            400,
            "INVALID_REQUEST",
            id="scopes-not-list",
        ),
        pytest.param(
            b'{"project_id": "p1", "customer_id": ["x"]}',
            400,
            "INVALID_REQUEST",
            id="customer-not-string",
        ),
        pytest.param(b"[" * 100_000, 400, "INVALID_REQUEST", id="deeply-nested"),
        pytest.param(b"\xff\xfe", 400, "INVALID_REQUEST", id="not-utf8"),
        pytest.param(b'{"project_id": "p2"}', 403, "INSUFFICIENT_PERMISSIONS", id="other-project"),
        pytest.param(
            b'{"project_id": "p1", "scopes": ["orders:write"]}',
            403,
            "INSUFFICIENT_PERMISSIONS",
            id="scope-not-held",
        ),
    ],
)
def test_widget_bad_bodies(call, kit: AuthKit, body, status, code):
    issued = kit.key("quotes:read", project_id="p1")
    answer = call("POST", "/widget/sessions", [("X-API-Key", issued.secret)], body=body)
    assert_error(answer, status, code)


def test_widget_bad_body_without_a_key_is_401(call):
    assert_error(call("POST", "/widget/sessions", [], body=b"junk"), 401, "MISSING_API_KEY")


def test_widget_endpoint_can_be_moved_or_disabled(adapter: str, kit: AuthKit):
    issued = kit.key("quotes:read")
    moved = CALLERS[adapter](kit.authenticator, widget_sessions_path="/w/s")
    answer = moved("POST", "/w/s", [("X-API-Key", issued.secret)], body=b'{"project_id":"p"}')
    assert answer.status == 201
    off = CALLERS[adapter](kit.authenticator, widget_sessions_path=None)
    answer = off(
        "POST", "/widget/sessions", [("X-API-Key", issued.secret)], body=b'{"project_id":"p"}'
    )
    assert answer.status in (404, 405)


def test_rate_limit_headers(call, kit: AuthKit):
    issued = kit.key("quotes:read", rate_limit=RateLimit(2, timedelta(seconds=30)))
    headers = [("X-API-Key", issued.secret)]
    first = call("GET", "/quotes", headers)
    assert first.status == 200
    assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("2", "1")
    assert first.headers["ratelimit-reset"] == "30"
    assert call("GET", "/quotes", headers).headers["ratelimit-remaining"] == "0"
    refused = call("GET", "/quotes", headers)
    assert_error(refused, 429, "RATE_LIMITED")
    assert refused.headers["retry-after"] == "30"
    assert refused.headers["ratelimit-remaining"] == "0"


def test_unlimited_keys_get_no_rate_limit_headers(call, kit: AuthKit):
    answer = call("GET", "/quotes", [("X-API-Key", kit.key("quotes:read").secret)])
    assert "ratelimit-limit" not in answer.headers


@pytest.mark.parametrize("module_name", ["starlette", "wsgi"])
def test_config_errors_fail_at_construction(module_name: str):
    import importlib

    middleware = importlib.import_module(f"nowramp_auth.{module_name}").ApiKeyMiddleware
    kit = auth_kit()

    def app(*args):  # never called
        raise AssertionError

    with pytest.raises(TypeError, match="Authenticator"):
        middleware(app, authenticator=object())
    with pytest.raises(ValueError, match="health"):
        middleware(app, authenticator=kit.authenticator, public_paths=["health"])
    with pytest.raises(TypeError, match="not one string"):
        middleware(app, authenticator=kit.authenticator, public_paths="/health")
    with pytest.raises(ValueError, match="widget"):
        middleware(app, authenticator=kit.authenticator, widget_sessions_path="widget")
