"""Redis-specific behaviour on real redis-server processes: round trips, single flight,
cross-instance invalidation, failure and recovery, cluster slots, and what Redis holds."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from datetime import timedelta

import pytest
import redis as redis_py
from starlette.testclient import TestClient

from nowramp_auth import (
    Authenticator,
    AuthError,
    ErrorCode,
    KeyManager,
    RateLimit,
    RedisKeyStore,
)
from tests.apps import starlette_app
from tests.conftest import mistype
from tests.redis_servers import RedisServer, patient_store

pytestmark = pytest.mark.redis


def command_counts(client: redis_py.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def data_commands(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands made between two snapshots, without INFO itself and connection chatter."""
    ignore = {"info", "client|setinfo", "client", "ping", "hello", "subscribe", "config|resetstat"}
    return {
        name: after[name] - before.get(name, 0)
        for name in after
        if name not in ignore and after[name] != before.get(name, 0)
    }


@pytest.fixture
def store(redis_server: RedisServer):
    store = RedisKeyStore.from_url(redis_server.url, usage_flush_interval=3600)
    yield store
    store.close()


def warm_listener(store: RedisKeyStore) -> None:
    store.get_key("key_ABCDwarmup000000")
    assert store.subscribed.wait(5), "invalidation listener did not subscribe"


def test_round_trips_per_path(store: RedisKeyStore, redis_server: RedisServer):
    issued = KeyManager(store).create(scopes=["quotes:read"])
    auth = Authenticator(store)
    warm_listener(store)
    client = redis_server.client()
    typo = issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")

    before = command_counts(client)
    with pytest.raises(AuthError):
        auth.authenticate(typo)
    with pytest.raises(AuthError):
        auth.authenticate("ramp_live_garbage")
    assert data_commands(before, command_counts(client)) == {}, "bad checksum touched Redis"

    before = command_counts(client)
    auth.authenticate(issued.secret)
    assert data_commands(before, command_counts(client)) == {"hgetall": 1}, "cold: 1 round trip"

    before = command_counts(client)
    for _ in range(10):
        auth.authenticate(issued.secret)
    assert data_commands(before, command_counts(client)) == {}, "warm cache: no round trip"


def test_rate_limited_key_costs_exactly_one_script_call(
    store: RedisKeyStore, redis_server: RedisServer
):
    limited = KeyManager(store).create(
        scopes=["quotes:read"], rate_limit=RateLimit(100, timedelta(seconds=60))
    )
    auth = Authenticator(store)
    warm_listener(store)
    auth.authenticate(limited.secret)  # loads the record and the script
    client = redis_server.client()
    before = command_counts(client)
    auth.authenticate(limited.secret)
    made = data_commands(before, command_counts(client))
    # commandstats also counts the commands the script runs inside Redis
    inside_script = {"time", "exists", "zremrangebyscore", "zcard", "zadd", "pexpire", "zrange"}
    assert made["evalsha"] == 1
    assert set(made) - inside_script == {"evalsha"}, made


def test_concurrent_async_misses_collapse(store: RedisKeyStore, redis_server: RedisServer):
    issued = KeyManager(store).create(scopes=["quotes:read"])
    auth = Authenticator(store)
    warm_listener(store)
    client = redis_server.client()

    async def burst():
        return await asyncio.gather(*[auth.authenticate_async(issued.secret) for _ in range(200)])

    before = command_counts(client)
    principals = asyncio.run(burst())
    assert len(principals) == 200
    lookups = data_commands(before, command_counts(client)).get("hgetall", 0)
    assert 1 <= lookups <= 3


