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
