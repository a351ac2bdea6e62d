"""Usage counters add up under concurrent requests (threads and asyncio), written behind."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from nowramp_auth import Authenticator, KeyManager, KeyStore


def test_usage_adds_up_under_concurrency(any_store: KeyStore):
    manager, auth = KeyManager(any_store), Authenticator(any_store)
    issued = manager.create(scopes=["quotes:read"])

    def worker():
        for _ in range(50):
            auth.authenticate(issued.secret)

    async def tasks():
        await asyncio.gather(*[auth.authenticate_async(issued.secret) for _ in range(200)])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    asyncio.run(tasks())
    for t in threads:
        t.join()
    expected = 8 * 50 + 200
    # Visible at once in this process (pending counts are merged in) ...
    assert manager.get(issued.key.id).request_count == expected
    # ... and in Redis after the write-behind flush, for other processes.
    flush_interval = getattr(any_store, "_flush_interval", None)
    if flush_interval is not None:
        from nowramp_auth import RedisKeyStore

        assert isinstance(any_store, RedisKeyStore)
        deadline = time.monotonic() + flush_interval + 5
        names = any_store.names
        client = any_store._client()
        while int(client.hget(names.usage(issued.key.id), "count") or 0) != expected:
            assert time.monotonic() < deadline, "usage was not written behind"
            time.sleep(0.05)
        assert manager.get(issued.key.id).last_used_at is not None


@pytest.mark.redis
def test_usage_survives_a_redis_outage(redis_server):
    from nowramp_auth import RedisKeyStore

    store = RedisKeyStore.from_url(redis_server.url, usage_flush_interval=3600)
    try:
        manager, auth = KeyManager(store), Authenticator(store)
        issued = manager.create(scopes=["quotes:read"])
        for _ in range(7):
            auth.authenticate(issued.secret)
        redis_server.kill()
        store.flush_usage()  # fails: the counts are kept for later
        redis_server.start()
        store.flush_usage()
        assert int(redis_server.client().hget(store.names.usage(issued.key.id), "count")) == 7
    finally:
        store.close()


def test_history_counts_accepted_requests_and_refusals_per_hour(any_store: KeyStore):
    from datetime import timedelta

    from nowramp_auth import AuthError, RateLimit

    manager, auth = KeyManager(any_store), Authenticator(any_store)
    issued = manager.create(scopes=["quotes:read"], rate_limit=RateLimit(3, timedelta(hours=1)))
    for _ in range(3):
        auth.authenticate(issued.secret)
    for required in (["quotes:read"], ["orders:write"], ["orders:write"]):
        with pytest.raises(AuthError):
            auth.authenticate(issued.secret, required_scopes=required)
    with pytest.raises(AuthError):  # a wrong secret for the id: not this key's refusal
        auth.authenticate(issued.secret[:-4] + "AAAA")
    flush = getattr(any_store, "flush_usage", None)
    if flush is not None:
        flush()  # written behind to Redis; the history reads it back
    history = any_store.usage_history(issued.key.id)  # type: ignore[attr-defined]
    hour = int(time.time() // 3600)
    assert sum(history.accepted.values()) == 3 and set(history.accepted) <= {hour, hour - 1}
    refused: dict[str, int] = {}
    for (_, code), n in history.refused.items():
        refused[code] = refused.get(code, 0) + n
    assert refused == {"RATE_LIMITED": 1, "INSUFFICIENT_PERMISSIONS": 2}
    # More after the flush add up with what Redis holds.
    with pytest.raises(AuthError):
        auth.authenticate(issued.secret)
    again = any_store.usage_history(issued.key.id)  # type: ignore[attr-defined]
    assert sum(n for (_, c), n in again.refused.items() if c == "RATE_LIMITED") == 2


def test_history_keeps_the_last_eight_days_only():
    from nowramp_auth.stores._usage import HISTORY_HOURS, UsageLog

    log = UsageLog()
    start = 1_800_000_000.0
    for hour in range(HISTORY_HOURS * 2):
        at = start + hour * 3600
        log.count("key_x", at)
        log.count_refusal("key_x", "RATE_LIMITED", at)
        log.fold("key_x", log.cell("key_x"))
    history = log.history("key_x")
    last = int((start + (HISTORY_HOURS * 2 - 1) * 3600) // 3600)
    assert max(history.accepted) == last and len(history.accepted) <= HISTORY_HOURS + 1
    assert min(history.accepted) >= last - HISTORY_HOURS
    assert len(history.refused) <= HISTORY_HOURS + 1
    assert sum(history.accepted.values()) == len(history.accepted)  # one per hour


def test_one_fold_spanning_hours_counts_each_hour():
    from nowramp_auth.stores._usage import UsageLog

    log = UsageLog()
    base = 1_800_000_000.0 - 1_800_000_000.0 % 3600  # the start of an hour
    for at in (base + 10, base - 5, base + 3605, base + 20):  # not in order
        log.count("key_y", at)
    history = log.history("key_y")
    hour = int(base // 3600)
    assert history.accepted == {hour - 1: 1, hour: 2, hour + 1: 1}
    log.count("key_y", base + 30)
    log.count("key_y", base + 40)
    assert log.history("key_y").accepted == {hour - 1: 1, hour: 4, hour + 1: 1}


@pytest.mark.redis
def test_a_redis_flush_that_fails_half_way_counts_nothing_twice(redis_url: str, namespace: str):
    """The flush writes one atomic script per key; when it fails after some keys, the retry
    is the same batch, and the keys already written are skipped (found by its flush id)."""
    from nowramp_auth import Authenticator, KeyManager, RedisKeyStore
    from nowramp_auth.stores._errors import StoreUnavailable

    store = RedisKeyStore.from_url(redis_url, namespace=namespace, usage_flush_interval=3600)
    try:
        manager, auth = KeyManager(store), Authenticator(store)
        keys = [manager.create(scopes=["quotes:read"]) for _ in range(3)]
        for index, issued in enumerate(keys):
            for _ in range(index + 2):
                auth.authenticate(issued.secret)
        calls = []
        real = store._script

        def failing_second(name, keys_, args):  # type: ignore[no-untyped-def]
            if name == "FLUSH_USAGE":
                calls.append(keys_[0])
                if len(calls) == 2:
                    raise StoreUnavailable("Redis unavailable: cut")
            return real(name, keys_, args)

        store._script = failing_second  # type: ignore[method-assign]
        store.flush_usage()  # the first key is written, the second fails
        assert [manager.get(k.key.id).request_count for k in keys] == [2, 3, 4]  # none lost
        store._script = real  # type: ignore[method-assign]
        store.flush_usage()  # the same batch again: the first key is skipped
        store.flush_usage()
        fresh = RedisKeyStore.from_url(redis_url, namespace=namespace)
        try:
            assert [KeyManager(fresh).get(k.key.id).request_count for k in keys] == [2, 3, 4]
            history = fresh.usage_history(keys[0].key.id)
            assert sum(history.accepted.values()) == 2
        finally:
            fresh.close()
    finally:
        store.close()
