"""The Authenticator: every error code, the order of checks, rotation grace, sessions, limits."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nowramp_auth import AuthError, ErrorCode, RateLimit
from nowramp_auth.stores import MemoryKeyStore, StoreUnavailable
from nowramp_auth.testing import AuthKit, auth_kit
from tests.conftest import mistype

IP = "203.0.113.7"


@pytest.fixture
def kit() -> AuthKit:
    return auth_kit()


def code_of(call, *args, **kwargs) -> ErrorCode:
    with pytest.raises(AuthError) as info:
        call(*args, **kwargs)
    return info.value.code


def wrong_secret(secret: str) -> str:
    """Same key id, different secret, valid checksum: forged from scratch."""
    import zlib

    from nowramp_auth._keys import _encode_base62

    head = secret[:26] + ("A" if secret[26] != "A" else "B") + secret[27:-6]
    return head + _encode_base62(zlib.crc32(head.encode()), 6)


def test_valid_key_gives_principal(kit: AuthKit):
    issued = kit.key("quotes:read", project_id="p1", metadata={"account": "acct_1"})
    principal = kit.authenticator.authenticate(
        issued.secret, client_ip=IP, required_scopes=["quotes:read"]
    )
    assert principal.key_id == issued.key.id
    assert principal.kind == "api_key"
    assert principal.project_id == "p1"
    assert principal.scopes == frozenset({"quotes:read"})
    assert principal.metadata == {"account": "acct_1"}


@pytest.mark.parametrize(
    ("value", "code"),
    [
        pytest.param(None, ErrorCode.MISSING_API_KEY, id="none"),
        pytest.param("", ErrorCode.MISSING_API_KEY, id="empty"),
        pytest.param("nonsense", ErrorCode.INVALID_API_KEY, id="malformed"),
        pytest.param(12345, ErrorCode.INVALID_API_KEY, id="not-a-string"),
    ],
)
def test_missing_and_malformed(kit: AuthKit, value, code):
    assert code_of(kit.authenticator.authenticate, value) == code


def test_unknown_and_wrong_secret_are_invalid(kit: AuthKit):
    issued = kit.key("quotes:read")
    from nowramp_auth._keys import generate_key

    assert (
        code_of(kit.authenticator.authenticate, generate_key("test")[0])
        == ErrorCode.INVALID_API_KEY
    )
    forged = wrong_secret(issued.secret)
    assert code_of(kit.authenticator.authenticate, forged) == ErrorCode.INVALID_API_KEY


def test_digest_is_checked_before_state(kit: AuthKit):
    """Without the right secret a caller learns nothing: revoked/expired keys answer INVALID."""
    expired = kit.key("quotes:read", expires_at=kit.clock.now + timedelta(seconds=1))
    revoked = kit.key("quotes:read")
    kit.manager.revoke(revoked.key.id)
    kit.clock.advance(seconds=2)
    for issued in (expired, revoked):
        forged = wrong_secret(issued.secret)
        assert code_of(kit.authenticator.authenticate, forged) == ErrorCode.INVALID_API_KEY
    assert code_of(kit.authenticator.authenticate, expired.secret) == ErrorCode.API_KEY_EXPIRED
    assert code_of(kit.authenticator.authenticate, revoked.secret) == ErrorCode.INVALID_API_KEY


def test_order_revoked_before_expired_before_ip_before_scopes(kit: AuthKit):
    issued = kit.key(
        "quotes:read",
        allowed_ips=["198.51.100.0/24"],
        expires_at=kit.clock.now + timedelta(minutes=1),
    )
    auth = kit.authenticator
    kwargs = {"client_ip": IP, "required_scopes": ["orders:write"]}
    assert code_of(auth.authenticate, issued.secret, **kwargs) == ErrorCode.IP_NOT_ALLOWED
    kit.clock.advance(minutes=2)
    assert code_of(auth.authenticate, issued.secret, **kwargs) == ErrorCode.API_KEY_EXPIRED
    kit.manager.revoke(issued.key.id)
    assert code_of(auth.authenticate, issued.secret, **kwargs) == ErrorCode.INVALID_API_KEY


@pytest.mark.parametrize(
    ("client_ip", "ok"),
    [
        pytest.param("203.0.113.7", True, id="inside"),
        pytest.param("203.0.114.7", False, id="outside"),
        pytest.param("2001:db8::7", True, id="inside-v6"),
        pytest.param("testclient", False, id="not-an-ip"),
        pytest.param(None, False, id="unknown"),
    ],
)
def test_ip_allowlist(kit: AuthKit, client_ip, ok):
    issued = kit.key("quotes:read", allowed_ips=["203.0.113.0/24", "2001:db8::/32"])
    if ok:
        kit.authenticator.authenticate(issued.secret, client_ip=client_ip)
    else:
        assert (
            code_of(kit.authenticator.authenticate, issued.secret, client_ip=client_ip)
            == ErrorCode.IP_NOT_ALLOWED
        )


def test_empty_allowlist_accepts_any_address(kit: AuthKit):
    issued = kit.key("quotes:read")
    kit.authenticator.authenticate(issued.secret, client_ip=None)
    kit.authenticator.authenticate(issued.secret, client_ip="testclient")


@pytest.mark.parametrize(
    ("held", "required", "ok"),
    [
        pytest.param(["quotes:read"], ["quotes:read"], True, id="exact"),
        pytest.param(["quotes:read", "orders:read"], ["quotes:read"], True, id="superset"),
        pytest.param(["quotes:write"], ["quotes:read"], False, id="write-not-read"),
        pytest.param(["quotes:read"], ["quotes:read", "orders:read"], False, id="one-missing"),
        pytest.param(["quotes:read"], [], True, id="none-required"),
    ],
)
def test_scopes(kit: AuthKit, held, required, ok):
    issued = kit.key(*held)
    if ok:
        kit.authenticator.authenticate(issued.secret, required_scopes=required)
    else:
        with pytest.raises(AuthError) as info:
            kit.authenticator.authenticate(issued.secret, required_scopes=required)
        assert info.value.code == ErrorCode.INSUFFICIENT_PERMISSIONS
        assert info.value.status_code == 403
        assert info.value.to_dict()["error"]["required_scopes"] == sorted(required)


# -- rotation ------------------------------------------------------------------------------
def test_rotation_grace_edges(kit: AuthKit):
    old = kit.key(
        "quotes:read",
        project_id="p1",
        allowed_ips=["203.0.113.0/24"],
        metadata={"a": 1},
        rate_limit=RateLimit(1000, timedelta(minutes=1)),
    )
    new = kit.manager.rotate(old.key.id)
    for field in (
        "key_type",
        "scopes",
        "project_id",
        "allowed_ips",
        "name",
        "metadata",
        "rate_limit",
        "expires_at",
    ):
        assert getattr(new.key, field) == getattr(old.key, field), field
    assert new.key.rotated_from == old.key.id
    assert kit.manager.get(old.key.id).rotated_to == new.key.id
    auth = kit.authenticator
    kit.clock.advance(hours=23, minutes=59)
    auth.authenticate(old.secret, client_ip=IP)
    auth.authenticate(new.secret, client_ip=IP)
    kit.clock.advance(minutes=1, seconds=1)
    assert code_of(auth.authenticate, old.secret, client_ip=IP) == ErrorCode.API_KEY_EXPIRED
    auth.authenticate(new.secret, client_ip=IP)


def test_rotation_never_extends_an_existing_expiry(kit: AuthKit):
    expires = kit.clock.now + timedelta(hours=2)
    old = kit.key("quotes:read", expires_at=expires)
    new = kit.manager.rotate(old.key.id)
    assert kit.manager.get(old.key.id).expires_at == expires
    assert new.key.expires_at == expires


def test_rotation_with_custom_grace(kit: AuthKit):
    old = kit.key("quotes:read")
    kit.manager.rotate(old.key.id, grace=timedelta(minutes=5))
    kit.clock.advance(minutes=5)
    assert code_of(kit.authenticator.authenticate, old.secret) == ErrorCode.API_KEY_EXPIRED


@pytest.mark.parametrize("state", ["revoked", "expired", "rotated"])
def test_cannot_rotate(kit: AuthKit, state: str):
    issued = kit.key("quotes:read", expires_at=kit.clock.now + timedelta(hours=1))
    if state == "revoked":
        kit.manager.revoke(issued.key.id)
    elif state == "expired":
        kit.clock.advance(hours=2)
    else:
        kit.manager.rotate(issued.key.id)
    with pytest.raises(ValueError, match=state if state != "rotated" else "already rotated"):
        kit.manager.rotate(issued.key.id)


def test_negative_grace_is_refused(kit: AuthKit):
    issued = kit.key("quotes:read")
    with pytest.raises(ValueError):
        kit.manager.rotate(issued.key.id, grace=timedelta(seconds=-1))


def test_rotate_unknown_key(kit: AuthKit):
    with pytest.raises(KeyError):
        kit.manager.rotate("key_doesnotexist0000")


# -- rate limits ---------------------------------------------------------------------------
def test_rate_limit_boundary_with_injected_clock(kit: AuthKit):
    issued = kit.key("quotes:read", rate_limit=RateLimit(3, timedelta(seconds=10)))
    auth = kit.authenticator
    statuses = [auth.authenticate(issued.secret).rate_limit for _ in range(3)]
    assert [s.remaining for s in statuses] == [2, 1, 0]
    with pytest.raises(AuthError) as info:
        auth.authenticate(issued.secret)
    assert info.value.code == ErrorCode.RATE_LIMITED and info.value.status_code == 429
    assert info.value.retry_after == 10
    headers = dict(info.value.headers())
    assert headers["Retry-After"] == "10" and headers["RateLimit-Remaining"] == "0"
    kit.clock.advance(seconds=9.999)
    assert code_of(auth.authenticate, issued.secret) == ErrorCode.RATE_LIMITED
    kit.clock.advance(seconds=0.001)
    auth.authenticate(issued.secret)


def test_rate_limit_is_a_sliding_window_not_a_fixed_one(kit: AuthKit):
    issued = kit.key("quotes:read", rate_limit=RateLimit(2, timedelta(seconds=10)))
    auth = kit.authenticator
    kit.clock.advance(seconds=9)
    auth.authenticate(issued.secret)
    auth.authenticate(issued.secret)
    kit.clock.advance(seconds=2)  # a fixed window would reset here
    assert code_of(auth.authenticate, issued.secret) == ErrorCode.RATE_LIMITED


def test_refused_requests_do_not_use_quota(kit: AuthKit):
    issued = kit.key("quotes:read", rate_limit=RateLimit(1, timedelta(seconds=10)))
    auth = kit.authenticator
    for _ in range(3):
        code_of(auth.authenticate, issued.secret, required_scopes=["orders:read"])
    auth.authenticate(issued.secret)


def test_unlimited_keys_have_no_rate_limit_status(kit: AuthKit):
    issued = kit.key("quotes:read")
    assert kit.authenticator.authenticate(issued.secret).rate_limit is None


# -- sessions ------------------------------------------------------------------------------
def test_session_flow(kit: AuthKit):
    issued = kit.key(
        "quotes:read",
        "orders:write",
        "webhooks:read",
        project_id="p1",
        allowed_ips=["203.0.113.0/24"],
    )
    auth = kit.authenticator
    session = auth.create_session(issued.secret, project_id="p1", client_ip=IP, customer_id="c1")
    assert session.token.startswith("ramp_sess_")
    assert session.scopes == frozenset({"quotes:read", "orders:write"})  # no webhooks
    assert session.expires_at == kit.clock.now + timedelta(minutes=30)
    principal = auth.authenticate_session(
        session.token, required_scopes=["quotes:read"], client_ip="198.51.100.9"
    )  # allowlist does not apply
    assert principal.kind == "session"
    assert principal.key_id == issued.key.id
    assert principal.project_id == "p1" and principal.customer_id == "c1"
    assert (
        code_of(auth.authenticate_session, session.token, required_scopes=["webhooks:read"])
        == ErrorCode.INSUFFICIENT_PERMISSIONS
    )


def test_session_creation_checks(kit: AuthKit):
    auth = kit.authenticator
    scoped = kit.key("quotes:read", project_id="p1", allowed_ips=["203.0.113.0/24"])
    assert (
        code_of(auth.create_session, scoped.secret, project_id="p2", client_ip=IP)
        == ErrorCode.INSUFFICIENT_PERMISSIONS
    )
    assert (
        code_of(
            auth.create_session,
            scoped.secret,
            project_id="p1",
            client_ip=IP,
            scopes=["orders:read"],
        )
        == ErrorCode.INSUFFICIENT_PERMISSIONS
    )
    assert (
        code_of(auth.create_session, scoped.secret, project_id="p1", client_ip="198.51.100.1")
        == ErrorCode.IP_NOT_ALLOWED
    )
    assert code_of(auth.create_session, None, project_id="p1") == ErrorCode.MISSING_API_KEY
    unscoped = kit.key("webhooks:read")  # no project: any project
    session = auth.create_session(unscoped.secret, project_id="anything", scopes=["webhooks:read"])
    assert session.scopes == frozenset({"webhooks:read"})


def test_session_expiry_and_revocation(kit: AuthKit):
    auth = kit.authenticator
    issued = kit.key("quotes:read")
    first = auth.create_session(issued.secret, project_id="p1")
    second = auth.create_session(issued.secret, project_id="p1")
    auth.revoke_session(first.token)
    assert code_of(auth.authenticate_session, first.token) == ErrorCode.INVALID_SESSION_TOKEN
    auth.authenticate_session(second.token)
    kit.clock.advance(minutes=30)
    assert code_of(auth.authenticate_session, second.token) == ErrorCode.SESSION_EXPIRED


def test_session_dies_with_its_parent(kit: AuthKit):
    auth = kit.authenticator
    revoked = kit.key("quotes:read")
    session = auth.create_session(revoked.secret, project_id="p1")
    kit.manager.revoke(revoked.key.id)
    assert code_of(auth.authenticate_session, session.token) == ErrorCode.INVALID_SESSION_TOKEN
    expiring = kit.key("quotes:read", expires_at=kit.clock.now + timedelta(minutes=10))
    session = auth.create_session(expiring.secret, project_id="p1")
    assert session.expires_at == expiring.key.expires_at
    kit.clock.advance(minutes=10)
    assert code_of(auth.authenticate_session, session.token) == ErrorCode.SESSION_EXPIRED


def test_tokens_in_the_wrong_place(kit: AuthKit):
    auth = kit.authenticator
    issued = kit.key("quotes:read")
    session = auth.create_session(issued.secret, project_id="p1")
    assert code_of(auth.authenticate, session.token) == ErrorCode.INVALID_API_KEY
    assert code_of(auth.authenticate_session, issued.secret) == ErrorCode.INVALID_SESSION_TOKEN
    with pytest.raises(AuthError):
        auth.revoke_session(issued.secret)


def test_session_calls_count_against_the_parent_limit(kit: AuthKit):
    auth = kit.authenticator
    issued = kit.key("quotes:read", rate_limit=RateLimit(3, timedelta(minutes=1)))
    session = auth.create_session(issued.secret, project_id="p1")  # 1
    auth.authenticate_session(session.token)  # 2
    auth.authenticate(issued.secret)  # 3
    assert code_of(auth.authenticate_session, session.token) == ErrorCode.RATE_LIMITED


def test_custom_widget_scopes_and_ttl():
    kit = auth_kit(widget_scopes=["quotes:read"], session_ttl=timedelta(minutes=5))
    issued = kit.key("quotes:read", "orders:read")
    session = kit.authenticator.create_session(issued.secret, project_id="p1")
    assert session.scopes == frozenset({"quotes:read"})
    assert session.expires_at == kit.clock.now + timedelta(minutes=5)


# -- headers -> credential -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("api_keys", "authorizations", "code"),
    [
        pytest.param([], [], ErrorCode.MISSING_API_KEY, id="nothing"),
        pytest.param([""], [], ErrorCode.MISSING_API_KEY, id="empty-key"),
        pytest.param(["KEY", "KEY"], [], ErrorCode.INVALID_API_KEY, id="two-fields"),
        pytest.param(["KEY,KEY"], [], ErrorCode.INVALID_API_KEY, id="comma-joined"),
        pytest.param([" KEY"], [], ErrorCode.INVALID_API_KEY, id="not-stripped"),
        pytest.param([], ["Basic dXNlcjpwYXNz"], ErrorCode.MISSING_API_KEY, id="basic-auth"),
        pytest.param([], ["Bearer "], ErrorCode.INVALID_SESSION_TOKEN, id="empty-bearer"),
        pytest.param([], ["Bearer KEY"], ErrorCode.INVALID_SESSION_TOKEN, id="key-as-bearer"),
        pytest.param(
            [], ["Bearer x", "Bearer y"], ErrorCode.INVALID_SESSION_TOKEN, id="two-bearers"
        ),
    ],
)
def test_request_credentials(kit: AuthKit, api_keys, authorizations, code):
    secret = kit.key("quotes:read").secret
    api_keys = [v.replace("KEY", secret) for v in api_keys]
    authorizations = [v.replace("KEY", secret) for v in authorizations]
    assert code_of(kit.authenticator.authenticate_request, api_keys, authorizations) == code


def test_api_key_header_wins_over_bearer(kit: AuthKit):
    secret = kit.key("quotes:read").secret
    principal = kit.authenticator.authenticate_request([secret], ["Bearer junk"])
    assert principal.kind == "api_key"


def test_async_twins_agree(kit: AuthKit):
    issued = kit.key("quotes:read")
    auth = kit.authenticator

    async def run():
        principal = await auth.authenticate_async(issued.secret, required_scopes=["quotes:read"])
        session = await auth.create_session_async(issued.secret, project_id="p1")
        via_session = await auth.authenticate_session_async(session.token)
        with pytest.raises(AuthError) as info:
            await auth.authenticate_async(issued.secret, required_scopes=["orders:read"])
        return principal, via_session, info.value.code

    principal, via_session, code = asyncio.run(run())
    assert principal == auth.authenticate(issued.secret)
    assert via_session.kind == "session"
    assert code == ErrorCode.INSUFFICIENT_PERMISSIONS


# -- the store failing ---------------------------------------------------------------------
class DownStore(MemoryKeyStore):
    """A store whose backend is unreachable."""

    def get_key(self, key_id):
        raise StoreUnavailable("down")

    async def get_key_async(self, key_id):
        raise StoreUnavailable("down")


def test_store_down_is_auth_unavailable_but_bad_checksum_is_not():
    store = DownStore()
    kit = auth_kit()
    issued = kit.key("quotes:read")
    from nowramp_auth import Authenticator

    auth = Authenticator(store)
    with pytest.raises(AuthError) as info:
        auth.authenticate(issued.secret)
    assert info.value.code == ErrorCode.AUTH_UNAVAILABLE and info.value.status_code == 503
    assert code_of(auth.authenticate, mistype(issued.secret)) == ErrorCode.INVALID_API_KEY
    with pytest.raises(AuthError) as info:
        asyncio.run(auth.authenticate_async(issued.secret))
    assert info.value.code == ErrorCode.AUTH_UNAVAILABLE


# -- audit -----------------------------------------------------------------------------------
def test_audit_events(kit: AuthKit):
    issued = kit.key("quotes:read", project_id="p1")
    auth = kit.authenticator
    with pytest.raises(AuthError):
        auth.authenticate(
            issued.secret,
            client_ip=IP,
            required_scopes=["orders:read"],
            method="GET",
            path="/orders",
        )
    kit.manager.update(issued.key.id, name="renamed")
    rotated = kit.manager.rotate(issued.key.id)
    kit.manager.revoke(rotated.key.id)
    session = auth.create_session(issued.secret, project_id="p1")
    auth.revoke_session(session.token)
    types = [e.type for e in kit.audit.events]
    assert types == [
        "key.created",
        "auth.failed",
        "key.updated",
        "key.rotated",
        "key.revoked",
        "session.created",
        "session.revoked",
    ]
    failed = kit.audit.events[1]
    assert (failed.code, failed.key_id, failed.client_ip, failed.method, failed.path) == (
        "INSUFFICIENT_PERMISSIONS",
        issued.key.id,
        IP,
        "GET",
        "/orders",
    )
    assert all(e.at is not None for e in kit.audit.events)


def test_failing_audit_sink_does_not_change_decisions():
    class Broken:
        def emit(self, event):
            raise RuntimeError("disk full")

    kit = auth_kit(audit=[Broken()])
    issued = kit.key("quotes:read")
    kit.authenticator.authenticate(issued.secret)
    assert code_of(kit.authenticator.authenticate, "junk") == ErrorCode.INVALID_API_KEY
    assert kit.authenticator.audit.flush()
    assert kit.authenticator.audit.dropped == 1


def test_audit_successes_when_asked():
    kit = auth_kit(audit_successes=True)
    issued = kit.key("quotes:read")
    kit.authenticator.authenticate(issued.secret, method="GET", path="/q")
    assert [e.type for e in kit.audit.events] == ["key.created", "auth.succeeded"]
    assert kit.audit.events[1].path == "/q"


def test_usage_is_counted_without_touching_the_record(kit: AuthKit):
    issued = kit.key("quotes:read")
    for _ in range(3):
        kit.authenticator.authenticate(issued.secret)
    assert kit.store.get_key(issued.key.id).record.request_count == 0
    record = kit.manager.get(issued.key.id)
    assert record.request_count == 3
    assert record.last_used_at == kit.clock.now


@given(
    value=st.one_of(st.text(max_size=120), st.none(), st.integers(), st.binary(max_size=80)),
    authorizations=st.lists(st.text(max_size=80), max_size=3),
)
def test_arbitrary_input_only_ever_raises_auth_error(value, authorizations):
    kit = _FUZZ_KIT
    for call in (
        lambda: kit.authenticator.authenticate(value),
        lambda: kit.authenticator.authenticate_session(value),
        lambda: kit.authenticator.authenticate_request(
            [value] if isinstance(value, str) else [], authorizations
        ),
    ):
        with pytest.raises(AuthError) as info:
            call()
        assert info.value.status_code in (400, 401, 403)


_FUZZ_KIT = auth_kit()
