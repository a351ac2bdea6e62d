"""Load is not a fault: bursts far larger than the Redis connection pool, on asyncio and on
threads, on one node and on a Redis Cluster, and against real servers, get only right answers
(never ``AUTH_UNAVAILABLE``, never a 5xx). The pool is made small (``max_connections=5``) so
every burst is many times what it holds."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta

import httpx
import pytest

from nowramp_auth import Authenticator, AuthError, KeyManager, RateLimit, RedisKeyStore
from nowramp_auth.stores import StoreUnavailable
from tests.redis_servers import free_port, patient_store
from tests.servers import ROOT, SERVERS, server_command

pytestmark = pytest.mark.redis

POOL = 5
BURST = 500


def make(kind: str, request: pytest.FixtureRequest, namespace: str) -> RedisKeyStore:
    url = request.getfixturevalue("redis_url" if kind == "redis" else "cluster_url")
    store = RedisKeyStore.from_url(
        url, cluster=kind == "cluster", namespace=namespace, max_connections=POOL
    )
    request.addfinalizer(store.close)
    return store


@pytest.fixture(params=["redis", "cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def outcome_of(error: BaseException | None) -> str:
    """``ok``, or the error code (or type) with the chain of causes, so that a failure says
    what the client library raised."""
    if error is None:
        return "ok"
    outcome = error.code.value if isinstance(error, AuthError) else type(error).__name__
    cause = error.__cause__
    while cause is not None:
        outcome += f" <- {type(cause).__name__}: {cause}"
        cause = cause.__cause__
    return outcome


async def _async_burst(auth: Authenticator, secrets: list[str]) -> Counter[str]:
    async def one(secret: str) -> str:
        try:
            await auth.authenticate_async(secret)
        except Exception as error:
            return outcome_of(error)
        return "ok"

    return Counter(await asyncio.gather(*[one(s) for s in secrets]))


def test_async_burst_of_distinct_keys_on_a_cold_cache(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    setup = make(kind, request, namespace)
    manager = KeyManager(setup)
    secrets = [manager.create(scopes=["quotes:read"]).secret for _ in range(BURST)]

    async def run() -> Counter[str]:
        # The store is made inside the running loop, as an app's startup would.
        store = make(kind, request, namespace)
        try:
            return await _async_burst(Authenticator(store), secrets)
        finally:
            await store.aclose()

    assert asyncio.run(run()) == Counter({"ok": BURST})


def test_async_burst_on_one_rate_limited_key(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    store = make(kind, request, namespace)
    issued = KeyManager(store).create(
        scopes=["quotes:read"], rate_limit=RateLimit(BURST * 4, timedelta(hours=1))
    )
    auth = Authenticator(store)

    async def run() -> Counter[str]:
        try:
            return await _async_burst(auth, [issued.secret] * BURST)
        finally:
            await store.aclose()

    assert asyncio.run(run()) == Counter({"ok": BURST})


def test_thread_burst(kind: str, request: pytest.FixtureRequest, namespace: str):
    store = make(kind, request, namespace)
    manager = KeyManager(store)
    distinct = [manager.create(scopes=["quotes:read"]).secret for _ in range(100)]
    limited = manager.create(
        scopes=["quotes:read"], rate_limit=RateLimit(1000, timedelta(hours=1))
    ).secret
    auth = Authenticator(store)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(200)

    def worker(index: int) -> None:
        secret = distinct[index] if index < 100 else limited
        barrier.wait()
        try:
            auth.authenticate(secret)
            result = "ok"
        except Exception as error:
            result = outcome_of(error)
        with lock:
            outcomes[result] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == Counter({"ok": 200})


def test_client_library_errors_leave_the_store_only_as_unavailable(
    request: pytest.FixtureRequest, namespace: str, caplog: pytest.LogCaptureFixture
):
    """A fault injected into the real client (an internal error of the library, like the
    ones redis-py's cluster client raised under concurrency) comes out as StoreUnavailable,
    logged by type, after one retry of the idempotent read."""
    store = make("redis", request, namespace)
    calls = 0

    async def run() -> None:
        nonlocal calls
        state = store._clients.loop_state()

        async def broken(*args: object) -> object:
            nonlocal calls
            calls += 1
            raise AttributeError("'NoneType' object has no attribute 'writelines'")

        state.client.hgetall = broken
        try:
            with pytest.raises(StoreUnavailable):
                await store.get_key_async("key_ABCDabcdefghijkl")
        finally:
            await store.aclose()

    with caplog.at_level(logging.WARNING, logger="nowramp_auth.redis"):
        asyncio.run(run())
    assert calls == 2  # the read was tried once more, then reported unavailable
    assert "AttributeError" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_real_server_burst_on_a_cold_cache(server: str, redis_url: str, namespace: str, tmp_path):
    connections = 300
    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    manager = KeyManager(store)
    secrets = [manager.create(scopes=["quotes:read"]).secret for _ in range(connections)]
    store.close()
    port = free_port()
    command = [sys.executable, "-m", *[a.format(port=port) for a in server_command(server)]]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NOWRAMP_TEST_REDIS_URL": redis_url,
        "NOWRAMP_TEST_NAMESPACE": namespace,
        "NOWRAMP_TEST_MAX_CONNECTIONS": str(POOL),
    }
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            statuses = asyncio.run(_burst_over_http(base, secrets))
        finally:
            process.terminate()
            process.wait(timeout=15)
    assert statuses == Counter({200: connections}), statuses
    assert "Traceback" not in log_path.read_text()


async def _burst_over_http(base: str, secrets: list[str]) -> Counter[int]:
    limits = httpx.Limits(max_connections=len(secrets), max_keepalive_connections=len(secrets))
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        for _ in range(300):
            try:
                await client.get("/health")
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        responses = await asyncio.gather(
            *[client.get("/quotes", headers={"X-API-Key": s}) for s in secrets]
        )
    return Counter(r.status_code for r in responses)


def test_a_script_redis_forgot_is_loaded_again_and_counted_once(
    kind: str, request: pytest.FixtureRequest, namespace: str
):
    """After SCRIPT FLUSH (as after a Redis restart) every limiter call answers NOSCRIPT: it
    did not run, so it is sent again once the script is loaded, and counts exactly once."""
    store = make(kind, request, namespace)
    issued = KeyManager(store).create(
        scopes=["quotes:read"], rate_limit=RateLimit(3, timedelta(hours=1))
    )
    auth = Authenticator(store)
    store._client().script_flush()

    async def run() -> Counter[str]:
        try:
            return await _async_burst(auth, [issued.secret] * 5)
        finally:
            await store.aclose()

    assert asyncio.run(run()) == Counter({"ok": 3, "RATE_LIMITED": 2})
    store._client().script_flush()
    assert outcome_of(_sync_error(auth, issued.secret)) == "RATE_LIMITED"


def _sync_error(auth: Authenticator, secret: str) -> BaseException | None:
    try:
        auth.authenticate(secret)
    except Exception as error:
        return error
    return None


def test_a_stalled_event_loop_is_not_a_redis_timeout(
    request: pytest.FixtureRequest, namespace: str
):
    """A process busy elsewhere can keep its event loop from running past ``socket_timeout``
    while Redis' reply is already waiting; asyncio then fires the timer before it reads the
    reply. That is load in this process, not Redis failing: the idempotent read is tried
    again rather than answered as unavailable."""
    import time

    url = request.getfixturevalue("redis_url")
    store = RedisKeyStore.from_url(url, namespace=namespace, socket_timeout=0.3, cache_ttl=0)
    request.addfinalizer(store.close)
    setup = patient_store(url, namespace=namespace)
    request.addfinalizer(setup.close)
    issued = KeyManager(setup).create(scopes=["quotes:read"])

    async def run() -> object:
        try:
            await store.get_key_async(issued.key.id)  # a warm connection
            pool = store._clients.loop_state().client.connection_pool
            connection = pool._available_connections[0]
            send = connection.send_packed_command

            async def send_then_stall(*args: object, **kwargs: object) -> None:
                await send(*args, **kwargs)
                connection.send_packed_command = send  # once
                asyncio.get_running_loop().call_soon(time.sleep, 0.8)  # the loop stalls

            connection.send_packed_command = send_then_stall
            return await store.get_key_async(issued.key.id)
        finally:
            await store.aclose()

    stored = asyncio.run(run())
    assert stored is not None and stored.record.id == issued.key.id  # type: ignore[attr-defined]
