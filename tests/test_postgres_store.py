"""PostgresKeyStore against a real PostgreSQL server: schema versions, no plaintext at rest,
revocation across instances through NOTIFY, a silently dropped listener, the server cut away
and back (through a TCP proxy the test controls), bursts past the pool, usage and audit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from nowramp_auth import (
    Authenticator,
    AuthError,
    ErrorCode,
    KeyManager,
    PostgresAuditLog,
    PostgresKeyStore,
    RateLimit,
    RedisRateLimiter,
)
from nowramp_auth.stores._errors import StoreUnavailable
from nowramp_auth.stores._pg_connections import LATEST_VERSION, SchemaMismatch, upgrade
from tests.tcp_proxy import TcpProxy
from tests.waiting import revocations_survive_a_silent_drop, seconds_until_refused, until_accepted

pytestmark = [pytest.mark.postgres, pytest.mark.smoke]  # smoke: also run against the wheel


def via(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    netloc = (
        f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    )
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    parts = urlsplit(postgres_url)
    tcp = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        yield tcp
    finally:
        tcp.close()


def store(url: str, schema: str, **options: object) -> PostgresKeyStore:
    return PostgresKeyStore.from_url(url, schema=schema, upgrade=True, **options)  # type: ignore[arg-type]


def test_schema_versions_are_checked_and_upgrades_are_idempotent(postgres_url: str, namespace: str):
    with pytest.raises(SchemaMismatch, match="db upgrade"):
        PostgresKeyStore.from_url(postgres_url, schema=namespace)
    errors: list[BaseException] = []

    def upgrade_once() -> None:
        try:
            upgrade(postgres_url, namespace)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade_once) for _ in range(4)]  # concurrent upgrades
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert upgrade(postgres_url, namespace) == []  # nothing left to apply
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(f'SELECT version FROM "{namespace}".schema_version').fetchall()
        assert [r[0] for r in rows] == list(range(1, LATEST_VERSION + 1))
        conn.execute(f'INSERT INTO "{namespace}".schema_version VALUES (999, %s)', ("future",))
    with pytest.raises(SchemaMismatch, match="newer than this code"):
        PostgresKeyStore.from_url(postgres_url, schema=namespace)


def test_no_plaintext_at_rest(postgres_url: str, namespace: str):
    pg = store(postgres_url, namespace)
    try:
        manager, auth = KeyManager(pg), Authenticator(pg)
        issued = manager.create(scopes=["quotes:read"], project_id="p1")
        session = auth.create_session(issued.secret, project_id="p1")
        auth.authenticate(issued.secret)
        auth.authenticate_session(session.token)
        rotated = manager.rotate(issued.key.id)
        pg.flush_usage()
        with psycopg.connect(postgres_url) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (namespace,)
                )
            ]
            dump = " ".join(
                str(conn.execute(f'SELECT * FROM "{namespace}"."{t}"').fetchall()) for t in tables
            )
        for secret in (issued.secret, session.token, rotated.secret):
            assert secret not in dump and secret[10:30] not in dump
        assert pg.digest(issued.secret) in dump  # what is kept: the digest
        assert "secret" not in repr(pg) and "postgres@" not in repr(pg)
    finally:
        pg.close()


def test_revocation_reaches_another_instance_within_a_second(postgres_url: str, namespace: str):
    first = store(postgres_url, namespace, cache_ttl=30)
    second = store(postgres_url, namespace, cache_ttl=30)
    try:
        issued = KeyManager(first).create(scopes=["quotes:read"])
        auth = Authenticator(second)
        auth.authenticate(issued.secret)
        assert second.subscribed.wait(5)
        auth.authenticate(issued.secret)  # served from the cache now
        KeyManager(first).revoke(issued.key.id)
        assert seconds_until_refused(auth, issued.secret, 5) < 1.0
    finally:
        first.close()
        second.close()


def test_a_silently_dead_listener_is_replaced(postgres_url: str, namespace: str, proxy: TcpProxy):
    behind = store(via(proxy, postgres_url), namespace, cache_ttl=30)
    direct = store(postgres_url, namespace)
    try:
        revocations_survive_a_silent_drop(  # not the 30 s TTL
            KeyManager(direct),
            Authenticator(behind),
            behind,
            lambda: proxy.drop_silently(b"LISTEN"),
            5.0,
        )
    finally:
        behind.close()
        direct.close()


def test_unreachable_fails_closed_and_recovers(postgres_url: str, namespace: str, proxy: TcpProxy):
    pg = store(
        via(proxy, postgres_url), namespace, connect_timeout=1, statement_timeout=1, queue_timeout=1
    )
    try:
        manager, auth = KeyManager(pg), Authenticator(pg)
        warm = manager.create(scopes=["quotes:read"])
        cold = manager.create(scopes=["quotes:read"])
        auth.authenticate(warm.secret)  # cached
        proxy.refusing = True
        proxy.cut()
        with pytest.raises(AuthError) as refused:
            auth.authenticate(cold.secret)
        assert refused.value.code is ErrorCode.AUTH_UNAVAILABLE
        assert cold.secret not in str(refused.value)
        with pytest.raises(Exception) as management:  # a clear error, no plaintext
            manager.create(scopes=["quotes:read"])
        assert "unavailable" in str(management.value).lower()
        proxy.refusing = False
        until_accepted(lambda: auth.authenticate(cold.secret))
        assert auth.authenticate(cold.secret).key_id == cold.key.id
    finally:
        pg.close()


def test_a_burst_past_the_pool_is_load_not_failure(postgres_url: str, namespace: str):
    pg = store(postgres_url, namespace, pool_size=2, cache_ttl=0)
    try:
        manager, auth = KeyManager(pg), Authenticator(pg)
        keys = [manager.create(scopes=["quotes:read"]) for _ in range(20)]
        limited = manager.create(
            scopes=["quotes:read"], rate_limit=RateLimit(50, timedelta(hours=1))
        )

        async def burst() -> list[str]:
            async def one(secret: str) -> str:
                try:
                    return (await auth.authenticate_async(secret)).key_id
                except AuthError as error:
                    return error.code.value

            calls = [one(k.secret) for k in keys for _ in range(10)]  # 100x the pool
            calls += [one(limited.secret) for _ in range(100)]
            return await asyncio.gather(*calls)

        answers = asyncio.run(burst())
        assert ErrorCode.AUTH_UNAVAILABLE.value not in answers
        assert answers.count(limited.key.id) == 50
        assert answers.count(ErrorCode.RATE_LIMITED.value) == 50
        assert len([a for a in answers if a.startswith("key_")]) == 250
    finally:
        pg.close()


def test_usage_is_written_in_one_transaction_and_nothing_is_lost(
    postgres_url: str, namespace: str, proxy: TcpProxy
):
    pg = store(via(proxy, postgres_url), namespace, usage_flush_interval=3600)
    try:
        manager, auth = KeyManager(pg), Authenticator(pg)
        issued = manager.create(scopes=["quotes:read"])
        for _ in range(7):
            auth.authenticate(issued.secret)
        proxy.refusing = True
        proxy.cut()
        pg.flush_usage()  # fails: the counts are kept
        proxy.refusing = False
        pg.flush_usage()
        pg.flush_usage()  # nothing left: not counted twice
        reader = store(postgres_url, namespace)
        try:
            assert KeyManager(reader).get(issued.key.id).request_count == 7
            history = reader.usage_history(issued.key.id)
            assert sum(history.accepted.values()) == 7
        finally:
            reader.close()
    finally:
        pg.close()


@pytest.mark.redis
def test_limits_counted_in_redis_with_a_redis_rate_limiter(
    postgres_url: str, namespace: str, redis_url: str
):
    limiter = RedisRateLimiter.from_url(redis_url, namespace=namespace)
    pg = store(postgres_url, namespace, rate_limiter=limiter)
    try:
        manager, auth = KeyManager(pg), Authenticator(pg)
        issued = manager.create(scopes=["quotes:read"], rate_limit=RateLimit(5, timedelta(hours=1)))
        answers = []
        for _ in range(7):
            try:
                answers.append(auth.authenticate(issued.secret).rate_limit.remaining)
            except AuthError as error:
                answers.append(error.code.value)
        assert answers == [4, 3, 2, 1, 0, "RATE_LIMITED", "RATE_LIMITED"]
        import redis

        client = redis.Redis.from_url(redis_url)
        assert client.keys(f"{namespace}:rl:*")  # the budget lives in Redis
        with psycopg.connect(postgres_url) as conn:
            rows = conn.execute(f'SELECT count(*) FROM "{namespace}".rate_log').fetchone()
            assert rows == (0,)  # and not in PostgreSQL
    finally:
        pg.close()
        limiter.close()


def test_large_limits_use_sub_window_counts_and_are_never_late(postgres_url: str, namespace: str):
    pg = store(postgres_url, namespace)
    try:
        limit = RateLimit(1_200, timedelta(hours=1))
        statuses = [pg.hit_rate_limit("key_big", limit, None) for _ in range(1_205)]  # type: ignore[arg-type]
        assert sum(s.allowed for s in statuses) == 1_200
        assert all(s.retry_after_seconds >= 1 for s in statuses if not s.allowed)
    finally:
        pg.close()


def test_the_audit_table_reads_a_projects_events_by_index(postgres_url: str, namespace: str):
    pg = store(postgres_url, namespace)
    audit = PostgresAuditLog(pg)
    try:
        manager = KeyManager(pg, audit=audit)
        mine = manager.create(scopes=["quotes:read"], project_id="pa")
        for _ in range(3):
            manager.create(scopes=["quotes:read"], project_id="pb")
        manager.revoke(mine.key.id)
        audit.flush()
        events = audit.read(project_ids=["pa"])
        assert [(e.type, e.key_id) for e in events] == [
            ("key.revoked", mine.key.id),
            ("key.created", mine.key.id),
        ]
        assert [e.type for e in audit.read(key_id=mine.key.id, type="key.created")] == [
            "key.created"
        ]
        with psycopg.connect(postgres_url) as conn:
            plan = " ".join(
                r[0]
                for r in conn.execute(
                    f'EXPLAIN SELECT * FROM "{namespace}".audit_events WHERE project_id = '
                    "ANY('{pa}') ORDER BY id DESC LIMIT 50"
                )
            )
        assert "audit_by_project" in plan or "Seq Scan" in plan  # small table: either plan
    finally:
        audit.close()
        pg.close()


def test_an_app_starts_while_postgres_is_down_and_serves_once_it_is_back(
    postgres_url: str, namespace: str, proxy: TcpProxy
):
    upgrade(postgres_url, namespace)
    issued = None
    direct = store(postgres_url, namespace)
    try:
        issued = KeyManager(direct).create(scopes=["quotes:read"])
    finally:
        direct.close()
    proxy.refusing = True
    pg = PostgresKeyStore.from_url(
        via(proxy, postgres_url), schema=namespace, connect_timeout=1, queue_timeout=1
    )
    try:
        auth = Authenticator(pg)
        with pytest.raises(AuthError) as refused:
            auth.authenticate(issued.secret)
        assert refused.value.code is ErrorCode.AUTH_UNAVAILABLE
        proxy.refusing = False
        until_accepted(lambda: auth.authenticate(issued.secret))  # within seconds, no restart
        assert auth.authenticate(issued.secret).key_id == issued.key.id
    finally:
        pg.close()


def test_a_schema_not_upgraded_behind_a_late_start_fails_closed(
    postgres_url: str, namespace: str, proxy: TcpProxy
):
    proxy.refusing = True
    pg = PostgresKeyStore.from_url(
        via(proxy, postgres_url), schema=namespace, connect_timeout=1, queue_timeout=1
    )
    try:
        proxy.refusing = False  # reachable now, but the schema was never created
        with pytest.raises(StoreUnavailable, match="db upgrade"):
            pg.list_keys()
        with pytest.raises(StoreUnavailable, match="db upgrade"):  # still, every time
            pg.get_key("key_ABCDnotthere0000")
    finally:
        pg.close()
