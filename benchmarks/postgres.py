"""PostgreSQL cases: ``PostgresKeyStore`` against the memory store and ``RedisKeyStore``, in
process and end to end, and revocation between two instances (``NOTIFY``).

Runs against a scratch database on ``NOWRAMP_TEST_POSTGRES_URL`` (default: the local server),
created here and dropped after; without a PostgreSQL server the section says so and is left
out. Every comparison is a ratio within one run (in process: within each round).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nowramp_auth import (
    KeyManager,
    MemoryKeyStore,
    RateLimit,
    RedisKeyStore,
)

from . import asgi, e2e, scale_out
from ._rounds import Samples, interleaved, paired

ADMIN_URL = os.environ.get(
    "NOWRAMP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SCHEMA = "nowramp_bench"
HUGE = RateLimit(10**9, timedelta(hours=1))
MEMORY = "ours, memory store"
WARM = "ours, PostgreSQL, warm cache"
COLD = "ours, PostgreSQL, cache off (1 query)"
REDIS_LIMITED = "ours, RedisKeyStore, rate-limited key"
PG_REDIS_LIMITED = "ours, PostgreSQL + RedisRateLimiter, rate-limited key"
PG_LIMITED = "ours, PostgreSQL alone, rate-limited key (1 statement)"
E2E_MEMORY = "uvicorn: ours, memory store"
E2E_WARM = "uvicorn: ours, PostgreSQL (warm cache)"
E2E_REDIS_LIMITED = "uvicorn: ours, RedisKeyStore, rate-limited key"
E2E_PG_REDIS_LIMITED = "uvicorn: ours, PostgreSQL + RedisRateLimiter, rate-limited key"
E2E_PG_LIMITED = "uvicorn: ours, PostgreSQL alone, rate-limited key"


def unavailable() -> str | None:
    """Why PostgreSQL cannot be measured here, or ``None``."""
    try:
        import psycopg
    except ImportError:
        return "psycopg not installed"
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        return f"no PostgreSQL server ({type(exc).__name__})"
    return None


@contextmanager
def scratch_database() -> Iterator[str]:
    """A database of the benchmark's own, upgraded, dropped after."""
    import psycopg

    from nowramp_auth.stores._pg_connections import upgrade

    name = "nowramp_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(ADMIN_URL)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    try:
        upgrade(url, SCHEMA)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(
    *,
    rounds: int,
    iterations: int,
    redis_url: str,
    e2e_seconds: float,
    e2e_rounds: int,
    trials: int,
) -> dict[str, Any]:
    """Every PostgreSQL figure, or ``{"skipped": reason}``."""
    reason = unavailable()
    if reason is not None:
        return {"skipped": reason}
    with scratch_database() as url:
        samples: Samples = {}
        in_process = _in_process(url, redis_url, rounds, iterations, samples)
        ratios = {
            "warm vs memory": paired(samples, lambda r: r[WARM] / r[MEMORY]),
            "Redis limiter vs RedisKeyStore": paired(
                samples, lambda r: r[PG_REDIS_LIMITED] / r[REDIS_LIMITED]
            ),
            "PostgreSQL limits vs Redis limiter": paired(
                samples, lambda r: r[PG_LIMITED] / r[PG_REDIS_LIMITED]
            ),
        }
        end_to_end = _end_to_end(url, redis_url, e2e_seconds, e2e_rounds)
        propagation = _propagation(url, trials)
    return {
        "in_process": in_process,
        "ratios": ratios,
        "e2e": end_to_end,
        "propagation": propagation,
    }


def _store(url: str, **options: Any) -> Any:
    from nowramp_auth import PostgresKeyStore

    return PostgresKeyStore.from_url(url, schema=SCHEMA, **options)


def _in_process(
    url: str, redis_url: str, rounds: int, iterations: int, samples: Samples
) -> dict[str, float]:
    from nowramp_auth import RedisRateLimiter

    limiter = RedisRateLimiter.from_url(redis_url, namespace="bench-pg")
    stores = [
        _store(url),
        _store(url, cache_ttl=0),
        _store(url, rate_limiter=limiter),
        _store(url),
        RedisKeyStore.from_url(redis_url, namespace="bench-pg-redis"),
    ]
    warm, cold, with_limiter, alone, redis_store = stores
    cases = {}
    for name, store, limit in (
        (MEMORY, MemoryKeyStore(), None),
        (WARM, warm, None),
        (COLD, cold, None),
        (REDIS_LIMITED, redis_store, HUGE),
        (PG_REDIS_LIMITED, with_limiter, HUGE),
        (PG_LIMITED, alone, HUGE),
    ):
        app, key = asgi._ours(store, limit)
        cases[name] = asgi._runner(app, key)
    for store in stores:
        store.get_key("key_warmup00000000")  # start the listener: the cache fills once it is up
        store.subscribed.wait(5)
    try:
        return interleaved(cases, rounds=rounds, iterations=iterations, samples=samples)
    finally:
        for store in stores:
            store.close()
        limiter.close()


def _keys(url: str, redis_url: str) -> dict[str, str]:
    pg = _store(url)
    redis_store = RedisKeyStore.from_url(redis_url, namespace="bench-pg-e2e")
    try:
        loopback = ["127.0.0.0/8"]
        make = KeyManager(pg).create
        return {
            E2E_WARM: make(scopes=["quotes:read"], allowed_ips=loopback).secret,
            E2E_PG_LIMITED: make(
                scopes=["quotes:read"], allowed_ips=loopback, rate_limit=HUGE
            ).secret,
            E2E_REDIS_LIMITED: KeyManager(redis_store)
            .create(scopes=["quotes:read"], allowed_ips=loopback, rate_limit=HUGE)
            .secret,
        }
    finally:
        pg.close()
        redis_store.close()


