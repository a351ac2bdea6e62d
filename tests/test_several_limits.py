"""Several rate limits on one key (a burst limit beside a daily one): a request must fit
every one; they are checked and spent together, so a refusal by one spends nothing of the
others; the headers show the limit closest to refusing. On every store: memory, Redis, Redis
Cluster (every counter of a key shares its hash slot) and PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nowramp_auth import Authenticator, AuthError, ErrorCode, KeyManager, MemoryKeyStore, RateLimit
from nowramp_auth.stores import KeyStore
from tests.conftest import make_store
from tests.outcomes import burst, outcomes

BURST = RateLimit(2, timedelta(milliseconds=700), name="burst")
DAILY = RateLimit(5, timedelta(hours=1), name="daily")
STORES = ["memory", "redis", "cluster", "postgres"]


@given(
    limits=st.lists(
        st.tuples(st.integers(1, 5), st.integers(1, 40)), min_size=2, max_size=4, unique=True
    ),
    gaps=st.lists(st.integers(0, 15), min_size=1, max_size=60),
)
def test_accepted_exactly_when_every_limit_has_room(limits: list[tuple[int, int]], gaps: list[int]):
    """The memory store's decision against a model: a request is accepted exactly when every
    limit's window holds fewer than its size (refused ones are counted nowhere), and no
    window ever holds more."""
    store = MemoryKeyStore()
    rate_limits = tuple(RateLimit(n, timedelta(milliseconds=w)) for n, w in limits)
    accepted: list[int] = []
    now = 1_000_000
    for gap in gaps:
        now += gap
        fits = all(sum(1 for t in accepted if t > now - w) < n for n, w in limits)
        at = datetime.fromtimestamp(now / 1000, UTC)
        status = store.hit_rate_limit("key_lineage", rate_limits, at)
        assert status.allowed == fits
        if fits:
            accepted.append(now)
            closest = min(n - sum(1 for t in accepted if t > now - w) for n, w in limits)
            assert status.remaining == closest
        else:
            assert status.retry_after_seconds > 0
    for n, w in limits:
        for start in accepted:
            assert sum(1 for t in accepted if start <= t < start + w) <= n


@pytest.mark.parametrize("kind", STORES)
def test_a_refusal_by_one_limit_spends_nothing_of_the_others(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    key = manager.create(scopes=["quotes:read"], rate_limit=[BURST, DAILY])
    assert key.key.rate_limits == (BURST, DAILY) and key.key.rate_limit == BURST
    first = auth.authenticate(key.secret).rate_limit
    assert first is not None and (first.limit, first.remaining) == (2, 1)  # the closest
    assert outcomes(auth, key.secret, 2) == ["ok", "RATE_LIMITED"]
    time.sleep(0.75)
    assert outcomes(auth, key.secret, 3) == ["ok", "ok", "RATE_LIMITED"]
    time.sleep(0.75)
    # Four accepted so far: had the two burst refusals counted against the daily limit, it
    # would be used up now.
    status = auth.authenticate(key.secret).rate_limit
    assert status is not None and (status.limit, status.remaining) == (5, 0)
    with pytest.raises(AuthError) as refused:
        auth.authenticate(key.secret)
    assert refused.value.code == ErrorCode.RATE_LIMITED
    assert refused.value.retry_after is not None and refused.value.retry_after > 3000
    time.sleep(0.75)  # the burst limit has room again; the daily one still refuses
    assert outcomes(auth, key.secret, 1) == ["RATE_LIMITED"]


@pytest.mark.parametrize("kind", STORES)
def test_a_burst_of_concurrent_requests_fits_every_limit(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    """500 requests at once on an event loop (Redis: merged into shared script calls)."""
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    limits = [RateLimit(40, timedelta(hours=1)), RateLimit(25, timedelta(hours=2), name="b")]
    key = manager.create(scopes=["quotes:read"], rate_limit=limits)

    results = burst(auth, [key.secret] * 500)
    assert results.count("ok") == 25
    assert results.count("RATE_LIMITED") == 475


@pytest.mark.parametrize("kind", STORES)
def test_a_large_limit_beside_a_small_one(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    """Above 1,000 per window a limit is kept as sub-window counts: both kinds side by side."""
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    limits = [RateLimit(1200, timedelta(hours=1)), RateLimit(3, timedelta(hours=1))]
    key = manager.create(scopes=["quotes:read"], rate_limit=limits)
    assert outcomes(auth, key.secret, 4) == ["ok", "ok", "ok", "RATE_LIMITED"]
    manager.update(key.key.id, rate_limit=[RateLimit(1200, timedelta(hours=1))])
    status = Authenticator(store).authenticate(key.secret).rate_limit
    assert status is not None and (status.limit, status.remaining) == (1200, 1196)


@pytest.mark.parametrize("kind", ["memory", "redis", "postgres"])
def test_limits_survive_updates_and_rotation(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store: KeyStore = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    key = manager.create(scopes=["quotes:read"], rate_limit=RateLimit(3, timedelta(hours=1)))
    auth.authenticate(key.secret)
    auth.authenticate(key.secret)
    # A second limit: the first keeps the two requests already counted.
    manager.update(key.key.id, rate_limit=[RateLimit(3, timedelta(hours=1)), DAILY])
    assert manager.get(key.key.id).rate_limits == (RateLimit(3, timedelta(hours=1)), DAILY)
    successor = manager.rotate(key.key.id)
    assert successor.key.rate_limits == (RateLimit(3, timedelta(hours=1)), DAILY)
    assert outcomes(Authenticator(store), successor.secret, 2) == ["ok", "RATE_LIMITED"]
    manager.update(key.key.id, rate_limit=None)
    assert manager.get(key.key.id).rate_limits == () and manager.get(key.key.id).rate_limit is None


def test_limits_are_validated():
    manager = KeyManager(MemoryKeyStore())
    with pytest.raises(ValueError, match="names must differ"):
        manager.create(
            scopes=["quotes:read"], rate_limit=[BURST, DAILY.__class__(1, DAILY.window, "burst")]
        )
    with pytest.raises(ValueError, match="at most 8"):
        manager.create(
            scopes=["quotes:read"],
            rate_limit=[RateLimit(n, timedelta(hours=1)) for n in range(1, 10)],
        )
    with pytest.raises(TypeError, match="RateLimit"):
        manager.create(scopes=["quotes:read"], rate_limit=["100/60s"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"RateLimit\.name"):
        RateLimit(1, timedelta(seconds=1), name=" padded ")
    record = manager.create(scopes=["quotes:read"], rate_limit=[BURST, DAILY]).key
    assert record.to_dict()["rate_limits"] == [
        {"requests": 2, "window_seconds": 0.7, "name": "burst"},
        {"requests": 5, "window_seconds": 3600.0, "name": "daily"},
    ]
    assert str(BURST) == "2/0.7s (burst)"


@pytest.mark.redis
def test_the_cli_takes_several_named_limits(redis_url: str, namespace: str):
    import subprocess
    import sys

    command = [sys.executable, "-m", "nowramp_auth", "--redis-url", redis_url]
    command += ["--namespace", namespace, "keys", "create", "--scope", "quotes:read", "--json"]
    command += ["--rate-limit", "burst=20/1s", "--rate-limit", "10000/1d"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    limits = json.loads(result.stdout)["key"]["rate_limits"]
    assert limits == [
        {"requests": 20, "window_seconds": 1.0, "name": "burst"},
        {"requests": 10000, "window_seconds": 86400.0, "name": None},
    ]
