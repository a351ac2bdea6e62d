"""One contract, every store: memory, Redis (single node) and Redis Cluster, sync and async.

Each test runs against each store through the public API (KeyManager + Authenticator), so
every store meets the same behaviour.
"""

from __future__ import annotations

import asyncio
import re
import threading
from datetime import timedelta

import pytest

from nowramp_auth import Authenticator, AuthError, ErrorCode, KeyManager, KeyStore, RateLimit
from nowramp_auth.testing import FrozenClock


@pytest.fixture
def manager(any_store: KeyStore, clock: FrozenClock) -> KeyManager:
    return KeyManager(any_store, clock=clock)


@pytest.fixture
def auth(any_store: KeyStore, clock: FrozenClock) -> Authenticator:
    return Authenticator(any_store, clock=clock)


def test_create_get_authenticate(manager: KeyManager, auth: Authenticator):
    issued = manager.create(
        scopes=["quotes:read", "orders:write"],
        key_type="live",
        name="prod",
        project_id="p1",
        allowed_ips=["203.0.113.0/24", "2001:db8::/32"],
        metadata={"account": "acct_1", "tier": 2},
        rate_limit=RateLimit(100, timedelta(seconds=60)),
    )
    record = manager.get(issued.key.id)
    assert record == issued.key
    principal = auth.authenticate(
        issued.secret, client_ip="203.0.113.9", required_scopes=["quotes:read"]
    )
    assert principal.key_id == issued.key.id and principal.key_type == "live"


def test_async_path(manager: KeyManager, auth: Authenticator):
    issued = manager.create(scopes=["quotes:read"], project_id="p1")

    async def run():
        principal = await auth.authenticate_async(issued.secret, required_scopes=["quotes:read"])
        session = await auth.create_session_async(issued.secret, project_id="p1")
        via = await auth.authenticate_session_async(session.token)
        return principal, via

    principal, via = asyncio.run(run())
    assert principal.key_id == via.key_id == issued.key.id
    assert via.kind == "session"


def test_unknown_key(auth: Authenticator):
    from nowramp_auth._keys import generate_key

    with pytest.raises(AuthError) as info:
        auth.authenticate(generate_key("live")[0])
    assert info.value.code == ErrorCode.INVALID_API_KEY


def test_revoke_is_seen_at_once(manager: KeyManager, auth: Authenticator):
    issued = manager.create(scopes=["quotes:read"])
    auth.authenticate(issued.secret)
    manager.revoke(issued.key.id)
    with pytest.raises(AuthError) as info:
        auth.authenticate(issued.secret)
    assert info.value.code == ErrorCode.INVALID_API_KEY
    assert manager.get(issued.key.id).revoked_at is not None


def test_rotation(manager: KeyManager, auth: Authenticator, clock: FrozenClock):
    old = manager.create(
        scopes=["quotes:read"],
        project_id="p1",
        metadata={"a": "b"},
        expires_at=clock.now + timedelta(days=30),
    )
    new = manager.rotate(old.key.id, grace=timedelta(hours=1))
    assert new.key.rotated_from == old.key.id
    assert new.key.scopes == old.key.scopes and new.key.metadata == {"a": "b"}
    assert new.key.expires_at == old.key.expires_at
    assert manager.get(old.key.id).rotated_to == new.key.id
    assert manager.get(old.key.id).expires_at == clock.now + timedelta(hours=1)
    auth.authenticate(old.secret)
    auth.authenticate(new.secret)
    with pytest.raises(ValueError, match="already rotated"):
        manager.rotate(old.key.id)
    clock.advance(hours=1)
    with pytest.raises(AuthError) as info:
        auth.authenticate(old.secret)
    assert info.value.code == ErrorCode.API_KEY_EXPIRED
    auth.authenticate(new.secret)


def test_a_rotated_keys_grace_end_is_a_hard_cap(
    manager: KeyManager, auth: Authenticator, clock: FrozenClock
):
    old = manager.create(scopes=["quotes:read"])
    manager.rotate(old.key.id, grace=timedelta(hours=2))
    grace_end = clock.now + timedelta(hours=2)
    for lifted in (None, grace_end + timedelta(seconds=1), grace_end + timedelta(days=400)):
        with pytest.raises(
            ValueError, match=re.escape("grace period ends " + grace_end.isoformat())
        ):
            manager.update(old.key.id, expires_at=lifted)
        assert manager.get(old.key.id).expires_at == grace_end  # nothing changed
    # Shortening is allowed; so is setting the same end; other fields stay updatable.
    assert manager.update(old.key.id, expires_at=grace_end).expires_at == grace_end
    earlier = clock.now + timedelta(hours=1)
    assert manager.update(old.key.id, expires_at=earlier, name="old").expires_at == earlier
    with pytest.raises(ValueError, match="grace period ends"):
        manager.update(old.key.id, expires_at=grace_end)  # the cap is now the earlier end
    clock.advance(hours=1)
    with pytest.raises(AuthError) as info:
        auth.authenticate(old.secret)
    assert info.value.code == ErrorCode.API_KEY_EXPIRED
    # A key that was never rotated may still be given a later expiry or none.
    free = manager.create(scopes=["quotes:read"], expires_at=clock.now + timedelta(hours=1))
    assert manager.update(free.key.id, expires_at=None).expires_at is None


