"""Per-key rate limits: exact sliding-window property, boundaries, and one shared limit
across store instances on Redis and Redis Cluster."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nowramp_auth import Authenticator, AuthError, ErrorCode, KeyManager, RateLimit
from nowramp_auth.stores._sliding_log import SlidingLog


@given(
    limit=st.integers(1, 6),
    window=st.integers(1, 50),
    gaps=st.lists(st.integers(0, 20), min_size=1, max_size=80),
)
def test_sliding_log_is_exact(limit: int, window: int, gaps: list[int]):
    """Never more than `limit` accepted in any window-length interval, and a request is refused
    only when `limit` requests were accepted in the window before it."""
    log = SlidingLog()
    now = 0
    accepted: list[int] = []
    for gap in gaps:
        now += gap
        in_window = [t for t in accepted if t > now - window]
        status = log.hit(now, limit, window)
        assert status.allowed == (len(in_window) < limit)
        if status.allowed:
            accepted.append(now)
            assert status.remaining == limit - len(in_window) - 1
        else:
            assert status.retry_after_seconds > 0
    for start in accepted:
        assert sum(1 for t in accepted if start <= t < start + window) <= limit


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "cluster", "postgres"])
def test_redis_boundary_and_reset(kind: str, request: pytest.FixtureRequest, namespace: str):
    from tests.conftest import make_store

    store = make_store(kind, request, namespace)
    manager, auth = KeyManager(store), Authenticator(store)
    issued = manager.create(
        scopes=["quotes:read"], rate_limit=RateLimit(3, timedelta(milliseconds=600))
    )
    assert [auth.authenticate(issued.secret).rate_limit.remaining for _ in range(3)] == [2, 1, 0]
    with pytest.raises(AuthError) as info:
        auth.authenticate(issued.secret)
    assert info.value.code == ErrorCode.RATE_LIMITED and info.value.retry_after == 1
    time.sleep(0.65)
    assert auth.authenticate(issued.secret).rate_limit.remaining == 2


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "cluster", "postgres"])
def test_two_instances_share_one_limit(kind: str, request: pytest.FixtureRequest, namespace: str):
    from tests.conftest import make_store

    first, second = make_store(kind, request, namespace), make_store(kind, request, namespace)
    issued = KeyManager(first).create(
        scopes=["quotes:read"], rate_limit=RateLimit(25, timedelta(seconds=30))
    )
    accepted = []
    lock = threading.Lock()

    def hammer(store):
        auth = Authenticator(store)
        for _ in range(20):
            try:
                auth.authenticate(issued.secret)
            except AuthError as error:
                assert error.code == ErrorCode.RATE_LIMITED
                continue
            with lock:
                accepted.append(1)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in (first, second) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 25  # 160 attempts inside one window: exactly the limit


def test_lowering_a_limit_takes_effect(clock):
    from nowramp_auth.testing import auth_kit

    kit = auth_kit()
    issued = kit.key("quotes:read", rate_limit=RateLimit(10, timedelta(seconds=60)))
    for _ in range(5):
        kit.authenticator.authenticate(issued.secret)
    kit.manager.update(issued.key.id, rate_limit=RateLimit(2, timedelta(seconds=60)))
    # The 5 requests already counted stay counted: the lower limit refuses at once.
    with pytest.raises(AuthError) as refused:
        kit.authenticator.authenticate(issued.secret)
    assert refused.value.code is ErrorCode.RATE_LIMITED


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "cluster"])
@pytest.mark.parametrize("limit", [5, 2_000])  # the exact log, and sub-window counts
def test_a_burst_on_one_key_is_charged_in_one_script_call(
    kind: str, limit: int, request: pytest.FixtureRequest, namespace: str
):
    """Concurrent requests of one key made in the same turn of the event loop are charged in
    one script call: the first ones in, each with its own RateLimit-Remaining, the rest
    refused with a Retry-After, and never more than the limit."""
    import asyncio

    from tests.conftest import make_store

    store = make_store(kind, request, namespace)
    issued = KeyManager(store).create(
        scopes=["quotes:read"], rate_limit=RateLimit(limit, timedelta(hours=1))
    )
    auth = Authenticator(store)
    store.get_key(issued.key.id)  # starts the invalidation listener: the cache serves once
    assert store.subscribed.wait(5)  # it is subscribed
    burst = 7 if limit == 5 else 40
    calls: list[int] = []

    async def one() -> object:
        try:
            return await auth.authenticate_async(issued.secret)
        except AuthError as error:
            return error

    async def run() -> list[object]:
        try:
            await one()  # verified and cached: the burst's requests all reach the limiter
            calls.append(_evalsha_calls(store))
            answers = list(await asyncio.gather(*[one() for _ in range(burst)]))
            calls.append(_evalsha_calls(store))
            return answers
        finally:
            await store.aclose()

    answers = asyncio.run(run())
    accepted = [a for a in answers if not isinstance(a, AuthError)]
    refused = [a for a in answers if isinstance(a, AuthError)]
    room = min(burst, limit - 1)
    assert len(accepted) == room
    remaining = sorted(a.rate_limit.remaining for a in accepted)  # type: ignore[attr-defined]
    assert remaining == list(range(limit - 1 - room, limit - 1))
    assert all(e.code == ErrorCode.RATE_LIMITED and e.retry_after >= 1 for e in refused)
    assert len(refused) == burst - room
    if kind == "redis":  # one script call for the whole burst
        assert calls[1] - calls[0] == 1


def _evalsha_calls(store: object) -> int:
    stats = store._client().info("commandstats")  # type: ignore[attr-defined]
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.redis
def test_calls_made_while_a_flush_is_in_flight_go_out_together(
    request: pytest.FixtureRequest, namespace: str
):
    """One flush of the rate-limit pipeline is in flight at a time: the requests of a key made
    while Redis is answering the previous flush (held here by CLIENT PAUSE) wait, merge, and
    go out as one script call as soon as it is answered, whatever turn they were made in."""
    import asyncio

    from tests.conftest import make_store

    store = make_store("redis", request, namespace)
    issued = KeyManager(store).create(
        scopes=["quotes:read"], rate_limit=RateLimit(100, timedelta(hours=1))
    )
    auth = Authenticator(store)
    store.get_key(issued.key.id)
    assert store.subscribed.wait(5)

    async def one() -> object:
        return await auth.authenticate_async(issued.secret)

    async def run() -> tuple[list[object], int]:
        try:
            await one()  # verified and cached, the script loaded
            before = _evalsha_calls(store)
            store._client().client_pause(300, all=False)  # type: ignore[attr-defined]
            first = asyncio.gather(*[one() for _ in range(3)])
            await asyncio.sleep(0.05)  # its flush is sent and waits on the paused server
            second = asyncio.gather(*[one() for _ in range(3)])
            await asyncio.sleep(0)
            third = asyncio.gather(*[one() for _ in range(3)])
            answers = [*await first, *await second, *await third]
            return answers, _evalsha_calls(store) - before
        finally:
            await store.aclose()

    answers, calls = asyncio.run(run())
    remaining = sorted(a.rate_limit.remaining for a in answers)  # type: ignore[attr-defined]
    assert remaining == list(range(90, 99))  # 9 accepted after the first, each counted once
    assert calls == 2  # the paused flush, then the second and third turns' requests together
