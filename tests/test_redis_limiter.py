"""``RedisRateLimiter`` on its own: the batched Lua limiter that ``RedisKeyStore`` uses, for any
store. Exact under concurrency from threads and asyncio, one budget per lineage."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from nowramp_auth import RateLimit, RedisKeyStore, RedisRateLimiter

pytestmark = pytest.mark.redis
LIMIT = RateLimit(25, timedelta(hours=1))


def test_a_standalone_limiter_is_exact_from_threads(redis_url: str, namespace: str):
    limiter = RedisRateLimiter.from_url(redis_url, namespace=namespace, max_connections=4)
    try:
        now = datetime.now(UTC)
        with ThreadPoolExecutor(16) as pool:
            statuses = list(
                pool.map(lambda _: limiter.hit_rate_limit("key_A", LIMIT, now), range(100))
            )
        assert sum(s.allowed for s in statuses) == 25
        assert all(s.retry_after_seconds > 0 for s in statuses if not s.allowed)
        # Another lineage has its own budget.
        assert limiter.hit_rate_limit("key_B", LIMIT, now).allowed
    finally:
        limiter.close()


def test_a_standalone_limiter_is_exact_from_asyncio(redis_url: str, namespace: str):
    limiter = RedisRateLimiter.from_url(redis_url, namespace=namespace, max_connections=2)

    async def burst() -> list[bool]:
        now = datetime.now(UTC)
        charge = limiter.rate_charger("key_C", LIMIT)
        statuses = await asyncio.gather(*(charge(0.0) for _ in range(150)))
        more = await limiter.hit_rate_limit_async("key_C", LIMIT, now)
        await limiter.aclose()
        return [s.allowed for s in [*statuses, more]]

    try:
        allowed = asyncio.run(burst())
        assert sum(allowed) == 25 and not allowed[-1]
    finally:
        limiter.close()


def test_the_store_and_a_limiter_on_the_same_redis_share_budgets(redis_url: str, namespace: str):
    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    limiter = RedisRateLimiter.from_url(redis_url, namespace=namespace)
    try:
        now = datetime.now(UTC)
        small = RateLimit(3, timedelta(hours=1))
        answers = [store.hit_rate_limit("key_D", small, now).allowed for _ in range(2)]
        answers += [limiter.hit_rate_limit("key_D", small, now).allowed for _ in range(2)]
        assert answers == [True, True, True, False]
        assert "RedisRateLimiter" in repr(limiter) and redis_url not in repr(limiter)
    finally:
        limiter.close()
        store.close()


def test_bad_timeouts_fail_at_construction():
    with pytest.raises(ValueError, match="socket_timeout"):
        RedisRateLimiter("redis://127.0.0.1:1/0", socket_timeout=0)
