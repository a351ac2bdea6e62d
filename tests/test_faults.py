"""Fault injection on a real redis-server under steady load from threads and asyncio tasks:
kill and restart it, pause it past the timeout, drop the pub/sub connection.

Invariants: zero false accepts; requests that need Redis get AUTH_UNAVAILABLE and nothing
else; requests fail fast (bounded by the timeout) while cached ones keep flowing; full recovery
without a restart."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from nowramp_auth import Authenticator, AuthError, ErrorCode, KeyManager, RedisKeyStore
from nowramp_auth._keys import generate_key
from tests.redis_servers import RedisServer, patient_store

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class Load:
    """Threads and asyncio tasks authenticating a mix of keys until stopped."""

    def __init__(self, auth: Authenticator, keys: dict[str, list[str]]) -> None:
        self.auth = auth
        self.keys = keys
        self.stop = threading.Event()
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.false_accepts: list[str] = []
        self.slowest = 0.0
        self.lock = threading.Lock()

    def record(self, kind: str, outcome: str, elapsed: float) -> None:
        with self.lock:
            self.outcomes[(kind, outcome)] += 1
            self.slowest = max(self.slowest, elapsed)
            if outcome == "accepted" and kind != "valid":
                self.false_accepts.append(kind)

    def _one(self, kind: str, secret: str, call: Callable[[str], object]) -> None:
        start = time.perf_counter()
        try:
            call(secret)
            outcome = "accepted"
        except AuthError as error:
            outcome = error.code.value
        self.record(kind, outcome, time.perf_counter() - start)

    def thread_worker(self) -> None:
        index = 0
        while not self.stop.is_set():
            for kind, secrets in self.keys.items():
                self._one(kind, secrets[index % len(secrets)], self.auth.authenticate)
            index += 1
            time.sleep(0.002)

    def async_worker(self) -> None:
        async def task(offset: int) -> None:
            index = offset
            while not self.stop.is_set():
                for kind, secrets in self.keys.items():
                    start = time.perf_counter()
                    try:
                        await self.auth.authenticate_async(secrets[index % len(secrets)])
                        outcome = "accepted"
                    except AuthError as error:
                        outcome = error.code.value
                    self.record(kind, outcome, time.perf_counter() - start)
                index += 1
                await asyncio.sleep(0.002)

        async def main() -> None:
            await asyncio.gather(*[task(i) for i in range(10)])

        asyncio.run(main())

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self.thread_worker) for _ in range(4)]
        self.threads.append(threading.Thread(target=self.async_worker))
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def make_keys(manager: KeyManager) -> dict[str, list[str]]:
    valid = [manager.create(scopes=["quotes:read"]).secret for _ in range(20)]
    revoked = []
    for _ in range(10):
        issued = manager.create(scopes=["quotes:read"])
        manager.revoke(issued.key.id)
        revoked.append(issued.secret)
    unknown = [generate_key("live")[0] for _ in range(10)]
    return {"valid": valid, "revoked": revoked, "unknown": unknown}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def allowed_outcomes(load: Load) -> None:
    assert load.false_accepts == []
    for (kind, outcome), _count in load.outcomes.items():
        if kind == "valid":
            assert outcome in ("accepted", "AUTH_UNAVAILABLE"), outcome
        else:
            assert outcome in ("INVALID_API_KEY", "AUTH_UNAVAILABLE"), (kind, outcome)


def recovered(auth: Authenticator, keys: dict[str, list[str]]) -> bool:
    try:
        for secret in keys["valid"]:
            auth.authenticate(secret)
    except AuthError:
        return False
    return True


def test_kill_and_restart_under_load(redis_server: RedisServer):
    store = RedisKeyStore.from_url(
        redis_server.url, cache_ttl=0.2, socket_timeout=0.3, connect_timeout=0.2
    )
    setup = patient_store(redis_server.url)
    try:
        auth = Authenticator(store)
        keys = make_keys(KeyManager(setup))
        with Load(auth, keys) as load:
            time.sleep(0.8)
            redis_server.kill()
            time.sleep(1.2)
            redis_server.start()
            wait_until(lambda: recovered(auth, keys), 15, "no recovery after restart")
            time.sleep(0.5)
        allowed_outcomes(load)
        assert load.outcomes[("valid", "AUTH_UNAVAILABLE")] > 0, "the outage was not observed"
        assert load.outcomes[("valid", "accepted")] > 0
        print(
            f"\nkill/restart: {sum(load.outcomes.values())} requests, "
            f"{dict(load.outcomes)}, false accepts 0"
        )
        # the async clients recovered too
        assert asyncio.run(auth.authenticate_async(keys["valid"][0])).kind == "api_key"
    finally:
        store.close()
        setup.close()


def test_pause_past_the_timeout(redis_server: RedisServer):
    timeout = 0.3
    store = RedisKeyStore.from_url(
        redis_server.url, cache_ttl=5, socket_timeout=timeout, connect_timeout=0.2
    )
    setup = patient_store(redis_server.url)
    try:
        manager, auth = KeyManager(setup), Authenticator(store)
        keys = make_keys(manager)
        hot = keys["valid"][0]
        store.get_key("key_ABCDwarmup000000")
        assert store.subscribed.wait(5)  # caching starts once invalidation is live
        auth.authenticate(hot)  # cached: must keep working during the pause
        cold = [manager.create(scopes=["quotes:read"]).secret for _ in range(5)]
        admin = redis_server.client()
        admin.execute_command("CLIENT", "PAUSE", "2500", "ALL")
        latencies = []
        for secret in cold:
            start = time.perf_counter()
            with pytest.raises(AuthError) as info:
                auth.authenticate(secret)
            latencies.append(time.perf_counter() - start)
            assert info.value.code == ErrorCode.AUTH_UNAVAILABLE
            auth.authenticate(hot)  # other requests progress
        # Each refusal came after about one timeout, far inside the 2.5 s pause.
        assert max(latencies) < 2.5 * 0.5, latencies
        print(
            f"\npause: refusal latencies {[round(x, 3) for x in latencies]} s "
            f"(socket timeout {timeout} s)"
        )
        admin.execute_command("CLIENT", "UNPAUSE")
        wait_until(lambda: recovered(auth, {"valid": cold}), 10, "no recovery after pause")
    finally:
        store.close()
        setup.close()


def test_pubsub_drop_under_load(redis_server: RedisServer):
    store = RedisKeyStore.from_url(redis_server.url)
    other = RedisKeyStore.from_url(redis_server.url)
    try:
        manager, auth = KeyManager(other), Authenticator(store)
        keys = make_keys(manager)
        victim = manager.create(scopes=["quotes:read"])
        keys["valid"].append(victim.secret)
        auth.authenticate(victim.secret)
        assert store.subscribed.wait(5)
        with Load(auth, {k: v for k, v in keys.items()}) as load:
            time.sleep(0.3)
            killed = redis_server.client().client_kill_filter(_type="pubsub")
            assert killed >= 1
            wait_until(store.subscribed.is_set, 10, "listener did not resubscribe")
            # A revocation right after the reconnect still reaches this instance.
            keys["valid"].remove(victim.secret)
            manager.revoke(victim.key.id)
            wait_until(lambda: _refused(auth, victim.secret), 2, "revocation lost")
            keys["revoked"].append(victim.secret)
            time.sleep(0.3)
        allowed_outcomes(load)
    finally:
        store.close()
        other.close()


def _refused(auth: Authenticator, secret: str) -> bool:
    try:
        auth.authenticate(secret)
    except AuthError as error:
        return error.code == ErrorCode.INVALID_API_KEY
    return False
