"""Scale-out: revocation propagation between two store instances, and Redis commands per
request on each path (counted with INFO commandstats on a private server)."""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta
from typing import Any

import redis

from nowramp_auth import Authenticator, AuthError, KeyManager, RateLimit, RedisKeyStore

SCRIPT_INNER = {"time", "exists", "zremrangebyscore", "zcard", "zadd", "pexpire", "zrange"}
NOISE = {"info", "client|setinfo", "client", "ping", "hello", "subscribe"}


def propagation(redis_url: str, trials: int) -> dict[str, float]:
    """Revoke in one instance; time until the other refuses (ms)."""
    a = RedisKeyStore.from_url(redis_url, namespace="bench-prop")
    b = RedisKeyStore.from_url(redis_url, namespace="bench-prop")
    try:
        return propagation_between(a, b, trials)
    finally:
        a.close()
        b.close()


def propagation_between(a: Any, b: Any, trials: int) -> dict[str, float]:
    """Revoke through store ``a``; time until store ``b`` refuses (ms), ``trials`` times."""
    manager, auth_b = KeyManager(a), Authenticator(b)
    b.get_key("key_ABCDwarmup000000")
    b.subscribed.wait(5)
    delays = []
    for _ in range(trials):
        issued = manager.create(scopes=["quotes:read"])
        auth_b.authenticate(issued.secret)
        start = time.perf_counter()
        manager.revoke(issued.key.id)
        while True:
            try:
                auth_b.authenticate(issued.secret)
            except AuthError:
                break
            if time.perf_counter() - start > 2:
                raise RuntimeError("revocation did not propagate within 2 s")
        delays.append((time.perf_counter() - start) * 1000)
    delays.sort()
    return {
        "trials": trials,
        "p50_ms": delays[len(delays) // 2],
        "p99_ms": delays[max(0, int(len(delays) * 0.99) - 1)],
        "max_ms": delays[-1],
    }


def round_trips(redis_url: str) -> dict[str, int]:
    """Client commands Redis received per request on each path."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisKeyStore.from_url(redis_url, namespace="bench-rt", usage_flush_interval=3600)
    cold_store = RedisKeyStore.from_url(
        redis_url, namespace="bench-rt", cache_ttl=0, usage_flush_interval=3600
    )
    try:
        manager = KeyManager(store)
        plain = manager.create(scopes=["quotes:read"])
        limited = manager.create(
            scopes=["quotes:read"], rate_limit=RateLimit(1_000, timedelta(seconds=1))
        )
        auth, cold = Authenticator(store), Authenticator(cold_store)
        store.get_key("key_ABCDwarmup000000")
        store.subscribed.wait(5)
        for a in (auth, cold):
            a.authenticate(plain.secret)
            a.authenticate(limited.secret)
        typo = plain.secret[:-1] + ("A" if plain.secret[-1] != "A" else "B")

        def count(action: object) -> int:
            before = client.info("commandstats")
            action()  # type: ignore[operator]
            after = client.info("commandstats")
            made = 0
            for name, stats in after.items():
                command = name.removeprefix("cmdstat_")
                if command in NOISE or command in SCRIPT_INNER:
                    continue
                made += int(stats["calls"]) - int(before.get(name, {"calls": 0})["calls"])
            return made

        def refuse() -> None:
            with contextlib.suppress(AuthError):
                auth.authenticate(typo)

        return {
            "bad checksum": count(refuse),
            "valid key, warm cache": count(lambda: auth.authenticate(plain.secret)),
            "valid key, cold (cache off)": count(lambda: cold.authenticate(plain.secret)),
            "rate-limited key, warm cache": count(lambda: auth.authenticate(limited.secret)),
        }
    finally:
        store.close()
        cold_store.close()
        client.close()