def _end_to_end(
    url: str, redis_url: str, seconds: float, rounds: int
) -> dict[str, dict[str, float]]:
    keys = _keys(url, redis_url)
    keys[E2E_PG_REDIS_LIMITED] = keys[E2E_PG_LIMITED]  # the same key, its limit in Redis
    pg_env = {"BENCH_POSTGRES_URL": url, "BENCH_POSTGRES_SCHEMA": SCHEMA}
    redis_env = {"BENCH_REDIS_URL": redis_url, "BENCH_NAMESPACE": "bench-pg-e2e"}
    plan = {
        E2E_MEMORY: ("memory", {}),
        E2E_WARM: ("postgres", pg_env),
        E2E_REDIS_LIMITED: ("redis", redis_env),
        E2E_PG_REDIS_LIMITED: ("postgres", {**pg_env, **redis_env, "BENCH_PG_LIMITER": "1"}),
        E2E_PG_LIMITED: ("postgres", pg_env),
    }
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in plan}
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        key_file = str(Path(directory) / "memory")
        for index in range(rounds):
            servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
            try:
                for name, (mode, env) in plan.items():
                    extra = {"BENCH_KEY_FILE": key_file} if mode == "memory" else {}
                    servers[name] = e2e._serve("uvicorn", mode, {**env, **extra})
                keys[E2E_MEMORY] = Path(key_file).read_text()
                for name in plan:
                    e2e._load(servers[name][1], 1, keys[name])  # warm up
                order = list(plan)
                shift = index % len(order)
                for name in order[shift:] + order[:shift]:
                    samples[name].append(e2e._load(servers[name][1], seconds, keys[name]))
            finally:
                for process, _ in servers.values():
                    process.terminate()
                    process.wait(timeout=10)
    results: dict[str, dict[str, float]] = {}
    bases = {
        E2E_WARM: E2E_MEMORY,
        E2E_PG_REDIS_LIMITED: E2E_REDIS_LIMITED,
        E2E_PG_LIMITED: E2E_WARM,
    }
    for name, runs in samples.items():
        results[name] = {f: statistics.median([s[f] for s in runs]) for f in e2e.FIELDS}
        base = bases.get(name)
        if base is not None:
            pairs = list(zip(runs, samples[base], strict=True))
            results[name]["rps_ratio"] = statistics.median([a["rps"] / b["rps"] for a, b in pairs])
    return results


def _propagation(url: str, trials: int) -> dict[str, float]:
    """Revoke in one instance; time until the other refuses (ms), through NOTIFY."""
    a, b = _store(url), _store(url, cache_ttl=30)
    try:
        return scale_out.propagation_between(a, b, trials)
    finally:
        a.close()
        b.close()


def tables(res: dict[str, Any], table: Any) -> list[str]:
    """The Markdown tables of :func:`run`'s figures."""
    if "skipped" in res:
        return [f"### PostgreSQL\n\nNot measured: {res['skipped']}.\n"]
    ratios, p = res["ratios"], res["propagation"]
    rows = [[name, f"{value:.1f}"] for name, value in res["in_process"].items()]
    out = [table("PostgreSQL in process (ASGI, per request, µs)", ["case", "µs"], rows)]
    e2e_rows = [
        [name, f"{r['rps']:,.0f}", f"{r['rps_ratio']:.2f}x" if "rps_ratio" in r else "-",
         f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"]
        for name, r in res["e2e"].items()
    ]  # fmt: skip
    out.append(
        table(
            "PostgreSQL end to end (ratios: memory store for warm, RedisKeyStore for the Redis"
            " limiter, PostgreSQL warm for PostgreSQL-only limits)",
            ["case", "requests/s", "ratio", "p50 ms", "p99 ms"],
            e2e_rows,
        )
    )
    e = res["e2e"]
    targets = [
        ["PostgreSQL warm in process <= 1.05x memory store", ratios["warm vs memory"], "<=", 1.05],
        ["PostgreSQL warm end to end >= 0.95x memory store", e[E2E_WARM]["rps_ratio"], ">=", 0.95],
        [
            "rate-limited, Redis limiter within 5% of RedisKeyStore (in process)",
            ratios["Redis limiter vs RedisKeyStore"],
            "<=",
            1.05,
        ],
        [
            "rate-limited, Redis limiter end to end >= 0.95x RedisKeyStore",
            e[E2E_PG_REDIS_LIMITED]["rps_ratio"],
            ">=",
            0.95,
        ],
    ]
    rows = [
        [
            name,
            f"{value:.2f}x",
            "yes" if (value <= bound if op == "<=" else value >= bound) else "no",
        ]
        for name, value, op, bound in targets
    ]
    rows.append(
        [
            f"revocation between two instances, p99 <= 50 ms ({p['trials']:.0f} trials)",
            f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f} / {p['max_ms']:.1f} ms (p50/p99/max)",
            "yes" if p["p99_ms"] <= 50 else "no",
        ]
    )
    rows.append(
        [
            "PostgreSQL-only limits: cost (reported)",
            f"{ratios['PostgreSQL limits vs Redis limiter']:.2f}x the Redis limiter in process; "
            f"{e[E2E_PG_LIMITED]['rps_ratio']:.2f}x PostgreSQL warm end to end",
            "-",
        ]
    )
    out.append(table("PostgreSQL targets", ["target", "measured", "met"], rows))
    return out