def test_concurrent_rotations_yield_one_successor(manager: KeyManager):
    issued = manager.create(scopes=["quotes:read"])
    results: list[object] = []
    barrier = threading.Barrier(8)

    def rotate():
        barrier.wait()
        try:
            results.append(manager.rotate(issued.key.id))
        except ValueError as exc:
            results.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    successes = [r for r in results if not isinstance(r, ValueError)]
    assert len(successes) == 1
    assert manager.get(issued.key.id).rotated_to == successes[0].key.id


def test_update(manager: KeyManager, auth: Authenticator):
    issued = manager.create(scopes=["quotes:read"], allowed_ips=["10.0.0.0/8"])
    record = manager.update(
        issued.key.id,
        scopes=["orders:read"],
        allowed_ips=[],
        name="n",
        metadata={"x": 1},
        rate_limit=RateLimit(2, timedelta(seconds=5)),
    )
    assert record.scopes == {"orders:read"} and record.allowed_ips == ()
    assert record.metadata == {"x": 1} and record.name == "n"
    assert manager.get(issued.key.id) == record
    with pytest.raises(AuthError):
        auth.authenticate(issued.secret, required_scopes=["quotes:read"])
    auth.authenticate(issued.secret, client_ip="198.51.100.1", required_scopes=["orders:read"])
    record = manager.update(issued.key.id, rate_limit=None)
    assert record.rate_limit is None
    with pytest.raises(KeyError):
        manager.update("key_ABCDmissing00000", name="x")


def test_list_by_project(manager: KeyManager, clock: FrozenClock):
    a = manager.create(scopes=["quotes:read"], project_id="p1")
    clock.advance(seconds=1)
    b = manager.create(scopes=["quotes:read"], project_id="p2")
    clock.advance(seconds=1)
    c = manager.create(scopes=["quotes:read"])
    rotated = manager.rotate(a.key.id)
    assert [r.id for r in manager.list(project_id="p1")] == [a.key.id, rotated.key.id]
    assert {r.id for r in manager.list()} == {a.key.id, b.key.id, c.key.id, rotated.key.id}


def test_sessions(manager: KeyManager, auth: Authenticator, clock: FrozenClock):
    issued = manager.create(scopes=["quotes:read", "webhooks:read"], project_id="p1")
    session = auth.create_session(issued.secret, project_id="p1", customer_id="cust_1")
    principal = auth.authenticate_session(session.token, required_scopes=["quotes:read"])
    assert principal.customer_id == "cust_1" and principal.scopes == {"quotes:read"}
    auth.revoke_session(session.token)
    with pytest.raises(AuthError) as info:
        auth.authenticate_session(session.token)
    assert info.value.code == ErrorCode.INVALID_SESSION_TOKEN
    other = auth.create_session(issued.secret, project_id="p1")
    clock.advance(minutes=31)
    with pytest.raises(AuthError) as info:
        auth.authenticate_session(other.token)
    assert info.value.code == ErrorCode.SESSION_EXPIRED


def test_usage_is_merged_into_records(
    manager: KeyManager, auth: Authenticator, any_store: KeyStore
):
    issued = manager.create(scopes=["quotes:read"])
    for _ in range(5):
        auth.authenticate(issued.secret)
    flush = getattr(any_store, "flush_usage", None)
    if flush:
        flush()
    record = manager.get(issued.key.id)
    assert record.request_count == 5
    assert record.last_used_at is not None
    assert manager.list()[0].request_count == 5


def test_rate_limit_boundary(manager: KeyManager, auth: Authenticator):
    issued = manager.create(scopes=["quotes:read"], rate_limit=RateLimit(3, timedelta(seconds=30)))
    remaining = [auth.authenticate(issued.secret).rate_limit.remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    with pytest.raises(AuthError) as info:
        auth.authenticate(issued.secret)
    assert info.value.code == ErrorCode.RATE_LIMITED
    assert 1 <= info.value.retry_after <= 30


@pytest.mark.parametrize("kind", ["memory", "redis", "cluster", "postgres"])
def test_digests_are_peppered_when_asked(kind: str, request: pytest.FixtureRequest, namespace: str):
    from tests.conftest import make_store

    plain = make_store(kind, request, namespace)
    peppered = make_store(kind, request, namespace + "p", pepper=b"server-secret")
    assert plain.digest("x") != peppered.digest("x")
    issued = KeyManager(peppered).create(scopes=["quotes:read"])
    Authenticator(peppered).authenticate(issued.secret)
    assert peppered.get_key(issued.key.id).digest == peppered.digest(issued.secret)


def test_store_is_a_keystore(any_store: KeyStore):
    from nowramp_auth.stores import AsyncRequestStore

    assert isinstance(any_store, KeyStore)
    assert isinstance(any_store, AsyncRequestStore)