def test_concurrent_thread_misses_collapse(store: RedisKeyStore, redis_server: RedisServer):
    issued = KeyManager(store).create(scopes=["quotes:read"])
    auth = Authenticator(store)
    warm_listener(store)
    client = redis_server.client()
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def hit():
        barrier.wait()
        try:
            auth.authenticate(issued.secret)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    before = command_counts(client)
    threads = [threading.Thread(target=hit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert 1 <= data_commands(before, command_counts(client)).get("hgetall", 0) <= 3


def test_revocation_propagates_to_another_instance(redis_url: str, namespace: str):
    """Two store objects (two app processes): revoke in one, time until the other refuses."""
    a = RedisKeyStore.from_url(redis_url, namespace=namespace)
    b = RedisKeyStore.from_url(redis_url, namespace=namespace)
    try:
        manager, auth_b = KeyManager(a), Authenticator(b)
        warm_listener(b)
        delays = []
        for _ in range(200):
            issued = manager.create(scopes=["quotes:read"])
            auth_b.authenticate(issued.secret)  # now cached in b
            start = time.perf_counter()
            manager.revoke(issued.key.id)
            while True:
                try:
                    auth_b.authenticate(issued.secret)
                except AuthError as error:
                    assert error.code == ErrorCode.INVALID_API_KEY
                    break
                assert time.perf_counter() - start < 1.0, "not refused within 1 s"
            delays.append((time.perf_counter() - start) * 1000)
        delays.sort()
        p99 = delays[int(len(delays) * 0.99) - 1]
        print(
            f"\nrevocation propagation over {len(delays)} trials: "
            f"median {statistics.median(delays):.2f} ms, p99 {p99:.2f} ms, max {delays[-1]:.2f} ms"
        )
    finally:
        a.close()
        b.close()


def test_redis_down_is_503_and_recovery_needs_no_restart(redis_server: RedisServer):
    store = RedisKeyStore.from_url(redis_server.url, socket_timeout=0.3, connect_timeout=0.2)
    setup = patient_store(redis_server.url)
    try:
        manager = KeyManager(setup)
        cached = manager.create(scopes=["quotes:read"])
        uncached = manager.create(scopes=["quotes:read"])
        client = TestClient(starlette_app(Authenticator(store)))
        warm_listener(store)
        assert client.get("/quotes", headers={"X-API-Key": cached.secret}).status_code == 200
        redis_server.kill()
        down = client.get("/quotes", headers={"X-API-Key": uncached.secret})
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "AUTH_UNAVAILABLE"
        assert down.headers["retry-after"] == "1"
        bad = client.get("/quotes", headers={"X-API-Key": mistype(uncached.secret)})
        assert bad.status_code == 401  # decided without Redis
        redis_server.start()  # AOF: the keys are still there
        deadline = time.monotonic() + 10
        while client.get("/quotes", headers={"X-API-Key": uncached.secret}).status_code != 200:
            assert time.monotonic() < deadline, "did not recover after Redis came back"
            time.sleep(0.05)
        assert client.get("/quotes", headers={"X-API-Key": cached.secret}).status_code == 200
        assert store.subscribed.wait(5), "listener did not resubscribe"
    finally:
        store.close()
        setup.close()


def test_cache_is_flushed_when_pubsub_reconnects(store: RedisKeyStore, redis_server: RedisServer):
    issued = KeyManager(store).create(scopes=["quotes:read"])
    auth = Authenticator(store)
    warm_listener(store)
    auth.authenticate(issued.secret)
    assert issued.key.id in store.keys_cache._found
    killed = redis_server.client().client_kill_filter(_type="pubsub")
    assert killed >= 1
    deadline = time.monotonic() + 5
    while issued.key.id in store.keys_cache._found or not store.subscribed.is_set():
        assert time.monotonic() < deadline, "cache not flushed after pub/sub reconnect"
        time.sleep(0.01)


def test_nothing_is_cached_while_the_channel_is_down(redis_server: RedisServer):
    store = RedisKeyStore.from_url(redis_server.url)
    try:
        issued = KeyManager(store).create(scopes=["quotes:read"])
        store._sync.set_subscribed(False)
        store._sync.closing.set()  # keep the listener from resubscribing
        Authenticator(store).authenticate(issued.secret)
        assert issued.key.id not in store.keys_cache._found
    finally:
        store._sync.closing.clear()
        store.close()


def test_concurrent_rotations_from_threads_and_tasks(store: RedisKeyStore):
    manager = KeyManager(store)
    issued = manager.create(scopes=["quotes:read"])
    outcomes: list[object] = []

    def rotate():
        try:
            outcomes.append(manager.rotate(issued.key.id))
        except ValueError as exc:
            outcomes.append(exc)

    async def tasks():
        await asyncio.gather(*[asyncio.to_thread(rotate) for _ in range(25)])

    threads = [threading.Thread(target=rotate) for _ in range(25)]
    for t in threads:
        t.start()
    asyncio.run(tasks())
    for t in threads:
        t.join()
    winners = [o for o in outcomes if not isinstance(o, ValueError)]
    assert len(outcomes) == 50 and len(winners) == 1
    assert manager.get(issued.key.id).rotated_to == winners[0].key.id
    assert all("already rotated" in str(o) for o in outcomes if isinstance(o, ValueError))


def test_records_of_a_lineage_share_a_cluster_slot(cluster_url: str, namespace: str):
    store = RedisKeyStore.from_url(cluster_url, cluster=True, namespace=namespace)
    try:
        manager, auth = KeyManager(store), Authenticator(store)
        old = manager.create(
            scopes=["quotes:read"], project_id="p1", rate_limit=RateLimit(10, timedelta(seconds=1))
        )
        new = manager.rotate(old.key.id)
        session = auth.create_session(new.secret, project_id="p1")
        names = store.names
        keys = [
            names.record(old.key.id),
            names.record(new.key.id),
            names.rate_log(old.key.id),
            names.usage(new.key.id),
            names.session(session.session_id),
        ]
        client = redis_py.RedisCluster.from_url(cluster_url)
        slots = {client.keyslot(k) for k in keys}
        assert len(slots) == 1
        client.close()
    finally:
        store.close()


def test_redis_holds_no_secret(redis_server: RedisServer):
    store = RedisKeyStore.from_url(redis_server.url, usage_flush_interval=0.05)
    try:
        from nowramp_auth.stores.redis_audit import RedisStreamAuditLog

        audit = RedisStreamAuditLog(store, flush_interval=0.05)
        manager, auth = KeyManager(store, audit=audit), Authenticator(store, audit=audit)
        secrets = []
        issued = manager.create(
            scopes=["quotes:read"], project_id="p1", rate_limit=RateLimit(5, timedelta(seconds=9))
        )
        secrets.append(issued.secret)
        auth.authenticate(issued.secret)
        rotated = manager.rotate(issued.key.id)
        secrets.append(rotated.secret)
        session = auth.create_session(rotated.secret, project_id="p1")
        secrets.append(session.token)
        auth.authenticate_session(session.token)
        with pytest.raises(AuthError):
            auth.authenticate(mistype(issued.secret))
        manager.revoke(rotated.key.id)
        auth.revoke_session(session.token)
        store.flush_usage()
        audit.close()
        client = redis_server.client()
        dump = []
        for key in client.scan_iter("*"):
            dump.append(key)
            kind = client.type(key)
            if kind == "hash":
                dump.extend(f"{k}={v}" for k, v in client.hgetall(key).items())
            elif kind == "set":
                dump.extend(client.smembers(key))
            elif kind == "zset":
                dump.extend(str(m) for m in client.zrange(key, 0, -1, withscores=True))
            elif kind == "stream":
                dump.extend(str(e) for e in client.xrange(key))
            elif kind == "string":
                dump.append(client.get(key))
        dump.extend(str(entry) for entry in client.slowlog_get(1000))
        text = "\n".join(dump)
        assert "key.created" in text  # the audit stream is there
        for secret in secrets:
            body = secret[10:]
            secret_part = body[16:48]  # the random secret between the public id and checksum
            for fragment in (secret, body, secret_part, secret_part[:12], secret_part[-12:]):
                assert fragment not in text
    finally:
        store.close()


def test_repr_hides_credentials():
    store = RedisKeyStore.from_url("redis://:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in repr(store)
    store.close()


def test_a_forked_child_starts_its_own_listener(redis_server: RedisServer):
    """gunicorn --preload forks after import: the child must not inherit dead threads."""
    import os

    store = RedisKeyStore.from_url(redis_server.url)
    try:
        issued = KeyManager(store).create(scopes=["quotes:read"])
        warm_listener(store)  # threads now run in the parent
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            ok = b"0"
            try:
                store.get_key("key_ABCDwarmup000000")
                if store.subscribed.wait(5):
                    Authenticator(store).authenticate(issued.secret)
                    ok = b"1" if issued.key.id in store.keys_cache._found else b"2"
            finally:
                os.write(write, ok)
                os._exit(0)
        os.close(write)
        result = os.read(read, 1)
        os.waitpid(pid, 0)
        assert result == b"1", "the child did not resubscribe and cache"
    finally:
        store.close()
