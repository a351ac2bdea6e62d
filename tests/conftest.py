"""Shared fixtures: a frozen clock, stores of every kind, private Redis servers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from nowramp_auth import KeyStore, MemoryKeyStore
from nowramp_auth.testing import FrozenClock
from tests.postgres_servers import postgres_available, scratch_database
from tests.redis_servers import RedisCluster, RedisServer, external_url, redis_server_binary

settings.register_profile(
    "default", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "slow", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "ci", max_examples=1_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile("default")

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def mistype(secret: str) -> str:
    """``secret`` with its last character changed (always to a different one)."""
    return secret[:-1] + ("A" if secret[-1] != "A" else "B")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


def _need_redis() -> None:
    if external_url() is None and redis_server_binary() is None:
        pytest.skip("no redis-server binary and no REDIS_URL")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Redis for the session (or ``REDIS_URL``)."""
    url = external_url()
    if url is not None:
        yield url
        return
    _need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private 3-master Redis Cluster for the session."""
    _need_redis()
    if redis_server_binary() is None:
        pytest.skip("a cluster needs a local redis-server binary")
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A database of this test module's own on the test PostgreSQL server, dropped after."""
    reason = postgres_available()
    if reason is not None:
        pytest.skip(reason)
    with scratch_database() as url:
        yield url


@pytest.fixture
def namespace() -> str:
    """A namespace of its own for each test, so tests never see each other's keys."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis with AOF for one test, which may kill and restart it."""
    _need_redis()
    if redis_server_binary() is None:
        pytest.skip("needs a local redis-server binary")
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()


def make_store(
    kind: str, request: pytest.FixtureRequest, namespace: str, **options: object
) -> KeyStore:
    """A store of ``kind`` ("memory", "redis", "cluster", "postgres"), closed at the end of
    the test (PostgreSQL: in a schema of the test's own, upgraded)."""
    if kind == "memory":
        return MemoryKeyStore(**options)  # type: ignore[arg-type]
    if kind == "postgres":
        from nowramp_auth import PostgresKeyStore

        url = request.getfixturevalue("postgres_url")
        pg = PostgresKeyStore.from_url(url, schema=namespace, upgrade=True, **options)
        request.addfinalizer(pg.close)
        return pg
    from nowramp_auth import RedisKeyStore

    url = request.getfixturevalue("redis_url" if kind == "redis" else "cluster_url")
    store = RedisKeyStore.from_url(url, cluster=kind == "cluster", namespace=namespace, **options)
    request.addfinalizer(store.close)
    return store


@pytest.fixture(params=["memory", "redis", "cluster", "postgres"])
def any_store(request: pytest.FixtureRequest, namespace: str) -> KeyStore:
    """Every store kind in turn: the store-contract suite runs against each."""
    return make_store(request.param, request, namespace)
